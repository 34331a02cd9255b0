package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkin/checkin/messages"
)

// oneActive is an activeLookup that finds pid for every identity.
type oneActive struct{ pid *actor.PID }

func (a oneActive) Active(string, string) *actor.PID { return a.pid }

// mailboxCounter is a counter that sends, each time it counts, how many
// user messages wait in mb.
type mailboxCounter struct {
	prometheus.Counter
	mb      *mailbox
	waiting chan int
}

func (c mailboxCounter) Inc() {
	c.waiting <- c.mb.UserMessageCount()
	c.Counter.Inc()
}

// hold keeps the actor that receives it busy until release is closed,
// once it closed entered.
type hold struct{ entered, release chan struct{} }

// A call to a grain on this node is counted
// (checkin_grain_requests_total{served_by="local"}) once its request is in
// the grain's mailbox, not before: whoever sees the count and then sends
// another request to the grain knows the grain serves it after the one
// counted. Tests order their requests so.
func TestLocalCallCountedOnceQueued(t *testing.T) {
	system := quietSystem()
	var mb *mailbox
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case hold:
			close(m.entered)
			<-m.release
		case *localRequest:
			m.box.deliver(&messages.User{})
		}
	}, actor.WithMailbox(func() actor.Mailbox { mb = &mailbox{}; return mb }), actor.WithDispatcher(dispatcher()))
	pid := system.Root.Spawn(props)
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	h := hold{entered: make(chan struct{}), release: make(chan struct{})}
	system.Root.Send(pid, h)
	<-h.entered // the actor holds: a request sent now waits in its mailbox

	waiting := make(chan int, 1)
	m := NewMetrics(nil)
	c := &caller{system: system, active: oneActive{pid}, free: make(chan *replyBox, 1),
		local: mailboxCounter{Counter: m.served.WithLabelValues(servedLocal), mb: mb, waiting: waiting}}
	done := make(chan error, 1)
	go func() {
		_, err := c.call(context.Background(), "u", UserGrainKind, methodGetUser, &messages.GetUserRequest{}, 5*time.Second, 1, nil)
		done <- err
	}()
	if n := <-waiting; n != 1 {
		t.Errorf("the call was counted with %d requests in the grain's mailbox, want 1: its own", n)
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatalf("call: %v", err)
	}
}
