package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's server keeps a date updater and the worker pool's
		// cleaner sleeping after Shutdown.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
}

// startTest starts a baseline server on a free loopback port and returns
// its base URL; it is stopped when the test ends.
func startTest(t *testing.T, mode string) string {
	t.Helper()
	cfg := defaultConfig()
	cfg.Mode, cfg.Addr, cfg.DataDir = mode, "127.0.0.1:0", t.TempDir()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	s, err := start(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return "http://" + s.ln.Addr().String()
}

// call sends one request and decodes the JSON answer into a map.
func call(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %s", method, u, raw)
	}
	return resp.StatusCode, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestNaive(t *testing.T) {
	base := startTest(t, "naive")
	ts := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	at := func(d time.Duration) string { return ts.Add(d).Format(time.RFC3339Nano) }
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string         // error code, for errors
		fields                   map[string]any // expected fields of a 2xx answer
	}{
		{"create user", "POST", "/v1/users", `{"id":"alice","name":"Alice"}`, 201, "", map[string]any{"id": "alice"}},
		{"user exists", "POST", "/v1/users", `{"id":"alice","name":"Alice"}`, 409, "user_exists", nil},
		{"bad user id", "POST", "/v1/users", `{"id":"a b","name":"A"}`, 400, "invalid_id", nil},
		{"unknown field", "POST", "/v1/users", `{"id":"b","name":"B","x":1}`, 400, "invalid_json", nil},
		{"create location", "POST", "/v1/locations", `{"id":"moma","name":"MoMA","lat":40.76,"lon":-73.97}`, 201, "", map[string]any{"id": "moma"}},
		{"location exists", "POST", "/v1/locations", `{"id":"moma","name":"MoMA","lat":40.76,"lon":-73.97}`, 409, "location_exists", nil},
		{"bad coordinates", "POST", "/v1/locations", `{"id":"x","name":"X","lat":91,"lon":0}`, 400, "invalid_coordinates", nil},
		{"create location 2", "POST", "/v1/locations", `{"id":"park","name":"Park","lat":40.7,"lon":-73.9}`, 201, "", nil},
		{"no checkins yet", "GET", "/v1/users/alice/location", "", 404, "no_checkins", nil},
		{"unknown user location", "GET", "/v1/users/bob/location", "", 404, "user_not_found", nil},
		{"checkin", "POST", "/v1/users/alice/checkins", `{"id":"c1","location_id":"moma","timestamp":"` + at(0) + `"}`, 201, "",
			map[string]any{"id": "c1", "user_id": "alice", "location_id": "moma"}},
		{"checkin retry", "POST", "/v1/users/alice/checkins", `{"id":"c1","location_id":"moma","timestamp":"` + at(0) + `"}`, 200, "",
			map[string]any{"id": "c1"}},
		{"checkin conflict", "POST", "/v1/users/alice/checkins", `{"id":"c1","location_id":"park","timestamp":"` + at(0) + `"}`, 409, "checkin_conflict", nil},
		{"later checkin", "POST", "/v1/users/alice/checkins", `{"id":"c2","location_id":"park","timestamp":"` + at(time.Minute) + `"}`, 201, "", nil},
		{"older checkin", "POST", "/v1/users/alice/checkins", `{"id":"c0","location_id":"moma","timestamp":"` + at(-time.Minute) + `"}`, 201, "", nil},
		{"unknown location", "POST", "/v1/users/alice/checkins", `{"id":"c9","location_id":"nowhere"}`, 404, "location_not_found", nil},
		{"unknown user", "POST", "/v1/users/bob/checkins", `{"id":"c9","location_id":"moma"}`, 404, "user_not_found", nil},
		{"future", "POST", "/v1/users/alice/checkins", `{"id":"c9","location_id":"moma","timestamp":"2999-01-01T00:00:00Z"}`, 400, "timestamp_in_future", nil},
		{"current location is the latest timestamp", "GET", "/v1/users/alice/location", "", 200, "",
			map[string]any{"location_id": "park", "checkin_id": "c2"}},
		{"get user", "GET", "/v1/users/alice", "", 200, "", map[string]any{"name": "Alice"}},
		{"get location", "GET", "/v1/locations/moma", "", 200, "", map[string]any{"name": "MoMA"}},
		{"bad cursor", "GET", "/v1/users/alice/checkins?cursor=!!", "", 400, "invalid_cursor", nil},
		{"bad limit", "GET", "/v1/users/alice/checkins?limit=0", "", 400, "invalid_limit", nil},
		{"no route", "GET", "/v2/nothing", "", 404, "route_not_found", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := call(t, tc.method, base+tc.path, tc.body)
			if status != tc.status || errCode(m) != tc.code {
				t.Fatalf("%d %v, want %d %q", status, m, tc.status, tc.code)
			}
			for k, v := range tc.fields {
				if m[k] != v {
					t.Errorf("%s = %v, want %v (%v)", k, m[k], v, m)
				}
			}
		})
	}

	t.Run("paging returns every checkin once", func(t *testing.T) {
		var ids []string
		q := url.Values{"limit": {"1"}, "from": {at(-time.Hour)}}
		for page := 0; page < 10; page++ {
			status, m := call(t, "GET", base+"/v1/users/alice/checkins?"+q.Encode(), "")
			if status != 200 {
				t.Fatalf("page %d: %d %v", page, status, m)
			}
			for _, c := range m["checkins"].([]any) {
				ids = append(ids, c.(map[string]any)["id"].(string))
			}
			next, _ := m["next_cursor"].(string)
			if next == "" {
				break
			}
			q.Set("cursor", next)
		}
		if strings.Join(ids, ",") != "c2,c1,c0" {
			t.Fatalf("pages listed %v, want c2,c1,c0 (newest first)", ids)
		}
		status, m := call(t, "GET", base+"/v1/users/alice/checkins?location_id=moma&order=oldest", "")
		if status != 200 || len(m["checkins"].([]any)) != 2 {
			t.Fatalf("at moma: %d %v", status, m)
		}
	})
}

func TestBare(t *testing.T) {
	base := startTest(t, "bare")
	for _, tc := range []struct {
		method, path string
		status       int
		fields       []string
	}{
		{"POST", "/v1/users", 201, []string{"id", "name", "created_at"}},
		{"POST", "/v1/locations", 201, []string{"id", "name", "lat", "lon", "created_at"}},
		{"POST", "/v1/users/alice/checkins", 201, []string{"id", "user_id", "location_id", "timestamp"}},
		{"GET", "/v1/users/alice/location", 200, []string{"user_id", "location_id", "timestamp", "checkin_id", "location"}},
		{"GET", "/v1/users/alice/checkins", 200, []string{"checkins", "next_cursor"}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, m := call(t, tc.method, base+tc.path, `{}`)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			for _, f := range tc.fields {
				if _, ok := m[f]; !ok {
					t.Errorf("answer %v has no %q", m, f)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*config)
		ok   bool
	}{
		{"defaults", func(*config) {}, true},
		{"naive", func(c *config) { c.Mode = "naive" }, true},
		{"unknown mode", func(c *config) { c.Mode = "fast" }, false},
		{"bad addr", func(c *config) { c.Addr = "8080" }, false},
		{"naive without dir", func(c *config) { c.Mode, c.DataDir = "naive", "" }, false},
		{"bad level", func(c *config) { c.LogLevel = "loud" }, false},
	} {
		c := defaultConfig()
		tc.mut(&c)
		if err := c.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
