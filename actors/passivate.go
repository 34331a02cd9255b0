package actors

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// passivator stops user grains that had no request for their idle
// timeout. One goroutine per node looks at every grain's deadline a few
// times per timeout, instead of protoactor's receive timeout: that is a
// timer (and its closure) per grain for the garbage collector to mark, and
// every message stopped and restarted it, two timer-heap operations per
// message. A grain passivates between its timeout and a quarter of the
// shorter timeout later. The grain itself decides, when the request
// reaches it: one still waiting for the store stays.
//
// The goroutine runs only while grains are registered: it exits when the
// last one leaves (the node stopped, or every grain passivated) and starts
// again with the next activation.
type passivator struct {
	tick   time.Duration
	epoch  time.Time // deadlines are nanoseconds since it (monotonic)
	shards [passivatorShards]passivatorShard

	mu      sync.Mutex // guards running and the start of the loop
	running bool
	count   atomic.Int64 // registered grains
}

// passivatorShards splits the registry so that a sweep holds each lock for
// a sixteenth of the grains: activations and terminations on other shards
// do not wait for it.
const passivatorShards = 16

// passivatorShard maps each grain's PID to its current instance: an actor
// restarted by its supervisor keeps its PID and gets a new instance, whose
// registration replaces the old one's (the old one never terminates).
type passivatorShard struct {
	mu     sync.Mutex
	grains map[*actor.PID]*userGrain
}

// Sweep interval bounds: a quarter of the shorter timeout, within these.
const (
	minPassivateTick = 5 * time.Millisecond
	maxPassivateTick = 5 * time.Second
)

func newPassivator(cfg GrainConfig) *passivator {
	tick := min(cfg.IdleTimeout, cfg.MissingTimeout) / 4
	tick = min(max(tick, minPassivateTick), maxPassivateTick)
	p := &passivator{tick: tick, epoch: time.Now()}
	for i := range p.shards {
		p.shards[i].grains = make(map[*actor.PID]*userGrain)
	}
	return p
}

// now is the clock of grain deadlines.
func (p *passivator) now() int64 { return int64(time.Since(p.epoch)) }

// shardOf spreads grains over the shards by identity.
func (p *passivator) shardOf(g *userGrain) *passivatorShard {
	return &p.shards[maphash.String(idSeed, g.id)%passivatorShards]
}

// add registers g (its self and deadline set) and starts the sweep if it
// is not running.
func (p *passivator) add(g *userGrain, system *actor.ActorSystem) {
	s := p.shardOf(g)
	s.mu.Lock()
	_, again := s.grains[g.self]
	s.grains[g.self] = g
	s.mu.Unlock()
	if !again {
		p.count.Add(1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		p.running = true
		go p.loop(system)
	}
}

// remove unregisters g.
func (p *passivator) remove(g *userGrain) {
	s := p.shardOf(g)
	s.mu.Lock()
	mine := s.grains[g.self] == g // not when a restarted instance replaced g
	if mine {
		delete(s.grains, g.self)
	}
	s.mu.Unlock()
	if mine {
		p.count.Add(-1)
	}
}

func (p *passivator) loop(system *actor.ActorSystem) {
	t := time.NewTicker(p.tick)
	defer t.Stop()
	var due []*actor.PID
	for range t.C {
		p.mu.Lock()
		if p.count.Load() == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		due = p.sweep(due[:0])
		for _, pid := range due {
			// The grain decides when it reads this, after what is already
			// in its mailbox: a request served meanwhile may have made it
			// busy (see userGrain.passivate).
			system.Root.Send(pid, passivateNow{})
		}
		clear(due)
	}
}

// sweep appends the grains past their deadline to due, each once.
func (p *passivator) sweep(due []*actor.PID) []*actor.PID {
	now := p.now()
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		for pid, g := range s.grains {
			if d := g.idleAt.Load(); d != passivating && now > d && g.idleAt.CompareAndSwap(d, passivating) {
				due = append(due, pid)
			}
		}
		s.mu.Unlock()
	}
	return due
}

// passivating marks a grain whose stop was requested.
const passivating = -1

// passivateNow asks a grain past its deadline to stop.
type passivateNow struct{}

// resume takes back a stop request the grain declined: its next touch sets
// a deadline again.
func (p *passivator) resume(g *userGrain) {
	g.idleAt.CompareAndSwap(passivating, p.now())
}

// keepAlive moves g's deadline timeout from now, unless its stop was
// already requested (a request that gets in before the stop is served;
// later ones reactivate the grain).
func (p *passivator) keepAlive(g *userGrain, timeout time.Duration) {
	for {
		d := g.idleAt.Load()
		if d == passivating || g.idleAt.CompareAndSwap(d, p.now()+int64(timeout)) {
			return
		}
	}
}
