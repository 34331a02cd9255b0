package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// poolDispatcher runs actor mailboxes on a fixed set of long-lived
// goroutines instead of a new goroutine per mailbox run (protoactor's
// default). A new goroutine starts with a small stack that the grain's
// call path grows again every time; a worker keeps its grown stack. When
// every worker is busy, the run gets a goroutine of its own, so a mailbox
// never waits for another one (a grain blocked in a store read at
// activation cannot stall the others).
type poolDispatcher struct {
	work       chan func()
	throughput int
}

// newPoolDispatcher starts workers goroutines that live as long as the
// process.
func newPoolDispatcher(workers, throughput int) *poolDispatcher {
	d := &poolDispatcher{work: make(chan func()), throughput: throughput}
	for range workers {
		go func() {
			for fn := range d.work {
				fn()
			}
		}()
	}
	return d
}

var _ actor.Dispatcher = (*poolDispatcher)(nil)

func (d *poolDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

func (d *poolDispatcher) Throughput() int { return d.throughput }

// dispatcher returns the dispatcher shared by the grains and writers of the
// process, starting its workers on first use.
var dispatcher = sync.OnceValue(func() actor.Dispatcher { return newPoolDispatcher(64, 300) })
