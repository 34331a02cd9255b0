package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		// fasthttp's idle-connection cleaner outlives the client by up to
		// MaxIdleConnDuration after its connections are closed.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestUniformPicker(t *testing.T) {
	const n, samples = 10, 200_000
	p := newPicker(rand.New(rand.NewPCG(1, 2)), "uniform", n, 0, 0)
	var counts [n]int
	for range samples {
		counts[p.pick()]++
	}
	// chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile
	want := float64(samples) / n
	chi := 0.0
	for _, c := range counts {
		chi += (float64(c) - want) * (float64(c) - want) / want
	}
	if chi > 27.9 {
		t.Fatalf("uniform picker is not uniform: chi-square %.1f, counts %v", chi, counts)
	}
}

func TestZipfPicker(t *testing.T) {
	for _, tc := range []struct {
		name string
		s, v float64
	}{
		{"s=1.1 v=1", 1.1, 1},
		{"s=2 v=1", 2, 1},
		{"s=1.5 v=3", 1.5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, samples = 1000, 300_000
			p := newPicker(rand.New(rand.NewPCG(3, 4)), "zipf", n, tc.s, tc.v)
			counts := make([]int, n)
			for range samples {
				k := p.pick()
				if k < 0 || k >= n {
					t.Fatalf("pick %d outside [0, %d)", k, n)
				}
				counts[k]++
			}
			for k := range 4 {
				if counts[k] <= counts[k+1] {
					t.Fatalf("rank %d picked %d times, rank %d %d times: not decreasing", k, counts[k], k+1, counts[k+1])
				}
			}
			// P(0)/P(1) = ((v+1)/v)^s
			want := math.Pow((tc.v+1)/tc.v, tc.s)
			got := float64(counts[0]) / float64(counts[1])
			if math.Abs(got-want)/want > 0.05 {
				t.Fatalf("P(0)/P(1) = %.3f, want %.3f ± 5%%", got, want)
			}
		})
	}
}

func TestMix(t *testing.T) {
	cfg := defaultConfig()
	cfg.MixCheckin, cfg.MixLocation, cfg.MixRange, cfg.MixRangeLocation = 1, 2, 0, 1
	m := newMix(cfg)
	r := rand.New(rand.NewPCG(5, 6))
	var counts [numOps]int
	const samples = 100_000
	for range samples {
		counts[m.pick(r)]++
	}
	if counts[opRange] != 0 {
		t.Fatalf("op with weight 0 picked %d times", counts[opRange])
	}
	for o, w := range map[op]float64{opCheckin: 0.25, opLocation: 0.5, opRangeLocation: 0.25} {
		if got := float64(counts[o]) / samples; math.Abs(got-w) > 0.01 {
			t.Errorf("%s share %.3f, want %.3f", o, got, w)
		}
	}
}

func TestRunOpenAccounting(t *testing.T) {
	rate := func(perSec float64) func(int64) time.Duration {
		return func(i int64) time.Duration { return time.Duration(float64(i) * float64(time.Second) / perSec) }
	}
	t.Run("fast server: every intended request is sent", func(t *testing.T) {
		var o OpenReport
		var dropped, done atomic.Int64
		// max-outstanding is the whole schedule: a loaded machine that
		// pauses the sender for a while has it send the requests due
		// meanwhile at once, and a smaller bound could drop some of them
		// before the workers run.
		runOpen(context.Background(), &source{}, rate(2000), 200*time.Millisecond, 4, 400, &o, &dropped,
			func(int, openJob) { done.Add(1) })
		if o.Intended < 380 || o.Intended > 400 {
			t.Errorf("intended %d, want about 400 (2000/s for 200ms)", o.Intended)
		}
		if o.Queued != o.Intended || o.Dropped != 0 || done.Load() != o.Queued {
			t.Errorf("intended %d, sent %d, dropped %d, done %d: want all sent and done", o.Intended, o.Queued, o.Dropped, done.Load())
		}
	})
	t.Run("stuck server: outstanding is bounded and the rest is dropped", func(t *testing.T) {
		var o OpenReport
		var dropped atomic.Int64
		release := make(chan struct{})
		var started, startedLate atomic.Int64
		// The server answers once the schedule is over: when the sender
		// asks for the due time of the first request past its end (a
		// release after a fixed time could come before the end on a
		// loaded machine, and let more requests through).
		var once sync.Once
		at := func(i int64) time.Duration {
			due := rate(1000)(i)
			if due >= 200*time.Millisecond {
				once.Do(func() { close(release) })
			}
			return due
		}
		runOpen(context.Background(), &source{}, at, 200*time.Millisecond, 5, 20, &o, &dropped,
			func(_ int, j openJob) {
				// Measured after the worker measured it: a request the
				// worker counted late is counted here too.
				if time.Since(j.intended) > lateAfter {
					startedLate.Add(1)
				}
				started.Add(1)
				<-release
			})
		if o.Queued != 20 || started.Load() != 20 {
			t.Errorf("sent %d, started %d: want max-outstanding 20", o.Queued, started.Load())
		}
		if o.Intended != o.Queued+o.Dropped || o.Dropped < 150 {
			t.Errorf("intended %d, sent %d, dropped %d: want intended = sent + dropped, most dropped", o.Intended, o.Queued, o.Dropped)
		}
		if dropped.Load() != o.Dropped {
			t.Errorf("live dropped %d, final %d", dropped.Load(), o.Dropped)
		}
		// 15 of the 20 waited in the queue behind 5 stuck workers; the 5
		// the workers took at once are late only if a loaded machine kept
		// the workers from starting them within lateAfter.
		if o.Late < 15 || o.Late > startedLate.Load() {
			t.Errorf("late %d, want 15 (the queued ones), plus those of the first 5 that started late (%d in all)", o.Late, startedLate.Load())
		}
	})
	t.Run("latency counts from the intended time", func(t *testing.T) {
		var o OpenReport
		var dropped atomic.Int64
		var mu sync.Mutex
		var lags []time.Duration
		// one worker, 10ms of work per request, a request due every 5ms:
		// the queue grows and the nth request starts about n*5ms late.
		runOpen(context.Background(), &source{}, rate(200), 100*time.Millisecond, 1, 1000, &o, &dropped,
			func(_ int, j openJob) {
				mu.Lock()
				lags = append(lags, time.Since(j.intended))
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			})
		if o.Dropped != 0 || o.Queued != o.Intended || o.Intended != 20 {
			t.Fatalf("intended %d, sent %d, dropped %d: want 20 sent", o.Intended, o.Queued, o.Dropped)
		}
		if last := lags[len(lags)-1]; last < 80*time.Millisecond {
			t.Errorf("last request started %v after its intended time, want >= 80ms (queueing behind a slow server)", last)
		}
		if o.Late == 0 || o.MaxLagMS < 80 {
			t.Errorf("late %d, max lag %.1fms: want queueing counted", o.Late, o.MaxLagMS)
		}
	})
	t.Run("source end and context end stop the schedule", func(t *testing.T) {
		var o OpenReport
		var dropped atomic.Int64
		runOpen(context.Background(), &source{limit: 7}, rate(10000), 0, 2, 10, &o, &dropped, func(int, openJob) {})
		if o.Intended != 7 || o.Queued != 7 {
			t.Errorf("limit 7: intended %d, sent %d", o.Intended, o.Queued)
		}
		// The second request is due in 100 s: a schedule that waited for
		// it instead of the context would take that long; one that stops
		// at the context's end takes far less than the 10 s allowed for a
		// loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		runOpen(ctx, &source{}, rate(0.01), 0, 2, 10, &o, &dropped, func(int, openJob) {})
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("cancelled schedule took %v to stop", took)
		}
	})
}

func TestReportPercentiles(t *testing.T) {
	rec := newRecorder(3)
	// 1ms, 2ms, ..., 1000ms: one of each, spread over shards and two ops
	for i := 1; i <= 1000; i++ {
		o := opCheckin
		if i%2 == 0 {
			o = opLocation
		}
		status, kind := 201, ""
		if i%100 == 0 {
			status, kind = 503, "503:overloaded"
		}
		rec.record(i, o, time.Duration(i)*time.Millisecond, status, kind)
	}
	rec.record(0, opRange, 0, 0, kindTimeout)
	per, all := rec.merged()
	l := summarize(all.hist, all.maxUS)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 500}, {"p90", l.P90, 900}, {"p99", l.P99, 990}, {"p99.9", l.P999, 999}, {"max", l.Max, 1000},
		{"mean", l.Mean, 1001 * 1000 / 2 / 1001.0},
	} {
		if math.Abs(tc.got-tc.want)/tc.want > 0.002 {
			t.Errorf("%s = %.3fms, want %.3fms ± 0.2%%", tc.name, tc.got, tc.want)
		}
	}
	if l.Max != 1000 {
		t.Errorf("max = %v, want exactly 1000ms", l.Max)
	}
	rep := &Report{}
	cfg := defaultConfig()
	rep.fill(cfg, rec, 2*time.Second, nil)
	if rep.Requests != 1001 || rep.Errors != 11 || rep.OK != 990 {
		t.Errorf("requests %d errors %d ok %d, want 1001, 11, 990", rep.Requests, rep.Errors, rep.OK)
	}
	if rep.StatusCodes["503"] != 10 || rep.StatusCodes["201"] != 990 || rep.ErrorKinds[kindTimeout] != 1 || rep.ErrorKinds["503:overloaded"] != 10 {
		t.Errorf("status codes %v, error kinds %v", rep.StatusCodes, rep.ErrorKinds)
	}
	if rep.Count5xx() != 10 {
		t.Errorf("5xx = %d, want 10", rep.Count5xx())
	}
	if rep.Throughput != 500.5 || rep.Ops["checkin"].Requests != 500 || per[opRange].count != 1 {
		t.Errorf("throughput %v, checkin %d, range %d", rep.Throughput, rep.Ops["checkin"].Requests, per[opRange].count)
	}
	var b strings.Builder
	if err := rep.write(&b, false); err != nil || !strings.Contains(b.String(), "p99.9") {
		t.Errorf("text report: %v\n%s", err, b.String())
	}

	// The open model: dropped requests were never sent; the errors are
	// what error_kinds sum to.
	rep = &Report{}
	rep.fill(cfg, rec, 2*time.Second, &OpenReport{Intended: 1011, Queued: 1001, Dropped: 10})
	var sum int64
	for _, n := range rep.ErrorKinds {
		sum += n
	}
	if rep.Dropped != 10 || rep.Requests != 1001 || rep.Errors != 11 || sum != rep.Errors {
		t.Errorf("open model: dropped %d, requests %d, errors %d, error kinds %v; want 10, 1001, 11 and kinds summing to the errors",
			rep.Dropped, rep.Requests, rep.Errors, rep.ErrorKinds)
	}

	// Latencies past a minute (retries, a queue) are recorded as they are.
	rec = newRecorder(1)
	for i := 1; i <= 100; i++ {
		rec.record(0, opCheckin, time.Duration(i)*2*time.Second, 201, "") // 2 s to 200 s
	}
	_, all = rec.merged()
	if l := summarize(all.hist, all.maxUS); math.Abs(l.P99-198_000)/198_000 > 0.002 {
		t.Errorf("p99 of 2 s to 200 s = %.0fms, want 198000ms", l.P99)
	}
}

func TestReplayParser(t *testing.T) {
	d, err := loadReplay("testdata/gowalla_nyc_excerpt.tsv", "testdata/venues_excerpt.tsv", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.rows) != 50 || len(d.users) != 2 || len(d.locations) != 46 || d.duplicates != 1 {
		t.Fatalf("rows %d users %d locations %d duplicates %d, want 50, 2, 46, 1", len(d.rows), len(d.users), len(d.locations), d.duplicates)
	}
	for i := 1; i < len(d.rows); i++ {
		if d.rows[i].Time.Before(d.rows[i-1].Time) {
			t.Fatalf("row %d (%v) before row %d (%v): not in time order", i, d.rows[i].Time, i-1, d.rows[i-1].Time)
		}
	}
	// the duplicate pair: same id, so the server answers 200 to the second
	var dupIDs []string
	for _, r := range d.rows {
		if r.User == "578" && r.Time.Equal(time.Date(2010, 9, 1, 22, 34, 54, 0, time.UTC)) {
			dupIDs = append(dupIDs, r.checkinID())
		}
	}
	if len(dupIDs) != 2 || dupIDs[0] != dupIDs[1] || dupIDs[0] != "gw-578-1283380494-12973" {
		t.Fatalf("duplicate rows got ids %v, want twice gw-578-1283380494-12973", dupIDs)
	}
	names := map[string]replayLocation{}
	for _, l := range d.locations {
		names[l.ID] = l
	}
	if l := names["23261"]; l.Name != "JFK John F. Kennedy International" || l.Lat != 40.6438845363 || l.Lon != -73.78280639649999 {
		t.Errorf("location 23261 = %+v", l)
	}
	// 7 of the 46 locations have no venue name
	unnamed := 0
	for _, l := range d.locations {
		if strings.HasPrefix(l.Name, "Gowalla spot ") {
			unnamed++
		}
	}
	if unnamed != 46-39 {
		t.Errorf("%d unnamed locations, want 7", unnamed)
	}

	withPrefix, err := loadReplay("testdata/gowalla_nyc_excerpt.tsv", "", "x-")
	if err != nil {
		t.Fatal(err)
	}
	if withPrefix.users[0] != "x-"+d.users[0] || !strings.HasPrefix(withPrefix.rows[0].checkinID(), "gw-x-") {
		t.Errorf("prefix not applied: %v %s", withPrefix.users, withPrefix.rows[0].checkinID())
	}
}

func TestReplayParserErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"fields", "1\t2010-01-01T00:00:00Z\t40\t-73\n", "line 1: 4 fields"},
		{"time", "1\t2010-01-01 00:00:00\t40\t-73\t5\n", "line 1: time"},
		{"lat", "\n1\t2010-01-01T00:00:00Z\t91\t-73\t5\n", "line 2: latitude"},
		{"lon", "1\t2010-01-01T00:00:00Z\t40\tx\t5\n", "line 1: longitude"},
		{"user id", "a b\t2010-01-01T00:00:00Z\t40\t-73\t5\n", "line 1: user id"},
		{"location id", "1\t2010-01-01T00:00:00Z\t40\t-73\t5/6\n", "line 1: location id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCheckins(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	rows, err := parseCheckins(strings.NewReader("7\t2010-01-01T00:00:00Z\t40.5\t-73.5\t9\r\n\n"))
	if err != nil || len(rows) != 1 || rows[0].Loc != "9" || rows[0].Line != 1 {
		t.Fatalf("CRLF and blank lines: %v %+v", err, rows)
	}
	long := row{User: strings.Repeat("u", 40), Loc: strings.Repeat("l", 30), Time: time.Unix(1e9, 0)}
	other := long
	other.User = strings.Repeat("v", 40)
	if id := long.checkinID(); len(id) != 36 || !strings.HasPrefix(id, "gwh-") || id == other.checkinID() {
		t.Errorf("long ids hash to %q and, for another user, %q: want gwh- and 32 hex digits, different", id, other.checkinID())
	}
}

func TestCleanName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  Washington Square Park ", "Washington Square Park"},
		{"", ""},
		{"\xff", ""},
		{strings.Repeat("é", 200), strings.Repeat("é", 128)},
	} {
		if got := cleanName(tc.in); got != tc.want {
			t.Errorf("cleanName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "checkins.tsv") // a file flag names a file that exists
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // error substring; "" = valid
	}{
		{"defaults", nil, nil, ""},
		{"localhost", []string{"--targets=http://localhost:1,http://[::1]:2/api"}, nil, ""},
		{"remote refused", []string{"--targets=http://10.1.2.3:8080"}, nil, "not a loopback address"},
		{"remote allowed", []string{"--targets=http://10.1.2.3:8080", "--allow-remote"}, nil, ""},
		{"not http", []string{"--targets=ftp://127.0.0.1:8080"}, nil, "not an http(s) base URL"},
		{"env twin", nil, map[string]string{"CHECKIN_CONCURRENCY": "0"}, "concurrency must be at least 1"},
		{"flag wins over env", []string{"--concurrency=3"}, map[string]string{"CHECKIN_CONCURRENCY": "0"}, ""},
		{"unbounded", []string{"--duration=0"}, nil, "set --duration or --requests"},
		{"zipf s", []string{"--popularity=zipf", "--zipf.s=1"}, nil, "zipf.s > 1"},
		{"popularity", []string{"--popularity=pareto"}, nil, "not uniform or zipf"},
		{"no mix", []string{"--mix.checkin=0"}, nil, "at least one mix weight"},
		{"range limit", []string{"--range.limit=1001"}, nil, "range.limit"},
		{"venues alone", []string{"--venues=v.tsv"}, nil, "venues needs --replay"},
		{"replay rate and speed", []string{"--replay=f", "--rate=5", "--replay-speed=2"}, nil, "not both"},
		{"replay warmup", []string{"--replay=f", "--warmup=1s"}, nil, "warmup"},
		{"bad prefix", []string{"--id-prefix=a/b"}, nil, "id-prefix"},
		{"retries", []string{"--retries=3", "--retry.max-wait=500ms", "--eject=2s"}, nil, ""},
		{"get", []string{"--mix.get=1"}, nil, ""},
		{"get of another run", []string{"--mix.get=1", "--setup=false", "--run-id=r1"}, nil, ""},
		{"get without setup checkins", []string{"--mix.get=1", "--setup.checkins=0"}, nil, "mix.get reads the checkins a setup made"},
		{"get without setup or run id", []string{"--mix.get=1", "--setup=false"}, nil, "mix.get reads the checkins a setup made"},
		{"negative retries", []string{"--retries=-1"}, nil, "retries must be 0 to 100"},
		{"retries env twin", nil, map[string]string{"CHECKIN_RETRIES": "101"}, "retries must be 0 to 100"},
		{"negative eject", []string{"--eject=-1s"}, nil, "must not be negative"},
		{"source addresses", []string{"--source-addrs=127.0.0.2, 127.0.0.3"}, nil, ""},
		{"bad source address", []string{"--source-addrs=127.0.0.2,nowhere"}, nil, `source-addrs: "nowhere" is not an IP address`},
		{"replay file", []string{"--replay=" + file, "--venues=" + file}, nil, ""},
		{"missing replay file", []string{"--replay=" + file + ".gone"}, nil, "replay: stat "},
		{"replay of a directory", []string{"--replay=" + filepath.Dir(file)}, nil, "replay: " + filepath.Dir(file) + " is a directory"},
		{"replay from a pipe", []string{"--replay=/dev/stdin"}, nil, ""},
		{"missing venues file", []string{"--replay=" + file, "--venues=" + file + ".gone"}, nil, "venues: stat "},
		{"missing CA file", []string{"--tls.ca-file=" + file + ".gone"}, nil, "tls.ca-file: stat "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			_, err := parseConfig(tc.args, getenv, &strings.Builder{})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := parseConfig([]string{"--requests=1000000"}, func(string) string { return "" }, &strings.Builder{})
	if err != nil || cfg.Duration != 0 {
		t.Errorf("--requests alone: duration %v (%v), want 0 (the count ends the run)", cfg.Duration, err)
	}
	cfg, _ = parseConfig([]string{"--requests=1000000", "--duration=5s"}, func(string) string { return "" }, &strings.Builder{})
	if cfg.Duration != 5*time.Second {
		t.Errorf("--requests with --duration=5s: %v", cfg.Duration)
	}
	cfg, err = parseConfig([]string{"--replay=" + file}, func(string) string { return "" }, &strings.Builder{})
	if err != nil || cfg.Duration != 0 {
		t.Errorf("replay without --duration: duration %v (%v), want 0 (whole file)", cfg.Duration, err)
	}
	cfg, _ = parseConfig([]string{"--replay=" + file, "--duration=5s"}, func(string) string { return "" }, &strings.Builder{})
	if cfg.Duration != 5*time.Second {
		t.Errorf("replay with --duration=5s: %v", cfg.Duration)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"api error", 503, `{"error":{"code":"overloaded","message":"busy"}}`, "503:overloaded"},
		{"not json", 502, `<html>bad gateway</html>`, "502"},
		{"odd code", 500, `{"error":{"code":"a b","message":""}}`, "500"},
	} {
		if got := statusKind(tc.status, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: statusKind = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := transportKind(fasthttp.ErrTimeout); got != kindTimeout {
		t.Errorf("ErrTimeout → %q", got)
	}
	if got := transportKind(errors.New("connection refused")); got != kindConnection {
		t.Errorf("refused → %q", got)
	}
}

func TestBodies(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.UTC)
	if got := string(appendCheckinBody(nil, "c1", "moma", ts)); got != `{"id":"c1","location_id":"moma","timestamp":"2024-05-01T12:00:00.123Z"}` {
		t.Errorf("checkin body %s", got)
	}
	if got := string(appendRangePath(nil, "alice", "moma", ts, 50)); got != "/v1/users/alice/checkins?from=2024-05-01T12:00:00.123Z&limit=50&location_id=moma" {
		t.Errorf("range path %s", got)
	}
}

// TestOpenExpiresStaleRequests: with a server slower than the offered rate,
// queued requests older than --timeout are failed as "expired" without
// being sent, and every intended request is accounted for.
func TestOpenExpiresStaleRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(40 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	cfg := defaultConfig()
	// A second of timeout: the sent requests (40 ms each) are answered
	// well within it even on a loaded machine, and the queue (100 a second
	// offered, 25 served) still makes the last ones wait longer.
	cfg.Targets, cfg.Concurrency, cfg.Rate, cfg.Timeout = srv.URL, 1, 100, time.Second
	cfg.Users, cfg.Locations, cfg.MixCheckin, cfg.MixLocation = 5, 5, 0, 1
	cfg.Progress = false
	r := testRunner(t, cfg, cfg.Timeout)
	rng := rand.New(rand.NewPCG(1, 1))
	r.workers = []*worker{{rng: rng, users: uniformPicker{rng, 5}, locs: uniformPicker{rng, 5}, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}}
	rec := newRecorder(1)
	open, _ := r.phase(context.Background(), "run", rec, 400*time.Millisecond, 0)
	rep := &Report{}
	rep.fill(cfg, rec, time.Second, open)
	if open.Intended != 40 || open.Queued != 40 || open.Dropped != 0 {
		t.Fatalf("open accounting %+v, want 40 intended and queued", open)
	}
	if open.Expired == 0 || rep.ErrorKinds[kindExpired] != open.Expired {
		t.Fatalf("expired %d, error kinds %v: want stale requests expired", open.Expired, rep.ErrorKinds)
	}
	if rep.Requests != 40 || rep.OK+open.Expired != 40 {
		t.Fatalf("requests %d, ok %d, expired %d: want every request accounted for", rep.Requests, rep.OK, open.Expired)
	}
	if rep.Latency.Max < float64(cfg.Timeout.Milliseconds()) {
		t.Fatalf("max latency %.1fms: expired requests count with their wait", rep.Latency.Max)
	}
}

// testRunner is a runner of cfg with one connection per target and the
// given request timeout, closed when the test ends.
func testRunner(t *testing.T, cfg config, timeout time.Duration) *runner {
	t.Helper()
	bases, err := cfg.targetURLs()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg, stderr: io.Discard, runID: "t", syn: newSynthetic(cfg)}
	r.cl = newClient(bases, 1, timeout, clientOpts{})
	t.Cleanup(r.cl.close)
	return r
}

// TestRetries: against a server that answers every other request 503 with
// Retry-After: 1, --retries=1 sends each failed request once more after
// the capped wait, and the report counts the final outcomes and the
// retries apart; without retries half the requests fail.
func TestRetries(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%2 == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"try again"}}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name           string
		retries        int
		ok, errs, sent int64
	}{
		{"no retries", 0, 10, 10, 20},
		{"one retry", 1, 20, 0, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.Store(0)
			cfg := defaultConfig()
			cfg.Targets, cfg.Concurrency, cfg.Progress = srv.URL, 1, false
			cfg.Users, cfg.Locations = 5, 5
			cfg.Retries, cfg.RetryMaxWait = tc.retries, 20*time.Millisecond
			r := testRunner(t, cfg, time.Second)
			rng := rand.New(rand.NewPCG(1, 1))
			r.workers = []*worker{{rng: rng, users: uniformPicker{rng, 5}, locs: uniformPicker{rng, 5}, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}}
			rec := newRecorder(1)
			_, elapsed := r.phase(context.Background(), "run", rec, 0, 20)
			rep := &Report{}
			rep.fill(cfg, rec, elapsed, nil)
			if rep.Requests != 20 || rep.OK != tc.ok || rep.Errors != tc.errs || n.Load() != tc.sent {
				t.Fatalf("requests %d, ok %d, errors %d, sent %d; want 20, %d, %d, %d", rep.Requests, rep.OK, rep.Errors, n.Load(), tc.ok, tc.errs, tc.sent)
			}
			if rep.Retries != int64(tc.retries)*20 || rep.RetriedKinds["503:unavailable"] != rep.Retries {
				t.Fatalf("retries %d after %v", rep.Retries, rep.RetriedKinds)
			}
			if tc.errs > 0 && rep.ErrorKinds["503:unavailable"] != tc.errs {
				t.Fatalf("error kinds %v", rep.ErrorKinds)
			}
			// Each retry waited Retry-After capped to --retry.max-wait: at
			// least 20 ms, far less than the second the server asked for.
			if tc.retries > 0 && (rep.Latency.P50 < 20 || rep.Latency.Max >= 1000) {
				t.Fatalf("latency %+v: want every request to include one capped wait", rep.Latency)
			}
		})
	}
}

// TestEjection: with --eject, a target that refuses a connection is skipped
// until its time is up, and one that answers while every target is ejected
// is taken back at once.
func TestEjection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // connections to it are refused from now on
	c, get := ejectingClient(t, dead, time.Second)

	if err := get(0); err == nil || transportKind(err) != kindConnection {
		t.Fatalf("request to the dead target: %v, want a connection error", err)
	}
	for range 10 {
		if err := get(c.nextIndex()); err != nil {
			t.Fatalf("a request went to the ejected target: %v", err)
		}
	}
	if n, m := c.targets[0].ejections.Load(), c.targets[1].ejections.Load(); n != 1 || m != 0 {
		t.Fatalf("ejections %d and %d, want 1 and 0", n, m)
	}

	// Both ejected (the live one as if it had refused a connection): requests
	// go round-robin; the live one's answer takes it back at once.
	c.targets[1].downUntil.Store(time.Now().Add(time.Minute).UnixNano())
	if err := get(1); err != nil || c.targets[1].downUntil.Load() != 0 {
		t.Fatalf("answer from an ejected target: %v, down until %d; want it taken back", err, c.targets[1].downUntil.Load())
	}
	for range 10 {
		if err := get(c.nextIndex()); err != nil {
			t.Fatalf("after the live target came back a request failed: %v", err)
		}
	}
}

// TestEjectionOfAHungTarget: a target that accepts connections but never
// answers (a frozen process: its kernel still accepts) is ejected after
// one timeout, and the requests after it go to the live target.
func TestEjectionOfAHungTarget(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0") // accepted by the kernel, never read
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	// The timeout is also that of the requests to the live target: a
	// second, which a loaded machine does not miss.
	c, get := ejectingClient(t, "http://"+hung.Addr().String(), time.Second)
	if err := get(0); err == nil || transportKind(err) != kindTimeout {
		t.Fatalf("request to the hung target: %v, want a timeout", err)
	}
	for range 10 {
		if err := get(c.nextIndex()); err != nil {
			t.Fatalf("a request went to the ejected hung target: %v", err)
		}
	}
	if n := c.targets[0].ejections.Load(); n != 1 {
		t.Fatalf("the hung target was ejected %d times, want 1", n)
	}
}

// TestHealthCheck: with --health-check a target whose /readyz does not
// answer 200 (a node that drains before it stops) gets no requests until
// it answers 200 again, while it still answers them.
func TestHealthCheck(t *testing.T) {
	var ready atomic.Bool
	var hits [2]atomic.Int64
	servers := make([]*httptest.Server, 2)
	for i := range servers {
		servers[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				if i == 0 && !ready.Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
				return
			}
			hits[i].Add(1)
		}))
		defer servers[i].Close()
	}
	var bases []*url.URL
	for _, srv := range servers {
		u, err := url.Parse(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, u)
	}
	// Each check must be answered within the interval: a second, long
	// enough that no answer misses it on a loaded machine. (A missed one
	// would skip the ready target too, and with both skipped requests go
	// to either; or count the first target not ready twice.)
	c := newClient(bases, 4, 2*time.Second, clientOpts{health: time.Second})
	defer c.close()
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	send := func(n int) {
		t.Helper()
		for range n {
			if err := c.doAt(c.nextIndex(), req, resp, fasthttp.MethodGet, []byte("/"), nil); err != nil || resp.StatusCode() != http.StatusOK {
				t.Fatalf("request: %v, status %d", err, resp.StatusCode())
			}
		}
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	waitUntil("the first health check of the unready target", func() bool {
		return c.targets[0].unready.Load() && !c.targets[1].unready.Load()
	})
	send(10)
	if a, b := hits[0].Load(), hits[1].Load(); a != 0 || b != 10 {
		t.Fatalf("requests %d to the unready target and %d to the ready one, want 0 and 10", a, b)
	}
	ready.Store(true)
	waitUntil("the target to be taken back", func() bool { return !c.targets[0].unready.Load() })
	send(10)
	if a := hits[0].Load(); a == 0 {
		t.Fatal("no request went to the target once it was ready again")
	}
	if n := c.targets[0].unreadies.Load(); n != 1 {
		t.Fatalf("the target was found not ready %d times, want 1", n)
	}
}

// ejectingClient returns a client of two targets, bad and a live server
// that answers 200, which ejects a target for a minute, and get, which
// sends a request to target i (see client.doAt).
func ejectingClient(t *testing.T, bad string, timeout time.Duration) (*client, func(i int) error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	var bases []*url.URL
	for _, s := range []string{bad, srv.URL} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, u)
	}
	c := newClient(bases, 4, timeout, clientOpts{eject: time.Minute})
	t.Cleanup(c.close)
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	return c, func(i int) error { return c.doAt(i, req, resp, fasthttp.MethodGet, []byte("/"), nil) }
}

// With --source-addrs new connections come from the given addresses in
// turn, so a node that counts clients by address sees that many.
func TestSourceAddrs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			_ = c.Close()
		}
	}()
	dial := sourceDialer(5*time.Second, []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")})
	var got []string
	for range 4 {
		c, err := dial(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		got = append(got, <-seen)
	}
	if want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("connections came from %v, want %v", got, want)
	}
}

// Every request names its target in the Host header and goes to the
// target's path prefix plus the request's path (a server, or a proxy in
// front of several, routes by both), over HTTP and HTTPS.
func TestRequestsNameTheirTarget(t *testing.T) {
	type seen struct{ host, uri string }
	got := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.RequestURI}
		w.WriteHeader(http.StatusOK)
	})
	plain, secure := httptest.NewServer(handler), httptest.NewTLSServer(handler)
	defer plain.Close()
	defer secure.Close()
	for _, tc := range []struct{ base, want string }{
		{plain.URL, "/v1/users/u1?limit=2"},
		{plain.URL + "/api", "/api/v1/users/u1?limit=2"},
		{secure.URL, "/v1/users/u1?limit=2"},
		{secure.URL + "/api", "/api/v1/users/u1?limit=2"},
	} {
		u, err := url.Parse(tc.base)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient([]*url.URL{u}, 1, 5*time.Second, clientOpts{tls: secure.Client().Transport.(*http.Transport).TLSClientConfig})
		req, resp := &fasthttp.Request{}, &fasthttp.Response{}
		if err := c.doAt(0, req, resp, fasthttp.MethodGet, []byte("/v1/users/u1?limit=2"), nil); err != nil {
			t.Fatalf("%s: %v", tc.base, err)
		}
		c.close()
		if resp.StatusCode() != http.StatusOK {
			t.Errorf("base %s: answered %d %q, want 200", tc.base, resp.StatusCode(), resp.Body())
			continue
		}
		if s := <-got; s.host != u.Host || s.uri != tc.want {
			t.Errorf("base %s: the server saw Host %q and %q, want %q and %q", tc.base, s.host, s.uri, u.Host, tc.want)
		}
	}
}

// TestReplayIDsOfSubSecondTimes: a row's id names its second (as the
// Gowalla file's times are), or its millisecond when the time has one, so
// that two rows of a user at a location within one second are two
// checkins, not one answered 409 for the other.
func TestReplayIDsOfSubSecondTimes(t *testing.T) {
	a := row{User: "u", Loc: "l", Time: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := a
	b.Time = b.Time.Add(250 * time.Millisecond)
	if got := a.checkinID(); got != "gw-u-1262304000-l" {
		t.Errorf("id of a whole second: %s", got)
	}
	if got := b.checkinID(); got != "gw-u-1262304000250-l" {
		t.Errorf("id of a time within a second: %s", got)
	}
}

// TestConfigRejectsNonFiniteNumbers: NaN or an infinity passes every "<",
// "<=" and "== 0" check; --zipf.s=NaN (or Inf, and so --zipf.v) made
// math/rand's Zipf loop for ever in the first pick, so the run never
// ended, and --rate=NaN ran the closed model without a word.
func TestConfigRejectsNonFiniteNumbers(t *testing.T) {
	for _, args := range [][]string{
		{"--popularity=zipf", "--zipf.s=NaN"},
		{"--popularity=zipf", "--zipf.s=+Inf"},
		{"--popularity=zipf", "--zipf.v=NaN"},
		{"--popularity=zipf", "--zipf.v=Inf"},
		{"--rate=NaN"},
		{"--rate=Inf"},
		{"--replay=f", "--replay-speed=NaN"},
		{"--replay=f", "--replay-speed=Inf"},
		{"--mix.checkin=NaN"},
		{"--mix.location=Inf"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, err := parseConfig(args, func(string) string { return "" }, &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), "finite") {
				t.Fatalf("error %v, want one saying the number must be finite", err)
			}
		})
	}
}

// TestOpenScheduleOfASlowReplay: a replay slower than real time puts a
// row of the next year past what a time.Duration holds; the due time
// must saturate (the row is due after --duration, so not sent), not wrap
// to a time long past that is sent at once and counted expired.
func TestOpenScheduleOfASlowReplay(t *testing.T) {
	srv, posts := countingServer(t, http.StatusCreated)
	cfg := defaultConfig()
	cfg.Targets, cfg.Concurrency, cfg.Progress = srv.URL, 1, false
	cfg.Replay, cfg.ReplaySpeed = "f", 0.001
	r := testRunner(t, cfg, time.Second)
	r.syn = nil
	t0 := time.Date(2009, 4, 23, 22, 37, 0, 0, time.UTC)
	rep, err := prepareReplay([]row{
		{User: "1", Loc: "2", Time: t0, Line: 1},
		{User: "1", Loc: "3", Time: t0.Add(547 * 24 * time.Hour), Line: 2}, // due in 1,500 years
	}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	r.rep = rep
	rng := rand.New(rand.NewPCG(1, 1))
	r.workers = []*worker{{rng: rng, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}}
	open, elapsed := r.phase(context.Background(), "run", newRecorder(1), 200*time.Millisecond, 0)
	if open.Intended != 1 || open.Expired != 0 || posts.Load() != 1 {
		t.Fatalf("intended %d, expired %d, sent %d: want the first row alone", open.Intended, open.Expired, posts.Load())
	}
	// The run lasts its duration, although nothing was due after the
	// first row: its rates are over the time it offered load.
	if elapsed < 200*time.Millisecond {
		t.Errorf("the run ended after %v, before its 200 ms", elapsed)
	}
}

// TestOpenRetriesEndWithTheRun: as in the closed model, no attempt is
// sent again once --duration is over; the open model went on retrying
// the requests in flight at its end, up to --retries times --timeout
// past it against a node that stopped answering. A microsecond's
// schedule holds one request, and no answer comes within it.
func TestOpenRetriesEndWithTheRun(t *testing.T) {
	srv, attempts := countingServer(t, http.StatusServiceUnavailable)
	cfg := defaultConfig()
	cfg.Targets, cfg.Concurrency, cfg.Rate, cfg.Progress = srv.URL, 1, 1, false
	cfg.Users, cfg.Locations, cfg.MixCheckin, cfg.MixLocation = 1, 1, 0, 1
	cfg.Retries, cfg.RetryMaxWait = 3, 0
	r := testRunner(t, cfg, time.Second)
	rng := rand.New(rand.NewPCG(1, 1))
	r.workers = []*worker{{rng: rng, users: uniformPicker{rng, 1}, locs: uniformPicker{rng, 1}, req: &fasthttp.Request{}, resp: &fasthttp.Response{}}}
	rec := newRecorder(1)
	open, elapsed := r.phase(context.Background(), "run", rec, time.Microsecond, 0)
	rep := &Report{}
	rep.fill(cfg, rec, elapsed, open)
	if open.Intended != 1 || rep.Requests != 1 || attempts.Load() != 1 || rep.Retries != 0 || rep.ErrorKinds["503"] != 1 {
		t.Fatalf("intended %d, requests %d, attempts %d, retries %d, errors %v: want one attempt, its 503 the outcome",
			open.Intended, rep.Requests, attempts.Load(), rep.Retries, rep.ErrorKinds)
	}
}

// countingServer answers every request with status and counts them.
func countingServer(t *testing.T, status int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// What --verify expects of a deleted checkin, by the delete's last answer:
// gone, still there, or not checked (the outcome is unknown).
func TestDeletedOutcome(t *testing.T) {
	tests := []struct {
		name           string
		status         int
		kind           string
		mayHaveApplied bool
		want           string // gone, kept, unknown
		wantKind       string
	}{
		{"204", 204, "", false, "gone", ""},
		{"404 after an attempt that may have deleted it", 404, "404:checkin_not_found", true, "gone", ""},
		{"404 at the first attempt", 404, "404:checkin_not_found", false, "kept", "404:checkin_not_found"},
		{"400", 400, "400:bad_request", false, "kept", "400:bad_request"},
		{"no answer", 0, "timeout", false, "unknown", "timeout"},
		{"503 after retries", 503, "503:overloaded", true, "unknown", "503:overloaded"},
		{"504", 504, "504:timeout", false, "unknown", "504:timeout"},
		{"500: the server's defect, applied or not", 500, "500:internal", false, "unknown", "500:internal"},
		{"502 from a proxy", 502, "502:http", false, "unknown", "502:http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &runner{cfg: defaultConfig()}
			r.cfg.Verify = true
			w := &worker{}
			del := ack{User: "u", ID: "c"}
			if kind := r.deleted(w, del, tt.status, tt.kind, tt.mayHaveApplied); kind != tt.wantKind {
				t.Errorf("error kind %q, want %q", kind, tt.wantKind)
			}
			got := "kept"
			switch {
			case len(w.gone) == 1 && len(w.uncertain) == 0:
				got = "gone"
			case len(w.uncertain) == 1 && len(w.gone) == 0:
				got = "unknown"
			case len(w.gone)+len(w.uncertain) > 0:
				t.Fatalf("noted as gone %v and uncertain %v", w.gone, w.uncertain)
			}
			if got != tt.want {
				t.Errorf("verify takes the checkin as %s, want %s", got, tt.want)
			}
		})
	}
}

// An interrupted run says what it did not do: the report of what was sent
// is written, and with --verify the error says nothing was verified (the
// exit status is 1, not 0 and not 3).
func TestInterruptedRunSaysVerifyDidNotRun(t *testing.T) {
	srv, posts := countingServer(t, http.StatusCreated)
	cfg := defaultConfig()
	cfg.Targets, cfg.Concurrency, cfg.Progress, cfg.Setup = srv.URL, 2, false, false
	cfg.Duration, cfg.Verify = time.Minute, true
	cfg.MixCheckin, cfg.MixLocation, cfg.MixRange, cfg.MixRangeLocation = 1, 0, 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for posts.Load() < 10 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	var stdout bytes.Buffer
	rep, err := run(ctx, cfg, &stdout, io.Discard)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "nothing was verified") || errors.Is(err, errLost) {
		t.Fatalf("run interrupted with --verify: %v, want an interruption that says nothing was verified", err)
	}
	if rep == nil || rep.Requests == 0 || stdout.Len() == 0 {
		t.Errorf("an interrupted run wrote no report of what it sent: %+v, %q", rep, stdout.String())
	}
}
