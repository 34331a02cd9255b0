package actors

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// admission bounds the checkins a node's writers hold at once (queued or
// being written) so that a checkin's wait for the store stays near a
// target instead of growing with the offered load. Without it, a store
// (or a node) pushed past what it can write queues every checkin it is
// offered: each waits longer than its client does, clients give up and
// send more, the store spends its time on writes nobody waits for, and
// the checkins acknowledged per second collapse (three nodes on one
// Cassandra node, offered 15,000 checkins a second, acknowledged 61 a
// second, most answers after seconds). With it, the checkins beyond the
// bound are refused at once (503 overloaded) and those admitted are
// written in about the target time.
//
// The bound adapts to the median wait. Every window (100 ms and five
// batches at least), the median over the window's batches of the wait of
// each batch's oldest checkin (from its submit to the store's answer) is
// compared with the target. Above it, the bound becomes the rate at which
// the store wrote checkins (smoothed: the window counts half, the windows
// before it the other half) times the target: by Little's law, the
// checkins that wait about the target at that rate. One step, whatever
// the wait was, so that neither a long queue (whose waits show for as long
// as it drains) nor a short overload drives the bound further down than
// the store's rate calls for. Under it, when a checkin was refused at the
// bound, the bound grows, so that it follows a store that writes faster
// again: by a tenth, or doubles while the median is under half the target
// (the store keeps up with room to spare: after a stall that took the
// bound to its floor, the demand of a busy node is met again within a
// second instead of several). The median ignores a lone slow batch (a compaction,
// a GC pause); a store that is slow for every batch moves it. The bound
// never goes under floor, so the store is always offered enough to show
// that it recovered, nor over ceiling (writer.queue-size per writer). A
// target under the store's wait at light load would hold the bound at
// what the store writes in that time: the target must be above it (the
// README says so).
type admission struct {
	target         time.Duration // 0: no adaptive bound (ceiling only)
	floor, ceiling int64
	limit          atomic.Int64
	refused        atomic.Bool // a checkin was refused at the bound in this window
	onLimit        func(int64) // reports a new bound (a gauge)

	mu    sync.Mutex
	start time.Time       // of the window
	waits []time.Duration // the window's batches: wait of each one's oldest checkin
	done  int64           // checkins in the window's batches
	rate  float64         // checkins written a second: the windows' rates, smoothed
}

// admissionWindow is how often the bound is reconsidered, once the window
// holds admissionBatches batches at least: at light load a window lasts
// until it has that many, so that one slow batch among few (the store is
// not overloaded: nothing waits behind it) does not cut the bound, and a
// store so slow that few batches end in admissionWindow is still judged.
const (
	admissionWindow  = 100 * time.Millisecond
	admissionBatches = 5
)

// admissionFloor is the smallest bound (unless the writers have more
// batch slots: then one checkin per slot).
const admissionFloor = 64

func newAdmission(target time.Duration, floor, ceiling int64, onLimit func(int64)) *admission {
	a := &admission{target: target, floor: min(floor, ceiling), ceiling: ceiling, onLimit: onLimit}
	a.limit.Store(ceiling)
	onLimit(ceiling)
	return a
}

// admit reports whether one more checkin may be held, held counting it.
func (a *admission) admit(held int64) bool {
	if held <= a.limit.Load() {
		return true
	}
	if !a.refused.Load() {
		a.refused.Store(true)
	}
	return false
}

// observe records a batch of n checkins that ended at now, whose oldest
// checkin waited wait since its submit.
func (a *admission) observe(now time.Time, wait time.Duration, n int) {
	if a.target <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.start.IsZero() {
		a.start = now
	}
	a.waits = append(a.waits, wait)
	a.done += int64(n)
	elapsed := now.Sub(a.start)
	if elapsed < admissionWindow || len(a.waits) < admissionBatches {
		return
	}
	slices.Sort(a.waits)
	median := a.waits[len(a.waits)/2]
	rate := float64(a.done) / elapsed.Seconds()
	if a.rate == 0 {
		a.rate = rate
	}
	a.rate = (a.rate + rate) / 2 // a window of a few batches is noisy: half of it is the past
	limit := a.limit.Load()
	switch {
	case median > a.target:
		next := max(a.floor, min(limit, int64(a.rate*a.target.Seconds())))
		if next != limit {
			a.set(next)
		}
	case a.refused.Load() && limit < a.ceiling:
		step := max(1, limit/10)
		if median <= a.target/2 {
			step = limit // the store keeps up with room to spare
		}
		a.set(min(a.ceiling, limit+step))
	}
	a.refused.Store(false)
	a.start, a.waits, a.done = now, a.waits[:0], 0
}

func (a *admission) set(limit int64) {
	a.limit.Store(limit)
	a.onLimit(limit)
}
