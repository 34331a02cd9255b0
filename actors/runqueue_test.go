package actors

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The run queue reads busy while more goroutines want a CPU than there are
// CPUs for Go, and idle once they are done.
func TestRunQueueBusy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var q runQueue
	if q.busy() {
		t.Fatal("busy before any goroutine wants a CPU")
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 * busyRunnable {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				runtime.Gosched()
			}
		}()
	}
	seen := false
	for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); {
		seen = q.busy()
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if !seen {
		t.Fatalf("never busy with %d goroutines spinning on one CPU", 4*busyRunnable)
	}
	if q.busy() {
		t.Fatal("still busy after the goroutines ended")
	}
}
