package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/checkin/checkin/persistence"
)

// A database in layout 1 (and one left part way through the move, as a
// crash would) opens with every checkin readable as before, and holds no
// layout 1 key afterwards.
func TestUpgradesLayout1(t *testing.T) {
	for _, tt := range []struct {
		name  string
		every int // downgrade every n-th key; 1: all of them
	}{
		{"whole database", 1},
		{"interrupted move", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			// More keys than one move batch, over several users, locations and days.
			all := writeSome(t, s, 4000, 3*time.Minute)
			want := snapshot(t, s, all)
			if n := downgrade(t, s.db, tt.every); n < moveBatchKeys {
				t.Fatalf("downgraded %d keys, want more than one move batch", n)
			}
			s = reopenUpgraded(t, s, dir, all, want)
			defer s.Close()
			if n := countKeys(t, s.db, []byte{famByUser}, []byte{famCheckinByID + 1}); n != 0 {
				t.Fatalf("%d layout 1 keys left", n)
			}
		})
	}
}

// A database in layout 2 (marked 2, with bucket index rows) opens as
// layout 3 with every checkin readable as before; its index rows, even
// ones naming buckets with no rows, change no answer.
func TestUpgradesLayout2(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	all := writeSome(t, s, 600, 37*time.Minute)
	want := snapshot(t, s, all)
	// Layout 2's index rows: one per (user, bucket) and (user, location,
	// bucket) written, and stale ones for empty buckets around them.
	b := s.db.NewBatch()
	for _, c := range all {
		bucket := persistence.BucketOf(c.Timestamp)
		for _, bk := range []int64{bucket - 40, bucket, bucket + 40} {
			user := appendUserFamily(nil, c.UserID, 0x05)
			loc := append(append(appendUserFamily(nil, c.UserID, 0x06), c.LocationID...), sep)
			for _, k := range [][]byte{appendBucket(user, bk), appendBucket(loc, bk)} {
				if err := b.Set(k, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := b.Set(layoutKey, []byte{2}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	s = reopenUpgraded(t, s, dir, all, want)
	defer s.Close()
}

// writeSome writes n checkins of 7 users at 5 locations, one every step,
// and returns them.
func writeSome(t *testing.T, s *Store, n int, step time.Duration) []persistence.Checkin {
	t.Helper()
	day := persistence.BucketStart(19792)
	all := make([]persistence.Checkin, n)
	for i := range all {
		all[i] = persistence.Checkin{
			ID:         fmt.Sprintf("c%d", i),
			UserID:     fmt.Sprintf("u%d", i%7),
			LocationID: fmt.Sprintf("l%d", i%5),
			Timestamp:  day.Add(time.Duration(i) * step),
		}
	}
	if err := s.WriteCheckins(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	return all
}

// reopenUpgraded closes s, opens dir again (which upgrades it), and checks
// that the store answers what snapshot rendered before (want) and is marked
// with the current layout. The caller closes the store it returns.
func reopenUpgraded(t *testing.T, s *Store, dir string, all []persistence.Checkin, want string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	if got := snapshot(t, s, all); got != want {
		s.Close()
		t.Fatalf("after the upgrade the store answers\n%s\nwant\n%s", got, want)
	}
	v, closer, err := s.db.Get(layoutKey)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	mark := bytes.Clone(v)
	_ = closer.Close()
	if !bytes.Equal(mark, []byte{layout}) {
		s.Close()
		t.Fatalf("layout %v, want %d", mark, layout)
	}
	return s
}

func TestRefusesUnknownLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.db.Set(layoutKey, []byte{layout + 1}, pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir); !errors.Is(err, errLayout) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open = %v, want errLayout", err)
	}
}

// snapshot renders what the store answers about checkins: every user's
// range read, current location, id listing, and every location's range
// read, and a look-up of each checkin by id.
func snapshot(t *testing.T, s *Store, all []persistence.Checkin) string {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	users, locations := map[string]bool{}, map[string]bool{}
	for _, c := range all {
		users[c.UserID], locations[c.LocationID] = true, true
		got, err := s.GetCheckin(ctx, c.UserID, c.ID)
		if err != nil || got.LocationID != c.LocationID || !got.Timestamp.Equal(c.Timestamp) {
			t.Fatalf("GetCheckin(%s, %s) = %+v, %v", c.UserID, c.ID, got, err)
		}
	}
	for _, u := range slices.Sorted(maps.Keys(users)) {
		for _, l := range append([]string{""}, slices.Sorted(maps.Keys(locations))...) {
			page, err := s.ListCheckins(ctx, persistence.Query{UserID: u, LocationID: l, From: time.UnixMilli(0), To: time.UnixMilli(1 << 50), Limit: 10_000})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s@%s: %d checkins", u, l, len(page.Checkins))
			for _, c := range page.Checkins {
				fmt.Fprintf(&b, " %s", c.ID)
			}
			b.WriteByte('\n')
		}
		cur, err := s.CurrentLocation(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var ids int
		if _, err := s.EachCheckinID(ctx, u, len(all), func([]byte) { ids++ }); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: current %v, %d ids\n", u, cur, ids)
	}
	return b.String()
}

// downgrade rewrites every every-th checkin row into layout 1 (family |
// user id | sep | rest) and removes the layout mark, as a database written
// before layout 2, or one whose move stopped part way, would be. It
// returns how many keys it rewrote.
func downgrade(t *testing.T, db *pebbledb.DB, every int) int {
	t.Helper()
	it, err := db.NewIter(&pebbledb.IterOptions{LowerBound: []byte{famUserScoped}, UpperBound: []byte{famUserScoped + 1}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	n, i := 0, 0
	for ok := it.First(); ok; ok = it.Next() {
		if i++; i%every != 0 {
			continue
		}
		k := it.Key()
		end := 1 + bytes.IndexByte(k[1:], sep) // the sep after the user id
		old := append(append(append([]byte{k[end+1]}, k[1:end]...), sep), k[end+2:]...)
		if err := b.Set(old, bytes.Clone(it.Value()), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(bytes.Clone(k), nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(layoutKey, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	return n
}

func countKeys(t *testing.T, db *pebbledb.DB, lower, upper []byte) int {
	t.Helper()
	it, err := db.NewIter(&pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}
