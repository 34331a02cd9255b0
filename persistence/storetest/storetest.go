package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// Gap is a part of the suite a backend declares it does not have: its
// subtest is skipped, saying so. An optional interface the store lacks
// without declaring it fails, as does one it declares lacking and has.
type Gap int

const (
	// NoBatchGet: the store has no persistence.CheckinBatchGetter (writers
	// then call GetCheckin for each id).
	NoBatchGet Gap = iota + 1
	// NoIDLister: the store has no persistence.CheckinIDLister (grains
	// then look new ids up in it).
	NoIDLister
)

// Run runs the conformance suite. newStore must return a new, empty store
// for the calling subtest; Run closes it when the subtest ends. gaps are
// the parts the backend declares it does not have.
func Run(t *testing.T, newStore func(t *testing.T) persistence.Store, gaps ...Gap) {
	declared := func(g Gap) bool { return slices.Contains(gaps, g) }
	tests := []struct {
		name string
		fn   func(t *testing.T, s persistence.Store)
	}{
		{"Ping", testPing},
		{"Users", testUsers},
		{"Locations", testLocations},
		{"ConcurrentCreate", testConcurrentCreate},
		{"Updates", testUpdates},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"DeleteUser", testDeleteUser},
		{"DeleteLocation", testDeleteLocation},
		{"DeleteCheckin", testDeleteCheckin},
		{"ListRecords", testListRecords},
		{"WriteThenGetCheckin", testWriteThenGetCheckin},
		{"GetCheckinsBatch", func(t *testing.T, s persistence.Store) { testGetCheckinsBatch(t, s, declared(NoBatchGet)) }},
		{"EachCheckinID", func(t *testing.T, s persistence.Store) { testEachCheckinID(t, s, declared(NoIDLister)) }},
		{"EmptyBatch", testEmptyBatch},
		{"RefusedWrite", testRefusedWrite},
		{"CancelledRead", testCancelledRead},
		{"IdempotentRewrite", testIdempotentRewrite},
		{"CurrentLocation", testCurrentLocation},
		{"RangeAcrossBuckets", testRangeAcrossBuckets},
		{"RangeBounds", testRangeBounds},
		{"LocationFilter", testLocationFilter},
		{"EmptyResults", testEmptyResults},
		{"InvalidQuery", testInvalidQuery},
		{"BatchSpanningUsers", testBatchSpanningUsers},
		{"LargeBatch", testLargeBatch},
		{"ConcurrentWrites", testConcurrentWrites},
		{"WritesWhilePaging", testWritesWhilePaging},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// gapDeclared reports whether the store has what, which it must unless it
// declared the gap (then the subtest is skipped, saying so); a store that
// declared a gap it does not have, or has a gap it did not declare, fails.
func gapDeclared(t *testing.T, what string, has, gap bool) bool {
	t.Helper()
	switch {
	case has && gap:
		t.Fatalf("the store declares it has no %s, and has one: drop the gap", what)
	case !has && !gap:
		t.Fatalf("the store has no %s and declares no gap for it (a decorator that stops passing it on?)", what)
	case !has:
		t.Skip("declared gap: the store has no " + what)
	}
	return true
}

// day0 is the start of a day bucket; test data lives in the days after it.
var day0 = persistence.BucketStart(persistence.BucketOf(time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)))

// at returns a time `day` buckets after day0, plus d.
func at(day int, d time.Duration) time.Time {
	return day0.Add(time.Duration(day)*persistence.BucketWidth + d)
}

// everything is a range holding all test data.
func everything(userID string) persistence.Query {
	return persistence.Query{UserID: userID, From: at(-1000, 0), To: at(1000, 0), Limit: 1000}
}

func testPing(t *testing.T, s persistence.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testUsers(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	created := time.Date(2024, 5, 6, 7, 8, 9, 123_456_789, time.FixedZone("UTC+2", 7200))
	u := persistence.User{ID: "user_1-A", Name: "Zoë 🚀 \"quoted\"", CreatedAt: created}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	want := persistence.User{ID: u.ID, Name: u.Name, CreatedAt: persistence.Millis(created)}
	checkUser(t, s, want)

	err := s.CreateUser(ctx, persistence.User{ID: u.ID, Name: "someone else", CreatedAt: created.Add(time.Hour)})
	if !errors.Is(err, persistence.ErrConflict) {
		t.Fatalf("CreateUser of an existing id: err = %v, want ErrConflict", err)
	}
	checkUser(t, s, want) // unchanged by the conflicting create

	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetUser(nobody): err = %v, want ErrNotFound", err)
	}
	// A prefix of an existing id is another id.
	if _, err := s.GetUser(ctx, "user_1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetUser(user_1): err = %v, want ErrNotFound", err)
	}
	// Users and locations are separate: a location may share a user's id.
	if err := s.CreateLocation(ctx, persistence.Location{ID: u.ID, Name: "place", CreatedAt: created}); err != nil {
		t.Fatalf("CreateLocation with a user's id: %v", err)
	}
	// A user with zero-valued fields round-trips too.
	checkCreateUser(t, s, persistence.User{ID: "u2"})
}

func checkCreateUser(t *testing.T, s persistence.Store, u persistence.User) {
	t.Helper()
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", u.ID, err)
	}
	u.CreatedAt = persistence.Millis(u.CreatedAt)
	checkUser(t, s, u)
}

func checkUser(t *testing.T, s persistence.Store, want persistence.User) {
	t.Helper()
	got, err := s.GetUser(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetUser(%q): %v", want.ID, err)
	}
	if got.ID != want.ID || got.Name != want.Name || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("GetUser(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func testLocations(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	created := time.Date(2023, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
	locs := []persistence.Location{
		{ID: "syd", Name: "Sydney Opera House", Lat: -33.856784, Lon: 151.215297, CreatedAt: created},
		{ID: "pole", Name: "North Pole", Lat: 90, Lon: -180, CreatedAt: created},
		{ID: "null-island", Name: "", Lat: 0, Lon: 0},
		{ID: "berlin_1", Name: "Brandenburger Tor", Lat: 52.51627750000001, Lon: 13.377704, CreatedAt: created.Add(-time.Hour)},
	}
	for _, l := range locs {
		if err := s.CreateLocation(ctx, l); err != nil {
			t.Fatalf("CreateLocation(%q): %v", l.ID, err)
		}
	}
	for _, l := range locs {
		want := l
		want.CreatedAt = persistence.Millis(l.CreatedAt)
		checkLocation(t, s, want)
	}

	err := s.CreateLocation(ctx, persistence.Location{ID: "syd", Name: "elsewhere", Lat: 1, Lon: 2})
	if !errors.Is(err, persistence.ErrConflict) {
		t.Fatalf("CreateLocation of an existing id: err = %v, want ErrConflict", err)
	}
	want := locs[0]
	want.CreatedAt = persistence.Millis(want.CreatedAt)
	checkLocation(t, s, want)

	if _, err := s.GetLocation(ctx, "nowhere"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetLocation(nowhere): err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(ctx, "syd"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetUser of a location id: err = %v, want ErrNotFound", err)
	}
}

func checkLocation(t *testing.T, s persistence.Store, want persistence.Location) {
	t.Helper()
	got, err := s.GetLocation(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetLocation(%q): %v", want.ID, err)
	}
	if got.ID != want.ID || got.Name != want.Name || got.Lat != want.Lat || got.Lon != want.Lon || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("GetLocation(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// testUpdates: an update changes the fields it names and nothing else, is
// what later reads return, and is refused for a missing record or an empty
// patch.
func testUpdates(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	created := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	if err := s.CreateUser(ctx, persistence.User{ID: "ann", Name: "Ann", CreatedAt: created}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := s.CreateLocation(ctx, persistence.Location{ID: "moma", Name: "MoMA", Lat: 40.7614, Lon: -73.9776, CreatedAt: created}); err != nil {
		t.Fatalf("CreateLocation: %v", err)
	}

	users := []struct {
		name  string
		patch persistence.UserPatch
		want  persistence.User
	}{
		{"rename", persistence.UserPatch{Name: ptr("Ann Lee")}, persistence.User{ID: "ann", Name: "Ann Lee", CreatedAt: created}},
		{"same name again", persistence.UserPatch{Name: ptr("Ann Lee")}, persistence.User{ID: "ann", Name: "Ann Lee", CreatedAt: created}},
		{"empty name", persistence.UserPatch{Name: ptr("")}, persistence.User{ID: "ann", Name: "", CreatedAt: created}},
	}
	for _, tt := range users {
		got, err := s.UpdateUser(ctx, "ann", tt.patch)
		if err != nil {
			t.Fatalf("%s: UpdateUser: %v", tt.name, err)
		}
		if got.ID != tt.want.ID || got.Name != tt.want.Name || !got.CreatedAt.Equal(tt.want.CreatedAt) {
			t.Fatalf("%s: UpdateUser = %+v, want %+v", tt.name, got, tt.want)
		}
		checkUser(t, s, tt.want)
	}

	loc := func(name string, lat, lon float64) persistence.Location {
		return persistence.Location{ID: "moma", Name: name, Lat: lat, Lon: lon, CreatedAt: created}
	}
	locations := []struct {
		name  string
		patch persistence.LocationPatch
		want  persistence.Location
	}{
		{"name only", persistence.LocationPatch{Name: ptr("Museum of Modern Art")}, loc("Museum of Modern Art", 40.7614, -73.9776)},
		{"lat only", persistence.LocationPatch{Lat: ptr(40.76143)}, loc("Museum of Modern Art", 40.76143, -73.9776)},
		{"lon only", persistence.LocationPatch{Lon: ptr(-73.97761)}, loc("Museum of Modern Art", 40.76143, -73.97761)},
		{"all three", persistence.LocationPatch{Name: ptr("MoMA"), Lat: ptr(-90.0), Lon: ptr(180.0)}, loc("MoMA", -90, 180)},
		{"zeros", persistence.LocationPatch{Lat: ptr(0.0), Lon: ptr(0.0)}, loc("MoMA", 0, 0)},
	}
	for _, tt := range locations {
		got, err := s.UpdateLocation(ctx, "moma", tt.patch)
		if err != nil {
			t.Fatalf("%s: UpdateLocation: %v", tt.name, err)
		}
		if got.ID != tt.want.ID || got.Name != tt.want.Name || got.Lat != tt.want.Lat || got.Lon != tt.want.Lon || !got.CreatedAt.Equal(tt.want.CreatedAt) {
			t.Fatalf("%s: UpdateLocation = %+v, want %+v", tt.name, got, tt.want)
		}
		checkLocation(t, s, tt.want)
	}

	refused := []struct {
		name string
		call func() error
		want error
	}{
		{"missing user", func() error { _, err := s.UpdateUser(ctx, "nobody", persistence.UserPatch{Name: ptr("x")}); return err }, persistence.ErrNotFound},
		{"missing location", func() error {
			_, err := s.UpdateLocation(ctx, "nowhere", persistence.LocationPatch{Lat: ptr(1.0)})
			return err
		}, persistence.ErrNotFound},
		{"a location id as user", func() error { _, err := s.UpdateUser(ctx, "moma", persistence.UserPatch{Name: ptr("x")}); return err }, persistence.ErrNotFound},
		{"empty user patch", func() error { _, err := s.UpdateUser(ctx, "ann", persistence.UserPatch{}); return err }, persistence.ErrInvalid},
		{"empty location patch", func() error { _, err := s.UpdateLocation(ctx, "moma", persistence.LocationPatch{}); return err }, persistence.ErrInvalid},
		{"empty user id", func() error { _, err := s.UpdateUser(ctx, "", persistence.UserPatch{Name: ptr("x")}); return err }, persistence.ErrInvalid},
	}
	for _, tt := range refused {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("an update of a missing user created it: GetUser err = %v", err)
	}
	checkUser(t, s, persistence.User{ID: "ann", Name: "", CreatedAt: created})
	checkLocation(t, s, loc("MoMA", 0, 0))
}

// testConcurrentUpdates: concurrent updates of different fields of one
// location all take effect; none is lost to another's write of the fields
// it read. A caller retries ErrUnavailable, as the contract allows.
func testConcurrentUpdates(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	for round := range 5 {
		id := fmt.Sprintf("busy-%d", round)
		if err := s.CreateLocation(ctx, persistence.Location{ID: id, Name: "old", Lat: 1, Lon: 2}); err != nil {
			t.Fatalf("CreateLocation: %v", err)
		}
		patches := []persistence.LocationPatch{{Name: ptr("new")}, {Lat: ptr(-3.5)}, {Lon: ptr(4.25)}}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, len(patches))
		for i, p := range patches {
			wg.Go(func() {
				<-start
				for range 10 {
					if _, errs[i] = s.UpdateLocation(ctx, id, p); !errors.Is(errs[i], persistence.ErrUnavailable) {
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: update %d: %v", round, i, err)
			}
		}
		got, err := s.GetLocation(ctx, id)
		if err != nil {
			t.Fatalf("GetLocation: %v", err)
		}
		if got.Name != "new" || got.Lat != -3.5 || got.Lon != 4.25 {
			t.Fatalf("round %d: after concurrent updates of name, lat and lon the location is %+v, want all three changed", round, got)
		}
	}
}

// testDeleteUser: deleting a user removes the user and every checkin of the
// user from every read, leaves other users (one whose id extends it
// included) as they were, answers ErrNotFound when there is no user, and a
// user created again with the same id starts empty and is written and read
// as any other.
func testDeleteUser(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 7))
	for _, id := range []string{"del", "dela"} {
		if err := s.CreateUser(ctx, persistence.User{ID: id, Name: id}); err != nil {
			t.Fatalf("CreateUser(%s): %v", id, err)
		}
	}
	gone := generate(rng, "del", 60, 6, nil)
	kept := generate(rng, "dela", 40, 6, nil)
	mustWrite(t, s, append(slices.Clone(gone), kept...)...)

	if err := s.DeleteUser(ctx, "del"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	checkGone := func(what string) {
		t.Helper()
		if _, err := s.GetUser(ctx, "del"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("%s: GetUser err = %v, want ErrNotFound", what, err)
		}
		checkEmpty(t, s, everything("del"))
		for _, loc := range []string{"l0", "l1", "l2", "l3", "l4"} {
			q := everything("del")
			q.LocationID = loc
			checkEmpty(t, s, q)
		}
		if _, err := s.CurrentLocation(ctx, "del"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("%s: CurrentLocation err = %v, want ErrNotFound", what, err)
		}
		for _, c := range gone {
			if _, err := s.GetCheckin(ctx, "del", c.ID); !errors.Is(err, persistence.ErrNotFound) {
				t.Fatalf("%s: GetCheckin(%s) err = %v, want ErrNotFound", what, c.ID, err)
			}
		}
		if l, ok := persistence.As[persistence.CheckinIDLister](s); ok {
			n := 0
			if _, err := l.EachCheckinID(ctx, "del", 1000, func([]byte) { n++ }); err != nil || n != 0 {
				t.Fatalf("%s: EachCheckinID listed %d ids (err %v), want none", what, n, err)
			}
		}
	}
	checkGone("after the delete")
	checkStored(t, s, "the other user", "dela", kept)
	checkUser(t, s, persistence.User{ID: "dela", Name: "dela", CreatedAt: persistence.Millis(time.Time{})})

	if err := s.DeleteUser(ctx, "del"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("second DeleteUser err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "never"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("DeleteUser of an unknown user err = %v, want ErrNotFound", err)
	}
	checkGone("after deleting again")

	// Created again, in the same buckets: written and read as any user
	// (a store that remembered the old user's index rows would skip them).
	if err := s.CreateUser(ctx, persistence.User{ID: "del", Name: "again"}); err != nil {
		t.Fatalf("CreateUser again: %v", err)
	}
	checkEmpty(t, s, everything("del"))
	again := generate(rng, "del", 20, 6, nil)
	mustWrite(t, s, again...)
	checkStored(t, s, "the user created again", "del", again)
}

// testDeleteLocation: a deleted location is gone, the checkins made there
// stay, a second delete answers ErrNotFound, and the id can be created
// again.
// testDeleteCheckin: deleting a checkin removes it from every read (by
// id, ranges, at its location, the current location, the id listings)
// and leaves the user's other checkins and other users' alone; the id may
// be written again.
func testDeleteCheckin(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(8, 8))
	kept := generate(rng, "dc", 30, 4, nil)
	other := generate(rng, "dco", 10, 4, nil)
	for i := range other {
		other[i].ID = kept[i].ID // the same ids, another user
	}
	mustWrite(t, s, append(slices.Clone(kept), other...)...)

	remove := func(what string, c persistence.Checkin) {
		t.Helper()
		got, err := s.DeleteCheckin(ctx, c.UserID, c.ID)
		if err != nil {
			t.Fatalf("%s: DeleteCheckin(%s): %v", what, c.ID, err)
		}
		checkCheckins(t, what+": DeleteCheckin's answer", []persistence.Checkin{got}, normalize([]persistence.Checkin{c}))
		kept = slices.DeleteFunc(kept, func(x persistence.Checkin) bool { return x.ID == c.ID })
		if _, err := s.GetCheckin(ctx, c.UserID, c.ID); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("%s: GetCheckin after the delete: err = %v, want ErrNotFound", what, err)
		}
		if _, err := s.DeleteCheckin(ctx, c.UserID, c.ID); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("%s: DeleteCheckin again: err = %v, want ErrNotFound", what, err)
		}
		q := everything(c.UserID)
		q.LocationID = c.LocationID
		checkCheckins(t, what+", at its location", listAll(t, s, q), sorted(filter(kept, byLocation(c.LocationID)), persistence.NewestFirst))
		if g, ok := persistence.As[persistence.CheckinBatchGetter](s); ok {
			_, found, err := g.GetCheckins(ctx, []persistence.CheckinRef{{UserID: c.UserID, ID: c.ID}})
			if err != nil || found[0] {
				t.Fatalf("%s: GetCheckins found %v (err %v), want not found", what, found, err)
			}
		}
		if l, ok := persistence.As[persistence.CheckinIDLister](s); ok {
			var ids []string
			if _, err := l.EachCheckinID(ctx, c.UserID, 1000, func(id []byte) { ids = append(ids, string(id)) }); err != nil {
				t.Fatalf("%s: EachCheckinID: %v", what, err)
			}
			if len(ids) != len(kept) || slices.Contains(ids, c.ID) {
				t.Fatalf("%s: EachCheckinID listed %d ids (the deleted one: %v), want %d", what, len(ids), slices.Contains(ids, c.ID), len(kept))
			}
		}
		checkStored(t, s, what, c.UserID, kept)
		checkStored(t, s, what+", the other user", "dco", other)
	}
	remove("the current location", sorted(kept, persistence.NewestFirst)[0])
	remove("one in the middle", sorted(kept, persistence.NewestFirst)[len(kept)/2])
	remove("the oldest", sorted(kept, persistence.OldestFirst)[0])

	for _, tc := range []struct {
		user, id string
		want     error
	}{
		{"dc", "never", persistence.ErrNotFound},
		{"nobody", kept[0].ID, persistence.ErrNotFound},
		{"dc", "", persistence.ErrInvalid},
		{"", kept[0].ID, persistence.ErrInvalid},
	} {
		if _, err := s.DeleteCheckin(ctx, tc.user, tc.id); !errors.Is(err, tc.want) {
			t.Fatalf("DeleteCheckin(%q, %q): err = %v, want %v", tc.user, tc.id, err, tc.want)
		}
	}

	// The id written again, elsewhere and at another time: stored anew.
	again := kept[0]
	if _, err := s.DeleteCheckin(ctx, "dc", again.ID); err != nil {
		t.Fatalf("DeleteCheckin(%s): %v", again.ID, err)
	}
	kept = kept[1:]
	again.LocationID, again.Timestamp = "l9", at(6, time.Minute)
	mustWrite(t, s, again)
	kept = append(kept, again)
	checkStored(t, s, "the id written again", "dc", kept)

	for len(kept) > 0 {
		if _, err := s.DeleteCheckin(ctx, "dc", kept[0].ID); err != nil {
			t.Fatalf("DeleteCheckin(%s): %v", kept[0].ID, err)
		}
		kept = kept[1:]
	}
	checkEmpty(t, s, everything("dc"))
	if _, err := s.CurrentLocation(ctx, "dc"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("CurrentLocation with every checkin deleted: err = %v, want ErrNotFound", err)
	}
	checkStored(t, s, "the other user at the end", "dco", other)
}

func testDeleteLocation(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	for _, id := range []string{"gone", "gone2"} {
		if err := s.CreateLocation(ctx, persistence.Location{ID: id, Name: id, Lat: 1, Lon: 2}); err != nil {
			t.Fatalf("CreateLocation(%s): %v", id, err)
		}
	}
	cs := []persistence.Checkin{{ID: "c1", UserID: "u1", LocationID: "gone", Timestamp: at(1, time.Hour)}}
	mustWrite(t, s, cs...)
	if err := s.DeleteLocation(ctx, "gone"); err != nil {
		t.Fatalf("DeleteLocation: %v", err)
	}
	if _, err := s.GetLocation(ctx, "gone"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetLocation after the delete: err = %v, want ErrNotFound", err)
	}
	checkLocation(t, s, persistence.Location{ID: "gone2", Name: "gone2", Lat: 1, Lon: 2, CreatedAt: persistence.Millis(time.Time{})})
	q := everything("u1")
	q.LocationID = "gone"
	checkCheckins(t, "checkins at the deleted location", listAll(t, s, q), cs)
	checkCurrent(t, s, "u1", cs)
	for _, id := range []string{"gone", "never"} {
		if err := s.DeleteLocation(ctx, id); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("DeleteLocation(%s): err = %v, want ErrNotFound", id, err)
		}
	}
	if err := s.CreateLocation(ctx, persistence.Location{ID: "gone", Name: "again", Lat: 3, Lon: 4}); err != nil {
		t.Fatalf("CreateLocation again: %v", err)
	}
	checkLocation(t, s, persistence.Location{ID: "gone", Name: "again", Lat: 3, Lon: 4, CreatedAt: persistence.Millis(time.Time{})})
}

// testListRecords: paging through users and locations with the last id of
// each page lists every record exactly once, with its fields; an empty
// store lists nothing; a page needs a positive limit.
func testListRecords(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	if us, more, err := s.ListUsers(ctx, "", 10); err != nil || len(us) != 0 || more {
		t.Fatalf("ListUsers of an empty store = %d, more %v, err %v; want none", len(us), more, err)
	}
	created := time.Date(2024, 2, 3, 4, 5, 6, 7_000_000, time.UTC)
	users := map[string]persistence.User{}
	locs := map[string]persistence.Location{}
	for i := range 23 {
		// ids that extend each other, and others
		id := []string{"a", "ab", "abc", "b"}[i%4] + fmt.Sprint(i/4)
		if i < 3 {
			id = []string{"a", "ab", "abc"}[i]
		}
		u := persistence.User{ID: id, Name: "user " + id, CreatedAt: created.Add(time.Duration(i) * time.Second)}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser(%s): %v", id, err)
		}
		users[id] = u
		if i%2 == 0 {
			l := persistence.Location{ID: "loc-" + id, Name: "place " + id, Lat: float64(i), Lon: -float64(i), CreatedAt: created}
			if err := s.CreateLocation(ctx, l); err != nil {
				t.Fatalf("CreateLocation(%s): %v", l.ID, err)
			}
			locs[l.ID] = l
		}
	}
	userID := func(u persistence.User) string { return u.ID }
	// Any positive limit is a valid one, the largest int included (a
	// caller that wants everything): the store reads no more than it has.
	for _, limit := range []int{1, 7, 23, 1000, math.MaxInt32, math.MaxInt} {
		listed := listEvery(t, s.ListUsers, limit, userID)
		for id, want := range users {
			if u, ok := listed[id]; !ok || u.Name != want.Name || !u.CreatedAt.Equal(persistence.Millis(want.CreatedAt)) {
				t.Fatalf("limit %d: user %s listed as %+v (listed: %v), want %+v", limit, id, u, ok, want)
			}
		}
		if len(listed) != len(users) {
			t.Errorf("limit %d: listed %d users, want %d", limit, len(listed), len(users))
		}
	}
	for _, limit := range []int{4, math.MaxInt} {
		listed := listEvery(t, s.ListLocations, limit, func(l persistence.Location) string { return l.ID })
		for id, want := range locs {
			if l, ok := listed[id]; !ok || l.Name != want.Name || l.Lat != want.Lat || l.Lon != want.Lon {
				t.Fatalf("limit %d: location %s listed as %+v (listed: %v), want %+v", limit, id, l, ok, want)
			}
		}
		if len(listed) != len(locs) {
			t.Errorf("limit %d: listed %d locations, want %d", limit, len(listed), len(locs))
		}
	}
	if _, _, err := s.ListUsers(ctx, "", 0); !errors.Is(err, persistence.ErrInvalid) {
		t.Errorf("ListUsers with limit 0: err = %v, want ErrInvalid", err)
	}
}

// listEvery follows a listing to its end, limit records a page, failing on
// a page over the limit, a short page with more to follow, or a record
// listed twice; it returns the records by id.
func listEvery[T any](t *testing.T, list func(context.Context, string, int) ([]T, bool, error), limit int, idOf func(T) string) map[string]T {
	t.Helper()
	all := map[string]T{}
	for after := ""; ; {
		page, more, err := list(t.Context(), after, limit)
		if err != nil {
			t.Fatalf("list after %q, limit %d: %v", after, limit, err)
		}
		if len(page) > limit || (more && len(page) != limit) {
			t.Fatalf("list after %q, limit %d: %d records, more %v", after, limit, len(page), more)
		}
		for _, r := range page {
			if _, dup := all[idOf(r)]; dup {
				t.Fatalf("limit %d: %s listed twice", limit, idOf(r))
			}
			all[idOf(r)] = r
		}
		if !more {
			return all
		}
		after = idOf(page[len(page)-1])
	}
}

// testConcurrentCreate: of many concurrent creates of one id exactly one
// succeeds. A race is caught with high probability, not certainty, so it
// runs several rounds.
func testConcurrentCreate(t *testing.T, s persistence.Store) {
	for round := range 5 {
		concurrentCreate(t, s, fmt.Sprintf("same-%d", round))
	}
}

func concurrentCreate(t *testing.T, s persistence.Store, id string) {
	const n = 16
	var wg sync.WaitGroup
	start := make(chan struct{}) // released together, to make the race likely
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.CreateUser(t.Context(), persistence.User{ID: id, Name: fmt.Sprint(i)})
		})
		wg.Go(func() {
			<-start
			errs[n+i] = s.CreateLocation(t.Context(), persistence.Location{ID: id, Name: fmt.Sprint(i)})
		})
	}
	close(start)
	wg.Wait()
	for _, part := range [][]error{errs[:n], errs[n:]} {
		created := 0
		for _, err := range part {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, persistence.ErrConflict):
				t.Errorf("concurrent create: err = %v, want nil or ErrConflict", err)
			}
		}
		if created != 1 {
			t.Errorf("%d of %d concurrent creates of %q succeeded, want 1", created, n, id)
		}
	}
}

func testWriteThenGetCheckin(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	batch := []persistence.Checkin{
		{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: at(0, 1500*time.Microsecond+7)}, // sub-ms part is dropped
		{ID: "c2", UserID: "u1", LocationID: "l2", Timestamp: at(3, time.Hour).In(time.FixedZone("UTC-7", -7*3600))},
		{ID: "c1", UserID: "u2", LocationID: "l3", Timestamp: at(1, 0)}, // ids are per user
	}
	mustWrite(t, s, batch...)
	for _, c := range batch {
		got, err := s.GetCheckin(ctx, c.UserID, c.ID)
		if err != nil {
			t.Fatalf("GetCheckin(%q, %q): %v", c.UserID, c.ID, err)
		}
		checkCheckins(t, "GetCheckin", []persistence.Checkin{got}, normalize([]persistence.Checkin{c}))
	}
	if _, err := s.GetCheckin(ctx, "u2", "c2"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetCheckin of another user's checkin: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCheckin(ctx, "u1", "c9"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetCheckin of an unknown id: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCheckin(ctx, "u9", "c1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("GetCheckin of an unknown user: err = %v, want ErrNotFound", err)
	}
	// Ids no store can hold are malformed arguments, as in DeleteCheckin.
	for _, id := range []string{"", "c1\x00"} {
		if _, err := s.GetCheckin(ctx, "u1", id); !errors.Is(err, persistence.ErrInvalid) {
			t.Fatalf("GetCheckin(u1, %q): err = %v, want ErrInvalid", id, err)
		}
	}
}

// testGetCheckinsBatch checks a store's batch look-up, when it has one,
// against GetCheckin: hits, misses of every kind, repeats, any order.
func testGetCheckinsBatch(t *testing.T, s persistence.Store, gap bool) {
	bg, ok := persistence.As[persistence.CheckinBatchGetter](s)
	if !gapDeclared(t, "a batch look-up (persistence.CheckinBatchGetter)", ok, gap) {
		return
	}
	batch := generate(rand.New(rand.NewPCG(7, 7)), "u1", 40, 5, nil)
	batch = append(batch, generate(rand.New(rand.NewPCG(8, 8)), "u2", 40, 5, nil)...)
	mustWrite(t, s, batch...)
	var refs []persistence.CheckinRef
	for i := len(batch) - 1; i >= 0; i -= 3 { // newest first, a third of them
		refs = append(refs, persistence.CheckinRef{UserID: batch[i].UserID, ID: batch[i].ID})
	}
	refs = append(refs,
		persistence.CheckinRef{UserID: "u1", ID: "never-written"},
		persistence.CheckinRef{UserID: "u9", ID: batch[0].ID},            // unknown user
		persistence.CheckinRef{UserID: "u2", ID: batch[0].ID},            // u1's id asked of u2
		persistence.CheckinRef{UserID: batch[0].UserID, ID: batch[0].ID}, // twice
		persistence.CheckinRef{UserID: batch[0].UserID, ID: batch[0].ID},
	)
	got, found, err := bg.GetCheckins(t.Context(), refs)
	if err != nil {
		t.Fatalf("GetCheckins: %v", err)
	}
	if len(got) != len(refs) || len(found) != len(refs) {
		t.Fatalf("GetCheckins answered %d and %d for %d refs", len(got), len(found), len(refs))
	}
	hits := 0
	for i, r := range refs {
		want, err := s.GetCheckin(t.Context(), r.UserID, r.ID)
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			if found[i] {
				t.Errorf("GetCheckins found %s/%s, GetCheckin did not: %+v", r.UserID, r.ID, got[i])
			}
		case err != nil:
			t.Fatalf("GetCheckin(%q, %q): %v", r.UserID, r.ID, err)
		case !found[i]:
			t.Errorf("GetCheckins missed %s/%s", r.UserID, r.ID)
		default:
			hits++
			checkCheckins(t, "GetCheckins", got[i:i+1], []persistence.Checkin{want})
		}
	}
	if want := len(refs) - 3; hits != want {
		t.Errorf("GetCheckins found %d of %d refs, want %d", hits, len(refs), want)
	}
	if _, _, err := bg.GetCheckins(t.Context(), []persistence.CheckinRef{{UserID: "u1", ID: ""}}); !errors.Is(err, persistence.ErrInvalid) {
		t.Errorf("GetCheckins of an empty id: err = %v, want ErrInvalid", err)
	}
	if got, found, err := bg.GetCheckins(t.Context(), nil); err != nil || len(got) != 0 || len(found) != 0 {
		t.Errorf("GetCheckins(nil) = %v, %v, %v; want nothing", got, found, err)
	}
}

// testEachCheckinID checks a store's id listing, when it has one: every id
// of the user and no other user's (u1 and u10 share a prefix), the limit,
// and whether the listing was all of them.
func testEachCheckinID(t *testing.T, s persistence.Store, gap bool) {
	l, ok := persistence.As[persistence.CheckinIDLister](s)
	if !gapDeclared(t, "a checkin id listing (persistence.CheckinIDLister)", ok, gap) {
		return
	}
	u1 := generate(rand.New(rand.NewPCG(9, 9)), "u1", 30, 4, nil)
	mustWrite(t, s, u1...)
	mustWrite(t, s, generate(rand.New(rand.NewPCG(10, 10)), "u10", 20, 4, nil)...)
	want := idsOf(u1)
	slices.Sort(want)
	for _, tt := range []struct {
		name    string
		user    string
		limit   int
		n       int
		wantAll bool
	}{
		{"all", "u1", 100, len(u1), true},
		{"exactly all", "u1", len(u1), len(u1), true},
		{"fewer", "u1", 7, 7, false},
		{"none asked", "u1", 0, 0, false},
		{"user without checkins", "u2", 10, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			all, err := l.EachCheckinID(t.Context(), tt.user, tt.limit, func(id []byte) { got = append(got, string(id)) })
			if err != nil {
				t.Fatalf("EachCheckinID: %v", err)
			}
			if len(got) != tt.n || all != tt.wantAll {
				t.Fatalf("EachCheckinID(%s, %d) gave %d ids, all=%v; want %d, all=%v", tt.user, tt.limit, len(got), all, tt.n, tt.wantAll)
			}
			for _, id := range got {
				if _, found := slices.BinarySearch(want, id); tt.user == "u1" && !found {
					t.Fatalf("EachCheckinID(u1) gave %q, not one of u1's ids", id)
				}
			}
			if slices.Sort(got); tt.n == len(u1) && !slices.Equal(got, want) {
				t.Fatalf("EachCheckinID(u1) = %v, want %v", got, want)
			}
		})
	}
	if _, err := l.EachCheckinID(t.Context(), "", 10, func([]byte) {}); !errors.Is(err, persistence.ErrInvalid) {
		t.Errorf("EachCheckinID of an empty user id: err = %v, want ErrInvalid", err)
	}
}

func testEmptyBatch(t *testing.T, s persistence.Store) {
	if err := s.WriteCheckins(t.Context(), nil); err != nil {
		t.Fatalf("WriteCheckins(nil): %v", err)
	}
	if err := s.WriteCheckins(t.Context(), []persistence.Checkin{}); err != nil {
		t.Fatalf("WriteCheckins(empty): %v", err)
	}
}

func testIdempotentRewrite(t *testing.T, s persistence.Store) {
	cs := generate(rand.New(rand.NewPCG(1, 1)), "u1", 50, 5, nil)
	mustWrite(t, s, cs...)
	mustWrite(t, s, cs...)
	reversed := slices.Clone(cs[10:30])
	slices.Reverse(reversed)
	mustWrite(t, s, reversed...)
	for _, c := range cs[:5] { // one by one
		mustWrite(t, s, c)
	}

	checkStored(t, s, "after rewrites", "u1", cs)
}

// checkStored checks that the user's stored checkins are exactly cs: all of
// them in both orders, those at the first one's location, and the current
// location.
func checkStored(t *testing.T, s persistence.Store, what, user string, cs []persistence.Checkin) {
	t.Helper()
	for _, order := range orders {
		q := everything(user)
		q.Order = order
		checkCheckins(t, what, listAll(t, s, q), sorted(cs, order))
	}
	q := everything(user)
	q.LocationID = cs[0].LocationID
	checkCheckins(t, what+", at one location", listAll(t, s, q), sorted(filter(cs, byLocation(cs[0].LocationID)), persistence.NewestFirst))
	checkCurrent(t, s, user, cs)
}

func testCurrentLocation(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	c := func(id string, day int, d time.Duration, loc string) persistence.Checkin {
		return persistence.Checkin{ID: id, LocationID: loc, Timestamp: at(day, d)}
	}
	shuffled := make([][]persistence.Checkin, 0, 30)
	for _, i := range rand.New(rand.NewPCG(2, 2)).Perm(30) {
		shuffled = append(shuffled, []persistence.Checkin{c(fmt.Sprintf("c%02d", i), i%4, time.Duration(i%5)*time.Minute, fmt.Sprintf("l%d", i))})
	}
	tests := []struct {
		name    string
		batches [][]persistence.Checkin
	}{
		{"single checkin", [][]persistence.Checkin{{c("a", 0, 0, "l1")}}},
		{"older then newer", [][]persistence.Checkin{{c("a", 0, 0, "l1")}, {c("b", 0, time.Millisecond, "l2")}}},
		{"newer then older", [][]persistence.Checkin{{c("b", 0, time.Millisecond, "l2")}, {c("a", 0, 0, "l1")}}},
		{"newer then much older", [][]persistence.Checkin{{c("a", 5, 0, "l1")}, {c("z", 1, 0, "l2")}}},
		{"equal timestamps, larger id first", [][]persistence.Checkin{{c("b", 0, 0, "l2")}, {c("a", 0, 0, "l1")}}},
		{"equal timestamps, smaller id first", [][]persistence.Checkin{{c("a", 0, 0, "l1")}, {c("b", 0, 0, "l2")}}},
		{"one batch, newer first", [][]persistence.Checkin{{c("b", 2, time.Hour, "l2"), c("a", 2, 0, "l1"), c("c", 1, 0, "l3")}}},
		{"one batch, newer last", [][]persistence.Checkin{{c("c", 1, 0, "l3"), c("a", 2, 0, "l1"), c("b", 2, time.Hour, "l2")}}},
		{"one batch, equal timestamps", [][]persistence.Checkin{{c("b", 0, 0, "l2"), c("c", 0, 0, "l3"), c("a", 0, 0, "l1")}}},
		{"rewrite of an older checkin", [][]persistence.Checkin{{c("a", 0, 0, "l1"), c("b", 1, 0, "l2")}, {c("a", 0, 0, "l1")}}},
		{"shuffled single batches", shuffled},
	}
	for i, tt := range tests {
		user := fmt.Sprintf("u%02d", i) // one user per case: the store is shared
		t.Run(tt.name, func(t *testing.T) {
			var all []persistence.Checkin
			for _, b := range tt.batches {
				for j := range b {
					b[j].UserID = user
				}
				mustWrite(t, s, b...)
				all = append(all, b...)
			}
			checkCurrent(t, s, user, all)
		})
	}
	t.Run("never checked in", func(t *testing.T) {
		if _, err := s.CurrentLocation(ctx, "nobody"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("CurrentLocation(nobody): err = %v, want ErrNotFound", err)
		}
	})
}

func testRangeAcrossBuckets(t *testing.T, s persistence.Store) {
	// 40 days, some empty; a few users so partitions of neighbours interleave.
	empty := map[int]bool{2: true, 3: true, 7: true, 13: true, 14: true, 15: true, 22: true, 39: true}
	rng := rand.New(rand.NewPCG(3, 3))
	var cs []persistence.Checkin
	for _, u := range []string{"u", "u1", "u10"} { // ids that are prefixes of each other
		cs = append(cs, generate(rng, u, 300, 40, empty)...)
	}
	mustWrite(t, s, cs...)

	for _, u := range []string{"u", "u1", "u10"} {
		mine := filter(cs, byUser(u))
		for _, order := range orders {
			want := sorted(mine, order)
			for _, limit := range []int{1, 3, 7, 64, len(want) - 1, len(want), len(want) + 1} {
				t.Run(fmt.Sprintf("%s order %d limit %d", u, order, limit), func(t *testing.T) {
					q := everything(u)
					q.Order, q.Limit = order, limit
					checkCheckins(t, "paged range", listAll(t, s, q), want)
				})
			}
			t.Run(fmt.Sprintf("%s order %d exact limit", u, order), func(t *testing.T) {
				q := everything(u)
				q.Order, q.Limit = order, len(want)
				page := list(t, s, q)
				checkCheckins(t, "page", page.Checkins, want)
				if page.Next != nil {
					t.Fatalf("next = %+v after the last checkin, want nil", *page.Next)
				}
				q.Limit = len(want) - 1
				page = list(t, s, q)
				checkCheckins(t, "page", page.Checkins, want[:len(want)-1])
				checkNext(t, page.Next, want[len(want)-2])
			})
		}
	}

	// A window in the middle, bounds inside buckets, and inside empty ones.
	windows := []struct {
		name     string
		from, to time.Time
	}{
		{"inside buckets", at(5, 3*time.Hour), at(25, 17*time.Hour)},
		{"empty buckets at the edges", at(13, time.Hour), at(22, time.Hour)},
		{"one bucket", at(30, 0), at(31, 0)},
		{"only empty buckets", at(13, 0), at(16, 0)},
	}
	for _, w := range windows {
		for _, order := range orders {
			t.Run(fmt.Sprintf("window %s order %d", w.name, order), func(t *testing.T) {
				q := persistence.Query{UserID: "u1", From: w.from, To: w.to, Limit: 5, Order: order}
				want := sorted(filter(cs, byUser("u1"), inRange(w.from, w.to)), order)
				checkCheckins(t, "window", listAll(t, s, q), want)
			})
		}
	}
}

func testRangeBounds(t *testing.T, s persistence.Store) {
	ms := time.Millisecond
	var cs []persistence.Checkin
	for i, ts := range []time.Time{
		at(1, -ms), at(1, 0), at(1, ms), // around a bucket start
		at(2, 10*time.Hour-ms), at(2, 10*time.Hour), at(2, 10*time.Hour+ms), // inside a bucket
		at(4, -ms), at(4, 0), // the last ms of a bucket and the next one
	} {
		cs = append(cs, persistence.Checkin{ID: fmt.Sprintf("c%d", i), UserID: "u1", LocationID: "l1", Timestamp: ts})
	}
	mustWrite(t, s, cs...)

	tests := []struct {
		name     string
		from, to time.Time
		want     []string // newest first
	}{
		{"bucket start inclusive", at(1, 0), at(1, 2*ms), []string{"c2", "c1"}},
		{"to exclusive at a bucket start", at(0, 0), at(1, 0), []string{"c0"}},
		{"one ms at a bucket start", at(1, 0), at(1, ms), []string{"c1"}},
		{"one ms inside a bucket", at(2, 10*time.Hour), at(2, 10*time.Hour+ms), []string{"c4"}},
		{"bounds on checkins", at(2, 10*time.Hour-ms), at(2, 10*time.Hour+ms), []string{"c4", "c3"}},
		{"bucket ends exclusive", at(3, 0), at(4, 0), []string{"c6"}},
		{"whole buckets", at(1, 0), at(4, 0), []string{"c6", "c5", "c4", "c3", "c2", "c1"}},
		{"sub-ms bounds round up", at(1, -ms+1), at(1, ms+1), []string{"c2", "c1"}},
		{"nothing between", at(1, 2*ms), at(2, 0), nil},
	}
	for _, tt := range tests {
		for _, order := range orders {
			for _, limit := range []int{1, 100} {
				t.Run(fmt.Sprintf("%s order %d limit %d", tt.name, order, limit), func(t *testing.T) {
					want := sorted(filter(cs, inRange(tt.from, tt.to)), order)
					// The hand-written list guards the filter above.
					ids := idsOf(sorted(want, persistence.NewestFirst))
					if !slices.Equal(ids, tt.want) {
						t.Fatalf("test data: in range %v, want %v", ids, tt.want)
					}
					q := persistence.Query{UserID: "u1", From: tt.from, To: tt.to, Limit: limit, Order: order}
					checkCheckins(t, "bounded range", listAll(t, s, q), want)
				})
			}
		}
	}
}

func testLocationFilter(t *testing.T, s persistence.Store) {
	empty := map[int]bool{1: true, 4: true, 5: true, 11: true}
	cs := generate(rand.New(rand.NewPCG(4, 4)), "u1", 200, 15, empty)
	other := generate(rand.New(rand.NewPCG(5, 5)), "u2", 50, 15, nil) // same locations, another user
	mustWrite(t, s, append(cs, other...)...)

	for _, loc := range []string{"l0", "l1", "l2", "l3", "l4"} {
		for _, order := range orders {
			want := sorted(filter(cs, byLocation(loc)), order)
			if len(want) == 0 {
				t.Fatalf("test data: no checkins at %s", loc)
			}
			for _, limit := range []int{1, 4, 1000} {
				t.Run(fmt.Sprintf("%s order %d limit %d", loc, order, limit), func(t *testing.T) {
					q := everything("u1")
					q.LocationID, q.Order, q.Limit = loc, order, limit
					checkCheckins(t, "by location", listAll(t, s, q), want)
				})
			}
		}
	}
	t.Run("window", func(t *testing.T) {
		q := persistence.Query{UserID: "u1", LocationID: "l2", From: at(3, 5*time.Hour), To: at(9, 0), Limit: 3}
		want := sorted(filter(cs, byLocation("l2"), inRange(q.From, q.To)), q.Order)
		checkCheckins(t, "by location in window", listAll(t, s, q), want)
	})
	t.Run("location without checkins", func(t *testing.T) {
		q := everything("u1")
		q.LocationID = "l9"
		checkEmpty(t, s, q)
	})
}

func testEmptyResults(t *testing.T, s persistence.Store) {
	mustWrite(t, s,
		persistence.Checkin{ID: "a", UserID: "u1", LocationID: "l1", Timestamp: at(0, time.Hour)},
		persistence.Checkin{ID: "b", UserID: "u1", LocationID: "l1", Timestamp: at(5, time.Hour)},
	)
	tests := []struct {
		name string
		q    persistence.Query
	}{
		{"unknown user", everything("u2")},
		{"user id prefix", everything("u")},
		{"range between checkins", persistence.Query{UserID: "u1", From: at(0, 2*time.Hour), To: at(5, time.Hour), Limit: 10}},
		{"range before all", persistence.Query{UserID: "u1", From: at(-10, 0), To: at(0, time.Hour), Limit: 10}},
		{"after the last checkin", func() persistence.Query {
			q := everything("u1")
			q.After = &persistence.Position{Timestamp: at(0, time.Hour), CheckinID: "a"}
			return q
		}()},
	}
	for _, tt := range tests {
		for _, order := range orders {
			t.Run(fmt.Sprintf("%s order %d", tt.name, order), func(t *testing.T) {
				q := tt.q
				q.Order = order
				if tt.q.After != nil && order == persistence.OldestFirst {
					q.After = &persistence.Position{Timestamp: at(5, time.Hour), CheckinID: "b"}
				}
				checkEmpty(t, s, q)
			})
		}
	}
}

func testInvalidQuery(t *testing.T, s persistence.Store) {
	ok := persistence.Query{UserID: "u1", From: at(0, 0), To: at(1, 0), Limit: 10}
	tests := []struct {
		name   string
		change func(*persistence.Query)
	}{
		{"empty user", func(q *persistence.Query) { q.UserID = "" }},
		{"zero limit", func(q *persistence.Query) { q.Limit = 0 }},
		{"negative limit", func(q *persistence.Query) { q.Limit = -5 }},
		{"empty range", func(q *persistence.Query) { q.To = q.From }},
		{"reversed range", func(q *persistence.Query) { q.From, q.To = q.To, q.From }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := ok
			tt.change(&q)
			if _, err := s.ListCheckins(t.Context(), q); !errors.Is(err, persistence.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func testBatchSpanningUsers(t *testing.T, s persistence.Store) {
	users := []string{"alice", "bob", "carol"}
	rng := rand.New(rand.NewPCG(6, 6))
	var batch []persistence.Checkin
	for _, u := range users {
		batch = append(batch, generate(rng, u, 30, 6, nil)...)
	}
	rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	mustWrite(t, s, batch...)

	for _, u := range users {
		mine := filter(batch, byUser(u))
		for _, order := range orders {
			q := everything(u)
			q.Order, q.Limit = order, 7
			checkCheckins(t, u, listAll(t, s, q), sorted(mine, order))
		}
		checkCurrent(t, s, u, mine)
		for _, c := range mine[:3] {
			got, err := s.GetCheckin(t.Context(), u, c.ID)
			if err != nil {
				t.Fatalf("GetCheckin(%q, %q): %v", u, c.ID, err)
			}
			checkCheckins(t, "GetCheckin", []persistence.Checkin{got}, normalize([]persistence.Checkin{c}))
		}
	}
}

func testLargeBatch(t *testing.T, s persistence.Store) {
	cs := generate(rand.New(rand.NewPCG(7, 7)), "u1", 1000, 10, nil)
	mustWrite(t, s, cs...)
	for _, order := range orders {
		q := everything("u1")
		q.Order, q.Limit = order, 100
		got := listAll(t, s, q)
		if len(got) != 1000 {
			t.Fatalf("read %d checkins, want 1000", len(got))
		}
		checkCheckins(t, "large batch", got, sorted(cs, order))
	}
	checkCurrent(t, s, "u1", cs)
}

func testConcurrentWrites(t *testing.T, s persistence.Store) {
	const writers, batches, size = 8, 10, 5
	rng := rand.New(rand.NewPCG(8, 8))
	var all []persistence.Checkin
	work := make([][][]persistence.Checkin, writers)
	for w := range writers {
		for b := range batches {
			var batch []persistence.Checkin
			for i := range size {
				batch = append(batch, persistence.Checkin{
					ID:         fmt.Sprintf("w%d-b%02d-%d", w, b, i),
					UserID:     []string{"u1", "u2"}[(w+i)%2], // both users in every batch
					LocationID: fmt.Sprintf("l%d", rng.IntN(3)),
					Timestamp:  at(rng.IntN(5), time.Duration(rng.IntN(3600))*time.Second), // many equal timestamps
				})
			}
			work[w] = append(work[w], batch)
			all = append(all, batch...)
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for _, batch := range work[w] {
				if err := s.WriteCheckins(t.Context(), batch); err != nil {
					t.Errorf("writer %d: WriteCheckins: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, u := range []string{"u1", "u2"} {
		mine := filter(all, byUser(u))
		q := everything(u)
		q.Limit = 17
		checkCheckins(t, u, listAll(t, s, q), sorted(mine, persistence.NewestFirst))
		checkCurrent(t, s, u, mine)
	}
}

// testWritesWhilePaging writes new checkins (before, between and after the
// existing ones, with equal timestamps) between the pages of a range read:
// the read must return every existing checkin exactly once, in order, and
// nothing twice.
func testWritesWhilePaging(t *testing.T, s persistence.Store) {
	for _, order := range orders {
		t.Run(fmt.Sprintf("order %d", order), func(t *testing.T) {
			user := fmt.Sprintf("u%d", order)
			rng := rand.New(rand.NewPCG(9, uint64(order)))
			existing := generate(rng, user, 60, 6, map[int]bool{2: true})
			mustWrite(t, s, existing...)

			q := persistence.Query{UserID: user, From: at(0, 0), To: at(6, 0), Limit: 7, Order: order}
			var got []persistence.Checkin
			for round := 0; ; round++ {
				if round > len(existing) {
					t.Fatalf("paging does not end")
				}
				page := list(t, s, q)
				got = append(got, page.Checkins...)
				if page.Next == nil {
					break
				}
				q.After = page.Next
				// New checkins: anywhere in the range, one on the page position's timestamp.
				var fresh []persistence.Checkin
				for i := range 4 {
					fresh = append(fresh, persistence.Checkin{
						ID:         fmt.Sprintf("new-%02d-%d", round, i),
						UserID:     user,
						LocationID: "l0",
						Timestamp:  at(rng.IntN(6), time.Duration(rng.IntN(86_400_000))*time.Millisecond),
					})
				}
				fresh = append(fresh,
					persistence.Checkin{ID: "a-" + fmt.Sprint(round), UserID: user, LocationID: "l1", Timestamp: page.Next.Timestamp},
					persistence.Checkin{ID: "z-" + fmt.Sprint(round), UserID: user, LocationID: "l1", Timestamp: page.Next.Timestamp},
				)
				mustWrite(t, s, fresh...)
			}

			for i := 1; i < len(got); i++ {
				if !before(order, got[i-1], got[i]) {
					t.Fatalf("result %d (%s %v) does not follow result %d (%s %v) strictly", i, got[i].ID, got[i].Timestamp, i-1, got[i-1].ID, got[i-1].Timestamp)
				}
			}
			seen := make(map[string]int)
			for _, c := range got {
				seen[c.ID]++
			}
			for _, c := range existing {
				if seen[c.ID] != 1 {
					t.Errorf("existing checkin %s returned %d times, want 1", c.ID, seen[c.ID])
				}
			}
		})
	}
}

// Helpers.

var orders = []persistence.Order{persistence.NewestFirst, persistence.OldestFirst}

// generate returns n checkins of user with distinct ids, spread over `days`
// day buckets after day0 except the empty ones, at five locations. It
// includes checkins at the first and the last millisecond of buckets and
// checkins sharing a timestamp.
func generate(rng *rand.Rand, user string, n, days int, empty map[int]bool) []persistence.Checkin {
	var full []int
	for d := range days {
		if !empty[d] {
			full = append(full, d)
		}
	}
	cs := make([]persistence.Checkin, 0, n)
	for i := range n {
		day := full[rng.IntN(len(full))]
		var ts time.Time
		switch {
		case i%10 == 3 && i > 0:
			ts = cs[i-1].Timestamp // same timestamp as the previous one
		case i%17 == 0:
			ts = at(day, 0)
		case i%19 == 0:
			ts = at(day+1, -time.Millisecond)
		default:
			ts = at(day, time.Duration(rng.Int64N(int64(persistence.BucketWidth))))
		}
		cs = append(cs, persistence.Checkin{
			ID:         fmt.Sprintf("c%05d-%x", i, rng.Uint32()), // not in time order
			UserID:     user,
			LocationID: fmt.Sprintf("l%d", rng.IntN(5)),
			Timestamp:  ts,
		})
	}
	return cs
}

func mustWrite(t *testing.T, s persistence.Store, batch ...persistence.Checkin) {
	t.Helper()
	if err := s.WriteCheckins(t.Context(), batch); err != nil {
		t.Fatalf("WriteCheckins(%d checkins): %v", len(batch), err)
	}
}

func list(t *testing.T, s persistence.Store, q persistence.Query) persistence.Page {
	t.Helper()
	page, err := s.ListCheckins(t.Context(), q)
	if err != nil {
		t.Fatalf("ListCheckins(%+v): %v", q, err)
	}
	if len(page.Checkins) > q.Limit {
		t.Fatalf("page of %d checkins, limit %d", len(page.Checkins), q.Limit)
	}
	if page.Next != nil {
		if len(page.Checkins) != q.Limit {
			t.Fatalf("page of %d checkins (limit %d) with a next position", len(page.Checkins), q.Limit)
		}
		checkNext(t, page.Next, page.Checkins[len(page.Checkins)-1])
	}
	return page
}

// listAll follows the pages of q to the end.
func listAll(t *testing.T, s persistence.Store, q persistence.Query) []persistence.Checkin {
	t.Helper()
	var all []persistence.Checkin
	for pages := 0; ; pages++ {
		if pages > 100_000 {
			t.Fatalf("paging does not end")
		}
		page := list(t, s, q)
		all = append(all, page.Checkins...)
		if page.Next == nil {
			return all
		}
		q.After = page.Next
	}
}

func checkEmpty(t *testing.T, s persistence.Store, q persistence.Query) {
	t.Helper()
	page := list(t, s, q)
	if len(page.Checkins) != 0 || page.Next != nil {
		t.Fatalf("ListCheckins(%+v) = %d checkins, next %v; want none", q, len(page.Checkins), page.Next)
	}
}

func checkNext(t *testing.T, next *persistence.Position, last persistence.Checkin) {
	t.Helper()
	if next == nil {
		t.Fatalf("next = nil, want the position of %s", last.ID)
	}
	if !next.Timestamp.Equal(last.Timestamp) || next.CheckinID != last.ID {
		t.Fatalf("next = %+v, want the position of %s at %v", *next, last.ID, last.Timestamp)
	}
}

// checkCurrent checks the current location of user is the newest of
// written, computed here by timestamp, then larger id.
func checkCurrent(t *testing.T, s persistence.Store, user string, written []persistence.Checkin) {
	t.Helper()
	want := sorted(filter(written, byUser(user)), persistence.NewestFirst)
	// Newest first sorts equal timestamps by id ascending; the current
	// location is the largest id among the newest.
	newest := want[0]
	for _, c := range want[1:] {
		if c.Timestamp.Equal(newest.Timestamp) && c.ID > newest.ID {
			newest = c
		}
	}
	got, err := s.CurrentLocation(t.Context(), user)
	if err != nil {
		t.Fatalf("CurrentLocation(%q): %v", user, err)
	}
	checkCheckins(t, "CurrentLocation", []persistence.Checkin{got}, []persistence.Checkin{newest})
}

// checkCheckins fails unless got equals want element by element, with
// timestamps in UTC at millisecond precision.
func checkCheckins(t *testing.T, what string, got, want []persistence.Checkin) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("%s: %d checkins, want %d; first missing: %+v", what, len(got), len(want), want[i])
		case i >= len(want):
			t.Fatalf("%s: %d checkins, want %d; first extra: %+v", what, len(got), len(want), got[i])
		}
		g, w := got[i], want[i]
		if g.ID != w.ID || g.UserID != w.UserID || g.LocationID != w.LocationID || !g.Timestamp.Equal(w.Timestamp) {
			lo := max(i-3, 0)
			t.Fatalf("%s: checkin %d of %d = %+v, want %+v (of %d)\n got ids from %d: %v\nwant ids from %d: %v",
				what, i, len(got), g, w, len(want), lo, idsOf(got[lo:min(i+4, len(got))]), lo, idsOf(want[lo:min(i+4, len(want))]))
		}
		if g.Timestamp.Location() != time.UTC || g.Timestamp != persistence.Millis(g.Timestamp) {
			t.Fatalf("%s: checkin %d timestamp %#v is not UTC at ms precision", what, i, g.Timestamp)
		}
	}
}

// sorted returns the checkins, with timestamps as stored, in the order a
// range read returns them: newest first with equal timestamps by id
// ascending, or exactly the reverse.
func sorted(cs []persistence.Checkin, order persistence.Order) []persistence.Checkin {
	out := normalize(cs)
	sort.SliceStable(out, func(i, j int) bool { return before(order, out[i], out[j]) })
	return out
}

// before reports whether a comes strictly before b in order.
func before(order persistence.Order, a, b persistence.Checkin) bool {
	if order == persistence.OldestFirst {
		a, b = b, a
	}
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.After(b.Timestamp)
	}
	return a.ID < b.ID
}

// normalize returns a copy with timestamps at stored precision.
func normalize(cs []persistence.Checkin) []persistence.Checkin {
	out := make([]persistence.Checkin, len(cs))
	for i, c := range cs {
		c.Timestamp = persistence.Millis(c.Timestamp)
		out[i] = c
	}
	return out
}

func filter(cs []persistence.Checkin, keep ...func(persistence.Checkin) bool) []persistence.Checkin {
	var out []persistence.Checkin
next:
	for _, c := range cs {
		for _, k := range keep {
			if !k(c) {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

func byUser(id string) func(persistence.Checkin) bool {
	return func(c persistence.Checkin) bool { return c.UserID == id }
}

func byLocation(id string) func(persistence.Checkin) bool {
	return func(c persistence.Checkin) bool { return c.LocationID == id }
}

// inRange keeps checkins whose stored timestamp is in [from, to).
func inRange(from, to time.Time) func(persistence.Checkin) bool {
	return func(c persistence.Checkin) bool {
		ts := persistence.Millis(c.Timestamp)
		return !ts.Before(from) && ts.Before(to)
	}
}

func idsOf(cs []persistence.Checkin) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// Buckets returns what r.Buckets yields, asking for at most limit buckets
// (0: all of them), for backend tests of their PartitionReader.
func Buckets(t testing.TB, r persistence.PartitionReader, userID, locationID string, lo, hi int64, order persistence.Order, limit int) []int64 {
	t.Helper()
	var out []int64
	err := r.Buckets(t.Context(), userID, locationID, lo, hi, order, func(b int64) bool {
		out = append(out, b)
		return limit == 0 || len(out) < limit
	})
	if err != nil {
		t.Fatalf("Buckets(%q, %q, %d, %d, %v): %v", userID, locationID, lo, hi, order, err)
	}
	return out
}

// testClose: after Close every call fails with ErrUnavailable (the caller
// may retry elsewhere) and a second Close is a no-op (Run closes again).
func testClose(t *testing.T, s persistence.Store) {
	ctx := t.Context()
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: at(0, time.Hour)}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c}); err != nil {
		t.Fatalf("WriteCheckins: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"Ping":           func() error { return s.Ping(ctx) },
		"CreateUser":     func() error { return s.CreateUser(ctx, persistence.User{ID: "u2", Name: "n"}) },
		"GetUser":        func() error { _, err := s.GetUser(ctx, "u1"); return err },
		"UpdateUser":     func() error { _, err := s.UpdateUser(ctx, "u1", persistence.UserPatch{Name: ptr("m")}); return err },
		"ListUsers":      func() error { _, _, err := s.ListUsers(ctx, "", 10); return err },
		"DeleteUser":     func() error { return s.DeleteUser(ctx, c.UserID) },
		"CreateLocation": func() error { return s.CreateLocation(ctx, persistence.Location{ID: "l2", Name: "n"}) },
		"GetLocation":    func() error { _, err := s.GetLocation(ctx, "l1"); return err },
		"UpdateLocation": func() error {
			_, err := s.UpdateLocation(ctx, "l1", persistence.LocationPatch{Name: ptr("m")})
			return err
		},
		"ListLocations":  func() error { _, _, err := s.ListLocations(ctx, "", 10); return err },
		"DeleteLocation": func() error { return s.DeleteLocation(ctx, "l1") },
		"WriteCheckins":  func() error { return s.WriteCheckins(ctx, []persistence.Checkin{c}) },
		"GetCheckin":     func() error { _, err := s.GetCheckin(ctx, c.UserID, c.ID); return err },
		"CurrentLocation": func() error {
			_, err := s.CurrentLocation(ctx, c.UserID)
			return err
		},
		"ListCheckins": func() error { _, err := s.ListCheckins(ctx, everything(c.UserID)); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, persistence.ErrUnavailable) {
			t.Errorf("%s after Close: err = %v, want ErrUnavailable", name, err)
		}
	}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c}); !errors.Is(err, persistence.ErrNotApplied) {
		t.Errorf("WriteCheckins after Close: err = %v, want ErrNotApplied (nothing written)", err)
	}
}

// testRefusedWrite: a write refused before anything was sent (a context
// already done, a malformed batch) says ErrNotApplied, and nothing of it
// is stored: the user's grain writes again only what may be stored in
// part.
func testRefusedWrite(t *testing.T, s persistence.Store) {
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: at(0, time.Hour)}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WriteCheckins(done, []persistence.Checkin{c}); !errors.Is(err, persistence.ErrNotApplied) {
		t.Errorf("WriteCheckins with a cancelled context: err = %v, want ErrNotApplied", err)
	}
	bad := c
	bad.LocationID = ""
	if err := s.WriteCheckins(t.Context(), []persistence.Checkin{c, bad}); !errors.Is(err, persistence.ErrInvalid) || !errors.Is(err, persistence.ErrNotApplied) {
		t.Errorf("WriteCheckins of a malformed batch: err = %v, want ErrInvalid and ErrNotApplied", err)
	}
	if p, err := s.ListCheckins(t.Context(), everything(c.UserID)); err != nil || len(p.Checkins) != 0 {
		t.Errorf("after the refused writes the user lists %+v (%v), want nothing", p.Checkins, err)
	}
	if _, err := s.GetCheckin(t.Context(), c.UserID, c.ID); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("after the refused writes GetCheckin: %v, want not found", err)
	}
}

// testCancelledRead: a read whose context is done fails with
// ErrUnavailable, also where the store has nothing to answer: an empty
// page or ErrNotFound would tell the caller (and any cache in front of
// it) that the user has no checkins there.
func testCancelledRead(t *testing.T, s persistence.Store) {
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: at(0, time.Hour)}
	mustWrite(t, s, c)
	done, cancel := context.WithCancel(t.Context())
	cancel()
	for _, user := range []string{"u1", "nobody"} {
		atOther := everything(user)
		atOther.LocationID = "l9"
		before := everything(user)
		before.From, before.To = at(-10, 0), at(-9, 0)
		calls := []struct {
			name string
			call func() error
		}{
			{"GetUser", func() error { _, err := s.GetUser(done, user); return err }},
			{"GetCheckin", func() error { _, err := s.GetCheckin(done, user, c.ID); return err }},
			{"CurrentLocation", func() error { _, err := s.CurrentLocation(done, user); return err }},
			{"ListCheckins", func() error { _, err := s.ListCheckins(done, everything(user)); return err }},
			{"ListCheckins at another location", func() error { _, err := s.ListCheckins(done, atOther); return err }},
			{"ListCheckins of an empty range", func() error { _, err := s.ListCheckins(done, before); return err }},
		}
		for _, tc := range calls {
			if err := tc.call(); !errors.Is(err, persistence.ErrUnavailable) {
				t.Errorf("%s(%q) with a cancelled context: err = %v, want ErrUnavailable", tc.name, user, err)
			}
		}
	}
}
