package main

// Harness of the end-to-end test: builds the real binary once, starts it as
// a subprocess on free ports, talks to it over real HTTP and stops it with
// SIGTERM. Nothing here imports the server's packages: expectations are
// computed independently from the HTTP contract.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence/scylla/scyllatest"
)

const (
	// startTimeout runs from exec to "http server listening". A node on a
	// new keyspace applies the schema first: a dozen schema changes, which
	// the CQL node makes one at a time, behind those of the tests that
	// create and drop their keyspaces meanwhile, on a machine it shares
	// with them: 2.5 s on a lightly loaded machine, and a busy one needs
	// room for many times that.
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second // from SIGTERM to exit
	tsLayout     = "2006-01-02T15:04:05.000Z"
)

// checkinBin is the binary under test, built once by TestMain.
var checkinBin string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "checkin-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	checkinBin = filepath.Join(dir, "checkin")
	build := exec.Command("go", "build", "-o", checkinBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build of the checkin binary failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// testStore is the backend the nodes under test use: CHECKIN_TEST_STORE,
// pebble when unset.
func testStore() string {
	if s := os.Getenv("CHECKIN_TEST_STORE"); s != "" {
		return s
	}
	return "pebble"
}

// storeFlags returns the flags that give a node its own empty data set.
// Call it once per data set and pass the same flags to every node that must
// see the same data (a restart).
func storeFlags(t *testing.T) []string {
	t.Helper()
	switch s := testStore(); s {
	case "pebble":
		return []string{"--data.dir=" + t.TempDir()}
	case "scylla":
		hosts := os.Getenv("CHECKIN_TEST_CQL_HOSTS")
		if hosts == "" {
			t.Fatal("CHECKIN_TEST_STORE=scylla needs CHECKIN_TEST_CQL_HOSTS (host:port,…)")
		}
		return []string{"--store=scylla", "--scylla.hosts=" + hosts, "--scylla.keyspace=" + newKeyspace(t, hosts)}
	default:
		t.Fatalf("CHECKIN_TEST_STORE=%q: want pebble or scylla", s)
		return nil
	}
}

var keyspaceJunk = regexp.MustCompile(`[^a-z0-9_]+`)

// newKeyspace returns a keyspace name of t's own (testKeyspace) on the CQL
// node at hosts, dropped when t ends.
func newKeyspace(t *testing.T, hosts string) string {
	t.Helper()
	ks := testKeyspace(t.Name())
	scyllatest.DropKeyspaceAtCleanup(t, hosts, ks)
	return ks
}

// testKeyspace returns a keyspace name unique to one test: lowercase
// letters, digits and '_', starting with a letter, at most 48 characters.
func testKeyspace(testName string) string {
	const maxLen = 48
	suffix := "_" + randHex(4) // 9 characters
	name := keyspaceJunk.ReplaceAllString(strings.ToLower(testName), "_")
	name = "e2e_" + strings.Trim(name, "_")
	if len(name) > maxLen-len(suffix) {
		name = name[:maxLen-len(suffix)]
	}
	return name + suffix
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ids unique within this test run; a node's data set is fresh per test, so
// uniqueness across runs only matters for a shared Scylla cluster.
var (
	runTag = randHex(3)
	idSeq  atomic.Int64
)

func uniqueID(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, runTag, idSeq.Add(1))
}

// cleanEnv is the test's environment without CHECKIN_ variables, so a
// developer's settings do not leak into the node under test.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHECKIN_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// procLog keeps everything a node writes and spots the line announcing its
// HTTP address.
type procLog struct {
	mu        sync.Mutex
	all       bytes.Buffer
	partial   []byte
	listening chan string // receives the HTTP address once
	announced bool
}

type logLine struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
	Addr   string `json:"addr"`
	// Address is the cluster endpoint in "cluster member started", and
	// MemberID the actor system's id.
	Address  string `json:"address"`
	MemberID string `json:"member_id"`
}

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		var rec logLine
		if json.Unmarshal(l.partial[:i], &rec) == nil && rec.Msg == "http server listening" && !l.announced {
			l.announced = true
			l.listening <- rec.Addr
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// lines returns the JSON log lines (others are skipped).
func (l *procLog) lines() []logLine {
	var out []logLine
	for _, s := range strings.Split(l.String(), "\n") {
		var rec logLine
		if json.Unmarshal([]byte(s), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func (l *procLog) has(msg string) bool {
	return slices.ContainsFunc(l.lines(), func(r logLine) bool { return r.Msg == msg })
}

// waitFor reports whether msg is logged within 10 s. A line the node wrote
// before it answered a request can reach l after the answer: the process's
// output is copied in by another goroutine.
func (l *procLog) waitFor(msg string) bool {
	for deadline := time.Now().Add(10 * time.Second); !l.has(msg); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// proc is one running checkin binary.
type proc struct {
	cmd     *exec.Cmd
	log     *procLog
	base    string // http://host:port
	hc      *http.Client
	bearer  string        // sent as "Authorization: Bearer <bearer>" when not empty
	done    chan struct{} // closed when the process has exited
	stopped bool
	// allowErrorLogs: the test provokes error logs on purpose.
	allowErrorLogs bool
	// allowErrorsFrom: error logs of this logger are expected (the actor
	// runtime's, when a test kills a member of the cluster).
	allowErrorsFrom string
}

// startProc starts the binary with the flags every test node uses plus
// flags (store flags and per-test settings) and waits until it listens.
// On test end it is stopped (if the test did not) and, if the test failed,
// its log is printed.
func startProc(t *testing.T, flags ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, flags...)
}

// startProcEnv is startProc with env added to the node's environment.
func startProcEnv(t *testing.T, env []string, flags ...string) *proc {
	t.Helper()
	p := launchProc(t, env, flags...)
	select {
	case addr := <-p.log.listening:
		p.base = "http://" + addr
	case <-p.done:
		p.stopped = true
		t.Fatalf("checkin exited before listening (exit code %d)", p.cmd.ProcessState.ExitCode())
	case <-time.After(startTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.stopped = true
		t.Fatalf("checkin did not log \"http server listening\" within %s; killed", startTimeout)
	}
	p.hc = &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
	return p
}

// launchProc starts the binary with the flags every test node uses plus
// flags, env added to its environment, and returns at once. On test end it
// is stopped (if the test did not) and, if the test failed, its log is
// printed.
func launchProc(t *testing.T, env []string, flags ...string) *proc {
	t.Helper()
	args := append([]string{"--http.addr=127.0.0.1:0", "--cluster.addr=127.0.0.1:0", "--http.access-log=false"}, flags...)
	p := &proc{log: &procLog{listening: make(chan string, 1)}, done: make(chan struct{})}
	p.cmd = exec.Command(checkinBin, args...)
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", checkinBin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("log of checkin %s:\n%s", strings.Join(args, " "), p.log)
		}
	})
	return p
}

// stop sends SIGTERM, waits for the exit and checks it was clean: exit code
// 0, "shutdown complete" logged, no error logged.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.hc != nil {
		p.hc.CloseIdleConnections()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("checkin did not exit within %s of SIGTERM; killed", stopTimeout)
		return
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("checkin exited with code %d after SIGTERM, want 0", code)
	}
	if !p.log.has("shutdown complete") {
		t.Errorf("checkin did not log \"shutdown complete\"")
	}
	if !p.allowErrorLogs {
		for _, l := range p.log.lines() {
			if l.Level == "error" && p.allowErrorsFrom != "" && l.Logger == p.allowErrorsFrom {
				continue
			}
			if l.Level == "error" || l.Level == "dpanic" || l.Level == "panic" || l.Level == "fatal" {
				t.Errorf("checkin logged at level %s: %q", l.Level, l.Msg)
			}
		}
	}
}

// kill ends the process with SIGKILL (a crash) and waits for it to exit.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Kill()
	<-p.done
	if p.hc != nil {
		p.hc.CloseIdleConnections()
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(string(p.do(t, "GET", "/metrics", nil).body))
	if m == nil {
		t.Fatalf("/metrics lacks %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("/metrics: %s %q: %v", name, m[1], err)
	}
	return v
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
	close  bool // the server asked to close the connection (Connection: close)
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// try sends one request; body is nil, a string or []byte (sent as is) or
// anything else (sent as JSON). Safe for concurrent use.
func (p *proc) try(ctx context.Context, method, path string, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+p.bearer)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	buf, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: buf, close: resp.Close}, nil
}

// do is try that fails the test on a transport error.
func (p *proc) do(t *testing.T, method, path string, body any) response {
	t.Helper()
	r, err := p.try(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// hup sends the node SIGHUP and waits until it logs wantMsg.
func (p *proc) hup(t *testing.T, wantMsg string) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !p.log.waitFor(wantMsg) {
		t.Fatalf("no %q logged within 10s of SIGHUP", wantMsg)
	}
}

// wantCertExpiry checks that /metrics gives the expiry of the certificate
// now in file as that of the node's certificate for use.
func (p *proc) wantCertExpiry(t *testing.T, use, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	name := `checkin_tls_certificate_expiry_timestamp_seconds{cert="` + use + `"}`
	if got := p.metric(t, name); got != float64(cert.NotAfter.Unix()) {
		t.Errorf("%s = %v, want the expiry of the certificate in %s, %d", name, got, file, cert.NotAfter.Unix())
	}
}

// API shapes, as the contract states them.
type (
	apiUser struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		CreatedAt string `json:"created_at"`
	}
	apiLocation struct {
		ID        string  `json:"id"`
		Name      string  `json:"name"`
		Lat       float64 `json:"lat"`
		Lon       float64 `json:"lon"`
		CreatedAt string  `json:"created_at"`
	}
	apiCheckin struct {
		ID         string `json:"id"`
		UserID     string `json:"user_id"`
		LocationID string `json:"location_id"`
		Timestamp  string `json:"timestamp"`
	}
	apiCurrent struct {
		UserID     string      `json:"user_id"`
		LocationID string      `json:"location_id"`
		Timestamp  string      `json:"timestamp"`
		CheckinID  string      `json:"checkin_id"`
		Location   apiLocation `json:"location"`
	}
	apiPage struct {
		Checkins   []apiCheckin `json:"checkins"`
		NextCursor *string      `json:"next_cursor"`
	}
)

// decodeOK checks status and that the body is a JSON object with every key
// in keys, and decodes it into a T.
func decodeOK[T any](t *testing.T, r response, status int, keys ...string) T {
	t.Helper()
	var v T
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &obj); err != nil {
		t.Fatalf("body is not a JSON object: %v; body %s", err, r.body)
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("body lacks key %q: %s", k, r.body)
		}
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T: %v; body %s", v, err, r.body)
	}
	return v
}

var snakeCode = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// wantError checks r is the JSON error {"error":{"code","message"}} with
// the status and (unless empty) the code; it returns the message.
func wantError(t *testing.T, r response, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (code %q); body %s", r.status, status, code, r.body)
		return ""
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil {
		t.Errorf("body is not {\"error\":{\"code\",\"message\"}}: %v; body %s", err, r.body)
		return ""
	}
	if !snakeCode.MatchString(e.Error.Code) {
		t.Errorf("code %q is not snake_case", e.Error.Code)
	}
	if code != "" && e.Error.Code != code {
		t.Errorf("code %q, want %q; body %s", e.Error.Code, code, r.body)
	}
	if strings.TrimSpace(e.Error.Message) == "" {
		t.Errorf("empty error message; body %s", r.body)
	}
	return e.Error.Message
}

var tsFormat = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// parseTS parses a timestamp the API returned, checking it is UTC with
// exactly millisecond precision.
func parseTS(t *testing.T, s string) time.Time {
	t.Helper()
	if !tsFormat.MatchString(s) {
		t.Errorf("timestamp %q is not UTC with millisecond precision (want like 2024-05-01T12:00:00.123Z)", s)
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	return ts
}

// wantRecent checks that a server-made timestamp lies in [before, after]
// (with a little slack), i.e. is "now" as the server saw it.
func wantRecent(t *testing.T, what, s string, before, after time.Time) {
	t.Helper()
	ts := parseTS(t, s)
	const slack = 2 * time.Second
	if ts.Before(before.Add(-slack)) || ts.After(after.Add(slack)) {
		t.Errorf("%s %s is not the server's now (request between %s and %s)", what, s, before.UTC().Format(tsLayout), after.UTC().Format(tsLayout))
	}
}

// fmtTS formats t as the API returns it.
func fmtTS(ts time.Time) string { return ts.UTC().Format(tsLayout) }

// ms truncates to the API's precision.
func ms(ts time.Time) time.Time { return ts.UTC().Truncate(time.Millisecond) }

// Fixtures. Each fails the test unless the server answers as the contract says.

func (p *proc) mkUser(t *testing.T, prefix string) string {
	t.Helper()
	id := uniqueID(prefix)
	u := decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "user " + id}), http.StatusCreated)
	if u.ID != id {
		t.Fatalf("created user %q, want %q", u.ID, id)
	}
	return id
}

func (p *proc) mkLocation(t *testing.T, prefix string) apiLocation {
	t.Helper()
	id := uniqueID(prefix)
	l := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": id, "name": "place " + id, "lat": 48.1, "lon": 11.5}), http.StatusCreated)
	if l.ID != id {
		t.Fatalf("created location %q, want %q", l.ID, id)
	}
	return l
}

// ck is the test's own record of a checkin.
type ck struct {
	ID, Loc string
	TS      time.Time // UTC, millisecond precision
}

func (c ck) body() map[string]any {
	return map[string]any{"id": c.ID, "location_id": c.Loc, "timestamp": c.TS.Format(time.RFC3339Nano)}
}

// mkCheckin posts c for user and checks the 201 answer echoes it.
func (p *proc) mkCheckin(t *testing.T, user string, c ck) {
	t.Helper()
	got := decodeOK[apiCheckin](t, p.do(t, "POST", "/v1/users/"+user+"/checkins", c.body()), http.StatusCreated)
	want := apiCheckin{ID: c.ID, UserID: user, LocationID: c.Loc, Timestamp: fmtTS(c.TS)}
	if got != want {
		t.Fatalf("checkin answer %+v, want %+v", got, want)
	}
}

// mkCheckins posts all of cs concurrently (8 at a time).
func (p *proc) mkCheckins(t *testing.T, user string, cs []ck) {
	t.Helper()
	errs := make([]error, len(cs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := p.try(context.Background(), "POST", "/v1/users/"+user+"/checkins", c.body())
			if err == nil && r.status != http.StatusCreated {
				err = fmt.Errorf("status %d, want 201: %s", r.status, r.body)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("checkin %s: %v", cs[i].ID, err)
		}
	}
}

// newestFirst sorts the way the API promises: newest first by timestamp,
// ties by checkin id ascending. Oldest first is the exact reverse.
func newestFirst(cs []ck) []ck {
	out := slices.Clone(cs)
	slices.SortFunc(out, func(a, b ck) int {
		if c := b.TS.Compare(a.TS); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// latest is the current location the API promises: the latest timestamp,
// ties broken by the larger checkin id.
func latest(cs []ck) ck {
	best := cs[0]
	for _, c := range cs[1:] {
		if c.TS.After(best.TS) || c.TS.Equal(best.TS) && c.ID > best.ID {
			best = c
		}
	}
	return best
}

// query selects a subset of a user's checkins, as the list endpoint does.
type query struct {
	from, to time.Time // zero: unbounded
	loc      string
	oldest   bool
}

func (q query) values() url.Values {
	v := url.Values{}
	if !q.from.IsZero() {
		v.Set("from", q.from.Format(time.RFC3339Nano))
	}
	if !q.to.IsZero() {
		v.Set("to", q.to.Format(time.RFC3339Nano))
	}
	if q.loc != "" {
		v.Set("location_id", q.loc)
	}
	if q.oldest {
		v.Set("order", "oldest")
	}
	return v
}

// expect computes the answer to q over cs independently of the server.
func (q query) expect(cs []ck) []ck {
	var out []ck
	for _, c := range newestFirst(cs) {
		if (q.from.IsZero() || !c.TS.Before(q.from)) && (q.to.IsZero() || c.TS.Before(q.to)) && (q.loc == "" || c.Loc == q.loc) {
			out = append(out, c)
		}
	}
	if q.oldest {
		slices.Reverse(out)
	}
	return out
}

// listPage fetches one page; it checks the page shape.
func (p *proc) listPage(t *testing.T, user string, v url.Values) apiPage {
	t.Helper()
	r := p.do(t, "GET", "/v1/users/"+user+"/checkins?"+v.Encode(), nil)
	pg := decodeOK[apiPage](t, r, http.StatusOK, "checkins", "next_cursor")
	if pg.Checkins == nil {
		t.Errorf("checkins is null, want a (possibly empty) array: %s", r.body)
	}
	return pg
}

// listAll follows next_cursor to the end with pages of limit; after each
// page it calls between (if not nil) with the page.
func (p *proc) listAll(t *testing.T, user string, v url.Values, limit int, between func(apiPage)) []apiCheckin {
	t.Helper()
	v = cloneValues(v)
	v.Set("limit", fmt.Sprint(limit))
	var out []apiCheckin
	for pages := 0; ; pages++ {
		if pages > 10000/limit+50 {
			t.Fatalf("paging does not end after %d pages", pages)
		}
		pg := p.listPage(t, user, v)
		if len(pg.Checkins) > limit {
			t.Fatalf("page of %d checkins, limit %d", len(pg.Checkins), limit)
		}
		out = append(out, pg.Checkins...)
		if between != nil {
			between(pg)
		}
		if pg.NextCursor == nil {
			return out
		}
		if len(pg.Checkins) == 0 {
			t.Fatalf("empty page with a next_cursor: no progress")
		}
		v.Set("cursor", *pg.NextCursor)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// wantCheckins compares what the server listed with the expectation,
// element by element, reporting the first difference.
func wantCheckins(t *testing.T, user string, got []apiCheckin, want []ck) {
	t.Helper()
	seen := map[string]int{}
	for _, g := range got {
		seen[g.ID]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("checkin %s listed %d times", id, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d checkins, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		w := apiCheckin{ID: want[i].ID, UserID: user, LocationID: want[i].Loc, Timestamp: fmtTS(want[i].TS)}
		if got[i] != w {
			t.Errorf("checkin #%d is %+v, want %+v", i, got[i], w)
			return
		}
	}
	if len(got) != len(want) {
		wantIDs := make(map[string]bool, len(want))
		for _, w := range want {
			wantIDs[w.ID] = true
			if seen[w.ID] == 0 {
				t.Errorf("missing %s at %s", w.ID, fmtTS(w.TS))
			}
		}
		for _, g := range got {
			if !wantIDs[g.ID] {
				t.Errorf("unexpected %s at %s", g.ID, g.Timestamp)
			}
		}
	}
}

// checkCurrent checks the current location of user is c at loc.
func (p *proc) checkCurrent(t *testing.T, user string, c ck, loc apiLocation) apiCurrent {
	t.Helper()
	got := decodeOK[apiCurrent](t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusOK,
		"user_id", "location_id", "timestamp", "checkin_id", "location")
	want := apiCurrent{UserID: user, LocationID: c.Loc, Timestamp: fmtTS(c.TS), CheckinID: c.ID, Location: loc}
	if got != want {
		t.Errorf("current location\n got %+v\nwant %+v", got, want)
	}
	return got
}

// writeLog records the checkins posted while a node stops or dies, each
// with whether it was acknowledged (a 201, or a 200 for a retry the node
// recognised): what a client may count on afterwards.
type writeLog struct {
	mu    sync.Mutex
	sent  map[string]sentCheckin // by checkin id
	acked atomic.Int64
}

type sentCheckin struct {
	user  string
	c     ck
	acked bool
}

func newWriteLog() *writeLog { return &writeLog{sent: map[string]sentCheckin{}} }

func (l *writeLog) add(user string, c ck, acked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[c.ID] = sentCheckin{user, c, acked}
	if acked {
		l.acked.Add(1)
	}
}

// attempts returns how many checkins were posted.
func (l *writeLog) attempts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

// writeUntil posts checkins from workers goroutines until quit is closed,
// each the next of next(i) (i counts each worker's posts, starting at the
// worker's number and stepping by workers), and records them; wait returns
// when every post has its answer.
func (l *writeLog) writeUntil(quit <-chan struct{}, workers int, next func(i int) (p *proc, user string, c ck)) (wait func()) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i += workers {
				select {
				case <-quit:
					return
				default:
				}
				p, user, c := next(i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := p.try(ctx, "POST", "/v1/users/"+user+"/checkins", c.body())
				cancel()
				ok := err == nil && (r.status == http.StatusCreated || r.status == http.StatusOK)
				l.add(user, c, ok)
				if !ok {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return wg.Wait
}

// check compares got, user's whole listing, with what was posted: every
// listed checkin was posted for that user, as it was posted, newest first,
// and every acknowledged one of the user is listed (one that was not may
// or may not be). It returns the listed ones.
func (l *writeLog) check(t *testing.T, user string, got []apiCheckin) []ck {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	listed := map[string]bool{}
	var have []ck
	for _, g := range got {
		s, ok := l.sent[g.ID]
		if !ok || s.user != user {
			t.Errorf("user %s lists a checkin nobody posted for that user: %+v", user, g)
			continue
		}
		have, listed[g.ID] = append(have, s.c), true
	}
	wantCheckins(t, user, got, query{}.expect(have))
	for id, s := range l.sent {
		if s.user == user && s.acked && !listed[id] {
			t.Errorf("acknowledged checkin %s of %s at %s is lost", id, user, fmtTS(s.c.TS))
		}
	}
	return have
}
