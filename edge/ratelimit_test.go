package edge

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPRateLimit drives a node with http.rate-limit over real HTTP, on
// a clock the test moves: each client gets its burst, then one request per
// 1/rate, and 429 rate_limited with Retry-After in between; clients are
// counted apart, and the operations endpoints are never limited.
func TestHTTPRateLimit(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	t.Run("by IP address, without keys", func(t *testing.T) {
		ts := newTestServer(t, nil, func(c *Config) { c.RateLimit, c.RateBurst = 2, 3 })
		ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
		base := ts.serve(t)
		c := newClient(t)
		get := func() response { return do(t, c, http.MethodGet, base+"/v1/locations/nowhere", nil) }
		for i := range 3 {
			if r := get(); r.status != http.StatusNotFound {
				t.Fatalf("request %d of the burst: %d %s, want 404 (served)", i+1, r.status, r.body)
			}
		}
		r := get()
		if r.status != http.StatusTooManyRequests || r.errBody(t).Error.Code != "rate_limited" {
			t.Fatalf("request over the burst: %d %s, want 429 rate_limited", r.status, r.body)
		}
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After %q, want 1 (a token in 0.5 s, rounded up)", ra)
		}
		if r := do(t, c, http.MethodGet, base+"/healthz", nil); r.status != http.StatusOK {
			t.Errorf("/healthz of a limited client: %d, want 200", r.status)
		}
		advance(500 * time.Millisecond) // one token
		if r := get(); r.status != http.StatusNotFound {
			t.Errorf("after 1/rate: %d, want 404 (served)", r.status)
		}
		if r := get(); r.status != http.StatusTooManyRequests {
			t.Errorf("the token spent: %d, want 429", r.status)
		}
		advance(time.Hour) // refilled to the burst, not beyond
		for i := range 4 {
			want := http.StatusNotFound
			if i == 3 {
				want = http.StatusTooManyRequests
			}
			if r := get(); r.status != want {
				t.Errorf("after an hour, request %d: %d, want %d", i+1, r.status, want)
			}
		}
		if m := do(t, c, http.MethodGet, base+"/metrics", nil); !strings.Contains(string(m.body), "\ncheckin_http_rate_limited_total 3\n") {
			t.Errorf("/metrics has no line checkin_http_rate_limited_total 3")
		}
	})

	t.Run("Retry-After says when a token comes", func(t *testing.T) {
		ts := newTestServer(t, nil, func(c *Config) { c.RateLimit, c.RateBurst = 0.1, 1 })
		ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
		base := ts.serve(t)
		c := newClient(t)
		do(t, c, http.MethodGet, base+"/v1/locations/nowhere", nil)
		r := do(t, c, http.MethodGet, base+"/v1/locations/nowhere", nil)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "10" {
			t.Errorf("over a rate of one in 10 s: %d with Retry-After %q, want 429 with 10", r.status, r.header.Get("Retry-After"))
		}
	})

	t.Run("by the address a trusted proxy names", func(t *testing.T) {
		get := func(base string, c *http.Client, client string) int {
			req, err := http.NewRequest(http.MethodGet, base+"/v1/locations/nowhere", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Real-IP", client)
			return send(t, c, req).status
		}
		// The test's requests come from 127.0.0.1: trusted here, so each
		// named address is a client of its own.
		ts := newTestServer(t, nil, func(c *Config) {
			c.RateLimit, c.RateBurst, c.ProxyHeader, c.TrustedProxies = 1, 1, "X-Real-IP", []string{"127.0.0.0/8"}
		})
		ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
		base, c := ts.serve(t), newClient(t)
		for _, tc := range []struct {
			client string
			want   int
		}{{"10.0.0.1", 404}, {"10.0.0.2", 404}, {"10.0.0.1", 429}, {"2001:db8::7", 404}, {"not an address", 404}, {"also not one", 429}} {
			if got := get(base, c, tc.client); got != tc.want {
				t.Errorf("trusted proxy, client %q: %d, want %d", tc.client, got, tc.want)
			}
		}
		// Not trusted: the header is ignored, and every request is the peer's.
		ts = newTestServer(t, nil, func(c *Config) {
			c.RateLimit, c.RateBurst, c.ProxyHeader, c.TrustedProxies = 1, 1, "X-Real-IP", []string{"192.0.2.10"}
		})
		ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
		base = ts.serve(t)
		if got := get(base, c, "10.0.0.1"); got != 404 {
			t.Errorf("untrusted peer, first request: %d, want 404", got)
		}
		if got := get(base, c, "10.0.0.2"); got != 429 {
			t.Errorf("untrusted peer naming another address: %d, want 429 (the header is not believed)", got)
		}
	})

	t.Run("by API key", func(t *testing.T) {
		keys, err := LoadAPIKeys("", fileKey1+","+fileKey2)
		if err != nil || keys.Len() != 2 {
			t.Fatalf("LoadAPIKeys = %d keys, %v", keys.Len(), err)
		}
		ts := newTestServerWithKeys(t, nil, func(c *Config) { c.RateLimit, c.RateBurst = 1, 2 }, keys)
		ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
		base := ts.serve(t)
		c := newClient(t)
		get := func(auth string) int {
			return request(t, c, http.MethodGet, base+"/v1/locations/nowhere", auth, "").status
		}
		// The scheme's case does not make another client of the same key.
		for i, auth := range []string{"Bearer " + fileKey1, "bearer " + fileKey1, "BEARER " + fileKey1} {
			want := http.StatusNotFound
			if i == 2 {
				want = http.StatusTooManyRequests
			}
			if got := get(auth); got != want {
				t.Errorf("key 1, request %d (%s…): %d, want %d", i+1, strings.Fields(auth)[0], got, want)
			}
		}
		if got := get("Bearer " + fileKey2); got != http.StatusNotFound {
			t.Errorf("key 2 while key 1 is limited: %d, want 404 (served)", got)
		}
		if got := get(""); got != http.StatusUnauthorized {
			t.Errorf("no key: %d, want 401 (authentication comes first)", got)
		}
	})
}

// With http.rate-scope=cluster each node allows a client its share of the
// limit: the rate and the burst divided by the cluster's members, so a
// client spread over the nodes gets about the limit in all. The share
// follows the members as they come and go.
func TestHTTPRateLimitClusterScope(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	var members atomic.Int64
	members.Store(4)
	ts := newTestServerWithDeps(t, nil, func(c *Config) { c.RateLimit, c.RateBurst, c.RateScope = 8, 8, RateScopeCluster },
		func(d *Deps) { d.Members = func() int { return int(members.Load()) } })
	ts.now = func() time.Time { return time.Unix(0, clock.Load()) }
	base, c := ts.serve(t), newClient(t)
	served := func(n int) int { // of n requests at once
		t.Helper()
		ok := 0
		for range n {
			switch r := do(t, c, http.MethodGet, base+"/v1/locations/nowhere", nil); r.status {
			case http.StatusNotFound:
				ok++
			case http.StatusTooManyRequests:
				if !strings.Contains(r.errBody(t).Error.Message, "more than 8 requests per second") {
					t.Errorf("429 message %q does not name the cluster's limit", r.errBody(t).Error.Message)
				}
			default:
				t.Fatalf("status %d %s, want 404 (served) or 429", r.status, r.body)
			}
		}
		return ok
	}
	if got := served(10); got != 2 {
		t.Errorf("4 members: %d of a burst served, want 2 (8 / 4)", got)
	}
	clock.Add(int64(time.Second)) // 8/4 = 2 tokens a second
	if got := served(10); got != 2 {
		t.Errorf("4 members, a second later: %d served, want 2", got)
	}
	members.Store(1) // the others left: this node takes the whole limit
	clock.Add(int64(time.Hour))
	if got := served(10); got != 8 {
		t.Errorf("1 member: %d of a burst served, want 8", got)
	}
	members.Store(0) // not joined yet: counts itself
	clock.Add(int64(time.Hour))
	if got := served(10); got != 8 {
		t.Errorf("0 members known: %d of a burst served, want 8", got)
	}
}

// A full shard forgets the clients whose buckets have refilled first, and
// never grows past its bound.
func TestRateLimiterBound(t *testing.T) {
	l := newRateLimiter(1, 1, rateShards) // one client per shard
	now := time.Now().UnixNano()
	a, b := uint64(7), uint64(7+rateShards) // the same shard
	if ok, _ := l.take(a, now, 1); !ok {
		t.Fatal("first request of a refused")
	}
	if ok, wait := l.take(a, now, 1); ok || wait != time.Second {
		t.Fatalf("second request of a at once: ok %v, wait %v; want refused for 1s", ok, wait)
	}
	if ok, _ := l.take(b, now, 1); !ok {
		t.Fatal("b refused: a full shard must make room")
	}
	if n := len(l.shards[a%rateShards].buckets); n != 1 {
		t.Fatalf("shard holds %d clients, want its bound 1", n)
	}
	if ok, _ := l.take(a, now, 1); !ok {
		t.Error("a, forgotten to make room for b, starts again with a full bucket")
	}
}
