package admit

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bound is an adaptive bound on the work a node holds at once for its
// store (calls in flight, or checkins queued and being written), kept so
// that the wait of that work for the store stays near a target instead of
// growing with the offered load. Work beyond it is refused at once.
//
// The bound adapts to the median wait. Every window (Window and
// WindowEnds ends at least), the median over the window's ends (a call's
// answer, a batch's write) of each one's wait (for a batch: the wait of
// its oldest checkin, from its submit to the store's answer) is compared
// with the target. Above it, the bound becomes the rate at which the
// store finished work (smoothed: the window counts half, the windows
// before it the other half) times the target: by Little's law, the work
// that waits about the target at that rate. One step, whatever the wait
// was, so that neither a long queue (whose waits show for as long as it
// drains) nor a short overload drives the bound further down than the
// store's rate calls for. Under it, when work was refused at the bound,
// the bound grows, so that it follows a store that is faster again: by a
// tenth, or doubles while the median is under half the target (the store
// keeps up with room to spare: after a stall that took the bound to its
// floor, the demand of a busy node is met again within a second instead
// of several). The median ignores a lone slow end (a compaction, a GC
// pause); a store that is slow for every call moves it. The bound never
// goes under its floor, so the store is always offered enough to show
// that it recovered, nor over its ceiling. A target under the store's
// wait at light load would hold the bound at what the store does in that
// time: the target must be above it.
type Bound struct {
	target         time.Duration // 0: no adaptive bound (ceiling only)
	floor, ceiling int64
	limit          atomic.Int64
	refused        atomic.Bool // work was refused at the bound in this window
	onLimit        func(int64) // reports a new bound (a gauge)

	mu    sync.Mutex
	start time.Time       // of the window
	waits []time.Duration // the window's ends: the wait of each
	done  int64           // work finished in the window's ends
	rate  float64         // work finished a second: the windows' rates, smoothed
}

// Window is how often the bound is reconsidered, once the window holds
// WindowEnds ends at least: at light load a window lasts until it has that
// many, so that one slow end among few (the store is not overloaded:
// nothing waits behind it) does not cut the bound, and a store so slow
// that few ends come in Window is still judged.
const (
	Window     = 100 * time.Millisecond
	WindowEnds = 5
)

// NewBound returns a bound at ceiling, which target moves between floor
// and ceiling; target 0 keeps it at ceiling. onLimit, if not nil, is told
// every new bound, this first one included.
func NewBound(target time.Duration, floor, ceiling int64, onLimit func(int64)) *Bound {
	if onLimit == nil {
		onLimit = func(int64) {}
	}
	b := &Bound{target: target, floor: min(floor, ceiling), ceiling: ceiling, onLimit: onLimit}
	b.limit.Store(ceiling)
	onLimit(ceiling)
	return b
}

// Limit returns the bound.
func (b *Bound) Limit() int64 { return b.limit.Load() }

// Admit reports whether one more unit of work may be held, held counting
// it.
func (b *Bound) Admit(held int64) bool {
	if held <= b.limit.Load() {
		return true
	}
	if !b.refused.Load() {
		b.refused.Store(true)
	}
	return false
}

// Observe records the end at now of n units of work, the oldest of which
// waited wait.
func (b *Bound) Observe(now time.Time, wait time.Duration, n int) {
	if b.target <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.start.IsZero() {
		b.start = now
	}
	b.waits = append(b.waits, wait)
	b.done += int64(n)
	elapsed := now.Sub(b.start)
	if elapsed < Window || len(b.waits) < WindowEnds {
		return
	}
	slices.Sort(b.waits)
	median := b.waits[len(b.waits)/2]
	rate := float64(b.done) / elapsed.Seconds()
	if b.rate == 0 {
		b.rate = rate
	}
	b.rate = (b.rate + rate) / 2 // a window of a few ends is noisy: half of it is the past
	limit := b.limit.Load()
	switch {
	case median > b.target:
		next := max(b.floor, min(limit, int64(b.rate*b.target.Seconds())))
		if next != limit {
			b.set(next)
		}
	case b.refused.Load() && limit < b.ceiling:
		step := max(1, limit/10)
		if median <= b.target/2 {
			step = limit // the store keeps up with room to spare
		}
		b.set(min(b.ceiling, limit+step))
	}
	b.refused.Store(false)
	b.start, b.waits, b.done = now, b.waits[:0], 0
}

func (b *Bound) set(limit int64) {
	b.limit.Store(limit)
	b.onLimit(limit)
}
