package pebble

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/checkin/checkin/persistence"
)

// unreadableFS fails every read of the table file whose base name is in
// bad, as a bad sector would.
type unreadableFS struct {
	vfs.FS
	bad *atomic.Value // string
}

type unreadableFile struct {
	vfs.File
	name string
	bad  *atomic.Value
}

func (fs unreadableFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.HasSuffix(name, ".sst") {
		return f, err
	}
	return unreadableFile{f, filepath.Base(name), fs.bad}, nil
}

func (f unreadableFile) ReadAt(p []byte, off int64) (int, error) {
	if b, _ := f.bad.Load().(string); b == f.name {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EIO}
	}
	return f.File.ReadAt(p, off)
}

// TestGetCheckinsReadError: a batch look-up of checkin ids fails as a
// whole when a table it needs cannot be read, as GetCheckin does, even
// when a later id of the batch reads cleanly: a read error taken for "not
// found" has a retry of that id written as a new checkin (listed twice,
// one of them beyond the reach of any delete by id).
func TestGetCheckinsReadError(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bad := &atomic.Value{}
	bad.Store("")
	s, err := Open(dir, WithCacheSize(64<<10), func(c *config) {
		c.wrapFS = func(fs vfs.FS) vfs.FS { return unreadableFS{fs, bad} }
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t1 := persistence.BucketStart(19792).Add(time.Hour)
	a := persistence.Checkin{ID: "x010000z", UserID: "a", LocationID: "l", Timestamp: t1}
	batch := []persistence.Checkin{a}
	for i := range 20000 { // many blocks, so that a's is not the one cached
		batch = append(batch, persistence.Checkin{ID: fmt.Sprintf("x%06d", i), UserID: "a", LocationID: "l", Timestamp: t1.Add(-time.Duration(i+1) * time.Second)})
	}
	if err := s.WriteCheckins(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	first := tables(dir)
	if len(first) != 1 {
		t.Fatalf("tables after the first flush: %v, want one", first)
	}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c2", UserID: "b", LocationID: "l", Timestamp: t1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	bad.Store(first[0])
	if _, err := s.GetCheckin(ctx, "a", a.ID); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("GetCheckin of the unreadable table: %v, want ErrUnavailable", err)
	}
	_, found, err := s.GetCheckins(ctx, []persistence.CheckinRef{{UserID: "a", ID: a.ID}, {UserID: "b", ID: "c2"}})
	if !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("GetCheckins with a's table unreadable: found %v, err %v; want ErrUnavailable", found, err)
	}
	bad.Store("")
	_, found, err = s.GetCheckins(ctx, []persistence.CheckinRef{{UserID: "a", ID: a.ID}, {UserID: "b", ID: "c2"}})
	if err != nil || !found[0] || !found[1] {
		t.Errorf("GetCheckins once the table reads again: found %v, err %v; want both", found, err)
	}
}

// tables returns the table files in dir.
func tables(dir string) []string {
	var out []string
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".sst") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestCurrentLocationShortKey: a by-user key too short to hold a time and
// an id, in the newest bucket, is reported corrupt, never read past (a
// checkin made of other bytes) or a panic.
func TestCurrentLocationShortKey(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir())
	defer s.Close()
	ts := persistence.BucketStart(19792).Add(time.Hour)
	if err := s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c1", UserID: "u", LocationID: "l", Timestamp: ts}}); err != nil {
		t.Fatal(err)
	}
	short := append(appendPartition(nil, "u", "", 19792), 0, 0) // 2 bytes where a time of 8 and an id belong
	if err := s.db.Set(short, []byte("l"), pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	c, err := s.CurrentLocation(ctx, "u")
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("CurrentLocation = %+v, %v; want the corrupt key reported", c, err)
	}
}
