//go:build linux

package pebble

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/checkin/checkin/persistence"
)

// testRing sets up a ring. Where the kernel refuses io_uring (a seccomp
// profile, kernel.io_uring_disabled) the ring tests skip, except in CI,
// whose machines allow it.
func testRing(t *testing.T) *ring {
	t.Helper()
	r, err := newRing()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("newRing: %v", err)
		}
		t.Skipf("######## SKIPPED: io_uring is not available here (%v); the store syncs the blocking way ########", err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

func TestRingSyncs(t *testing.T) {
	r := testRing(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("durable"); err != nil {
		t.Fatal(err)
	}
	for _, datasync := range []bool{true, false} {
		before := r.completed.Load()
		if err := r.sync(f.Fd(), datasync); err != nil {
			t.Fatalf("sync(datasync=%v): %v", datasync, err)
		}
		if got := r.completed.Load() - before; got != 1 {
			t.Fatalf("sync(datasync=%v): the kernel answered %d syncs, want 1", datasync, got)
		}
	}
}

func TestRingReturnsTheSyncsError(t *testing.T) {
	r := testRing(t)
	// A descriptor that is not open is the one sync error a test can
	// cause (no other test can open it: it is above any fd limit). It must
	// come back as the kernel's errno, not as a reason to sync another way.
	const notOpen = 1 << 30
	err := r.sync(notOpen, true)
	if !errors.Is(err, syscall.EBADF) || errors.Is(err, errRingUnusable) {
		t.Fatalf("sync of a closed fd: %v, want EBADF", err)
	}
}

// syncAtOnce syncs n fresh files through r from n goroutines at once
// (data only for even i) and fails the test on any error.
func syncAtOnce(t *testing.T, r *ring, n int) {
	t.Helper()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			if _, err := f.WriteString("x"); err != nil {
				errs <- err
				return
			}
			errs <- r.sync(f.Fd(), i%2 == 0)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := r.completed.Load(); got != uint64(n) {
		t.Fatalf("the kernel answered %d syncs, want %d", got, n)
	}
}

func TestRingManySyncsAtOnce(t *testing.T) {
	r := testRing(t)
	syncAtOnce(t, r, 4*ringEntries) // more than the ring's slots
	if len(r.slots) != ringEntries {
		t.Fatalf("%d of %d slots free after the syncs", len(r.slots), ringEntries)
	}
}

// A broken ring (a submission failed) hands every sync back to the file's
// own blocking Sync.
func TestRingFileFallsBackWhenTheRingIsBroken(t *testing.T) {
	r := testRing(t)
	r.broken = true
	fs := ringFS{FS: vfs.Default, ring: r}
	f, err := fs.Create(filepath.Join(t.TempDir(), "f"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := r.completed.Load(); got != 0 {
		t.Fatalf("a broken ring answered %d syncs", got)
	}
}

// A store opened WithIOUring(true) syncs its commits through the ring, and
// one opened without it (the default) reads the same data back.
func TestStoreSyncsThroughTheRing(t *testing.T) {
	testRing(t) // skips where io_uring is refused
	ctx := t.Context()
	dir := t.TempDir()
	day := persistence.BucketStart(19792)
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: day.Add(time.Hour)}

	s, err := Open(dir, WithCacheSize(testCacheSize), WithIOUring(true))
	if err != nil {
		t.Fatal(err)
	}
	if s.ring == nil {
		t.Fatal("the store syncs the blocking way although io_uring is available")
	}
	before := s.ring.completed.Load()
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c}); err != nil {
		t.Fatal(err)
	}
	if s.ring.completed.Load() == before {
		t.Fatal("a synced write made no sync through the ring")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, WithCacheSize(testCacheSize))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ring != nil {
		t.Fatal("a store opened without WithIOUring(true) has a ring")
	}
	got, err := s.GetCheckin(ctx, "u1", "c1")
	if err != nil || !got.Timestamp.Equal(c.Timestamp) || got.LocationID != c.LocationID {
		t.Fatalf("GetCheckin after reopening = %+v, %v; want %+v", got, err, c)
	}
	c2 := persistence.Checkin{ID: "c2", UserID: "u1", LocationID: "l2", Timestamp: day.Add(2 * time.Hour)}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c2}); err != nil {
		t.Fatalf("a write syncing the blocking way: %v", err)
	}
}

// File writes hand finished syncs to their waiters too (ringFile.Write),
// racing the reaper for the same completions: each answer must reach its
// waiter exactly once.
func TestRingHandOffRacesTheReaper(t *testing.T) {
	r := testRing(t)
	const n = 8 * ringEntries
	done := make(chan struct{})
	handedOff := make(chan int)
	go func() {
		k := 0
		for {
			select {
			case <-done:
				handedOff <- k
				return
			default:
				if r.handOff() {
					k++
				}
			}
		}
	}()
	defer func() {
		close(done)
		t.Logf("handOff delivered answers %d times for %d syncs; the reaper the rest", <-handedOff, n)
	}()
	syncAtOnce(t, r, n)
}
