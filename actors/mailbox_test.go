package actors

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// seqMsg is message seq of sender from.
type seqMsg struct{ from, seq int }

// gate blocks the actor until it is closed.
type gate chan struct{}

type boom struct{}

// recorder is the actor under test: it records what it receives, in order,
// outside the actor so that the record survives restarts.
type recorder struct {
	mu        sync.Mutex
	got       []seqMsg
	restarts  int
	processed chan struct{}
}

func (r *recorder) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case gate:
		<-m
	case boom:
		panic("boom")
	case *actor.Restarting:
		r.mu.Lock()
		r.restarts++
		r.mu.Unlock()
	case seqMsg:
		r.mu.Lock()
		r.got = append(r.got, m)
		r.mu.Unlock()
		r.processed <- struct{}{}
	}
}

// quietSystem is an actor system that logs nowhere.
func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

func spawnRecorder(t *testing.T, system *actor.ActorSystem, r *recorder) *actor.PID {
	t.Helper()
	props := actor.PropsFromProducer(func() actor.Actor { return r },
		actor.WithMailbox(newMailbox), actor.WithDispatcher(dispatcher()))
	pid := system.Root.Spawn(props)
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	return pid
}

// waitFor receives n signals from processed or fails after a while.
func waitFor(t *testing.T, processed chan struct{}, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-processed:
		case <-deadline:
			t.Fatalf("only %d of %d messages were processed", i, n)
		}
	}
}

// checkOrder asserts that got holds every seq of every sender once, each
// sender's in the order sent.
func checkOrder(t *testing.T, got []seqMsg, senders, perSender int) {
	t.Helper()
	if len(got) != senders*perSender {
		t.Fatalf("received %d messages, want %d", len(got), senders*perSender)
	}
	next := make([]int, senders)
	for _, m := range got {
		if m.seq != next[m.from] {
			t.Fatalf("sender %d: got seq %d, want %d", m.from, m.seq, next[m.from])
		}
		next[m.from]++
	}
}

func TestMailboxDeliversEveryMessageInOrder(t *testing.T) {
	cases := []struct {
		name string
		// blocked: the actor is held until every message was posted, so
		// they queue up far past the mailbox's inline ring.
		blocked bool
	}{
		{"concurrent", false},
		{"queued behind a busy actor", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const senders, perSender = 8, 2000
			system := quietSystem()
			r := &recorder{processed: make(chan struct{}, senders*perSender)}
			pid := spawnRecorder(t, system, r)
			g := make(gate)
			if tc.blocked {
				system.Root.Send(pid, g)
			}
			var wg sync.WaitGroup
			for s := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perSender {
						system.Root.Send(pid, seqMsg{s, i})
					}
				}()
			}
			wg.Wait()
			if tc.blocked {
				close(g)
			}
			waitFor(t, r.processed, senders*perSender)
			r.mu.Lock()
			defer r.mu.Unlock()
			checkOrder(t, r.got, senders, perSender)
		})
	}
}

func TestMailboxCountsWaitingMessages(t *testing.T) {
	m := &mailbox{}
	m.RegisterHandlers(nil, actor.NewSynchronizedDispatcher(10))
	m.suspended = true // nothing runs: the messages wait
	for i := range 11 {
		if got := m.UserMessageCount(); got != i {
			t.Fatalf("after %d posts: %d waiting", i, got)
		}
		m.PostUserMessage(i)
	}
	for i := range 11 {
		if got := m.popUserLocked(); got != i {
			t.Fatalf("pop %d: got %v", i, got)
		}
	}
	if m.overflow != nil || m.n != 0 {
		t.Fatalf("drained mailbox keeps %d in the ring and %d in overflow", m.n, len(m.overflow))
	}
}

func TestMailboxPanicRestartsAndKeepsLaterMessages(t *testing.T) {
	const before, after = 50, 50
	system := quietSystem()
	r := &recorder{processed: make(chan struct{}, before+after)}
	pid := spawnRecorder(t, system, r)
	g := make(gate)
	system.Root.Send(pid, g) // queue everything behind the gate
	for i := range before {
		system.Root.Send(pid, seqMsg{0, i})
	}
	system.Root.Send(pid, boom{})
	for i := range after {
		system.Root.Send(pid, seqMsg{0, before + i})
	}
	close(g)
	waitFor(t, r.processed, before+after)
	r.mu.Lock()
	defer r.mu.Unlock()
	checkOrder(t, r.got, 1, before+after)
	if r.restarts != 1 {
		t.Fatalf("restarts = %d, want 1 (the supervisor restarts the actor that panicked)", r.restarts)
	}
}

// BenchmarkMailbox floods one actor from parallel senders: the grains'
// mailbox, protoactor's, and a writer's inbox (a locked queue the actor
// empties in one take per wake message).
func BenchmarkMailbox(b *testing.B) {
	for _, name := range []string{"compact", "protoactor", "inbox"} {
		b.Run(name, func(b *testing.B) {
			system := quietSystem()
			done := make(chan struct{})
			n := 0
			count := func(k int) {
				if n += k; n == b.N {
					close(done)
				}
			}
			in := &inbox{}
			var pending []pendingWrite
			opts := []actor.PropsOption{actor.WithDispatcher(dispatcher())}
			if name == "compact" {
				opts = append(opts, actor.WithMailbox(newMailbox))
			}
			pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				switch ctx.Message().(type) {
				case int:
					count(1)
				case wake:
					pending = in.take(pending[:0], false)
					count(len(pending))
				}
			}, opts...))
			defer system.Root.Stop(pid)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if name != "inbox" {
						system.Root.Send(pid, 1)
					} else if _, mustWake := in.put(pendingWrite{}); mustWake {
						system.Root.Send(pid, wake{})
					}
				}
			})
			<-done
		})
	}
}
