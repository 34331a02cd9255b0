package actors

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/messages"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/admit"
)

// WriterConfig sizes the writer pool.
type WriterConfig struct {
	Writers      int           // writer actors per node; users are spread over them by hash
	MaxBatch     int           // checkins per store batch at most
	Linger       time.Duration // how long a partial batch waits at most for company (see writer)
	QueueSize    int           // checkins queued per writer before new ones are refused
	MaxInflight  int           // concurrent store batches per writer
	FlushTimeout time.Duration // deadline of one store batch
	// LookupConcurrency bounds the checkin-id look-ups one batch runs at
	// once (retries of client-chosen ids after the grain forgot them).
	LookupConcurrency int
	// LatencyTarget is the wait for the store the writers keep checkins
	// near under overload by refusing those beyond an adaptive bound
	// (admit.Bound over the checkins they hold); 0: only QueueSize bounds
	// them.
	LatencyTarget time.Duration
}

// DefaultWriterConfig is tuned for the embedded store on a small machine.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{Writers: 8, MaxBatch: 256, Linger: 4 * time.Millisecond, QueueSize: 4096, MaxInflight: 1, FlushTimeout: 5 * time.Second, LookupConcurrency: 1,
		LatencyTarget: 250 * time.Millisecond}
}

// Validate reports the first setting out of range.
func (c WriterConfig) Validate() error {
	switch {
	case c.Writers < 1:
		return errors.New("writer.count must be at least 1")
	case c.MaxBatch < 1:
		return errors.New("writer.max-batch must be at least 1")
	case c.Linger < 0:
		return errors.New("writer.linger must not be negative")
	case c.QueueSize < c.MaxBatch:
		return errors.New("writer.queue-size must be at least writer.max-batch")
	case c.MaxInflight < 1:
		return errors.New("writer.max-inflight must be at least 1")
	case c.FlushTimeout <= 0:
		return errors.New("writer.flush-timeout must be positive")
	case c.LookupConcurrency < 1:
		return errors.New("writer.lookup-concurrency must be at least 1")
	case c.LatencyTarget < 0:
		return errors.New("writer.latency-target must be 0 (off) or positive")
	}
	return nil
}

// Pool is a fixed set of writer actors; each user's writes go to one of them
// (by hash of the user id), which batches them into the store.
type Pool struct {
	system *actor.ActorSystem
	store  persistence.Store
	cfg    WriterConfig
	// failures logs failed batch writes, at most failureLogsPerSecond
	// lines a second of each level: in an outage every batch fails, and
	// checkin_writer_flush_seconds{result="error"} counts them all.
	failures *zap.Logger
	m        *Metrics
	pids     []*actor.PID
	inboxes  []*inbox              // per writer: checkins submitted and not yet taken
	jobs     []chan []pendingWrite // per writer: batches for its flushers
	depth    []atomic.Int64        // per writer: checkins queued or being written
	held     atomic.Int64          // depth's sum
	bound    *admit.Bound          // over held; see writerFloor
	epoch    time.Time             // pendingWrite.at counts from it
	closed   atomic.Bool
	closing  sync.Once
	closeErr error // Close's result, for every call
	// coming counts the checkin calls in progress from this node to grains
	// on this node (the Client counts them); those beyond depth's sum are
	// still on their way to a writer.
	coming   atomic.Int64
	runnable runQueue
}

// writerFloor is the least bound on the checkins the writers hold at once
// (unless they have more batch slots: then one checkin per slot). Without
// a bound, a store (or a node) pushed past what it can write queues every
// checkin it is offered: each waits longer than its client does, clients
// give up and send more, the store spends its time on writes nobody waits
// for, and the checkins acknowledged per second collapse (three nodes on
// one Cassandra node, offered 15,000 checkins a second, acknowledged 61 a
// second, most answers after seconds). With it, the checkins beyond the
// bound are refused at once (503 overloaded) and those admitted are
// written in about the target time.
const writerFloor = 64

// failureLogsPerSecond bounds the lines of failed batch writes.
const failureLogsPerSecond = 10

// NewPool spawns the writer actors.
func NewPool(system *actor.ActorSystem, store persistence.Store, cfg WriterConfig, log *zap.Logger, m *Metrics) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	failures := log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, failureLogsPerSecond, 0)
	}))
	p := &Pool{system: system, store: store, cfg: cfg, failures: failures, m: m, epoch: time.Now(),
		pids: make([]*actor.PID, cfg.Writers), inboxes: make([]*inbox, cfg.Writers), depth: make([]atomic.Int64, cfg.Writers)}
	p.bound = admit.NewBound(cfg.LatencyTarget, int64(max(writerFloor, cfg.Writers*cfg.MaxInflight)), int64(cfg.QueueSize)*int64(cfg.Writers),
		func(n int64) { m.admitLimit.Set(float64(n)) })
	for i := range p.pids {
		w := &writer{pool: p, idx: i, in: &inbox{}, jobs: make(chan []pendingWrite, cfg.MaxInflight)}
		pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return w }, actor.WithDispatcher(dispatcher())), fmt.Sprintf("checkin-writer-%d", i))
		if err != nil {
			return nil, fmt.Errorf("actors: spawn writer %d: %w", i, err)
		}
		p.pids[i] = pid
		p.inboxes[i] = w.in
		p.jobs = append(p.jobs, w.jobs)
		for range cfg.MaxInflight {
			go p.flusher(w.jobs, pid)
		}
	}
	return p, nil
}

// flusher writes the batches of one writer, one at a time, and reports
// each back to the writer. Long-lived, so batches do not pay for a new
// goroutine (and its stack growth) each.
func (p *Pool) flusher(jobs <-chan []pendingWrite, writer *actor.PID) {
	for batch := range jobs {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.FlushTimeout)
		done := writeBatch(ctx, p.store, batch, p.cfg.LookupConcurrency)
		cancel()
		done.took = time.Since(start)
		p.system.Root.Send(writer, done)
	}
}

// worthWaiting reports whether a partial batch should wait (at most the
// linger time) for company: checkins are still on their way to a writer
// (calls in progress on this node beyond those queued or being written),
// or goroutines are waiting for a CPU, so this node is busy and a sync
// now would take CPU time its requests need, while a larger batch later
// shares one sync among more checkins. Both are approximate (calls count
// until their answer is back, calls from other nodes not at all, and the
// runtime's run queues are read without stopping them); they only decide
// when a partial batch goes.
func (p *Pool) worthWaiting() bool {
	n := p.coming.Load()
	for i := range p.depth {
		n -= p.depth[i].Load()
	}
	return n > 0 || p.runnable.busy()
}

func (p *Pool) index(userID string) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % uint32(len(p.pids)))
}

// errWritersAtBound refuses a checkin beyond the writers' bound.
func errWritersAtBound() *Error {
	return newError(ErrOverloaded, CodeOverloaded, "the store is writing as many checkins as it can; retry shortly")
}

// errShuttingDown refuses a checkin submitted once the pool is closing.
func errShuttingDown() *Error {
	return newError(ErrUnavailable, CodeUnavailable, "the node is shutting down")
}

// refusing reports whether a checkin submitted now would be refused at the
// writers' bound, and counts it refused if so (Client.Checkin refuses it
// before its grain call).
func (p *Pool) refusing() bool {
	if p.bound.Admit(p.held.Load() + 1) {
		return false
	}
	p.m.rejected.Inc()
	return true
}

// submit hands e's checkin to its writer, which answers ctx's actor with a
// *writeResult for e; it returns ErrOverloaded at once when that writer's
// queue is full or the writers are at their bound, and ErrUnavailable once
// the pool is closing (nothing is answered then). checkExisting asks the
// writer to look the checkin id up first.
func (p *Pool) submit(ctx actor.Context, e *entry, checkExisting bool) error {
	if p.closed.Load() {
		return errShuttingDown()
	}
	i := p.index(e.c.UserID)
	if !p.bound.Admit(p.held.Add(1)) {
		p.held.Add(-1)
		p.m.rejected.Inc()
		return errWritersAtBound()
	}
	if p.depth[i].Add(1) > int64(p.cfg.QueueSize) {
		p.depth[i].Add(-1)
		p.held.Add(-1)
		p.m.rejected.Inc()
		return newError(ErrOverloaded, CodeOverloaded, "too many checkins are waiting to be written; retry shortly")
	}
	p.m.queueDepth.Inc()
	queued, mustWake := p.inboxes[i].put(pendingWrite{c: e.c, e: e, grain: ctx.Self(), checkExisting: checkExisting, at: time.Since(p.epoch)})
	if !queued { // the writer drained for Close since the check above
		p.depth[i].Add(-1)
		p.held.Add(-1)
		p.m.queueDepth.Dec()
		return errShuttingDown()
	}
	if mustWake {
		ctx.Send(p.pids[i], wake{})
	}
	return nil
}

// inbox holds the checkins submitted to one writer until the writer takes
// them, all at once. Submitting is an append under a lock, and only the
// first checkin after each take sends the writer a message (wake), where a
// message per checkin cost a mailbox post, a dispatch and a Receive each:
// about three times the inbox's cost per checkin with parallel senders
// (BenchmarkMailbox).
type inbox struct {
	mu     sync.Mutex
	queue  []pendingWrite
	woken  bool // a wake is on its way: no other is needed until the next take
	closed bool // the writer drained (Pool.Close): nothing more is taken
}

// put queues pw, unless the inbox is closed (queued false), and reports
// whether the writer must be woken.
func (in *inbox) put(pw pendingWrite) (queued, wake bool) {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return false, false
	}
	in.queue = append(in.queue, pw)
	wake = !in.woken
	in.woken = true
	in.mu.Unlock()
	return true, wake
}

// take appends every queued checkin to dst, in the order submitted; with
// closing, the inbox refuses every later put. The queue keeps its array,
// so neither side allocates in steady state.
func (in *inbox) take(dst []pendingWrite, closing bool) []pendingWrite {
	in.mu.Lock()
	dst = append(dst, in.queue...)
	clear(in.queue) // drop the references to entries and PIDs
	in.queue = in.queue[:0]
	in.woken = false
	in.closed = in.closed || closing
	in.mu.Unlock()
	return dst
}

// Close refuses new writes, flushes what is queued and waits (up to timeout,
// for all writers together) until every queued write is acknowledged or
// failed, then stops the writers. A checkin submitted while Close runs is
// either taken by its writer's drain or refused. Later calls wait for the
// first and return its result.
func (p *Pool) Close(timeout time.Duration) error {
	p.closing.Do(func() { p.closeErr = p.close(timeout) })
	return p.closeErr
}

func (p *Pool) close(timeout time.Duration) error {
	p.closed.Store(true)
	drains := make([]*actor.Future, len(p.pids))
	for i, pid := range p.pids {
		drains[i] = p.system.Root.RequestFuture(pid, drain{}, timeout)
	}
	var errs []error
	stops := make([]*actor.Future, len(p.pids))
	for i, pid := range p.pids {
		if err := drains[i].Wait(); err != nil {
			errs = append(errs, fmt.Errorf("actors: drain %s: %w", pid.Id, err))
		}
		stops[i] = p.system.Root.StopFuture(pid)
	}
	// A writer whose drain timed out may still flush until its stop is
	// processed: its jobs are closed only after.
	for _, f := range stops {
		_ = f.Wait()
	}
	for _, j := range p.jobs {
		close(j)
	}
	return errors.Join(errs...)
}

// Actor-internal messages of a writer.
type (
	lingerTick struct{}
	drain      struct{}
	wake       struct{} // the inbox has checkins
	flushDone  struct {
		batch     []pendingWrite
		existing  []*persistence.Checkin // stored already: not written
		lookupErr []error                // the look-up failed: not written
		err       error                  // of the store batch
		took      time.Duration
	}
)

// pendingWrite is a checkin on its way to the store. Writers and grains
// share a node, so it and writeResult are plain Go values, not protobuf
// messages: no copies, and the grain gets its entry back without a search.
type pendingWrite struct {
	c             persistence.Checkin // a copy: the writer never reads e
	e             *entry              // the grain's entry, handed back as is
	grain         *actor.PID          // who gets the writeResult
	checkExisting bool
	at            time.Duration // submitted, since Pool.epoch
}

// writeResult is a writer's answer for one checkin: written (err nil,
// existing nil), found stored already (existing), or failed (err).
type writeResult struct {
	e        *entry
	existing *persistence.Checkin
	err      error
}

// writer batches the checkins of its share of users. A batch goes to the
// store when it is full; a partial one as soon as a flush slot is free,
// unless waiting is worth it (Pool.worthWaiting: more checkins are on
// their way through this node, or the node is busy), in which case it
// waits for company, at most the linger time. So a lone checkin is
// written at once, and under load, when every sync costs CPU the requests
// need, batches grow to what arrives within the linger time instead of
// what arrived during the last sync.
type writer struct {
	pool     *Pool
	idx      int
	in       *inbox
	jobs     chan []pendingWrite
	pending  []pendingWrite
	inflight int
	armed    bool // a lingerTick is on its way
	overdue  bool // the linger time passed: the partial batch goes at the next free slot
	drainers []*actor.PID
}

func (w *writer) Receive(ctx actor.Context) {
	// Every message takes what the inbox holds, so that a drain, a flush's
	// end or the linger time sees every checkin submitted before it. A
	// drain closes the inbox: a checkin submitted after it is refused,
	// not left where no writer takes it once the pool stopped its writers.
	_, draining := ctx.Message().(drain)
	w.pending = w.in.take(w.pending, draining)
	switch msg := ctx.Message().(type) {
	case wake:
		w.kick(ctx)
	case lingerTick:
		w.armed = false
		w.overdue = len(w.pending) > 0
		w.kick(ctx)
	case *flushDone:
		w.inflight--
		w.finish(ctx, msg)
		w.kick(ctx)
	case drain:
		w.drainers = append(w.drainers, ctx.Sender())
		w.kick(ctx)
	}
}

// kick starts as many flushes as the in-flight bound allows.
func (w *writer) kick(ctx actor.Context) {
	cfg := w.pool.cfg
	for len(w.pending) > 0 && w.inflight < cfg.MaxInflight {
		switch {
		case len(w.pending) >= cfg.MaxBatch:
			w.flush(ctx, flushSize)
		case len(w.drainers) > 0:
			w.flush(ctx, flushShutdown)
		case w.overdue:
			w.flush(ctx, flushAge)
		case cfg.Linger == 0 || !w.pool.worthWaiting():
			w.flush(ctx, flushIdle)
		default:
			if !w.armed {
				w.armed = true
				self, root := ctx.Self(), ctx.ActorSystem().Root
				time.AfterFunc(cfg.Linger, func() { root.Send(self, lingerTick{}) })
			}
			return
		}
	}
	if len(w.drainers) > 0 && len(w.pending) == 0 && w.inflight == 0 {
		for _, d := range w.drainers {
			ctx.Send(d, drain{})
		}
		w.drainers = nil
	}
}

func (w *writer) flush(ctx actor.Context, reason string) {
	n := min(len(w.pending), w.pool.cfg.MaxBatch)
	batch := make([]pendingWrite, n)
	copy(batch, w.pending)
	rest := copy(w.pending, w.pending[n:])
	clear(w.pending[rest:]) // drop the references to entries and PIDs
	w.pending = w.pending[:rest]
	w.overdue = false
	w.inflight++
	w.pool.m.flushes.WithLabelValues(reason).Inc()
	w.pool.m.batchSize.Observe(float64(n))

	w.jobs <- batch // never blocks: at most MaxInflight batches are out
}

// writeBatch looks up the checkins that asked for it, then writes the ones
// not stored yet in one store batch. A store that looks a batch up at once
// gets one call; any other gets a GetCheckin each, lookups at once at most.
func writeBatch(ctx context.Context, store persistence.Store, batch []pendingWrite, lookups int) *flushDone {
	done := &flushDone{batch: batch, existing: make([]*persistence.Checkin, len(batch)), lookupErr: make([]error, len(batch))}
	if bg, ok := persistence.As[persistence.CheckinBatchGetter](store); ok {
		lookupBatch(ctx, bg, batch, done)
	} else {
		lookupEach(ctx, store, batch, done, lookups)
	}
	cs := make([]persistence.Checkin, 0, len(batch))
	for i := range batch {
		if done.existing[i] == nil && done.lookupErr[i] == nil {
			cs = append(cs, batch[i].c)
		}
	}
	if len(cs) > 0 {
		done.err = store.WriteCheckins(ctx, cs)
	}
	return done
}

func lookupBatch(ctx context.Context, store persistence.CheckinBatchGetter, batch []pendingWrite, done *flushDone) {
	var refs []persistence.CheckinRef
	var at []int // batch index of refs[j]
	for i := range batch {
		if batch[i].checkExisting {
			refs = append(refs, persistence.CheckinRef{UserID: batch[i].c.UserID, ID: batch[i].c.ID})
			at = append(at, i)
		}
	}
	if len(refs) == 0 {
		return
	}
	got, found, err := store.GetCheckins(ctx, refs)
	for j, i := range at {
		switch {
		case err != nil:
			done.lookupErr[i] = err
		case found[j]:
			done.existing[i] = &got[j]
		}
	}
}

func lookupEach(ctx context.Context, store persistence.Store, batch []pendingWrite, done *flushDone, lookups int) {
	var next atomic.Int64
	lookup := func() {
		for i := int(next.Add(1)) - 1; i < len(batch); i = int(next.Add(1)) - 1 {
			if !batch[i].checkExisting {
				continue
			}
			c, err := store.GetCheckin(ctx, batch[i].c.UserID, batch[i].c.ID)
			switch {
			case err == nil:
				done.existing[i] = &c
			case !errors.Is(err, persistence.ErrNotFound):
				done.lookupErr[i] = err
			}
		}
	}
	var wg sync.WaitGroup
	for range max(lookups, 1) - 1 { // this goroutine is one of them
		wg.Add(1)
		go func() { defer wg.Done(); lookup() }()
	}
	lookup()
	wg.Wait()
}

func (w *writer) finish(ctx actor.Context, done *flushDone) {
	label := flushOK
	if done.err != nil {
		label = flushError
		// The store being unavailable is logged where it is found out;
		// other failures are defects.
		lvl := zapcore.ErrorLevel
		if errors.Is(done.err, persistence.ErrUnavailable) || errors.Is(done.err, context.DeadlineExceeded) {
			lvl = zapcore.WarnLevel
		}
		w.pool.failures.Log(lvl, "checkin batch write failed", zap.Int("writer", w.idx), zap.Int("batch_size", len(done.batch)), zap.Error(done.err))
	}
	w.pool.m.flushLatency.WithLabelValues(label).Observe(done.took.Seconds())
	if len(done.batch) > 0 { // the batch's first checkin is its oldest: pending is in submit order
		now := time.Now()
		w.pool.bound.Observe(now, now.Sub(w.pool.epoch)-done.batch[0].at, len(done.batch))
	}
	for i, p := range done.batch {
		r := &writeResult{e: p.e, err: done.err}
		switch {
		case done.lookupErr[i] != nil:
			r.err = persistence.NotApplied(done.lookupErr[i]) // not written: the look-up comes first
		case done.existing[i] != nil:
			r.existing, r.err = done.existing[i], nil
		}
		ctx.Send(p.grain, r)
	}
	w.pool.depth[w.idx].Add(-int64(len(done.batch)))
	w.pool.held.Add(-int64(len(done.batch)))
	w.pool.m.queueDepth.Sub(float64(len(done.batch)))
}

func toMsg(c persistence.Checkin) *messages.Checkin {
	return &messages.Checkin{Id: c.ID, UserId: c.UserID, LocationId: c.LocationID, TimestampMs: c.Timestamp.UnixMilli()}
}

func fromMsg(m *messages.Checkin) persistence.Checkin {
	return persistence.Checkin{ID: m.GetId(), UserID: m.GetUserId(), LocationID: m.GetLocationId(), Timestamp: time.UnixMilli(m.GetTimestampMs()).UTC()}
}
