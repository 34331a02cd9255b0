package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// lateAfter: an open-model request that starts more than this after its
// intended time is counted as late (its latency still runs from the
// intended time).
const lateAfter = 10 * time.Millisecond

// recorderShards is the number of locks workers record under.
const recorderShards = 8

// runner holds what the phases of one run share.
type runner struct {
	cfg   config
	cl    *client
	syn   *synthetic  // synthetic workload; nil when replaying
	rep   *replayData // replay; nil otherwise
	runID string
	// writePrefix begins the ids of the checkins the run's requests write
	writePrefix string
	stderr      io.Writer
	workers     []*worker
}

// worker is the state of one connection's request loop.
type worker struct {
	idx   int
	rng   *mrand.Rand
	users picker
	locs  picker
	req   *fasthttp.Request
	resp  *fasthttp.Response
	path  []byte
	body  []byte
	seq   uint64
	acks  []ack // acknowledged checkins, kept for --verify
	// unacked: with --verify, the checkins this connection sent whose
	// outcome is unknown (no answer, or a 5xx; user and id), which verify
	// may find stored all the same; at most maxUnacked.
	unacked []ack
	// own: the checkins this connection wrote in the run and had
	// acknowledged, oldest first, that a delete (--mix.delete) takes; at
	// most maxOwn (the oldest go).
	own []ack
	// With --verify: deletes answered 204 (or 404 after an attempt that
	// may have deleted), and deletes without a final answer, which may or
	// may not have happened.
	gone, uncertain []ack
}

// maxOwn bounds a worker's own checkins kept for deletes.
const maxOwn = 4096

// maxUnacked bounds a worker's checkins of unknown outcome kept for
// --verify (a run against a node that fails every request makes them as
// fast as it sends); past it, verify counts them among the others.
const maxUnacked = 1 << 16

// ack is a checkin the server acknowledged with a 2xx.
type ack struct {
	User, ID, Loc string
	TS            int64 // unix ms
}

// run performs one load run: setup, warmup, the measured phase and the
// verification, and writes the report to stdout (progress goes to stderr).
// The returned error is errLost when --verify found missing checkins.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bases, err := cfg.targetURLs()
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, stderr: stderr, runID: cfg.RunID}
	var b [4]byte
	_, _ = rand.Read(b[:])
	if r.runID == "" {
		r.runID = hex.EncodeToString(b[:])
		r.writePrefix = cfg.IDPrefix + "-" + r.runID + "-"
	} else {
		// A run named after an earlier one (to read its setup's checkins)
		// writes checkins of its own: ids the earlier run used would be
		// answered 409, or 200 as retries.
		r.writePrefix = cfg.IDPrefix + "-" + r.runID + "-" + hex.EncodeToString(b[:3]) + "-"
	}
	if cfg.replaying() {
		if r.rep, err = loadReplay(cfg.Replay, cfg.Venues, cfg.ReplayPrefix); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	} else {
		r.syn = newSynthetic(cfg)
	}
	tc, err := tlsConfig(cfg.TLSCAFile)
	if err != nil {
		return nil, err
	}
	source, err := cfg.sourceIPs()
	if err != nil {
		return nil, err
	}
	r.cl = newClient(bases, max(cfg.Concurrency, cfg.SetupConcurrency), cfg.Timeout, clientOpts{apiKey: cfg.APIKey, tls: tc, eject: cfg.Eject, health: cfg.HealthCheck, source: source})
	defer r.cl.close()
	for i := range cfg.Concurrency {
		rng := mrand.New(mrand.NewPCG(cfg.Seed, uint64(i)))
		w := &worker{idx: i, rng: rng, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}
		if r.syn != nil {
			w.users = newPicker(rng, cfg.Popularity, cfg.Users, cfg.ZipfS, cfg.ZipfV)
			w.locs = uniformPicker{r: rng, n: cfg.Locations}
		}
		r.workers = append(r.workers, w)
	}

	rep := &Report{Targets: make([]string, len(r.cl.targets)), Concurrency: cfg.Concurrency, RunID: r.runID}
	for i, t := range r.cl.targets {
		rep.Targets[i] = t.base
	}
	var setupAcks []ack
	if cfg.Setup {
		if rep.Setup, setupAcks, err = r.setup(ctx); err != nil {
			if ctx.Err() != nil {
				return rep, fmt.Errorf("interrupted during the setup: %w", ctx.Err())
			}
			return rep, err
		}
		// the measured phase starts with no more connections than workers
		r.cl.closeIdle()
	}
	if cfg.Warmup > 0 && ctx.Err() == nil {
		r.phase(ctx, "warmup", newRecorder(recorderShards), cfg.Warmup, 0)
	}
	rec := newRecorder(recorderShards)
	if ctx.Err() == nil {
		open, elapsed := r.phase(ctx, "run", rec, cfg.Duration, cfg.Requests)
		rep.fill(cfg, rec, elapsed, open)
	}
	if r.rep != nil {
		rep.Replay = &ReplayReport{File: cfg.Replay, Rows: len(r.rep.rows), Users: len(r.rep.users),
			Locations: len(r.rep.locations), DuplicateRows: r.rep.duplicates}
		if o := rep.Ops[opCheckin.String()]; o != nil {
			rep.Replay.Created, rep.Replay.Existing = o.StatusCodes["201"], o.StatusCodes["200"]
		}
	}
	if cfg.Verify && ctx.Err() == nil {
		acks := setupAcks
		var dels outcomes
		for _, w := range r.workers {
			acks = append(acks, w.acks...)
			dels.unacked = append(dels.unacked, w.unacked...)
			dels.gone = append(dels.gone, w.gone...)
			dels.uncertain = append(dels.uncertain, w.uncertain...)
		}
		rep.Verify = r.verify(ctx, acks, dels)
	}
	for _, t := range r.cl.targets {
		if n := t.ejections.Load(); n > 0 {
			if rep.Ejections == nil {
				rep.Ejections = map[string]int64{}
			}
			rep.Ejections[t.base] = n
		}
		if n := t.unreadies.Load(); n > 0 {
			if rep.Unready == nil {
				rep.Unready = map[string]int64{}
			}
			rep.Unready[t.base] = n
		}
	}
	if err := rep.write(stdout, cfg.JSON); err != nil {
		return rep, err
	}
	if ctx.Err() != nil {
		if cfg.Verify && rep.Verify == nil {
			return rep, fmt.Errorf("interrupted: nothing was verified: %w", ctx.Err())
		}
		return rep, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if v := rep.Verify; v != nil && (v.Lost > 0 || v.NotByID > 0 || v.Mismatched > 0 || v.StaleCurrent > 0 || v.UnverifiedUsers > 0 || v.Resurrected > 0) {
		return rep, errLost
	}
	return rep, nil
}

// phase runs the workload for d (0: until the source is exhausted) or n
// requests (0: no count bound), closed or open model as configured.
func (r *runner) phase(ctx context.Context, name string, rec *recorder, d time.Duration, n int64) (*OpenReport, time.Duration) {
	src := &source{limit: n}
	if r.rep != nil {
		src.rows = int64(len(r.rep.rows))
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var open *OpenReport
	var dropped atomic.Int64
	stopProgress := r.progress(name, rec, &dropped)
	start := time.Now()
	if r.cfg.openModel() {
		open = &OpenReport{OfferedRate: r.cfg.Rate, ReplaySpeed: r.cfg.ReplaySpeed}
		// The schedule ends by due times; the requests of its end, as the
		// closed model's, are not sent again once d is over.
		retryCtx := pctx
		if d > 0 {
			var c context.CancelFunc
			retryCtx, c = context.WithDeadline(pctx, start.Add(d))
			defer c()
		}
		r.open(pctx, retryCtx, rec, src, d, open, &dropped)
	} else {
		if d > 0 {
			var c context.CancelFunc
			pctx, c = context.WithTimeout(pctx, d)
			defer c()
		}
		r.closed(pctx, rec, src)
	}
	elapsed := time.Since(start)
	stopProgress()
	return open, elapsed
}

// source hands out job numbers: the row to replay, or a count of synthetic
// requests.
type source struct {
	limit int64 // 0: none
	rows  int64 // replay: number of rows; 0: synthetic
	n     atomic.Int64
}

func (s *source) next() (int64, bool) {
	i := s.n.Add(1) - 1
	if s.limit > 0 && i >= s.limit || s.rows > 0 && i >= s.rows {
		return 0, false
	}
	return i, true
}

// closed runs one request loop per worker: each sends its next request as
// soon as the previous one is answered.
func (r *runner) closed(ctx context.Context, rec *recorder, src *source) {
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i, ok := src.next()
				if !ok {
					return
				}
				r.exec(ctx, w, rec, i, time.Now())
			}
		}()
	}
	wg.Wait()
}

// openJob is a request with the time it was meant to start.
type openJob struct {
	i        int64
	intended time.Time
}

// open starts requests on schedule, whatever the answers: request i is due
// at start + i/rate (or, in a time-scaled replay, at its row's time scaled
// by the replay speed). Latency runs from the due time, so a slow server
// cannot hide its delay by slowing the sender (coordinated omission).
// Requests queued or in flight are bounded by --max-outstanding; a due
// request beyond that is dropped and counted, never sent late silently. A
// queued request that waited longer than --timeout is not sent but counted
// as failed ("expired", latency = its wait), as a real client would have
// given up; that also bounds how long the queue takes to drain at the end.
//
// retryCtx ends when no request is to be sent again (--retries): at the
// end of d, as in the closed model.
func (r *runner) open(ctx, retryCtx context.Context, rec *recorder, src *source, d time.Duration, o *OpenReport, dropped *atomic.Int64) {
	at := func(i int64) time.Duration { return durationOf(float64(i) * float64(time.Second) / r.cfg.Rate) }
	if r.rep != nil && r.cfg.ReplaySpeed > 0 {
		t0 := r.rep.rows[0].Time
		at = func(i int64) time.Duration {
			return durationOf(float64(r.rep.rows[i].Time.Sub(t0)) / r.cfg.ReplaySpeed)
		}
	}
	var expired atomic.Int64
	runOpen(ctx, src, at, d, len(r.workers), r.cfg.MaxOutstanding, o, dropped, func(w int, j openJob) {
		if time.Since(j.intended) > r.cfg.Timeout {
			// A client would have given up on it by now: count it as a
			// timeout of its own kind instead of sending it this late.
			r.expire(r.workers[w], rec, j.i, j.intended)
			expired.Add(1)
			return
		}
		r.exec(retryCtx, r.workers[w], rec, j.i, j.intended)
	})
	o.Expired = expired.Load()
}

// durationOf converts ns nanoseconds to a duration, saturating: a due
// time past what a duration holds (a slow replay of a long file, a tiny
// rate) stays in the far future instead of wrapping into the past.
func durationOf(ns float64) time.Duration {
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// runOpen is the open-model scheduler: it calls do(worker, job) on one of
// workers goroutines for each job due before d has passed (d = 0: until
// src ends or ctx is done), and fills o's counts. liveDropped follows the
// dropped count while it runs (for the progress line).
func runOpen(ctx context.Context, src *source, at func(int64) time.Duration, d time.Duration, workers, maxOutstanding int,
	o *OpenReport, liveDropped *atomic.Int64, do func(worker int, j openJob)) {
	jobs := make(chan openJob, maxOutstanding)
	var outstanding, late, maxLag atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				lag := time.Since(j.intended)
				if lag > lateAfter {
					late.Add(1)
				}
				for {
					m := maxLag.Load()
					if int64(lag) <= m || maxLag.CompareAndSwap(m, int64(lag)) {
						break
					}
				}
				do(w, j)
				outstanding.Add(-1)
			}
		}()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	start := time.Now()
	var intended, sent, dropped int64
loop:
	for ctx.Err() == nil {
		i, ok := src.next()
		if !ok {
			break
		}
		due := at(i)
		if d > 0 && due >= d {
			// Nothing more is due within d, but the run offered load
			// for all of d (a sparse stretch of a replay): it ends then,
			// so that its rates are over the time it ran.
			if wait := time.Until(start.Add(d)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
				case <-timer.C:
				}
			}
			break
		}
		intendedAt := start.Add(due)
		if wait := time.Until(intendedAt); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				break loop
			case <-timer.C:
			}
		}
		intended++
		if outstanding.Load() >= int64(maxOutstanding) {
			dropped++
			liveDropped.Store(dropped)
			continue
		}
		outstanding.Add(1)
		sent++
		jobs <- openJob{i: i, intended: intendedAt}
	}
	close(jobs)
	wg.Wait()
	o.Intended, o.Queued, o.Dropped, o.Late = intended, sent, dropped, late.Load()
	o.MaxLagMS = float64(maxLag.Load()) / float64(time.Millisecond)
}

// expire records job i, which waited in the queue longer than the request
// timeout, as failed without sending it.
func (r *runner) expire(w *worker, rec *recorder, i int64, intended time.Time) {
	o := opCheckin
	if r.rep == nil {
		o = r.syn.mix.pick(w.rng)
	}
	rec.record(w.idx, o, time.Since(intended), 0, kindExpired)
}

// exec sends job i on worker w and records it; latency runs from start and
// covers every attempt (--retries).
func (r *runner) exec(ctx context.Context, w *worker, rec *recorder, i int64, start time.Time) {
	var (
		o             op
		method        = fasthttp.MethodGet
		user, id, loc string
		ts            time.Time
		body          []byte
	)
	w.path = w.path[:0]
	var del ack // the checkin a delete deletes
	if r.rep != nil {
		row := &r.rep.rows[i]
		o, user, id, loc, ts = opCheckin, row.User, row.checkinID(), row.Loc, row.Time
	} else {
		o = r.syn.mix.pick(w.rng)
		ui := w.users.pick()
		user = r.syn.users[ui]
		if o == opDelete && len(w.own) == 0 {
			o = opCheckin // nothing of its own to delete yet
		}
		switch o {
		case opCheckin:
			w.seq++
			id = r.writePrefix + strconv.Itoa(w.idx) + "-" + strconv.FormatUint(w.seq, 10)
			loc = r.syn.locations[w.locs.pick()]
			ts = time.Now().Truncate(time.Millisecond)
		case opLocation:
			w.path = appendUserPath(w.path, user, "/location")
		case opRange:
			w.path = appendRangePath(w.path, user, "", time.Now().Add(-r.cfg.RangeWindow), r.cfg.RangeLimit)
		case opRangeLocation:
			w.path = appendRangePath(w.path, user, r.syn.locations[w.locs.pick()], time.Now().Add(-r.cfg.RangeWindow), r.cfg.RangeLimit)
		case opGet:
			w.path = appendUserPath(w.path, user, "/checkins/")
			w.path = append(w.path, r.setupCheckinID(ui, w.rng.IntN(r.cfg.SetupCheckins))...)
		case opDelete:
			del, w.own = w.own[0], w.own[1:]
			method = fasthttp.MethodDelete
			w.path = appendUserPath(w.path, del.User, "/checkins/")
			w.path = append(w.path, del.ID...)
		}
	}
	if o == opCheckin {
		method = fasthttp.MethodPost
		w.path = appendUserPath(w.path, user, "/checkins")
		w.body = appendCheckinBody(w.body[:0], id, loc, ts)
		body = w.body
	}
	// Not tryEach (setup and read-back): that one backs off in fixed steps,
	// up to five times per target; this one honours Retry-After, counts
	// what it retried in the report, and adds no allocation (no callback)
	// to a request that is not retried, so the generator stays cheap next
	// to a fast server.
	first := r.cl.nextIndex()
	var status int
	var kind string
	mayHaveApplied := false // an earlier attempt got no answer, 503 or 504
	for attempt := 0; ; attempt++ {
		err := r.cl.doAt(first+attempt, w.req, w.resp, method, w.path, body)
		status, kind = 0, ""
		switch {
		case err != nil:
			kind = transportKind(err)
		default:
			status = w.resp.StatusCode()
			if status < 200 || status > 299 {
				kind = statusKind(status, w.resp.Body())
			}
		}
		if attempt >= r.cfg.Retries || !retryable(status) || ctx.Err() != nil {
			break
		}
		rec.retry(w.idx, o, kind)
		mayHaveApplied = mayHaveApplied || status != 429
		if status == 0 {
			continue // no answer: at once, to the next target
		}
		if wait := min(retryAfter(&w.resp.Header), r.cfg.RetryMaxWait); wait > 0 && !sleepCtx(ctx, wait) {
			break
		}
	}
	if kind != "" && o == opCheckin && r.cfg.Verify && (status == 0 || status >= 500) && len(w.unacked) < maxUnacked {
		w.unacked = append(w.unacked, ack{User: user, ID: id})
	}
	if kind == "" && o == opCheckin {
		a := ack{User: user, ID: id, Loc: loc, TS: ts.UnixMilli()}
		if r.cfg.Verify {
			w.acks = append(w.acks, a)
		}
		if r.cfg.MixDelete > 0 && r.rep == nil {
			if len(w.own) == maxOwn {
				w.own = w.own[1:]
			}
			w.own = append(w.own, a)
		}
	}
	if o == opDelete {
		kind = r.deleted(w, del, status, kind, mayHaveApplied)
	}
	rec.record(w.idx, o, time.Since(start), status, kind)
}

// deleted notes, for --verify, what became of a delete of the checkin del
// and returns its error kind: a 404 after an attempt that may have deleted
// the checkin is that attempt's success, not an error. A 404 at the first
// attempt, or another 4xx, is an error, and the checkin stays expected:
// verify counts it lost, as it was acknowledged. A delete with no answer or
// a 5xx may have been applied: verify does not check its checkin.
func (r *runner) deleted(w *worker, del ack, status int, kind string, mayHaveApplied bool) string {
	gone := status == 204 || status == 404 && mayHaveApplied && kind == "404:checkin_not_found"
	if gone {
		kind = ""
	}
	if !r.cfg.Verify {
		return kind
	}
	switch {
	case gone:
		w.gone = append(w.gone, del)
	case mayHaveApplied || status == 0 || status >= 500:
		// No answer, or one that does not say whether it was applied (a
		// 500 is the server's own defect; a proxy answers 502).
		w.uncertain = append(w.uncertain, del)
	}
	return kind
}

// retryAfter is the wait an answer asks for in its Retry-After header (in
// seconds; an HTTP date or none: 0).
func retryAfter(h *fasthttp.ResponseHeader) time.Duration {
	v := h.Peek(fasthttp.HeaderRetryAfter)
	if len(v) == 0 {
		return 0
	}
	s, err := strconv.Atoi(string(v))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// sleepCtx waits d, or less when ctx ends first; it reports whether the
// whole wait passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// progress prints a line to stderr every interval until the returned stop
// is called.
func (r *runner) progress(name string, rec *recorder, dropped *atomic.Int64) (stop func()) {
	h := newHist()
	start, last, lastN := time.Now(), time.Now(), int64(0)
	return r.ticker(func(now time.Time) {
		n := rec.total.Load()
		rate := float64(n-lastN) / now.Sub(last).Seconds()
		last, lastN = now, n
		p99 := rec.snapshotP99(h)
		line := fmt.Sprintf("%-6s %6.1fs  requests %9d  rate %8.0f/s  errors %6d  p99 %s",
			name, now.Sub(start).Seconds(), n, rate, rec.errs.Load(), fmtMS(float64(p99)/1000))
		if n := rec.retries.Load(); n > 0 {
			line += fmt.Sprintf("  retried %d", n)
		}
		if d := dropped.Load(); d > 0 {
			line += fmt.Sprintf("  dropped %d", d)
		}
		fmt.Fprintln(r.stderr, line)
	})
}

// fmtMS prints a duration given in milliseconds with a unit that fits.
func fmtMS(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 3, 64) + "ms"
}
