package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCacheSize keeps the many stores of a parallel test run small.
const testCacheSize = 4 << 20

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, WithCacheSize(testCacheSize), WithMemTableSize(4<<20))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return open(t, t.TempDir())
	})
}

// The whole contract again with files synced through io_uring (where the
// kernel refuses it the store syncs the blocking way, as above).
func TestConformanceIOUring(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		s, err := Open(t.TempDir(), WithCacheSize(testCacheSize), WithMemTableSize(4<<20), WithIOUring(true))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	day := persistence.BucketStart(19792)
	u := persistence.User{ID: "u1", Name: "Ada", CreatedAt: day.Add(1234567 * time.Microsecond)}
	l := persistence.Location{ID: "l1", Name: "Café", Lat: 48.8566, Lon: 2.3522, CreatedAt: day}
	newest := persistence.Checkin{ID: "c3", UserID: "u1", LocationID: "l2", Timestamp: day.Add(3 * persistence.BucketWidth)}
	older := []persistence.Checkin{
		{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: day.Add(time.Hour)},
		{ID: "c2", UserID: "u1", LocationID: "l1", Timestamp: day.Add(2 * time.Hour)},
	}

	s := open(t, dir)
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLocation(ctx, l); err != nil {
		t.Fatal(err)
	}
	// Newest first, in its own batch, so the current location is made of
	// several merge operands on disk.
	for _, b := range [][]persistence.Checkin{{newest}, older} {
		if err := s.WriteCheckins(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	gotU, err := s.GetUser(ctx, "u1")
	if err != nil || gotU.Name != u.Name || !gotU.CreatedAt.Equal(persistence.Millis(u.CreatedAt)) {
		t.Fatalf("GetUser after reopen = %+v, %v", gotU, err)
	}
	gotL, err := s.GetLocation(ctx, "l1")
	if err != nil || gotL != l {
		t.Fatalf("GetLocation after reopen = %+v, %v; want %+v", gotL, err, l)
	}
	if err := s.CreateUser(ctx, u); !errors.Is(err, persistence.ErrConflict) {
		t.Fatalf("CreateUser after reopen: err = %v, want ErrConflict", err)
	}
	cur, err := s.CurrentLocation(ctx, "u1")
	if err != nil || cur != newest {
		t.Fatalf("CurrentLocation after reopen = %+v, %v; want %+v", cur, err, newest)
	}
	page, err := s.ListCheckins(ctx, persistence.Query{UserID: "u1", From: day, To: day.Add(10 * persistence.BucketWidth), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := []persistence.Checkin{newest, older[1], older[0]}; !slices.Equal(page.Checkins, want) || page.Next != nil {
		t.Fatalf("ListCheckins after reopen = %+v, want %+v", page, want)
	}

	// An older write after reopen merges with the operands on disk.
	if err := s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c0", UserID: "u1", LocationID: "l9", Timestamp: day}}); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.CurrentLocation(ctx, "u1"); err != nil || cur != newest {
		t.Fatalf("CurrentLocation after an older write = %+v, %v; want %+v", cur, err, newest)
	}
}

// TestCheckpoint: a checkpoint taken while writes go on holds every checkin
// acknowledged before the call and none written after it returned, and
// opens as a database of its own.
func TestCheckpoint(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := s.CreateUser(ctx, persistence.User{ID: "u1", Name: "Ada", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	day := persistence.BucketStart(19792)
	checkin := func(i int) persistence.Checkin {
		return persistence.Checkin{ID: fmt.Sprintf("c%04d", i), UserID: "u1", LocationID: "l1", Timestamp: day.Add(time.Duration(i) * time.Minute)}
	}
	write := func(i int) {
		if err := s.WriteCheckins(ctx, []persistence.Checkin{checkin(i)}); err != nil {
			t.Error(err)
		}
	}
	for i := range 200 {
		write(i)
	}
	// Writes of another goroutine race with the checkpoint: each may or may
	// not be in it, and none may break it.
	stop := make(chan struct{})
	racing := make(chan int)
	go func() {
		i := 1000
		defer func() { racing <- i }()
		for {
			select {
			case <-stop:
				return
			default:
				write(i)
				i++
			}
		}
	}()
	copyDir := filepath.Join(t.TempDir(), "backup")
	if err := s.Checkpoint(copyDir); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	close(stop)
	raced := <-racing
	for i := 200; i < 300; i++ { // after the checkpoint returned
		write(i)
	}
	if err := s.Checkpoint(copyDir); err == nil {
		t.Error("a checkpoint into an existing directory succeeded")
	}

	c := open(t, copyDir)
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close of the copy: %v", err)
		}
	}()
	if u, err := c.GetUser(ctx, "u1"); err != nil || u.Name != "Ada" {
		t.Fatalf("GetUser of the copy = %+v, %v", u, err)
	}
	page, err := c.ListCheckins(ctx, persistence.Query{UserID: "u1", From: day, To: day.Add(100 * persistence.BucketWidth), Limit: 1000, Order: persistence.OldestFirst})
	if err != nil {
		t.Fatal(err)
	}
	var before int
	for _, got := range page.Checkins {
		var i int
		if _, err := fmt.Sscanf(got.ID, "c%04d", &i); err != nil {
			t.Fatalf("unexpected checkin %+v", got)
		}
		switch {
		case i < 200:
			if got != checkin(i) {
				t.Errorf("copy holds %+v, want %+v", got, checkin(i))
			}
			before++
		case i < 1000:
			t.Errorf("copy holds %s, written after the checkpoint returned", got.ID)
		case i >= raced:
			t.Errorf("copy holds %s, never written", got.ID)
		}
	}
	if before != 200 {
		t.Errorf("copy holds %d of the 200 checkins acknowledged before the checkpoint", before)
	}
	t.Logf("copy holds %d of %d checkins written during the checkpoint", len(page.Checkins)-before, raced-1000)
}

// A database written when the current location was a merge operand per
// checkin still opens, compacts those operands, and answers the current
// location from the partitions (a stale operand is not believed).
func TestOpensDatabaseWithCurrentMergeOperands(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	day := persistence.BucketStart(19792)
	newest := persistence.Checkin{ID: "c2", UserID: "u1", LocationID: "l2", Timestamp: day.Add(time.Hour)}
	s := open(t, dir)
	if err := s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: day}, newest}); err != nil {
		t.Fatal(err)
	}
	legacy := append([]byte{famCurrent}, "u1"...)
	for _, op := range [][]byte{appendCurrent(nil, day.UnixMilli(), "c1", "l1"), appendCurrent(nil, day.UnixMilli()-1, "c0", "l0")} {
		if err := s.db.Merge(legacy, op, pebbledb.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if err := s.db.Compact(ctx, []byte{famCurrent}, []byte{famCurrent + 1}, true); err != nil {
		t.Fatalf("compacting the merge operands: %v", err)
	}
	got, err := s.CurrentLocation(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != newest.ID || got.LocationID != newest.LocationID || !got.Timestamp.Equal(newest.Timestamp) {
		t.Fatalf("current location %+v, want %+v", got, newest)
	}
}

func TestCurrentMerger(t *testing.T) {
	t0 := int64(1_710_028_800_000)
	op := func(ms int64, id, loc string) []byte { return appendCurrent(nil, ms, id, loc) }
	tests := []struct {
		name     string
		operands [][]byte // oldest first
		want     []byte
	}{
		{"single", [][]byte{op(t0, "a", "l1")}, op(t0, "a", "l1")},
		{"later timestamp wins", [][]byte{op(t0, "b", "l1"), op(t0+1, "a", "l2")}, op(t0+1, "a", "l2")},
		{"later timestamp wins written first", [][]byte{op(t0+1, "a", "l2"), op(t0, "b", "l1")}, op(t0+1, "a", "l2")},
		{"equal timestamps: larger id wins", [][]byte{op(t0, "b", "l2"), op(t0, "a", "l1")}, op(t0, "b", "l2")},
		{"equal timestamps: longer id with same prefix wins", [][]byte{op(t0, "ab", "l2"), op(t0, "a", "l1")}, op(t0, "ab", "l2")},
		{"id order is bytewise", [][]byte{op(t0, "B", "l1"), op(t0, "a", "l2")}, op(t0, "a", "l2")},
		{"rewrite of the same checkin", [][]byte{op(t0, "a", "l1"), op(t0, "a", "l1")}, op(t0, "a", "l1")},
		{"before 1970", [][]byte{op(-5, "a", "l1"), op(-6, "z", "l2")}, op(-5, "a", "l1")},
		{"negative and positive", [][]byte{op(1, "a", "l1"), op(-1, "z", "l2")}, op(1, "a", "l1")},
		{"many", [][]byte{op(t0, "c", "l1"), op(t0+5, "a", "l2"), op(t0-5, "z", "l3"), op(t0+5, "b", "l4"), op(t0+4, "zz", "l5")}, op(t0+5, "b", "l4")},
		{"same checkin id and time, other location: deterministic", [][]byte{op(t0, "a", "l2"), op(t0, "a", "l1")}, op(t0, "a", "l2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every order of operands, fed as pebble does in both directions.
			for _, perm := range permutations(len(tt.operands)) {
				ops := make([][]byte, len(perm))
				for i, p := range perm {
					ops[i] = tt.operands[p]
				}
				for _, newer := range []bool{true, false} {
					got := runMerger(t, ops, newer)
					if !bytes.Equal(got, tt.want) {
						g, _ := decodeCurrent(got)
						w, _ := decodeCurrent(tt.want)
						t.Fatalf("order %v (newer=%v): merged %+v, want %+v", perm, newer, g, w)
					}
				}
			}
		})
	}

	t.Run("agrees with Checkin.Newer", func(t *testing.T) {
		a := persistence.Checkin{ID: "a", LocationID: "l1", Timestamp: time.UnixMilli(t0).UTC()}
		b := persistence.Checkin{ID: "b", LocationID: "l2", Timestamp: time.UnixMilli(t0).UTC()}
		got, err := decodeCurrent(runMerger(t, [][]byte{op(t0, "a", "l1"), op(t0, "b", "l2")}, true))
		if err != nil {
			t.Fatal(err)
		}
		want := a
		if b.Newer(a) {
			want = b
		}
		if got != want {
			t.Fatalf("merged %+v, Newer picks %+v", got, want)
		}
	})

	t.Run("corrupt operand", func(t *testing.T) {
		for _, bad := range [][]byte{nil, {1, 2, 3}, append(appendMillis(nil, t0), 0x05, 'a')} {
			if _, err := newCurrentValueMerger(nil, bad); err == nil {
				t.Errorf("Merge(%x): no error", bad)
			}
			m, err := newCurrentValueMerger(nil, op(t0, "a", "l1"))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.MergeNewer(bad); err == nil {
				t.Errorf("MergeNewer(%x): no error", bad)
			}
		}
	})
}

// runMerger merges ops (oldest first) the way pebble does: starting from the
// oldest with MergeNewer, or from the newest with MergeOlder.
func runMerger(t *testing.T, ops [][]byte, newer bool) []byte {
	t.Helper()
	first, rest := ops[0], ops[1:]
	if !newer {
		first, rest = ops[len(ops)-1], slices.Clone(ops[:len(ops)-1])
		slices.Reverse(rest)
	}
	m, err := currentMerger.Merge([]byte("k"), first)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rest {
		buf := bytes.Clone(o) // the caller keeps ownership: scribble over it afterwards
		if newer {
			err = m.MergeNewer(buf)
		} else {
			err = m.MergeOlder(buf)
		}
		if err != nil {
			t.Fatal(err)
		}
		clear(buf)
	}
	out, closer, err := m.Finish(true)
	if err != nil || closer != nil {
		t.Fatalf("Finish: %v, closer %v", err, closer)
	}
	return out
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

func TestKeyOrder(t *testing.T) {
	tests := []struct {
		name  string
		small []byte // sorts strictly before big
		big   []byte
	}{
		{"millis negative before positive", appendMillis(nil, -1), appendMillis(nil, 0)},
		{"millis", appendMillis(nil, 1_000), appendMillis(nil, 1_001)},
		{"bucket negative before positive", appendBucket(nil, -1), appendBucket(nil, 1)},
		{"bucket min", appendBucket(nil, -1<<63), appendBucket(nil, -1<<62)},
		{"inverted millis: newer first", appendInvertedMillis(nil, 1_001), appendInvertedMillis(nil, 1_000)},
		{"inverted millis across 1970", appendInvertedMillis(nil, 0), appendInvertedMillis(nil, -1)},
		{"partition: bucket", appendPartition(nil, "u", "", 5), appendPartition(nil, "u", "", 6)},
		{"user id prefix sorts apart", append(appendPartition(nil, "u", "", 1<<40), 0xff), appendPartition(nil, "u0", "", -1<<40)},
		{"checkin id ascending on equal time", appendCheckinKey(nil, "u", "", 1, 10, "a"), appendCheckinKey(nil, "u", "", 1, 10, "ab")},
		{"newer checkin first", appendCheckinKey(nil, "u", "", 1, 11, "z"), appendCheckinKey(nil, "u", "", 1, 10, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Compare(tt.small, tt.big) >= 0 {
				t.Fatalf("%x does not sort before %x", tt.small, tt.big)
			}
		})
	}

	t.Run("round trips", func(t *testing.T) {
		for _, v := range []int64{-1 << 63, -86_400_000, -1, 0, 1, 1_710_028_800_123, 1<<63 - 1} {
			if got := decodeMillis(appendMillis(nil, v)); got != v {
				t.Errorf("millis %d round trips to %d", v, got)
			}
			if got := decodeInvertedMillis(appendInvertedMillis(nil, v)); got != v {
				t.Errorf("inverted millis %d round trips to %d", v, got)
			}
			if got := decodeBucket(appendBucket(nil, v)); got != v {
				t.Errorf("bucket %d round trips to %d", v, got)
			}
		}
	})
}

func TestPrefixSuccessor(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"last byte incremented", []byte{1, 2}, []byte{1, 3}},
		{"trailing 0xff dropped", []byte{1, 0xff, 0xff}, []byte{2}},
		{"all 0xff", []byte{0xff}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prefixSuccessor(bytes.Clone(tt.in)); !bytes.Equal(got, tt.want) {
				t.Fatalf("prefixSuccessor(%x) = %x, want %x", tt.in, got, tt.want)
			}
		})
	}
}

// TestClosed: Checkpoint, which only this backend has, fails like every
// Store call after Close (the conformance suite's Close checks those).
func TestClosed(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Checkpoint(filepath.Join(t.TempDir(), "copy")); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("Checkpoint after Close: err = %v, want ErrUnavailable", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: time.Now()}
	err := s.WriteCheckins(ctx, []persistence.Checkin{c})
	if !errors.Is(err, persistence.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteCheckins: err = %v, want ErrUnavailable and context.Canceled", err)
	}
	if _, err := s.GetCheckin(t.Context(), "u1", "c1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("checkin of a cancelled write: err = %v, want ErrNotFound", err)
	}
	if err := s.CreateUser(ctx, persistence.User{ID: "u1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateUser: err = %v, want context.Canceled", err)
	}
}

func TestInvalidIDs(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	calls := []struct {
		name string
		call func() error
	}{
		{"user with NUL", func() error { return s.CreateUser(ctx, persistence.User{ID: "a\x00b"}) }},
		{"empty user", func() error { return s.CreateUser(ctx, persistence.User{}) }},
		{"empty location", func() error { return s.CreateLocation(ctx, persistence.Location{}) }},
		{"location NaN", func() error { return s.CreateLocation(ctx, persistence.Location{ID: "l", Lat: nan()}) }},
		{"checkin without id", func() error {
			return s.WriteCheckins(ctx, []persistence.Checkin{{UserID: "u", LocationID: "l", Timestamp: now}})
		}},
		{"checkin location with NUL", func() error {
			return s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c", UserID: "u", LocationID: "l\x00", Timestamp: now}})
		}},
		{"list user with NUL", func() error {
			_, err := s.ListCheckins(ctx, persistence.Query{UserID: "u\x00", From: now, To: now.Add(time.Hour), Limit: 1})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, persistence.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestStoreErr(t *testing.T) {
	disk := errors.New("disk full")
	tests := []struct {
		name string
		in   error
		is   []error
	}{
		{"nil", nil, nil},
		{"not found", pebbledb.ErrNotFound, []error{persistence.ErrNotFound}},
		{"closed", pebbledb.ErrClosed, []error{persistence.ErrUnavailable, pebbledb.ErrClosed}},
		{"cancelled", context.Canceled, []error{persistence.ErrUnavailable, context.Canceled}},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), []error{persistence.ErrUnavailable, context.DeadlineExceeded}},
		{"io", disk, []error{persistence.ErrUnavailable, disk}},
		{"already ours", fmt.Errorf("%w: x", persistence.ErrConflict), []error{persistence.ErrConflict}},
		{"invalid stays invalid", fmt.Errorf("%w: x", persistence.ErrInvalid), []error{persistence.ErrInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := storeErr(tt.in)
			if (got == nil) != (tt.in == nil) {
				t.Fatalf("storeErr(%v) = %v", tt.in, got)
			}
			for _, want := range tt.is {
				if !errors.Is(got, want) {
					t.Errorf("storeErr(%v) = %v, not %v", tt.in, got, want)
				}
			}
			if errors.Is(tt.in, persistence.ErrInvalid) && errors.Is(got, persistence.ErrUnavailable) {
				t.Errorf("storeErr(%v) = %v: an invalid call is not retryable", tt.in, got)
			}
		})
	}
}

func TestLogger(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := zapLogger{zap.New(core)}
	l.Infof("opened %d tables\n", 3)
	l.Errorf("background error: %s", "boom")
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Errorf("Fatalf returned")
			}
		}()
		l.Fatalf("corruption in %s", "000001.sst")
	}()
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.ContextMap()["detail"].(string))
	}
	want := []string{"info opened 3 tables", "error background error: boom", "error corruption in 000001.sst"}
	if !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}

	// A store opened with the logger logs through it, not to stderr.
	core, logs = observer.New(zapcore.DebugLevel)
	s, err := Open(t.TempDir(), WithLogger(zap.New(core)), WithCacheSize(testCacheSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("engine logged %d lines on open and close", logs.Len())
}

// syncModes are the two ways the store can sync its files: the benchmarks
// that write run in both.
var syncModes = []struct {
	name    string
	ioURing bool
}{{"blocking", false}, {"io_uring", true}}

func openSyncing(b *testing.B, ioURing bool) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), WithCacheSize(testCacheSize), WithMemTableSize(4<<20), WithIOUring(ioURing))
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	if ioURing && s.ring == nil {
		b.Skip("io_uring is not available here")
	}
	return s
}

func BenchmarkWriteCheckins(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		for _, mode := range syncModes {
			b.Run(fmt.Sprintf("batch=%d/syncs=%s", size, mode.name), func(b *testing.B) {
				s := openSyncing(b, mode.ioURing)
				defer s.Close()
				ctx := context.Background()
				day := persistence.BucketStart(19792)
				batch := make([]persistence.Checkin, size)
				n := 0
				b.ReportAllocs()
				for b.Loop() {
					for i := range batch {
						n++
						batch[i] = persistence.Checkin{
							ID:         fmt.Sprintf("c%09d", n),
							UserID:     fmt.Sprintf("u%03d", n%100),
							LocationID: "l1",
							Timestamp:  day.Add(time.Duration(n) * time.Second),
						}
					}
					if err := s.WriteCheckins(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "checkins/s")
			})
		}
	}
}

// BenchmarkWriteCheckinsParallel writes from several goroutines, as the
// naive design's handlers do; concurrent synced commits share fsyncs, when
// a blocking sync does not keep the others from running (one P: see
// syncs=io_uring).
func BenchmarkWriteCheckinsParallel(b *testing.B) {
	for _, mode := range syncModes {
		b.Run("syncs="+mode.name, func(b *testing.B) {
			const size = 16
			s := openSyncing(b, mode.ioURing)
			defer s.Close()
			day := persistence.BucketStart(19792)
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				batch := make([]persistence.Checkin, size)
				for pb.Next() {
					for i := range batch {
						n := seq.Add(1)
						batch[i] = persistence.Checkin{
							ID:         fmt.Sprintf("c%09d", n),
							UserID:     fmt.Sprintf("u%03d", n%100),
							LocationID: "l1",
							Timestamp:  day.Add(time.Duration(n) * time.Second),
						}
					}
					if err := s.WriteCheckins(context.Background(), batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(seq.Load())/b.Elapsed().Seconds(), "checkins/s")
		})
	}
}

// TestGetCheckinsFromTables looks checkins up once they live only in
// tables at the bottom level (the batch iterator's per-level state is what
// differs from GetCheckin): every stored id must be found and no other.
func TestGetCheckinsFromTables(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir())
	defer s.Close()
	day := persistence.BucketStart(19792)
	var refs, misses []persistence.CheckinRef
	want := map[persistence.CheckinRef]persistence.Checkin{}
	for b := range 20 {
		batch := make([]persistence.Checkin, 500)
		for i := range batch {
			k := b*len(batch) + i
			c := persistence.Checkin{ID: fmt.Sprintf("c%d", k), UserID: fmt.Sprintf("u%d", k%97), LocationID: fmt.Sprintf("l%d", k%13), Timestamp: day.Add(time.Duration(k) * time.Second)}
			batch[i] = c
			r := persistence.CheckinRef{UserID: c.UserID, ID: c.ID}
			want[r] = c
			refs = append(refs, r)
			misses = append(misses, persistence.CheckinRef{UserID: c.UserID, ID: fmt.Sprintf("c%d", k+1)}) // another user's id
		}
		if err := s.WriteCheckins(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	m := s.db.Metrics()
	if n := m.Levels[6].TablesCount; n == 0 {
		t.Fatalf("no tables on the bottom level after a full compaction:\n%s", m)
	}
	if n := m.Levels[0].TablesCount; n != 0 {
		t.Fatalf("%d tables left on L0 after a full compaction", n)
	}

	got, found, err := s.GetCheckins(ctx, append(refs, misses...))
	if err != nil {
		t.Fatalf("GetCheckins: %v", err)
	}
	for i, r := range refs {
		if !found[i] {
			t.Fatalf("GetCheckins missed stored checkin %+v", r)
		}
		if g, w := got[i], want[r]; g.ID != w.ID || g.UserID != w.UserID || g.LocationID != w.LocationID || !g.Timestamp.Equal(w.Timestamp) {
			t.Fatalf("GetCheckins(%+v) = %+v, want %+v", r, got[i], w)
		}
	}
	for i, r := range misses {
		j := len(refs) + i
		if _, stored := want[r]; found[j] != stored {
			t.Fatalf("GetCheckins(%+v): found %v, stored %v", r, found[j], stored)
		}
	}
}

// BenchmarkLookupNewIDs looks up checkin ids never stored, as the writers
// do for client-chosen ids a grain has forgotten, in a store holding 512k
// checkins of 10k users (in tables and memtables): a GetCheckin each
// against GetCheckins for a batch of 256. ns/op is per id.
func BenchmarkLookupNewIDs(b *testing.B) {
	s, err := Open(b.TempDir()) // the node's defaults: cache and memtable sizes matter here
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	day := persistence.BucketStart(19792)
	batch := make([]persistence.Checkin, 256)
	for n := range 2048 {
		for i := range batch {
			k := n*len(batch) + i
			batch[i] = persistence.Checkin{ID: fmt.Sprintf("run-%d", k), UserID: fmt.Sprintf("u%d", k%10000), LocationID: fmt.Sprintf("l%d", k%1000), Timestamp: day.Add(time.Duration(k) * time.Millisecond)}
		}
		if err := s.WriteCheckins(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	ref := func(i int) persistence.CheckinRef {
		return persistence.CheckinRef{UserID: fmt.Sprintf("u%d", i%10000), ID: fmt.Sprintf("new-%d", i)}
	}
	b.Run("each", func(b *testing.B) {
		i := 0
		for b.Loop() {
			r := ref(i)
			i++
			if _, err := s.GetCheckin(ctx, r.UserID, r.ID); !errors.Is(err, persistence.ErrNotFound) {
				b.Fatalf("GetCheckin of a new id: %v", err)
			}
		}
	})
	b.Run("batch=256", func(b *testing.B) {
		refs := make([]persistence.CheckinRef, 0, 256)
		flush := func() {
			_, found, err := s.GetCheckins(ctx, refs)
			if err != nil || slices.Contains(found, true) {
				b.Fatalf("GetCheckins of new ids: %v, %v", found, err)
			}
			refs = refs[:0]
		}
		i := 0
		for b.Loop() {
			refs = append(refs, ref(i))
			i++
			if len(refs) == cap(refs) {
				flush()
			}
		}
		flush()
	})
}

// Buckets finds the non-empty buckets by seeking through the partitions:
// in both orders, within bounds, per location, stopping when asked, and
// never seeing the keys of a user or location whose id extends another's.
func TestBuckets(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	day := func(b int64) time.Time { return persistence.BucketStart(b).Add(5 * time.Hour) }
	var batch []persistence.Checkin
	add := func(user, loc string, buckets ...int64) {
		for i, b := range buckets {
			for k := range 3 { // several rows per bucket: one seek must skip them all
				batch = append(batch, persistence.Checkin{ID: fmt.Sprintf("%s-%s-%d-%d", user, loc, i, k), UserID: user, LocationID: loc, Timestamp: day(b).Add(time.Duration(k) * time.Minute)})
			}
		}
	}
	add("u1", "l1", -3, 0, 6)
	add("u1", "l10", 5, 100)
	add("u10", "l1", 1, 2, 3) // ids that extend u1's
	add("u", "l1", 4)         // and an id that u1's extends
	if err := s.WriteCheckins(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	r := reader{s.db}
	for _, tt := range []struct {
		name     string
		user     string
		location string
		lo, hi   int64
		order    persistence.Order
		limit    int
		want     []int64
	}{
		{"all, newest first", "u1", "", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 0, []int64{100, 6, 5, 0, -3}},
		{"all, oldest first", "u1", "", math.MinInt64, math.MaxInt64, persistence.OldestFirst, 0, []int64{-3, 0, 5, 6, 100}},
		{"bounds are inclusive", "u1", "", 0, 6, persistence.NewestFirst, 0, []int64{6, 5, 0}},
		{"bounds between buckets", "u1", "", 1, 99, persistence.OldestFirst, 0, []int64{5, 6}},
		{"stops when asked", "u1", "", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 2, []int64{100, 6}},
		{"one location", "u1", "l1", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 0, []int64{6, 0, -3}},
		{"a location whose id extends l1's", "u1", "l10", math.MinInt64, math.MaxInt64, persistence.OldestFirst, 0, []int64{5, 100}},
		{"a user whose id extends u1's", "u10", "", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 0, []int64{3, 2, 1}},
		{"a user whose id u1's extends", "u", "", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 0, []int64{4}},
		{"no checkins", "u2", "", math.MinInt64, math.MaxInt64, persistence.NewestFirst, 0, nil},
		{"empty range", "u1", "", 7, 99, persistence.NewestFirst, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := storetest.Buckets(t, r, tt.user, tt.location, tt.lo, tt.hi, tt.order, tt.limit); !slices.Equal(got, tt.want) {
				t.Fatalf("buckets %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkListCheckins reads ranges of users with a year of daily
// checkins (20 users, 365 days, 3 checkins a day at 10 locations): the
// first page of 50 of the whole year, newest first; the whole year in one
// page; the same two at one location; and the current location.
func BenchmarkListCheckins(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	day := persistence.BucketStart(19792)
	var all []persistence.Checkin
	for u := range 20 {
		for d := range 365 {
			for k := range 3 {
				all = append(all, persistence.Checkin{
					ID: fmt.Sprintf("c%d-%d-%d", u, d, k), UserID: fmt.Sprintf("u%d", u), LocationID: fmt.Sprintf("l%d", (d+k)%10),
					Timestamp: day.AddDate(0, 0, d).Add(time.Duration(k) * time.Hour),
				})
			}
		}
	}
	for batch := range slices.Chunk(all, 1000) {
		if err := s.WriteCheckins(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name     string
		location string
		limit    int
	}{{"first-page", "", 50}, {"whole-year", "", 2000}, {"location-first-page", "l3", 20}, {"location-whole-year", "l3", 2000}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				q := persistence.Query{UserID: fmt.Sprintf("u%d", i%20), LocationID: bc.location, From: day, To: day.AddDate(1, 0, 0), Limit: bc.limit}
				if p, err := s.ListCheckins(b.Context(), q); err != nil || len(p.Checkins) == 0 {
					b.Fatalf("ListCheckins: %d checkins, %v", len(p.Checkins), err)
				}
			}
		})
	}
	b.Run("current-location", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.CurrentLocation(b.Context(), fmt.Sprintf("u%d", i%20)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
