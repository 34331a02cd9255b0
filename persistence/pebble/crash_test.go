package pebble

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/checkin/checkin/persistence"
)

// TestAcknowledgedWritesSurviveACrash: after each acknowledged write of
// every kind (records, checkins, deletes) a copy of the file system that
// keeps only what was synced (files and directory entries) opens to a
// store that holds it; a checkpoint survives a crash too.
func TestAcknowledgedWritesSurviveACrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, err := Open("/data/db", WithCacheSize(testCacheSize), WithMemTableSize(4<<20), func(c *config) { c.wrapFS = func(vfs.FS) vfs.FS { return mem } })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	crash := func(check func(s *Store)) {
		t.Helper()
		clone := mem.CrashClone(vfs.CrashCloneCfg{})
		c, err := Open("/data/db", WithCacheSize(testCacheSize), func(c *config) { c.wrapFS = func(vfs.FS) vfs.FS { return clone } })
		if err != nil {
			t.Fatalf("open clone: %v", err)
		}
		defer c.Close()
		check(c)
	}
	if err := s.CreateUser(ctx, persistence.User{ID: "u1", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if _, err := c.GetUser(ctx, "u1"); err != nil {
			t.Fatalf("user lost: %v", err)
		}
	})
	if _, err := s.UpdateUser(ctx, "u1", persistence.UserPatch{Name: ptr("b")}); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if u, err := c.GetUser(ctx, "u1"); err != nil || u.Name != "b" {
			t.Fatalf("update lost: %v %v", u, err)
		}
	})
	if err := s.CreateLocation(ctx, persistence.Location{ID: "l1", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLocation(ctx, "l1"); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if _, err := c.GetLocation(ctx, "l1"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("delete lost: %v", err)
		}
	})
	ck := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: time.UnixMilli(1000).UTC()}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{ck}); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if _, err := c.GetCheckin(ctx, "u1", "c1"); err != nil {
			t.Fatalf("checkin lost: %v", err)
		}
	})
	if _, err := s.DeleteCheckin(ctx, "u1", "c1"); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if _, err := c.GetCheckin(ctx, "u1", "c1"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("checkin delete lost: %v", err)
		}
	})
	if err := s.WriteCheckins(ctx, []persistence.Checkin{ck}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	crash(func(c *Store) {
		if _, err := c.GetCheckin(ctx, "u1", "c1"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("user delete lost: %v", err)
		}
		if _, err := c.GetUser(ctx, "u1"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("user delete lost: %v", err)
		}
	})
	if err := s.Checkpoint("/backup/x"); err != nil {
		t.Fatal(err)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{})
	c, err := Open("/backup/x", func(c *config) { c.wrapFS = func(vfs.FS) vfs.FS { return clone } })
	if err != nil {
		t.Fatalf("open checkpoint after crash: %v", err)
	}
	c.Close()
}

func ptr[T any](v T) *T { return &v }
