package edge

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// A body that names a member twice (or in two spellings that encoding/json
// takes for one) is ambiguous: parsers disagree on which one counts, so a
// proxy or a log may see another request than the node. It is refused.
func TestHTTPDuplicateJSONMembersRefused(t *testing.T) {
	ts, base, c := serveWithAlice(t)
	ctx := context.Background()
	if err := ts.store.CreateLocation(ctx, persistence.Location{ID: "moma", Name: "MoMA", Lat: 1, Lon: 2, CreatedAt: time.UnixMilli(1)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body, code string
	}{
		{"user name twice", http.MethodPost, "/v1/users", `{"id":"bob","name":"B","name":"C"}`, "invalid_json"},
		{"user name in another case", http.MethodPost, "/v1/users", `{"id":"bob","NAME":"B"}`, "unknown_field"},
		{"location lat twice", http.MethodPost, "/v1/locations", `{"id":"l1","name":"L","lat":1,"lon":2,"lat":95}`, "invalid_json"},
		{"checkin location twice", http.MethodPost, "/v1/users/alice/checkins", `{"location_id":"moma","location_id":"nowhere"}`, "invalid_json"},
		{"checkin location twice by case", http.MethodPost, "/v1/users/alice/checkins", `{"location_id":"moma","Location_ID":"nowhere"}`, "unknown_field"},
		{"checkin timestamp twice", http.MethodPost, "/v1/users/alice/checkins", `{"location_id":"moma","timestamp":"2024-05-01T12:00:00Z","timestamp":"2024-05-02T12:00:00Z"}`, "invalid_json"},
		{"patch name twice", http.MethodPatch, "/v1/users/alice", `{"name":"X","name":"Y"}`, "invalid_json"},
		{"patch lat twice", http.MethodPatch, "/v1/locations/moma", `{"lat":3,"lat":4}`, "invalid_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, c, tt.method, base+tt.path, []byte(tt.body))
			if res.status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", res.status, res.body)
			}
			if b := res.errBody(t); b.Error.Code != tt.code {
				t.Errorf("code = %q, want %q (%s)", b.Error.Code, tt.code, b.Error.Message)
			}
		})
	}
	// Each member once, spelt as documented: taken.
	res := do(t, c, http.MethodPost, base+"/v1/users", []byte(`{"id":"carl","name":"C"}`))
	if res.status != http.StatusCreated {
		t.Fatalf("a plain create: status = %d; body %s", res.status, res.body)
	}
}

// from and to are compared with checkins stored to the millisecond: a
// checkin at 12:00:00.000 is before to=12:00:00.0005 and so in the range,
// and before from=12:00:00.0005 and so not in it.
func TestHTTPRangeBoundsFinerThanMillis(t *testing.T) {
	ts, base, c := serveWithAlice(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := ts.store.WriteCheckins(ctx, []persistence.Checkin{{ID: "c1", UserID: "alice", LocationID: "moma", Timestamp: at}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, query string
		want        int
	}{
		{"to just after", "from=2024-05-01T11:00:00Z&to=2024-05-01T12:00:00.0005Z", 1},
		{"to a nanosecond after", "from=2024-05-01T11:00:00Z&to=2024-05-01T12:00:00.000000001Z", 1},
		{"range within one millisecond", "from=2024-05-01T12:00:00Z&to=2024-05-01T12:00:00.0005Z", 1},
		{"from just after", "from=2024-05-01T12:00:00.0005Z&to=2024-05-01T13:00:00Z", 0},
		{"from exactly at", "from=2024-05-01T12:00:00Z&to=2024-05-01T13:00:00Z", 1},
		{"to exactly at", "from=2024-05-01T11:00:00Z&to=2024-05-01T12:00:00Z", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, c, http.MethodGet, base+"/v1/users/alice/checkins?"+tt.query, nil)
			if res.status != http.StatusOK {
				t.Fatalf("status = %d; body %s", res.status, res.body)
			}
			var page pageJSON
			if err := json.Unmarshal(res.body, &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Checkins) != tt.want {
				t.Errorf("%d checkins, want %d: %s", len(page.Checkins), tt.want, res.body)
			}
		})
	}
	// An offset's '+' sent unencoded reads as a space: the answer says so.
	res := do(t, c, http.MethodGet, base+"/v1/users/alice/checkins?from=2024-05-01T14:00:00+02:00", nil)
	if res.status != http.StatusBadRequest {
		t.Fatalf("unencoded +: %d %s", res.status, res.body)
	}
	if b := res.errBody(t); b.Error.Code != "invalid_time" || !strings.Contains(b.Error.Message, "%2B") {
		t.Errorf("unencoded +: %s, want invalid_time naming %%2B", res.body)
	}
	if res := do(t, c, http.MethodGet, base+"/v1/users/alice/checkins?from=2024-05-01T13:00:00%2B01:00&to=2024-05-01T13:00:00.001%2B01:00", nil); !strings.Contains(string(res.body), `"c1"`) {
		t.Errorf("encoded +: %d %s, want c1", res.status, res.body)
	}
	// A range that holds no whole millisecond holds no checkin: an empty
	// page, not an error.
	res = do(t, c, http.MethodGet, base+"/v1/users/alice/checkins?from=2024-05-01T12:00:00.0001Z&to=2024-05-01T12:00:00.0005Z", nil)
	if res.status != http.StatusOK || string(res.body) != `{"checkins":[],"next_cursor":null}` {
		t.Errorf("range within a millisecond: %d %s", res.status, res.body)
	}
}

// A wall clock stepped back (NTP, a VM restored) must not stall the
// clients' buckets until it is back where it was.
func TestHTTPRateLimitClockStepsBack(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) { c.RateLimit, c.RateBurst = 1, 1 })
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
	base := ts.serve(t)
	c := newClient(t)
	get := func() response { return do(t, c, http.MethodGet, base+"/v1/locations/nowhere", nil) }
	if r := get(); r.status != http.StatusNotFound {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	if r := get(); r.status != http.StatusTooManyRequests {
		t.Fatalf("second request at once: %d, want 429", r.status)
	}
	clock.Add(-int64(time.Hour)) // the clock steps back an hour
	if r := get(); r.status != http.StatusTooManyRequests {
		t.Fatalf("right after the step: %d, want 429", r.status)
	}
	clock.Add(int64(2 * time.Second))
	r := get()
	if r.status != http.StatusNotFound {
		t.Fatalf("2 s after the step: %d, want a token again (Retry-After %q)", r.status, r.header.Get("Retry-After"))
	}
}

// Answers of /v1 are of data that changes (a PATCH, a DELETE, a new
// checkin): no cache between the client and the node may keep them.
func TestHTTPAPIAnswersAreNotCached(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	base := ts.serve(t)
	c := newClient(t)
	if err := ts.store.CreateUser(context.Background(), persistence.User{ID: "alice", Name: "Alice", CreatedAt: time.UnixMilli(1)}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/users/alice", "/v1/users", "/v1/users/alice/checkins", "/v1/users/nobody"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			res := do(t, c, method, base+path, nil)
			if got := res.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s %s (%d): Cache-Control = %q, want no-store", method, path, res.status, got)
			}
		}
	}
}

// serveWithAlice serves a test server whose store has the user alice, and
// returns it with its base URL and a client.
func serveWithAlice(t *testing.T) (*testServer, string, *http.Client) {
	t.Helper()
	ts := newTestServer(t, nil, nil)
	base := ts.serve(t)
	if err := ts.store.CreateUser(context.Background(), persistence.User{ID: "alice", Name: "Alice", CreatedAt: time.UnixMilli(1)}); err != nil {
		t.Fatal(err)
	}
	return ts, base, newClient(t)
}
