package edge

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/pebble"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp keeps one process-wide goroutine updating the Date header,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// and a stopped worker pool's cleaner sleeps up to 10s before it
		// sees the stop; neither holds a connection or our state.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// fakeGrains is a Grains whose methods do what their funcs say; a nil
// fakeGrains or a nil func answers as a healthy grain would without
// storing anything.
type fakeGrains struct {
	createUser func(ctx context.Context, u persistence.User) (persistence.User, error)
	checkin    func(ctx context.Context, c persistence.Checkin) (persistence.Checkin, bool, error)
	current    func(ctx context.Context, userID string) (persistence.Checkin, error)
}

var _ Grains = (*fakeGrains)(nil)

func (f *fakeGrains) DeleteUser(ctx context.Context, id string) error { return nil }

func (f *fakeGrains) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	return persistence.Checkin{ID: checkinID, UserID: userID}, nil
}

func (f *fakeGrains) CreateUser(ctx context.Context, u persistence.User) (persistence.User, error) {
	if f == nil || f.createUser == nil {
		return u, nil
	}
	return f.createUser(ctx, u)
}

func (f *fakeGrains) Checkin(ctx context.Context, c persistence.Checkin, _, _ bool) (persistence.Checkin, bool, error) {
	if f == nil || f.checkin == nil {
		return c, true, nil
	}
	return f.checkin(ctx, c)
}

func (f *fakeGrains) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	if f == nil || f.current == nil {
		return persistence.Checkin{}, &actors.Error{Kind: actors.ErrNotFound, Code: actors.CodeNoCheckins, Message: "user " + userID + " has no checkins"}
	}
	return f.current(ctx, userID)
}

// testServer is a Server on a real pebble store in a temp dir, with logs
// kept for inspection.
type testServer struct {
	*Server
	store  *pebble.Store
	logs   *observer.ObservedLogs
	served bool
}

func newTestServer(t *testing.T, g *fakeGrains, configure func(*Config)) *testServer {
	t.Helper()
	return newTestServerWithKeys(t, g, configure, nil)
}

// newTestServerWithKeys is newTestServer requiring keys on /v1.
func newTestServerWithKeys(t *testing.T, g *fakeGrains, configure func(*Config), keys *APIKeys) *testServer {
	t.Helper()
	return newTestServerWithDeps(t, g, configure, func(d *Deps) { d.APIKeys = keys })
}

// newTestServerWithDeps is newTestServer with its dependencies changed by
// deps (which may wrap the store).
func newTestServerWithDeps(t *testing.T, g *fakeGrains, configure func(*Config), deps func(*Deps)) *testServer {
	t.Helper()
	st, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AccessLog = false
	cfg.CacheSizeMB = 1
	if configure != nil {
		configure(&cfg)
	}
	d := Deps{
		Grains:   g,
		Store:    st,
		Ready:    func(context.Context) error { return nil },
		Log:      zap.New(core),
		Registry: reg,
	}
	if deps != nil {
		deps(&d)
	}
	s, err := New(cfg, d)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	ts := &testServer{Server: s, store: st, logs: logs}
	t.Cleanup(func() {
		if !ts.served {
			_ = ts.records.close() // Shutdown does this for a served one
		}
	})
	return ts
}

// serve starts ts on a free loopback port and returns its base URL; the
// server is shut down when the test ends.
func (ts *testServer) serve(t *testing.T) string {
	t.Helper()
	return "http://" + ts.serveWith(t, ts.Serve)
}

// serveWith is serve with serve (Serve, or ServeTLS with a config); it
// returns the address.
func (ts *testServer) serveWith(t *testing.T, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts.served = true
	served := make(chan error, 1)
	go func() { served <- serve(ln) }()
	t.Cleanup(func() {
		if err := ts.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ln.Addr().String()
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errBody decodes an error response body, failing the test if it is not one.
func (r response) errBody(t *testing.T) ErrorBody {
	t.Helper()
	var b ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("body %q is not an error body (%v)", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return b
}

func do(t *testing.T, c *http.Client, method, url string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, c, req)
}

// send sends req and reads the whole response.
func send(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// TestHTTPGrainErrors drives real HTTP requests whose grain call fails in
// each way a grain call can fail, and checks status, code, headers, that
// 5xx details are logged and never echoed, and that panics are recovered.
func TestHTTPGrainErrors(t *testing.T) {
	const secret = "dial tcp 10.0.0.7:9042: password=hunter2"
	var (
		mu        sync.Mutex // the handler reads what the test sets
		fail      error
		panicking bool
	)
	set := func(err error, p bool) {
		mu.Lock()
		defer mu.Unlock()
		fail, panicking = err, p
	}
	g := &fakeGrains{createUser: func(context.Context, persistence.User) (persistence.User, error) {
		mu.Lock()
		err, p := fail, panicking
		mu.Unlock()
		if p {
			panic("grain exploded: " + secret)
		}
		return persistence.User{}, err
	}}
	ts := newTestServer(t, g, nil)
	base := ts.serve(t)
	c := newClient(t)

	tests := []struct {
		name       string
		err        error
		panic      bool
		status     int
		code       string
		msg        string // exact message, when set
		retryAfter bool
		logged     string // message of the log line, when a 5xx must be logged
		warn       bool   // logged as a warning (a refusal), not an error
	}{
		{name: "wrapped unknown error", err: fmt.Errorf("create user: %w", errors.New(secret)),
			status: 500, code: "internal", msg: "internal error", logged: "request failed"},
		{name: "panic", panic: true,
			status: 500, code: "internal", msg: "internal error", logged: "panic serving request"},
		{name: "grain overloaded", err: &actors.Error{Kind: actors.ErrOverloaded, Code: actors.CodeOverloaded, Message: "too many"},
			status: 503, code: "overloaded", msg: "too many", retryAfter: true, logged: "request failed", warn: true},
		{name: "grain unavailable wrapped", err: fmt.Errorf("call: %w", &actors.Error{Kind: actors.ErrUnavailable, Code: actors.CodeUnavailable, Message: "no answer"}),
			status: 503, code: "unavailable", msg: "no answer", retryAfter: true, logged: "request failed", warn: true},
		{name: "grain timeout", err: &actors.Error{Kind: actors.ErrTimeout, Code: actors.CodeTimeout, Message: "slow"},
			status: 504, code: "timeout", msg: "slow", logged: "request failed", warn: true},
		{name: "context deadline", err: fmt.Errorf("grain: %w", context.DeadlineExceeded),
			status: 504, code: "timeout", logged: "request failed", warn: true},
		{name: "user exists", err: &actors.Error{Kind: actors.ErrConflict, Code: actors.CodeUserExists, Message: "user alice already exists"},
			status: 409, code: "user_exists", msg: "user alice already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set(tt.err, tt.panic)
			before := ts.logs.Len()
			res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"id":"alice","name":"Alice"}`))
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.status, res.body)
			}
			b := res.errBody(t)
			if b.Error.Code != tt.code {
				t.Errorf("code = %q, want %q", b.Error.Code, tt.code)
			}
			if tt.msg != "" && b.Error.Message != tt.msg {
				t.Errorf("message = %q, want %q", b.Error.Message, tt.msg)
			}
			if bytes.Contains(res.body, []byte("hunter2")) {
				t.Errorf("body leaks the error: %s", res.body)
			}
			if got := res.header.Get("Retry-After"); (got != "") != tt.retryAfter {
				t.Errorf("Retry-After = %q, want present: %v", got, tt.retryAfter)
			}
			rid := res.header.Get("X-Request-ID")
			if rid == "" {
				t.Error("no X-Request-ID header")
			}
			var lines []observer.LoggedEntry
			for _, e := range ts.logs.All()[before:] {
				if e.Level >= zap.WarnLevel {
					lines = append(lines, e)
				}
			}
			wantLevel := zap.ErrorLevel
			if tt.warn {
				wantLevel = zap.WarnLevel
			}
			if tt.logged == "" {
				if len(lines) != 0 {
					t.Errorf("a %d logged an error: %v", tt.status, lines)
				}
				return
			}
			found := false
			for _, e := range lines {
				if e.Message == tt.logged && e.ContextMap()["request_id"] == rid && e.Level == wantLevel {
					found = true
				}
			}
			if !found {
				t.Errorf("no %q log at level %s with request_id %q; got %v", tt.logged, wantLevel, rid, lines)
			}
		})
	}

	t.Run("still serving after the panic", func(t *testing.T) {
		set(nil, false)
		if res := do(t, c, http.MethodGet, base+"/healthz", nil); res.status != http.StatusOK {
			t.Fatalf("healthz: %d %s", res.status, res.body)
		}
		res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"id":"bob","name":"Bob"}`))
		if res.status != http.StatusCreated {
			t.Fatalf("create user: %d %s", res.status, res.body)
		}
		if n := ts.inflight.Load(); n != 0 {
			t.Errorf("inflight = %d after all requests finished, want 0", n)
		}
	})

	t.Run("panicked request counted in metrics", func(t *testing.T) {
		var m dto.Metric
		if err := ts.m.requests.WithLabelValues("/v1/users", http.MethodPost, "500").Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != 2 { // the wrapped unknown error and the panic
			t.Errorf("checkin_http_requests_total{route=/v1/users,status=500} = %v, want 2", got)
		}
	})
}

func TestHTTPBodyLimit(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) { c.BodyLimit = 1024 })
	base := ts.serve(t)
	c := newClient(t)

	tests := []struct {
		name   string
		size   int
		status int
		code   string
	}{
		{name: "at the limit", size: 1024, status: http.StatusCreated},
		{name: "one byte over", size: 1025, status: http.StatusRequestEntityTooLarge, code: "body_too_large"},
		{name: "twice the limit", size: 2048, status: http.StatusRequestEntityTooLarge, code: "body_too_large"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"id":"u%d","name":"x"}`, i)
			body += strings.Repeat(" ", tt.size-len(body)) // trailing white space is valid JSON
			res := do(t, c, http.MethodPost, base+"/v1/users", []byte(body))
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.status, res.body)
			}
			if tt.code == "" {
				return
			}
			if b := res.errBody(t); b.Error.Code != tt.code {
				t.Errorf("code = %q, want %q", b.Error.Code, tt.code)
			}
		})
	}
	if res := do(t, c, http.MethodGet, base+"/healthz", nil); res.status != http.StatusOK {
		t.Fatalf("healthz after 413: %d %s", res.status, res.body)
	}
	// A 413 is answered by the HTTP server before any middleware: it still
	// carries a request id, and is counted.
	res := do(t, c, http.MethodPost, base+"/v1/users", bytes.Repeat([]byte(" "), 4096))
	if res.status != http.StatusRequestEntityTooLarge || len(res.header.Get("X-Request-Id")) != 25 {
		t.Errorf("413: %d with X-Request-Id %q, want a new id of 25 characters", res.status, res.header.Get("X-Request-Id"))
	}
	m := do(t, c, http.MethodGet, base+"/metrics", nil)
	if want := `checkin_http_requests_total{method="POST",route="",status="413"} 3`; !strings.Contains(string(m.body), want) {
		t.Errorf("/metrics has no line %s", want)
	}
}

// TestHTTPCompressedBodyRefused: a body sent compressed is refused with
// 415 before anything is decoded or stored, whatever it would unpack to
// (16 MiB here, in 32 KiB or less); one sent as is, or marked identity,
// is taken.
func TestHTTPCompressedBodyRefused(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) { c.BodyLimit = 64 << 10 })
	base := ts.serve(t)
	c := newClient(t)
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	bomb := func(id string) []byte {
		return append([]byte(`{"id":"`+id+`","name":"x"}`), bytes.Repeat([]byte(" "), 16<<20)...)
	}
	tests := []struct {
		name, id, encoding string
		body               []byte
		status             int
	}{
		{"gzip", "gz1", "gzip", gz(bomb("gz1")), http.StatusUnsupportedMediaType},
		{"gzip twice", "gz2", "gzip, gzip", gz(gz(bomb("gz2"))), http.StatusUnsupportedMediaType},
		{"deflate, claimed", "gz3", "deflate", []byte(`{"id":"gz3","name":"x"}`), http.StatusUnsupportedMediaType},
		{"identity", "gz4", "identity", []byte(`{"id":"gz4","name":"x"}`), http.StatusCreated},
		{"none", "gz5", "", []byte(`{"id":"gz5","name":"x"}`), http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.body) > 64<<10 {
				t.Fatalf("the compressed body is %d bytes, over the limit: the test would not test the encoding", len(tt.body))
			}
			req, err := http.NewRequest(http.MethodPost, base+"/v1/users", bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			r := send(t, c, req)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
			want := http.StatusOK
			if r.status != http.StatusCreated {
				if code := r.errBody(t).Error.Code; code != "unsupported_media_type" {
					t.Errorf("code %q, want unsupported_media_type", code)
				}
				want = http.StatusNotFound
			}
			if g := do(t, c, http.MethodGet, base+"/v1/users/"+tt.id, nil); g.status != want {
				t.Errorf("GET the user after a %d: %d, want %d", r.status, g.status, want)
			}
		})
	}
}

func TestHTTPOpenAPIServed(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	base := ts.serve(t)
	res := do(t, newClient(t), http.MethodGet, base+"/openapi.yaml", nil)
	if res.status != http.StatusOK {
		t.Fatalf("status = %d", res.status)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	if !bytes.Equal(res.body, OpenAPI()) || len(res.body) == 0 {
		t.Errorf("body (%d bytes) is not the embedded document (%d bytes)", len(res.body), len(OpenAPI()))
	}
}

// TestHTTPRouting checks the errors that come from routing and the
// middleware rather than from a handler.
func TestHTTPRouting(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	base := ts.serve(t)
	c := newClient(t)

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{name: "unknown path", method: http.MethodGet, path: "/v2/users", status: 404, code: "route_not_found"},
		{name: "wrong method", method: http.MethodPut, path: "/v1/users/alice", status: 405, code: "method_not_allowed"},
		{name: "bad path id", method: http.MethodGet, path: "/v1/users/a.b", status: 400, code: "invalid_id"},
		{name: "unknown user", method: http.MethodGet, path: "/v1/users/nobody", status: 404, code: "user_not_found"},
		{name: "unknown location", method: http.MethodGet, path: "/v1/locations/nowhere", status: 404, code: "location_not_found"},
		{name: "no checkins", method: http.MethodGet, path: "/v1/users/nobody/location", status: 404, code: "no_checkins"},
		{name: "unknown field", method: http.MethodPost, path: "/v1/locations", body: `{"name":"x","lat":1,"lon":2,"alt":3}`, status: 400, code: "unknown_field"},
		{name: "healthz", method: http.MethodGet, path: "/healthz", status: 200},
		{name: "readyz", method: http.MethodGet, path: "/readyz", status: 200},
		{name: "metrics", method: http.MethodGet, path: "/metrics", status: 200},
		{name: "head of a get route", method: http.MethodHead, path: "/healthz", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			res := do(t, c, tt.method, base+tt.path, body)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.status, res.body)
			}
			if tt.code == "" {
				return
			}
			if b := res.errBody(t); b.Error.Code != tt.code {
				t.Errorf("code = %q, want %q", b.Error.Code, tt.code)
			}
		})
	}
}

// Every response carries a request id: the client's when it sent a
// reasonable one, else a new one that no other response had; error logs
// carry the same id.
func TestRequestIDs(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	url := ts.serve(t)
	c := newClient(t)
	get := func(rid string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+"/v1/users/nobody/location", nil)
		if err != nil {
			t.Fatal(err)
		}
		if rid != "" {
			req.Header.Set("X-Request-ID", rid)
		}
		return send(t, c, req)
	}
	seen := map[string]bool{}
	for range 50 {
		rid := get("").header.Get("X-Request-ID")
		if len(rid) != 25 || seen[rid] {
			t.Fatalf("generated id %q: want 25 characters, new each time", rid)
		}
		seen[rid] = true
	}
	if got := get("trace-42").header.Get("X-Request-ID"); got != "trace-42" {
		t.Errorf("client id not echoed: got %q", got)
	}
	long := strings.Repeat("x", maxRequestIDLen+1)
	if got := get(long).header.Get("X-Request-ID"); got == long || len(got) != 25 {
		t.Errorf("an over-long client id was kept or not replaced: %q", got)
	}
}

// Concurrent current-location reads each get their own answer, whole: the
// hottest read renders into pooled buffers, which must not be handed to
// the connection that is still sending them.
func TestConcurrentCurrentLocationAnswers(t *testing.T) {
	g := &fakeGrains{current: func(_ context.Context, userID string) (persistence.Checkin, error) {
		return persistence.Checkin{ID: "c-" + userID, UserID: userID, LocationID: "loc-" + userID, Timestamp: time.UnixMilli(1700000000000).UTC()}, nil
	}}
	concurrentPerUser(t, newTestServer(t, g, nil), func(c *http.Client, base, id string, _ int) error {
		res, err := c.Get(base + "/v1/users/" + id + "/location")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		var got struct {
			UserID    string `json:"user_id"`
			CheckinID string `json:"checkin_id"`
			Location  struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"location"`
		}
		if err != nil || res.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil ||
			got.UserID != id || got.CheckinID != "c-"+id || got.Location.ID != "loc-"+id || got.Location.Name != "place of "+id {
			return fmt.Errorf("answer for %s: %d %s (%v)", id, res.StatusCode, b, err)
		}
		return nil
	})
}

// Concurrent checkins are each answered with their own checkin: the answer
// is rendered into a pooled buffer, so the response must hold a copy.
func TestConcurrentCheckinAnswers(t *testing.T) {
	concurrentPerUser(t, newTestServer(t, &fakeGrains{}, nil), func(c *http.Client, base, id string, n int) error {
		cid := fmt.Sprintf("c-%s-%d", id, n)
		body := `{"id":"` + cid + `","location_id":"loc-` + id + `"}`
		res, err := c.Post(base+"/v1/users/"+id+"/checkins", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		var got struct {
			ID         string `json:"id"`
			UserID     string `json:"user_id"`
			LocationID string `json:"location_id"`
		}
		if err != nil || res.StatusCode != http.StatusCreated || json.Unmarshal(b, &got) != nil ||
			got.ID != cid || got.UserID != id || got.LocationID != "loc-"+id {
			return fmt.Errorf("answer for %s: %d %s (%v)", cid, res.StatusCode, b, err)
		}
		return nil
	})
}

// concurrentPerUser stores 16 users u00..u15, each with a location
// loc-<user> ("place of <user>"), serves ts, and runs request(n) 200 times
// for every user at once, one goroutine per user; a user's first error
// fails the test.
func concurrentPerUser(t *testing.T, ts *testServer, request func(c *http.Client, base, id string, n int) error) {
	t.Helper()
	const users, each = 16, 200
	ctx := context.Background()
	created := time.UnixMilli(1600000000000).UTC()
	for i := range users {
		id := fmt.Sprintf("u%02d", i)
		if err := ts.store.CreateUser(ctx, persistence.User{ID: id, Name: id, CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
		if err := ts.store.CreateLocation(ctx, persistence.Location{ID: "loc-" + id, Name: "place of " + id, CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
	}
	base := ts.serve(t)
	c := newClient(t)
	var wg sync.WaitGroup
	for i := range users {
		id := fmt.Sprintf("u%02d", i)
		wg.Go(func() {
			for n := range each {
				if err := request(c, base, id, n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRefusalLogsAreBounded: in an outage every request is refused; the
// node logs the first refusals of each second, not one line per request,
// and still every defect (a 500).
func TestRefusalLogsAreBounded(t *testing.T) {
	var fail atomic.Pointer[error]
	g := &fakeGrains{createUser: func(ctx context.Context, u persistence.User) (persistence.User, error) {
		return u, *fail.Load()
	}}
	ts := newTestServer(t, g, nil)
	base, c := ts.serve(t), newClient(t)
	count := func(level zapcore.Level) int {
		n := 0
		for _, e := range ts.logs.FilterMessage("request failed").All() {
			if e.Level == level {
				n++
			}
		}
		return n
	}

	unavailable := error(&actors.Error{Kind: actors.ErrUnavailable, Code: actors.CodeUnavailable, Message: "store down"})
	fail.Store(&unavailable)
	const refused = 200
	start := time.Now()
	for range refused {
		if res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"name":"n"}`)); res.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", res.status, res.body)
		}
	}
	if n, most := count(zapcore.WarnLevel), refusalLogsPerSecond*(int(time.Since(start)/time.Second)+2); n < 1 || n > most {
		t.Errorf("%d of %d refusals logged, want at most %d: the first %d of each second", n, refused, most, refusalLogsPerSecond)
	}

	defect := errors.New("a defect")
	fail.Store(&defect)
	const defects = 30
	for range defects {
		if res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"name":"n"}`)); res.status != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500: %s", res.status, res.body)
		}
	}
	if n := count(zapcore.ErrorLevel); n != defects {
		t.Errorf("%d of %d failures with status 500 logged, want every one", n, defects)
	}
}

// TestHTTPRefusedBeforeRouting: requests the HTTP server refuses before
// any route runs (a body or headers over the limits, a malformed request,
// one that never arrives whole) are answered like every other error: the
// API's JSON error, a request id and Cache-Control: no-store, and an
// access-log line with the method and path when the request got that far,
// never a method and path it did not send.
func TestHTTPRefusedBeforeRouting(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) {
		c.BodyLimit = 1024
		c.AccessLog = true
		c.RequestTimeout = 100 * time.Millisecond // a request has 5.1 s to arrive whole
	})
	base := ts.serve(t)
	addr := strings.TrimPrefix(base, "http://")
	tests := []struct {
		name         string
		raw          string // sent as is; the connection is then left open
		status       int
		code         string
		method, path string // of the access-log line
	}{
		{name: "body over the limit", raw: "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat(" ", 2048),
			status: 413, code: "body_too_large", method: "POST", path: "/v1/users"},
		{name: "headers over the limit", raw: "GET /v1/users HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n",
			status: 431, code: "http_error", method: "", path: ""},
		{name: "malformed request line", raw: "GARBAGE\r\n\r\n",
			status: 400, code: "bad_request", method: "", path: ""},
		{name: "a request that never arrives whole", raw: "POST /v1/users HTTP/1.1\r\nHost: x\r\n",
			status: 408, code: "request_timeout", method: "", path: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			before := ts.logs.FilterMessage("request").Len()
			if _, err := io.WriteString(conn, tt.raw); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			var eb ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != tt.code {
				t.Errorf("body %s (%v), want the JSON error %q", body, err, tt.code)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := res.Header.Get("X-Request-Id"); len(got) != 25 {
				t.Errorf("X-Request-Id = %q, want a new id", got)
			}
			lines := ts.logs.FilterMessage("request").All()
			if len(lines) != before+1 {
				t.Fatalf("%d access-log lines, want %d", len(lines), before+1)
			}
			f := lines[before].ContextMap()
			if f["method"] != tt.method || f["path"] != tt.path || f["status"] != int64(tt.status) {
				t.Errorf("access log: method %q, path %q, status %v; want %q, %q, %d", f["method"], f["path"], f["status"], tt.method, tt.path, tt.status)
			}
		})
	}
}

// TestHTTPMaxInflight: an API request beyond http.max-inflight is refused
// at once (503 overloaded, Retry-After) and counted under its route, before
// it spends a token of the client's rate limit, while the operations
// endpoints still answer: a liveness probe or a scrape must not fail
// because the node is busy.
func TestHTTPMaxInflight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // a failed test must not leave the request held
	var calls atomic.Int64
	g := &fakeGrains{current: func(ctx context.Context, userID string) (persistence.Checkin, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return persistence.Checkin{}, &actors.Error{Kind: actors.ErrNotFound, Code: actors.CodeNoCheckins, Message: "none"}
	}}
	// Three tokens: the create, the request held, and the one after the
	// refusals; a refusal that took one would leave none for it.
	ts := newTestServer(t, g, func(c *Config) { c.MaxInflight, c.RateLimit, c.RateBurst = 1, 0.001, 3 })
	base := ts.serve(t)
	c := newClient(t)
	if res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"id":"alice","name":"Alice"}`)); res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	held := make(chan int, 1)
	go func() {
		res, err := c.Get(base + "/v1/users/alice/location")
		if err != nil {
			held <- 0
			return
		}
		res.Body.Close()
		held <- res.StatusCode
	}()
	<-entered // the one request allowed is in flight

	for range 2 {
		res := do(t, c, http.MethodGet, base+"/v1/users/alice/location", nil)
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "1" || !strings.Contains(string(res.body), `"overloaded"`) {
			t.Errorf("a request beyond http.max-inflight: %d %s (Retry-After %q), want 503 overloaded with Retry-After: 1", res.status, res.body, res.header.Get("Retry-After"))
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if res := do(t, c, http.MethodGet, base+path, nil); res.status != http.StatusOK {
			t.Errorf("GET %s while the node is at http.max-inflight: %d %s, want 200", path, res.status, res.body)
		}
	}
	m := do(t, c, http.MethodGet, base+"/metrics", nil)
	if want := `checkin_http_requests_total{method="GET",route="/v1/users/:id/location",status="503"} 2`; !strings.Contains(string(m.body), want) {
		t.Errorf("/metrics has no line %s", want)
	}
	unblock()
	if status := <-held; status != http.StatusNotFound {
		t.Errorf("the request in flight: %d, want its own answer (404)", status)
	}
	if res := do(t, c, http.MethodGet, base+"/v1/users/alice/location", nil); res.status != http.StatusNotFound {
		t.Errorf("the next request after the refusals: %d %s, want its own answer (404): the refusals spent no token", res.status, res.body)
	}
}
