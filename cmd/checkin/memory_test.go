package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// BenchmarkIdleGrainMemory measures the heap held per active, idle user
// grain: it creates users (each with one checkin), activates one grain per
// user with a current-location read, and divides the growth of the live
// heap by the number of grains. b.N is not used: each size runs once.
//
//	go test -run '^$' -bench IdleGrainMemory -benchtime 1x ./cmd/checkin/
func BenchmarkIdleGrainMemory(b *testing.B) {
	for _, users := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			n := benchNode(b, 0)
			ctx := context.Background()
			parallel(b, users, func(i int) error {
				id := fmt.Sprintf("m%d", i)
				if _, err := n.grains.CreateUser(ctx, persistence.User{ID: id, Name: "memory", CreatedAt: time.Now()}); err != nil {
					return err
				}
				_, _, err := n.grains.Checkin(ctx, persistence.Checkin{ID: "c" + id, UserID: id, LocationID: "L1", Timestamp: time.Now()}, true, false)
				return err
			})
			// Creating the users activated their grains; measure on a fresh
			// node over the same store, where no grain is active yet.
			dir := n.cfg.DataDir
			if err := n.stop(); err != nil {
				b.Fatal(err)
			}
			cfg := n.cfg
			cfg.DataDir = dir
			m, err := startNode(context.Background(), cfg, n.log)
			if err != nil {
				b.Fatal(err)
			}
			defer m.stop()
			before, beforeObjects := liveHeap()
			b.ResetTimer()
			parallel(b, users, func(i int) error {
				_, err := m.grains.CurrentLocation(ctx, fmt.Sprintf("m%d", i))
				return err
			})
			b.StopTimer()
			after, afterObjects := liveHeap()
			b.ReportMetric(float64(after-before)/float64(users), "bytes/grain")
			// The garbage collector's marking work grows with live objects.
			b.ReportMetric(float64(afterObjects-beforeObjects)/float64(users), "objects/grain")
			b.ReportMetric(float64(after)/(1<<20), "heap-MiB")
		})
	}
}

// parallel runs fn(0..n-1) on 64 goroutines and fails b on the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

func liveHeap() (bytes, objects uint64) {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapObjects
}
