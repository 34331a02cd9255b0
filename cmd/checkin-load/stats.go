package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// op is a kind of request of the measured workload.
type op int

const (
	opCheckin op = iota
	opLocation
	opRange
	opRangeLocation
	opGet
	opDelete
	numOps
)

var opNames = [numOps]string{"checkin", "location", "range", "range_location", "get", "delete"}

func (o op) String() string { return opNames[o] }

// Latencies are recorded in microseconds, from 1 µs to an hour (a request
// waits out its retries, and in the open model its queue, in its latency),
// with 3 significant digits; longer ones are recorded as an hour (and the
// exact max is kept beside the histogram).
const (
	histMinUS = 1
	histMaxUS = 3_600_000_000
	histSig   = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, histSig) }

// recorder collects the outcome of every request. Workers write to one of
// a few shards (by worker index) under the shard's lock, so recording is
// cheap and the progress line can read a consistent snapshot.
type recorder struct {
	shards  []*shard
	total   atomic.Int64 // requests finished, for the progress line
	errs    atomic.Int64
	retries atomic.Int64
}

type shard struct {
	mu sync.Mutex
	op [numOps]opStats
}

type opStats struct {
	hist     *hdrhistogram.Histogram
	maxUS    int64
	count    int64
	ok       int64
	statuses map[int]int64
	errs     map[string]int64
	retried  map[string]int64 // attempts sent again (--retries), by what they failed with
}

func newOpStats() opStats {
	return opStats{hist: newHist(), statuses: map[int]int64{}, errs: map[string]int64{}, retried: map[string]int64{}}
}

func newRecorder(shards int) *recorder {
	r := &recorder{shards: make([]*shard, shards)}
	for i := range r.shards {
		s := &shard{}
		for o := range s.op {
			s.op[o] = newOpStats()
		}
		r.shards[i] = s
	}
	return r
}

// record adds one finished request: status is the HTTP status (0: no
// answer), kind names the error ("" when status is 2xx).
func (r *recorder) record(worker int, o op, took time.Duration, status int, kind string) {
	us := took.Microseconds()
	if us < histMinUS {
		us = histMinUS
	}
	s := r.shards[worker%len(r.shards)]
	s.mu.Lock()
	st := &s.op[o]
	st.count++
	if us > st.maxUS {
		st.maxUS = us
	}
	_ = st.hist.RecordValue(min(us, histMaxUS))
	if status != 0 {
		st.statuses[status]++
	}
	if kind == "" {
		st.ok++
	} else {
		st.errs[kind]++
	}
	s.mu.Unlock()
	r.total.Add(1)
	if kind != "" {
		r.errs.Add(1)
	}
}

// retry counts one attempt of a request that failed with kind and is sent
// again; the request's final outcome is recorded once, by record.
func (r *recorder) retry(worker int, o op, kind string) {
	s := r.shards[worker%len(r.shards)]
	s.mu.Lock()
	s.op[o].retried[kind]++
	s.mu.Unlock()
	r.retries.Add(1)
}

// snapshotP99 returns the p99 of every request so far, in microseconds.
func (r *recorder) snapshotP99(into *hdrhistogram.Histogram) int64 {
	into.Reset()
	for _, s := range r.shards {
		s.mu.Lock()
		for o := range s.op {
			into.Merge(s.op[o].hist)
		}
		s.mu.Unlock()
	}
	return into.ValueAtQuantile(99)
}

// merged returns every shard's stats of each op summed, and the sum of all
// ops. Call it once the workers are done.
func (r *recorder) merged() (per [numOps]opStats, all opStats) {
	all = newOpStats()
	for o := range per {
		per[o] = newOpStats()
	}
	for _, s := range r.shards {
		s.mu.Lock()
		for o := range s.op {
			per[o].add(&s.op[o])
			all.add(&s.op[o])
		}
		s.mu.Unlock()
	}
	return per, all
}

func (a *opStats) add(b *opStats) {
	a.hist.Merge(b.hist)
	a.maxUS = max(a.maxUS, b.maxUS)
	a.count += b.count
	a.ok += b.ok
	for k, v := range b.statuses {
		a.statuses[k] += v
	}
	for k, v := range b.errs {
		a.errs[k] += v
	}
	for k, v := range b.retried {
		a.retried[k] += v
	}
}

// Latency is a summary of a latency histogram, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// summarize reads the percentiles of h; maxUS is the exact maximum.
func summarize(h *hdrhistogram.Histogram, maxUS int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	// HDR values are the top of their bucket: never report one above the
	// exact maximum.
	ms := func(us int64) float64 { return float64(min(us, maxUS)) / 1000 }
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(maxUS), Mean: h.Mean() / 1000,
	}
}

// OpReport is the outcome of one kind of request.
type OpReport struct {
	Requests    int64            `json:"requests"`
	OK          int64            `json:"ok"`
	Errors      int64            `json:"errors"`
	Throughput  float64          `json:"throughput_rps"`
	Latency     Latency          `json:"latency"`
	StatusCodes map[string]int64 `json:"status_codes"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`
	// Retries counts attempts sent again (--retries), RetriedKinds what
	// they had failed with; Requests, OK, Errors and the latency are of
	// the requests' final outcomes.
	Retries      int64            `json:"retries"`
	RetriedKinds map[string]int64 `json:"retried_kinds,omitempty"`
}

func opReport(s *opStats, elapsed time.Duration) *OpReport {
	r := &OpReport{Requests: s.count, OK: s.ok, Errors: s.count - s.ok, Latency: summarize(s.hist, s.maxUS),
		StatusCodes: map[string]int64{}}
	if elapsed > 0 {
		r.Throughput = float64(s.count) / elapsed.Seconds()
	}
	for k, v := range s.statuses {
		r.StatusCodes[strconv.Itoa(k)] = v
	}
	if len(s.errs) > 0 {
		r.ErrorKinds = map[string]int64{}
		for k, v := range s.errs {
			r.ErrorKinds[k] = v
		}
	}
	if len(s.retried) > 0 {
		r.RetriedKinds = map[string]int64{}
		for k, v := range s.retried {
			r.RetriedKinds[k] = v
			r.Retries += v
		}
	}
	return r
}
