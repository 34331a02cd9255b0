package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// fuzzRoutes are the paths FuzzAPI sends requests to; %s is an id the
// fuzzer chooses (first and second).
var fuzzRoutes = []string{
	"/v1/users", "/v1/users/%s", "/v1/users/%s/checkins", "/v1/users/%s/checkins/%s", "/v1/users/%s/location",
	"/v1/locations", "/v1/locations/%s", "/healthz", "/readyz", "/openapi.yaml", "/%s", "/v1/%s",
}

var fuzzMethods = []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"}

// FuzzAPI sends the requests the fuzzer makes up (method, route, ids,
// query and body) to a fully wired node on the embedded store and checks
// what any client may count on: an answer within the deadline, never a
// 5xx, and every error in the JSON error shape. go test runs the seeds;
// `go test -run '^$' -fuzz FuzzAPI -fuzztime 2m ./cmd/checkin/` searches.
func FuzzAPI(f *testing.F) {
	n := benchNode(f, 1) // user u0 and location L1
	ctx := context.Background()
	if _, _, err := n.grains.Checkin(ctx, persistence.Checkin{ID: "c0", UserID: "u0", LocationID: "L1", Timestamp: time.Now()}, true, false); err != nil {
		f.Fatal(err)
	}
	base := "http://" + n.ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}

	seeds := []struct {
		method, route uint8
		id1, id2      string
		query, body   string
	}{
		{1, 2, "u0", "", "", `{"id":"c1","location_id":"L1","timestamp":"2024-05-01T12:00:00Z"}`},
		{1, 2, "u0", "", "", `{"location_id":"L1","timestamp":"9999-12-31T23:59:59.999999999+14:00"}`},
		{1, 2, "u0", "", "", `{"location_id":"L1","timestamp":"0001-01-01T00:00:00Z"}`},
		{1, 2, "u0", "", "", `{"location_id":"L1","timestamp":-1}`},
		{1, 2, "u0", "", "", `{"location_id":"\u0000"}`},
		{0, 2, "u0", "", "from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&limit=2&order=oldest", ""},
		{0, 2, "u0", "", "location_id=L1&cursor=AAAA&limit=0", ""},
		{0, 2, "u0", "", "from=9999-12-31T23:59:59Z&to=0001-01-01T00:00:00Z", ""},
		{0, 2, "u0", "", "cursor=%ff%fe&limit=1001", ""},
		{0, 3, "u0", "c0", "", ""},
		{0, 4, "u0", "", "", ""},
		{0, 4, strings.Repeat("x", 300), "", "", ""},
		{1, 0, "", "", "", `{"id":"u1","name":"` + strings.Repeat("n", 300) + `"}`},
		{2, 1, "u0", "", "", `{"name":null}`},
		{1, 5, "", "", "", `{"id":"L2","name":"p","lat":90.0000001,"lon":0}`},
		{2, 6, "L1", "", "", `{"lat":1e400}`},
		{0, 0, "", "", "limit=-1&after=%00", ""},
		{3, 1, "u0", "", "", ""},
		{1, 2, "u0", "", "", `[` + strings.Repeat(`{"a":`, 1000)},
		{3, 3, "u0", "c0", "", ""},
		{3, 3, "u0", "\u0000", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.route, s.id1, s.id2, s.query, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, route uint8, id1, id2, query string, body []byte) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path = strings.Replace(path, "%s", url.PathEscape(id1), 1)
		path = strings.Replace(path, "%s", url.PathEscape(id2), 1)
		if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Skip("a request target holds no controls or spaces: no client sends this query")
		}
		req, err := http.NewRequestWithContext(ctx, m, base+path, bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request a client can send:", err)
		}
		req.URL.RawQuery = query
		if len(body) > 0 {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s?%s: %v", m, path, query, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s?%s: reading the answer: %v", m, path, query, err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s?%s %q: %d %s", m, path, query, body, resp.StatusCode, got)
		}
		if resp.StatusCode >= 400 && m != "HEAD" {
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(got, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s?%s %q: %d with a body not in the error shape: %s", m, path, query, body, resp.StatusCode, got)
			}
		}
	})
}
