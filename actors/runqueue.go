package actors

import (
	"runtime/metrics"
	"sync"
)

// runQueue tells whether goroutines are waiting for a CPU (the runtime's
// run queues): the sign that this process has more work than CPU time.
type runQueue struct {
	mu     sync.Mutex // guards sample, which metrics.Read fills in
	sample [1]metrics.Sample
}

const (
	runnableMetric = "/sched/goroutines/runnable:goroutines"
	// busyRunnable is how many goroutines must be waiting to run for the
	// process to count as busy: a few are often ready for a moment on an
	// idle node (a timer, the goroutine that just sent a message).
	busyRunnable = 4
)

// busy reports whether busyRunnable or more goroutines wait to run.
// Reading takes the scheduler's lock for a moment (about a microsecond).
func (q *runQueue) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sample[0].Name = runnableMetric
	metrics.Read(q.sample[:])
	v := q.sample[0].Value
	return v.Kind() == metrics.KindUint64 && v.Uint64() >= busyRunnable
}
