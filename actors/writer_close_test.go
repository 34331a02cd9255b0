package actors

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/pebble"
)

// holdingGauge is a gauge whose first Inc closes entered and then waits
// for release: it holds a submit between its check that the pool is open
// and its queueing of the checkin.
type holdingGauge struct {
	prometheus.Gauge
	entered, release chan struct{}
	once             sync.Once
}

func (g *holdingGauge) Inc() {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	g.Gauge.Inc()
}

// submitNow asks the test's grain stand-in to submit e.
type submitNow struct{ e *entry }

func newPebble(t *testing.T) persistence.Store {
	t.Helper()
	s, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func within(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A submit that was under way as Close ran, past its check that the pool
// is open, is refused (not written, the grain told so) when the writer
// has already drained: it must not be queued where no writer ever takes
// it, with its grain waiting for an answer that never comes.
func TestSubmitRacingCloseIsRefused(t *testing.T) {
	system := quietSystem()
	m := NewMetrics(nil)
	depth := &holdingGauge{Gauge: m.queueDepth, entered: make(chan struct{}), release: make(chan struct{})}
	m.queueDepth = depth
	cfg := DefaultWriterConfig()
	cfg.Writers = 1
	pool, err := NewPool(system, newPebble(t), cfg, zap.NewNop(), m)
	if err != nil {
		t.Fatal(err)
	}
	submitted := make(chan error, 1)
	results := make(chan *writeResult, 1)
	grain := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch msg := ctx.Message().(type) {
		case submitNow:
			submitted <- pool.submit(ctx, msg.e, false)
		case *writeResult:
			results <- msg
		}
	}))
	t.Cleanup(func() { system.Root.Stop(grain) })
	c := persistence.Checkin{ID: "c1", UserID: "u", LocationID: "L", Timestamp: time.UnixMilli(1).UTC()}
	system.Root.Send(grain, submitNow{e: &entry{c: c}})
	within(t, "the submit to pass its check that the pool is open", depth.entered)

	if err := pool.Close(5 * time.Second); err != nil {
		t.Fatalf("close: %v", err)
	}
	close(depth.release)
	var subErr error
	select {
	case subErr = <-submitted:
	case <-time.After(10 * time.Second):
		t.Fatal("the submit did not return")
	}
	if subErr == nil {
		t.Fatal("a checkin was accepted after Close returned: its writer is stopped, so it is never written and its grain never answered")
	}
	if !errors.Is(subErr, ErrUnavailable) {
		t.Fatalf("refused with %v, want ErrUnavailable", subErr)
	}
	if got := testutil.ToFloat64(depth.Gauge); got != 0 {
		t.Errorf("queue depth %v after the refusal, want 0", got)
	}
	if got := pool.held.Load(); got != 0 {
		t.Errorf("the writers hold %d checkins after the refusal, want 0", got)
	}
}

// Close asks every writer to drain at once and waits for them within one
// timeout, as its doc says: not one writer after the other, each with a
// timeout of its own (8 writers of a stuck store held a node's shutdown
// for 8 timeouts).
func TestCloseDrainsWritersTogether(t *testing.T) {
	system := quietSystem()
	const writers = 3
	asked := make(chan *actor.PID, writers)
	pids := make([]*actor.PID, writers)
	for i := range pids {
		// A writer that hears the drain but answers only when the test
		// says so: a store that is slow to finish the last batches.
		pids[i] = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if _, ok := ctx.Message().(drain); ok {
				asked <- ctx.Sender()
			}
		}))
	}
	p := &Pool{system: system, pids: pids}
	closed := make(chan error, 1)
	go func() { closed <- p.Close(time.Hour) }()
	var drainers []*actor.PID
	deadline := time.After(10 * time.Second)
	for len(drainers) < writers {
		select {
		case d := <-asked:
			drainers = append(drainers, d)
		case <-deadline:
			t.Fatalf("%d of %d writers were asked to drain while the first one drains: Close waits for each in turn", len(drainers), writers)
		}
	}
	for _, d := range drainers {
		system.Root.Send(d, drain{})
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return once every writer drained")
	}
}

// Closing a pool again waits for the first Close and returns its result,
// instead of panicking on the writers' channels closed already.
func TestPoolCloseTwice(t *testing.T) {
	system := quietSystem()
	cfg := DefaultWriterConfig()
	cfg.Writers = 2
	pool, err := NewPool(system, newPebble(t), cfg, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Close(5 * time.Second); err != nil {
		t.Fatalf("close: %v", err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("the second Close panicked: %v", r)
		}
	}()
	if err := pool.Close(5 * time.Second); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// A flush drops the writer's references to the checkins it hands to the
// store, as the inbox's take does: the writer's pending list keeps its
// array, and stale entries in it kept the grains' entries (with their
// waiters' requests) of the largest burst alive after the grains left.
func TestFlushDropsReferences(t *testing.T) {
	cfg := DefaultWriterConfig()
	cfg.MaxBatch = 2
	w := &writer{pool: &Pool{cfg: cfg, m: NewMetrics(nil)}, jobs: make(chan []pendingWrite, 2)}
	for range 3 {
		w.pending = append(w.pending, pendingWrite{e: &entry{}, grain: &actor.PID{}})
	}
	w.flush(nil, flushSize) // two
	w.flush(nil, flushIdle) // the last one
	for i, pw := range w.pending[:cap(w.pending)] {
		if pw.e != nil || pw.grain != nil {
			t.Errorf("slot %d of the writer's pending list still refers to a flushed checkin", i)
		}
	}
}
