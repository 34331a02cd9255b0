package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// SetupReport counts what the setup phase created.
type SetupReport struct {
	Users     int              `json:"users"`
	Locations int              `json:"locations"`
	Checkins  int              `json:"checkins"`
	Created   int64            `json:"created"`  // 201
	Existing  int64            `json:"existing"` // 409 user/location exists, 200 checkin stored already
	Failed    int64            `json:"failed"`
	Errors    map[string]int64 `json:"errors,omitempty"`
	// FirstError says what the first failed request got: the transport
	// error, or the status and the body's start.
	FirstError string  `json:"first_error,omitempty"`
	ElapsedS   float64 `json:"elapsed_s"`
}

// setupAttempts is how often, per target, a setup request (and a --verify
// read) is tried when the answer says "try again" (timeout, connection
// error, 429, 503, 504).
const setupAttempts = 5

// setupItem is one create request of the setup phase.
type setupItem struct {
	path string
	body []byte
	ack  *ack // checkins: what to verify
}

// setup creates the users and locations (and, synthetic, the first
// checkins of every user) with bounded concurrency. Existing records (409)
// are fine, so setup can be re-run. It fails when any request keeps
// failing.
func (r *runner) setup(ctx context.Context) (*SetupReport, []ack, error) {
	start := time.Now()
	rep := &SetupReport{Errors: map[string]int64{}}
	var records []setupItem
	if r.rep != nil {
		for _, u := range r.rep.users {
			records = append(records, userItem(u, "Gowalla user "+u))
		}
		for _, l := range r.rep.locations {
			records = append(records, locationItem(l.ID, l.Name, l.Lat, l.Lon))
		}
		rep.Users, rep.Locations = len(r.rep.users), len(r.rep.locations)
	} else {
		for i, u := range r.syn.users {
			records = append(records, userItem(u, "Load user "+strconv.Itoa(i)))
		}
		for i, l := range r.syn.locations {
			// spread over a box around New York City
			lat := 40.5 + 0.4*float64(i%1000)/1000
			lon := -74.2 + 0.5*float64(i/1000%1000)/1000
			records = append(records, locationItem(l, "Load location "+strconv.Itoa(i), lat, lon))
		}
		rep.Users, rep.Locations = len(r.syn.users), len(r.syn.locations)
	}
	var checkins []setupItem
	if r.syn != nil && r.cfg.SetupCheckins > 0 {
		// from a minute ago back, a second apart, so that range reads of
		// the last window find the newest and none is in the future
		base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		for i, u := range r.syn.users {
			for k := range r.cfg.SetupCheckins {
				a := &ack{User: u, ID: r.setupCheckinID(i, k),
					Loc: r.syn.locations[(i+k)%len(r.syn.locations)], TS: base.Add(-time.Duration(r.cfg.SetupCheckins-1-k) * time.Second).UnixMilli()}
				checkins = append(checkins, setupItem{
					path: "/v1/users/" + u + "/checkins",
					body: appendCheckinBody(nil, a.ID, a.Loc, time.UnixMilli(a.TS)),
					ack:  a,
				})
			}
		}
		rep.Checkins = len(checkins)
	}

	var done, failed atomic.Int64
	total := len(records) + len(checkins)
	stop := r.setupProgress(start, &done, &failed, total)
	var acks []ack
	var mu sync.Mutex
	// The run needs every record: the first request that keeps failing
	// ends the setup.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, items := range [][]setupItem{records, checkins} {
		r.createAll(sctx, cancel, items, rep, &mu, &done, &failed, func(a *ack) {
			mu.Lock()
			acks = append(acks, *a)
			mu.Unlock()
		})
	}
	stop()
	rep.Failed = failed.Load()
	if ctx.Err() == nil && rep.Failed == 0 && int(done.Load()) != total {
		return rep, nil, fmt.Errorf("setup: only %d of %d create requests done", done.Load(), total)
	}
	rep.ElapsedS = time.Since(start).Seconds()
	if len(rep.Errors) == 0 {
		rep.Errors = nil
	}
	if err := ctx.Err(); err != nil {
		return rep, nil, err
	}
	if rep.Failed > 0 {
		err := fmt.Errorf("setup: create requests failed (after up to %d tries): %s (the first: %s); stopped after %d of %d",
			setupAttempts*len(r.cl.targets), fmtCounts(rep.Errors), rep.FirstError, done.Load(), total)
		if r.cfg.RunID != "" && rep.Errors["409:checkin_conflict"] > 0 {
			err = fmt.Errorf("%w (the setup checkins of run %s exist already: read them with --setup=false, or name another --run-id)", err, r.cfg.RunID)
		}
		return rep, nil, err
	}
	return rep, acks, nil
}

func userItem(id, name string) setupItem {
	b, _ := json.Marshal(struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}{id, name})
	return setupItem{path: "/v1/users", body: b}
}

func locationItem(id, name string, lat, lon float64) setupItem {
	b, _ := json.Marshal(struct {
		ID   string  `json:"id"`
		Name string  `json:"name"`
		Lat  float64 `json:"lat"`
		Lon  float64 `json:"lon"`
	}{id, name, lat, lon})
	return setupItem{path: "/v1/locations", body: b}
}

// createAll posts every item with SetupConcurrency requests in flight.
func (r *runner) createAll(ctx context.Context, fail func(), items []setupItem, rep *SetupReport, mu *sync.Mutex,
	done, failed *atomic.Int64, acked func(*ack)) {
	r.forEach(ctx, len(items), func(i int, req *fasthttp.Request, resp *fasthttp.Response) {
		it := &items[i]
		status, kind, detail := r.create(ctx, req, resp, it)
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		switch {
		case status == 201:
			rep.Created++
		case status == 409 && it.ack == nil, status == 200 && it.ack != nil:
			rep.Existing++
		default:
			failed.Add(1)
			rep.Errors[kind]++
			if rep.FirstError == "" {
				rep.FirstError = it.path + ": " + detail
			}
			fail()
		}
		mu.Unlock()
		if it.ack != nil && (status == 201 || status == 200) {
			acked(it.ack)
		}
		done.Add(1)
	})
}

// forEach calls fn(0..n-1) on SetupConcurrency goroutines, each with its own
// request and response, until done or ctx ends.
func (r *runner) forEach(ctx context.Context, n int, fn func(i int, req *fasthttp.Request, resp *fasthttp.Response)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(r.cfg.SetupConcurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := &fasthttp.Request{}, &fasthttp.Response{}
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i, req, resp)
			}
		}()
	}
	wg.Wait()
}

// create posts one setup item, trying again while the answer says so. It
// returns the last status (0: no answer) and, for a failure, its kind and
// what it got (the transport error, or the status and the body's start).
func (r *runner) create(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, it *setupItem) (status int, kind, detail string) {
	if err := r.tryEach(ctx, req, resp, fasthttp.MethodPost, []byte(it.path), it.body, nil); err != nil {
		return 0, transportKind(err), err.Error()
	}
	status = resp.StatusCode()
	if status >= 300 {
		body := resp.Body()
		kind = statusKind(status, body)
		if len(body) > 200 {
			body = body[:200]
		}
		return status, kind, strconv.Itoa(status) + " " + string(body)
	}
	return status, "", ""
}

// setupCheckinID is the id of user i's setup checkin k in this run.
func (r *runner) setupCheckinID(i, k int) string {
	return r.cfg.IDPrefix + "-" + r.runID + "-s" + strconv.Itoa(i) + "-" + strconv.Itoa(k)
}

// tryEach sends one request until the answer is not retryable, at most
// setupAttempts times per target, each attempt to the next target in turn
// (so targets that are down, e.g. nodes killed by a fault test, cost one
// attempt in n whatever other goroutines send), backing off in between.
// failed is called after each attempt that is to be repeated (nil: not
// called). It returns the last transport error, nil when an answer came
// (its status is in resp; it may still be retryable when the attempts ran
// out), or ctx's error when no attempt was made.
func (r *runner) tryEach(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, method string, path, body []byte, failed func()) error {
	err := ctx.Err()
	first := r.cl.nextIndex() // the first attempt goes where round-robin says
	for attempt := 1; attempt <= setupAttempts*len(r.cl.targets) && ctx.Err() == nil; attempt++ {
		err = r.cl.doAt(first+attempt-1, req, resp, method, path, body)
		if err == nil && !retryable(resp.StatusCode()) {
			return nil
		}
		if failed != nil {
			failed()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(min(attempt, setupAttempts)) * 100 * time.Millisecond):
		}
	}
	return err
}

// retryable: no answer, or an answer that asks to try again.
func retryable(status int) bool {
	return status == 0 || status == 429 || status == 503 || status == 504
}

func (r *runner) setupProgress(start time.Time, done, failed *atomic.Int64, total int) (stop func()) {
	return r.ticker(func(now time.Time) {
		fmt.Fprintf(r.stderr, "setup  %6.1fs  done %d/%d  failed %d\n",
			now.Sub(start).Seconds(), done.Load(), total, failed.Load())
	})
}

// ticker calls line every progress interval until stop is called (never
// when progress is off).
func (r *runner) ticker(line func(now time.Time)) (stop func()) {
	if !r.cfg.Progress {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				line(now)
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}
