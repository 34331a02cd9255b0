package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
)

// benchNode starts a fully wired node (pebble store on a temp dir) with
// users u0..u{users-1} and one location, and returns it.
func benchNode(b *testing.B, users int) *node {
	b.Helper()
	cfg := defaultConfig()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.AccessLog = false
	cfg.DataDir = b.TempDir()
	n, err := startNode(cfg, zap.NewNop())
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
}

// BenchmarkCurrentLocation measures GET /v1/users/{id}/location minus HTTP:
// a grain call answered from the grain's memory.
func BenchmarkCurrentLocation(b *testing.B) {
	const users = 1000
	n := benchNode(b, users)
	ctx := context.Background()
	for i := range users {
		c := persistence.Checkin{ID: fmt.Sprintf("c%d", i), UserID: fmt.Sprintf("u%d", i), LocationID: "L1", Timestamp: time.Now()}
		if _, _, err := n.grains.Checkin(ctx, c, true, false); err != nil {
			b.Fatal(err)
		}
	}
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
