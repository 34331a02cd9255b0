package pebble

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
)

// health follows the engine's background work. While memtables cannot be
// flushed to table files, or tables compacted (a full or failing disk),
// new writes still go to the log until the engine holds them back to bound
// its memory; from then on a write would wait, with no deadline, for the
// disk to come back. So while background work fails the store reports
// itself unavailable (Ping: the node turns not ready), and while the
// engine also holds writes back they fail at once instead of waiting.
// Nothing acknowledged is at risk: every acknowledged write is in the
// synced log. The engine retries its flushes by itself; the first that
// succeeds makes the store healthy again, and a failure that is not
// repeated within failureTTL stops counting. A disk that stops answering
// reports no error: there writes (or reads) in flight with none finished
// for stuckLimit count as a failure, until one finishes, and new writes
// (reads) fail at once instead of joining them.
type health struct {
	log     *zap.Logger
	failing atomic.Pointer[failure] // the last background failure, until a flush succeeds
	stalls  atomic.Int32            // commits the engine holds back right now

	stallMu sync.Mutex
	stalled chan struct{} // closed when a stall begins; a new one after it ends

	commits progress
	reads   progress

	mu         sync.Mutex // background error logging
	loggedAt   time.Time
	suppressed int
}

type failure struct {
	err   error
	since time.Time // of the first failure in a row
	last  time.Time // of the newest
}

// failureTTL is how long a failure counts without another: the engine
// retries a failed flush again and again while it has one to do, so a
// failure that is not repeated was a passing one (or a failed compaction
// with nothing after it) and must not keep the node not ready while
// nothing writes.
const failureTTL = 10 * time.Second

// errorLogInterval is the least time between two logged background errors:
// the engine retries a failed flush many times a second.
const errorLogInterval = 30 * time.Second

// emptyFlush is the message of the engine's flush outcome "nothing to
// write", which is not a failure.
const emptyFlush = "pebble: empty table"

func newHealth(log *zap.Logger, stuckLimit time.Duration) *health {
	return &health{log: log, stalled: make(chan struct{}),
		commits: progress{log: log, limit: stuckLimit, err: errWritesStuck,
			stuckMsg: "storage engine does not finish writes", againMsg: "storage engine finishes writes again"},
		reads: progress{log: log, limit: stuckLimit, err: errReadsStuck,
			stuckMsg: "storage engine does not finish reads", againMsg: "storage engine finishes reads again"},
	}
}

// progress follows the operations of one kind (commits, reads) that may
// wait for the disk: they are stuck while some are in flight and none has
// finished for limit.
type progress struct {
	log                *zap.Logger
	limit              time.Duration
	stuckMsg, againMsg string // logged when found stuck, and at the next end
	err                error  // the failure while stuck

	inflight atomic.Int32
	at       atomic.Int64 // Unix ns: the last end, or the first begin after none were in flight
	said     atomic.Bool  // stuckMsg was logged; set and cleared under mu
	mu       sync.Mutex   // orders the two messages; taken only when one is due
}

// begin and end bracket every operation. The first after none were in
// flight starts the clock before it counts itself, so stuck never pairs
// it with the end of an operation long ago.
func (p *progress) begin() {
	if p.inflight.Load() == 0 {
		p.at.Store(time.Now().UnixNano())
	}
	p.inflight.Add(1)
}

// An end that closes a stuck spell logs againMsg before the end counts,
// so whoever sees operations finish again (Ping, the readiness probe)
// finds it in the log. It checks once more after counting, for a spell
// found from a view taken just before this end counted.
func (p *progress) end() {
	if p.said.Load() {
		p.finishesAgain()
	}
	p.at.Store(time.Now().UnixNano())
	p.inflight.Add(-1)
	if p.said.Load() {
		p.finishesAgain()
	}
}

// finishesAgain logs againMsg if stuckMsg was logged, and ends the spell.
func (p *progress) finishesAgain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.said.Load() {
		p.log.Info(p.againMsg)
		p.at.Store(time.Now().UnixNano())
		p.said.Store(false)
	}
}

// stuck returns since when operations have been in flight with none
// finished, if for limit or longer.
func (p *progress) stuck() (since time.Time, ok bool) {
	if p.inflight.Load() == 0 {
		return since, false
	}
	since = time.Unix(0, p.at.Load())
	return since, time.Since(since) >= p.limit
}

// failure returns p's failure while it is stuck, logging it once.
func (p *progress) failure() *failure {
	since, ok := p.stuck()
	if !ok {
		if p.said.Load() {
			// A spell found from a view taken just before an end, which
			// did not see it: said now, before the answer is "ready".
			p.finishesAgain()
		}
		return nil
	}
	if !p.said.Load() {
		p.mu.Lock()
		// Again under mu: an end may have closed the spell meanwhile.
		if since, ok = p.stuck(); ok && !p.said.Load() {
			p.log.Warn(p.stuckMsg, zap.Time("since", since))
			p.said.Store(true)
		}
		p.mu.Unlock()
		if !ok {
			return nil
		}
	}
	return &failure{err: p.err, since: since, last: time.Now()}
}

func (h *health) stallBegins() {
	h.stallMu.Lock()
	defer h.stallMu.Unlock()
	if h.stalls.Add(1) == 1 {
		close(h.stalled)
	}
}

func (h *health) stallEnds() {
	h.stallMu.Lock()
	defer h.stallMu.Unlock()
	if h.stalls.Add(-1) == 0 {
		h.stalled = make(chan struct{})
	}
}

// stallSignal returns a channel that is closed once the engine holds
// writes back (at once if it does now).
func (h *health) stallSignal() <-chan struct{} {
	h.stallMu.Lock()
	defer h.stallMu.Unlock()
	return h.stalled
}

func (h *health) listener() *pebbledb.EventListener {
	return &pebbledb.EventListener{
		BackgroundError: h.backgroundError,
		FlushEnd:        h.flushEnd,
		CompactionEnd: func(info pebbledb.CompactionInfo) {
			if info.Err != nil && !errors.Is(info.Err, pebbledb.ErrCancelledCompaction) {
				h.fail(info.Err)
			}
		},
		WriteStallBegin: func(pebbledb.WriteStallBeginInfo) { h.stallBegins() },
		WriteStallEnd:   h.stallEnds,
		LowDiskSpace: func(info pebbledb.LowDiskSpaceInfo) {
			h.log.Warn("disk space low", zap.Uint64("available_bytes", info.AvailBytes),
				zap.Uint64("total_bytes", info.TotalBytes), zap.Int("below_percent", info.PercentThreshold))
		},
	}
}

func (h *health) flushEnd(info pebbledb.FlushInfo) {
	if info.Err != nil && info.Err.Error() != emptyFlush {
		h.fail(info.Err)
		return
	}
	// Logged before the store turns ready, so whoever sees it ready finds
	// the message; a failure recorded meanwhile stays.
	if f := h.failing.Load(); f != nil {
		h.log.Info("storage engine flushes again", zap.Duration("failing_for", time.Since(f.since)))
		h.failing.CompareAndSwap(f, nil)
	}
}

// fail records a failure of background work.
func (h *health) fail(err error) {
	now := time.Now()
	since := now
	if f := h.failing.Load(); f != nil && now.Sub(f.last) < failureTTL {
		since = f.since
	}
	h.failing.Store(&failure{err: err, since: since, last: now})
}

// current returns the failure that still counts, if any.
func (h *health) current() *failure {
	if f := h.failing.Load(); f != nil && time.Since(f.last) < failureTTL {
		return f
	}
	if f := h.commits.failure(); f != nil {
		return f
	}
	return h.reads.failure()
}

// The failures of a disk that stops answering.
var (
	errWritesStuck = errors.New("no write has finished since then")
	errReadsStuck  = errors.New("no read has finished since then")
)

// backgroundError logs the engine's errors in background work: the first
// of a run, then at most one per errorLogInterval with how many were not
// logged.
func (h *health) backgroundError(err error) {
	if diskWriteError(err) { // a flush can fail before it reports its end
		h.fail(err)
	}
	h.mu.Lock()
	now := time.Now()
	if !h.loggedAt.IsZero() && now.Sub(h.loggedAt) < errorLogInterval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	suppressed := h.suppressed
	h.loggedAt, h.suppressed = now, 0
	h.mu.Unlock()
	h.log.Error("storage engine background error", zap.Error(err), zap.Int("not_logged_since_last", suppressed))
}

// diskWriteError reports whether err says the disk refused a write: full,
// over quota, read-only or failing. Other background errors (reading a
// table's statistics, asking for the disk's free space) do not make the
// store unavailable.
func diskWriteError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)
}

// check returns an error wrapping ErrUnavailable while background work
// fails.
func (h *health) check() error {
	if f := h.current(); f != nil {
		verb := "write"
		if f.err == errReadsStuck {
			verb = "read"
		}
		return fmt.Errorf("%w: the store cannot %s its files since %s: %v", persistence.ErrUnavailable, verb, f.since.UTC().Format(time.RFC3339), f.err)
	}
	return nil
}

// admitWrite returns an error wrapping ErrUnavailable while background
// work fails and the engine holds writes back, or while writes do not
// finish, so a write fails at once instead of waiting for the disk.
func (h *health) admitWrite() error {
	if _, stuck := h.commits.stuck(); stuck || h.stalls.Load() > 0 {
		return h.check()
	}
	return nil
}

// admitRead returns an error wrapping ErrUnavailable while reads do not
// finish, so a read fails at once instead of waiting for the disk.
func (h *health) admitRead() error {
	if _, stuck := h.reads.stuck(); stuck {
		return h.check()
	}
	return nil
}
