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
			ctx := t.Context()
			dir := t.TempDir()
			day := persistence.BucketStart(19792)
			s := open(t, dir)
			// More keys than one move batch, over several users, locations and days.
			var all []persistence.Checkin
			for i := range 4000 {
				all = append(all, persistence.Checkin{
					ID:         fmt.Sprintf("c%d", i),
					UserID:     fmt.Sprintf("u%d", i%7),
					LocationID: fmt.Sprintf("l%d", i%5),
					Timestamp:  day.Add(time.Duration(i) * 3 * time.Minute),
				})
			}
			if err := s.WriteCheckins(ctx, all); err != nil {
				t.Fatal(err)
			}
			want := snapshot(t, s, all)
			if n := downgrade(t, s.db, tt.every); n < moveBatchKeys {
				t.Fatalf("downgraded %d keys, want more than one move batch", n)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = open(t, dir)
			defer s.Close()
			if got := snapshot(t, s, all); got != want {
				t.Fatalf("after the upgrade the store answers\n%s\nwant\n%s", got, want)
			}
			if n := countKeys(t, s.db, []byte{famByUser}, []byte{famCheckinByID + 1}); n != 0 {
				t.Fatalf("%d layout 1 keys left", n)
			}
			v, closer, err := s.db.Get(layoutKey)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			if !bytes.Equal(v, []byte{layout}) {
				t.Fatalf("layout %v, want %d", v, layout)
			}
		})
	}
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
