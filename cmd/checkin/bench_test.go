package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence"
)

// benchNode starts a fully wired node (pebble store on a temp dir) with
// users u0..u{users-1} and one location, and returns it.
func benchNode(b testing.TB, users int) *node { return benchNodeWith(b, users, nil) }

// benchNodeWith is benchNode with configure applied to the node's config.
func benchNodeWith(b testing.TB, users int, configure func(*config)) *node {
	b.Helper()
	cfg := defaultConfig()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.AccessLog = false
	cfg.DataDir = b.TempDir()
	if configure != nil {
		configure(&cfg)
	}
	n, err := startNode(context.Background(), cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.stop() })
	ctx := context.Background()
	if err := n.store.CreateLocation(ctx, persistence.Location{ID: "L1", Name: "bench", CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	for i := range users {
		if _, err := n.grains.CreateUser(ctx, persistence.User{ID: fmt.Sprintf("u%d", i), Name: "bench", CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// checkinEach gives users u0..u{users-1} one checkin each, so their grains
// are active and have a current location.
func checkinEach(b *testing.B, n *node, users int) {
	b.Helper()
	ctx := context.Background()
	for i := range users {
		c := persistence.Checkin{ID: fmt.Sprintf("c%d", i), UserID: fmt.Sprintf("u%d", i), LocationID: "L1", Timestamp: time.Now()}
		if _, _, err := n.grains.Checkin(ctx, c, true, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckin measures the write path behind POST /v1/users/{id}/checkins:
// grain call, writer batch, durable pebble commit. Every op is acknowledged
// only once durable.
func BenchmarkCheckin(b *testing.B) {
	const users = 1000
	n := benchNode(b, users)
	var seq atomic.Int64
	base := time.Now().Add(-time.Hour)
	b.ReportAllocs()
	b.SetParallelism(32) // 32 × GOMAXPROCS callers, like many HTTP connections
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := seq.Add(1)
			c := persistence.Checkin{ID: fmt.Sprintf("c%d", i), UserID: fmt.Sprintf("u%d", i%users), LocationID: "L1", Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
			if _, _, err := n.grains.Checkin(ctx, c, true, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checkins/s")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCurrentLocation measures GET /v1/users/{id}/location minus HTTP:
// a grain call answered from the grain's memory.
func BenchmarkCurrentLocation(b *testing.B) {
	const users = 1000
	n := benchNode(b, users)
	checkinEach(b, n, users)
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := fmt.Sprintf("u%d", seq.Add(1)%users)
			if _, err := n.grains.CurrentLocation(ctx, u); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

// serveFiber runs one request through the node's whole Fiber pipeline
// (request id, metrics, recovery, limits, authentication, handler) without
// a socket, and returns the status. auth, if not nil, is the Authorization
// header.
func serveFiber(h fasthttp.RequestHandler, fc *fasthttp.RequestCtx, method, uri string, body, auth []byte) int {
	fc.Request.Reset()
	fc.Response.Reset()
	fc.Request.Header.SetMethod(method)
	if auth != nil {
		fc.Request.Header.SetBytesV(fasthttp.HeaderAuthorization, auth)
	}
	fc.Request.SetRequestURI(uri)
	if body != nil {
		fc.Request.Header.SetContentType("application/json")
		fc.Request.SetBody(body)
	}
	h(fc)
	return fc.Response.StatusCode()
}

// userURIs returns /v1/users/u{i}/{tail} for every user.
func userURIs(users int, tail string) []string {
	uris := make([]string, users)
	for i := range uris {
		uris[i] = fmt.Sprintf("/v1/users/u%d/%s", i, tail)
	}
	return uris
}

// BenchmarkHTTPCurrentLocation measures GET /v1/users/{id}/location through
// the Fiber pipeline: the server's share of a read, minus the socket.
func BenchmarkHTTPCurrentLocation(b *testing.B) { benchHTTPCurrentLocation(b, nil, nil) }

// BenchmarkHTTPCurrentLocationRateLimit is BenchmarkHTTPCurrentLocation on
// a node with http.rate-limit set so high that no request is refused: what
// tracking the client's bucket costs.
func BenchmarkHTTPCurrentLocationRateLimit(b *testing.B) {
	benchHTTPCurrentLocation(b, nil, func(c *config) { c.HTTP.RateLimit = 1e12 })
}

// BenchmarkHTTPCurrentLocationAPIKey is BenchmarkHTTPCurrentLocation on a
// node that requires API keys (two keys; the request carries the second).
func BenchmarkHTTPCurrentLocationAPIKey(b *testing.B) {
	const key = "bench-key-0123456789abcdef"
	b.Setenv(edge.EnvAPIKeys, "other-key-0123456789abcdef,"+key)
	benchHTTPCurrentLocation(b, []byte("Bearer "+key), nil)
}

func benchHTTPCurrentLocation(b *testing.B, auth []byte, configure func(*config)) {
	const users = 1000
	n := benchNodeWith(b, users, configure)
	checkinEach(b, n, users)
	uris := userURIs(users, "location")
	h := n.edge.App().Handler()
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var fc fasthttp.RequestCtx
		for pb.Next() {
			if st := serveFiber(h, &fc, "GET", uris[seq.Add(1)%users], nil, auth); st != 200 {
				b.Errorf("status %d: %s", st, fc.Response.Body())
				return
			}
		}
	})
}

// BenchmarkHTTPCheckin measures POST /v1/users/{id}/checkins through the
// Fiber pipeline: validation, grain call, durable batch, answer.
func BenchmarkHTTPCheckin(b *testing.B) {
	const users = 1000
	n := benchNode(b, users)
	uris := userURIs(users, "checkins")
	h := n.edge.App().Handler()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		var fc fasthttp.RequestCtx
		var body []byte
		for pb.Next() {
			i := seq.Add(1)
			body = fmt.Appendf(body[:0], `{"location_id":"L1","id":"c%d"}`, i)
			if st := serveFiber(h, &fc, "POST", uris[i%users], body, nil); st != 201 {
				b.Errorf("status %d: %s", st, fc.Response.Body())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checkins/s")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the CPU time this process has used so far, user and
// system, in nanoseconds. A write waits for its sync, so ns/op of the
// checkin benchmarks is latency over callers; cpu-ns/op (the difference
// over the timed loop per op, the store's background work included) is
// what a checkin costs the machine, and what decides throughput once the
// CPU is the limit.
func processCPU(b *testing.B) int64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
