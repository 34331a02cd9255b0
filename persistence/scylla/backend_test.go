package scylla

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/storetest"
)

// Integration tests of what is particular to this backend, against the
// node named by CHECKIN_TEST_CQL_HOSTS.

var day0 = persistence.BucketStart(persistence.BucketOf(time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)))

func write(t testing.TB, s *Store, cs ...persistence.Checkin) {
	t.Helper()
	if err := s.WriteCheckins(t.Context(), cs); err != nil {
		t.Fatalf("WriteCheckins(%d): %v", len(cs), err)
	}
}

// rowsIn returns the (bucket, ts, id) of every row of the user in
// checkins_by_user over the given buckets, read straight from the table.
func rowsIn(t testing.TB, s *Store, user string, buckets ...int64) []string {
	t.Helper()
	var out []string
	for _, b := range buckets {
		it := s.s.Query(`SELECT bucket, ts, checkin_id FROM checkins_by_user WHERE user_id = ? AND bucket = ?`, user, b).
			WithContext(t.Context()).Iter()
		var bucket, ms int64
		var id string
		for it.Scan(&bucket, &ms, &id) {
			out = append(out, fmt.Sprintf("%d/%d/%s", bucket, ms, id))
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// countRows runs a SELECT COUNT(*) statement straight on the store's
// session and returns the count.
func countRows(t testing.TB, s *Store, cql string, args ...any) int {
	t.Helper()
	var n int64
	if err := s.s.Query(cql, args...).WithContext(t.Context()).Scan(&n); err != nil {
		t.Fatalf("%s: %v", cql, err)
	}
	return int(n)
}

func ids(cs []persistence.Checkin) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// TestBucketBoundaries: a checkin at the last millisecond of a day and one
// at the first of the next land in neighbouring partitions, with the bucket
// index listing both, also before 1970; range reads split exactly there.
func TestBucketBoundaries(t *testing.T) {
	t.Parallel()
	s := open(t, testConfig(t))
	epoch := time.Unix(0, 0).UTC()
	for _, tt := range []struct {
		name  string
		start time.Time // a bucket start
	}{
		{"2024", day0},
		{"epoch", epoch},
		{"before 1970", epoch.Add(-3 * persistence.BucketWidth)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			user := "u-" + tt.name
			b := persistence.BucketOf(tt.start)
			last := persistence.Checkin{ID: "last", UserID: user, LocationID: "l1", Timestamp: tt.start.Add(-time.Millisecond)}
			first := persistence.Checkin{ID: "first", UserID: user, LocationID: "l1", Timestamp: tt.start}
			sub := persistence.Checkin{ID: "sub", UserID: user, LocationID: "l2", Timestamp: tt.start.Add(-time.Nanosecond)} // truncates to the last ms
			write(t, s, last, first, sub)

			got := rowsIn(t, s, user, b-1, b)
			want := []string{
				fmt.Sprintf("%d/%d/last", b-1, tt.start.UnixMilli()-1),
				fmt.Sprintf("%d/%d/sub", b-1, tt.start.UnixMilli()-1),
				fmt.Sprintf("%d/%d/first", b, tt.start.UnixMilli()),
			}
			if !slices.Equal(got, want) {
				t.Fatalf("rows = %v, want %v", got, want)
			}
			if buckets := storetest.Buckets(t, s, user, "", b-5, b+5, persistence.OldestFirst, 0); !slices.Equal(buckets, []int64{b - 1, b}) {
				t.Fatalf("Buckets = %v; want [%d %d]", buckets, b-1, b)
			}
			if buckets := storetest.Buckets(t, s, user, "l2", b-5, b+5, persistence.NewestFirst, 0); !slices.Equal(buckets, []int64{b - 1}) {
				t.Fatalf("Buckets(l2) = %v; want [%d]", buckets, b-1)
			}
			for _, q := range []struct {
				from, to time.Time
				want     []string
			}{
				{tt.start.Add(-time.Hour), tt.start, []string{"last", "sub"}},
				{tt.start, tt.start.Add(time.Hour), []string{"first"}},
				{tt.start.Add(-time.Millisecond), tt.start.Add(time.Millisecond), []string{"first", "last", "sub"}},
			} {
				page, err := s.ListCheckins(t.Context(), persistence.Query{UserID: user, From: q.from, To: q.to, Limit: 10})
				if err != nil || !slices.Equal(ids(page.Checkins), q.want) {
					t.Fatalf("[%v, %v) = %v, %v; want %v", q.from, q.to, ids(page.Checkins), err, q.want)
				}
			}
		})
	}
}

// TestCurrentLocationOutOfOrder: many writers, two stores (two "nodes"),
// shuffled order, equal timestamps with ids that map to the same and to
// different microseconds: the current location is always the checkin that
// Newer picks.
func TestCurrentLocationOutOfOrder(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	a := open(t, cfg)
	b := open(t, cfg) // another node's store on the same keyspace
	rng := rand.New(rand.NewPCG(10, 10))
	tests := []struct {
		name string
		ids  []string
		ms   []int64 // offsets in ms, one per id
	}{
		{"distinct timestamps", []string{"c1", "c2", "c3", "c4", "c5", "c6"}, []int64{5, 1, 9, 3, 9000, 2}},
		{"same ms, same microsecond", []string{"w1-b01-0", "w1-b01-1", "w1-b02-0", "w1-b10-4"}, []int64{7, 7, 7, 7}},
		{"same ms, different microseconds", []string{"a", "m", "z", "b"}, []int64{7, 7, 7, 7}},
		{"same ms, prefixes", []string{"a", "ab", "abc", "abd"}, []int64{1, 1, 1, 1}},
		{"same ms, non-ASCII", []string{"xaz", "xaé", "xa\x7f"}, []int64{3, 3, 3}},
		{"newest is oldest id", []string{"z", "a"}, []int64{1, 2}},
	}
	for i, tt := range tests {
		user := fmt.Sprintf("user%d", i)
		var cs []persistence.Checkin
		for j, id := range tt.ids {
			cs = append(cs, persistence.Checkin{ID: id, UserID: user, LocationID: fmt.Sprintf("loc-%s", id), Timestamp: day0.Add(time.Duration(tt.ms[j]) * time.Millisecond)})
		}
		want := cs[0]
		for _, c := range cs[1:] {
			if c.Newer(want) {
				want = c
			}
		}
		t.Run(tt.name, func(t *testing.T) {
			for round := range 3 {
				order := rng.Perm(len(cs))
				var wg sync.WaitGroup
				for k, j := range order {
					s := []*Store{a, b}[k%2]
					wg.Go(func() { write(t, s, cs[j]) })
				}
				wg.Wait()
				for _, s := range []*Store{a, b} {
					got, err := s.CurrentLocation(t.Context(), user)
					if err != nil {
						t.Fatal(err)
					}
					if got.ID != want.ID || got.LocationID != want.LocationID || !got.Timestamp.Equal(want.Timestamp) || got.UserID != user {
						t.Fatalf("round %d, order %v: current = %+v, want %+v", round, order, got, want)
					}
				}
			}
		})
	}
}

// TestTupleComparisonMixedOrder documents why ReadBucket continues a page
// with two slices: on (ts DESC, checkin_id ASC) clustering, CQL's
// (ts, checkin_id) > (T, I) compares by value, not in clustering order, so it
// cannot express "after (T, I)" for either read order.
func TestTupleComparisonMixedOrder(t *testing.T) {
	t.Parallel()
	s := open(t, testConfig(t))
	ctx := t.Context()
	user := "tuple"
	b := persistence.BucketOf(day0)
	for _, r := range []struct {
		ms int64
		id string
	}{{1, "a"}, {1, "b"}, {1, "c"}, {2, "a"}, {0, "z"}} {
		write(t, s, persistence.Checkin{ID: r.id, UserID: user, LocationID: "l", Timestamp: day0.Add(time.Duration(r.ms) * time.Millisecond)})
	}
	read := func(cql string) []string {
		it := s.s.Query(cql, user, b, day0.UnixMilli()+1, "b").WithContext(ctx).Iter()
		var out []string
		var ms int64
		var id string
		for it.Scan(&ms, &id) {
			out = append(out, fmt.Sprintf("%d%s", ms-day0.UnixMilli(), id))
		}
		if err := it.Close(); err != nil {
			t.Fatalf("%s: %v", cql, err)
		}
		return out
	}
	const sel = `SELECT ts, checkin_id FROM checkins_by_user WHERE user_id = ? AND bucket = ? AND `
	// Value semantics: ts > 1 OR (ts = 1 AND id > 'b'), listed in clustering order.
	if got, want := read(sel+`(ts, checkin_id) > (?, ?)`), []string{"2a", "1c"}; !slices.Equal(got, want) {
		t.Fatalf("tuple > = %v, want %v", got, want)
	}
	// NewestFirst after (1, b) must be 1c then 0z: the two slices ReadBucket uses.
	page, err := s.ListCheckins(ctx, persistence.Query{UserID: user, From: day0, To: day0.Add(time.Hour), Limit: 10,
		After: &persistence.Position{Timestamp: day0.Add(time.Millisecond), CheckinID: "b"}})
	if err != nil || !slices.Equal(ids(page.Checkins), []string{"c", "z"}) {
		t.Fatalf("after (1, b) newest first = %v, %v; want [c z]", ids(page.Checkins), err)
	}
	page, err = s.ListCheckins(ctx, persistence.Query{UserID: user, From: day0, To: day0.Add(time.Hour), Limit: 10, Order: persistence.OldestFirst,
		After: &persistence.Position{Timestamp: day0.Add(time.Millisecond), CheckinID: "b"}})
	if err != nil || !slices.Equal(ids(page.Checkins), []string{"a", "a"}) || !page.Checkins[1].Timestamp.Equal(day0.Add(2*time.Millisecond)) {
		t.Fatalf("after (1, b) oldest first = %v, %v; want 1a then 2a", ids(page.Checkins), err)
	}
}

// TestIdempotentRewrites: rewriting checkins - whole batches, single ones,
// through a fresh store (no index cache), duplicated inside a batch - leaves
// exactly one row per table.
func TestIdempotentRewrites(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := open(t, cfg)
	var cs []persistence.Checkin
	for i := range 40 {
		cs = append(cs, persistence.Checkin{ID: fmt.Sprintf("c%02d", i), UserID: "u1", LocationID: fmt.Sprintf("l%d", i%3),
			Timestamp: day0.Add(time.Duration(i) * 3 * time.Hour)})
	}
	write(t, s, cs...)
	write(t, s, cs...)
	write(t, s, append(slices.Clone(cs[:10]), cs[:10]...)...)
	for _, c := range cs[30:] {
		write(t, s, c)
	}
	write(t, open(t, cfg), cs...)

	count := func(cql string, args ...any) int { return countRows(t, s, cql, args...) }
	buckets := map[int64]bool{}
	byUser, byLoc := 0, 0
	for _, c := range cs {
		buckets[persistence.BucketOf(c.Timestamp)] = true
	}
	for b := range buckets {
		byUser += count(`SELECT COUNT(*) FROM checkins_by_user WHERE user_id = ? AND bucket = ?`, "u1", b)
		for l := range 3 {
			byLoc += count(`SELECT COUNT(*) FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ?`, "u1", fmt.Sprintf("l%d", l), b)
		}
	}
	byID := 0
	for _, c := range cs {
		byID += count(`SELECT COUNT(*) FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`, "u1", c.ID)
	}
	if byUser != len(cs) || byLoc != len(cs) || byID != len(cs) {
		t.Fatalf("rows after rewrites: by user %d, by location %d, by id %d; want %d each", byUser, byLoc, byID, len(cs))
	}
	if n := count(`SELECT COUNT(*) FROM buckets_by_user WHERE user_id = ?`, "u1"); n != len(buckets) {
		t.Fatalf("bucket index has %d rows, want %d", n, len(buckets))
	}
	page, err := s.ListCheckins(t.Context(), persistence.Query{UserID: "u1", From: day0, To: day0.AddDate(1, 0, 0), Limit: 1000})
	if err != nil || len(page.Checkins) != len(cs) {
		t.Fatalf("ListCheckins = %d checkins, %v; want %d", len(page.Checkins), err, len(cs))
	}
}

// TestPagingAcrossManyBuckets: two years of sparse checkins (hundreds of
// buckets, most empty) read page by page in both orders, with and without a
// location, return every checkin exactly once, in order; the bucket index
// lists exactly the non-empty buckets.
func TestPagingAcrossManyBuckets(t *testing.T) {
	t.Parallel()
	s := open(t, testConfig(t))
	rng := rand.New(rand.NewPCG(11, 11))
	var cs []persistence.Checkin
	nonEmpty := map[int64]bool{}
	for day := 0; day < 730; day += 1 + rng.IntN(5) {
		for k := range 1 + rng.IntN(3) {
			ts := day0.AddDate(0, 0, day).Add(time.Duration(rng.Int64N(int64(persistence.BucketWidth)))).Truncate(time.Millisecond)
			if k == 1 {
				ts = cs[len(cs)-1].Timestamp // equal timestamps
			}
			cs = append(cs, persistence.Checkin{ID: fmt.Sprintf("c%04d-%x", len(cs), rng.Uint32()), UserID: "u1", LocationID: fmt.Sprintf("l%d", rng.IntN(3)), Timestamp: ts})
			nonEmpty[persistence.BucketOf(ts)] = true
		}
	}
	for chunk := range slices.Chunk(cs, 100) {
		write(t, s, chunk...)
	}
	lo, hi := persistence.BucketOf(day0)-10, persistence.BucketOf(day0)+800
	buckets := storetest.Buckets(t, s, "u1", "", lo, hi, persistence.NewestFirst, 0)
	if len(buckets) != len(nonEmpty) || !slices.IsSortedFunc(buckets, func(a, b int64) int { return int(b - a) }) {
		t.Fatalf("Buckets = %d buckets, want %d newest first", len(buckets), len(nonEmpty))
	}
	// A walk that stops early gets the newest buckets, in order.
	if first := storetest.Buckets(t, s, "u1", "", lo, hi, persistence.NewestFirst, 3); !slices.Equal(first, buckets[:3]) {
		t.Fatalf("first three buckets %v, want %v", first, buckets[:3])
	}

	from, to := day0.AddDate(0, 0, 30).Add(5*time.Hour), day0.AddDate(0, 0, 700)
	for _, loc := range []string{"", "l1"} {
		for _, order := range []persistence.Order{persistence.NewestFirst, persistence.OldestFirst} {
			var want []persistence.Checkin
			for _, c := range cs {
				if (loc == "" || c.LocationID == loc) && !c.Timestamp.Before(from) && c.Timestamp.Before(to) {
					want = append(want, c)
				}
			}
			slices.SortFunc(want, func(a, b persistence.Checkin) int {
				r := b.Timestamp.Compare(a.Timestamp)
				if r == 0 {
					r = strings.Compare(a.ID, b.ID)
				}
				if order == persistence.OldestFirst {
					r = -r
				}
				return r
			})
			q := persistence.Query{UserID: "u1", LocationID: loc, From: from, To: to, Limit: 7, Order: order}
			var got []persistence.Checkin
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatal("paging does not end")
				}
				page, err := s.ListCheckins(t.Context(), q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page.Checkins...)
				if page.Next == nil {
					break
				}
				q.After = page.Next
			}
			if !slices.Equal(ids(got), ids(want)) {
				t.Fatalf("location %q order %d: %d checkins, want %d\n got %v\nwant %v", loc, order, len(got), len(want), ids(got), ids(want))
			}
		}
	}
}

// TestMigrate: Migrate is idempotent and records the schema version; a store
// with auto-migrate off opens only on a migrated keyspace, and neither
// accepts a keyspace whose recorded version came from another file.
func TestMigrate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	ctx := t.Context()

	noAuto := cfg
	noAuto.AutoMigrate = false
	if _, err := Open(ctx, noAuto, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "checkin migrate") {
		t.Fatalf("Open without migration: err = %v, want one naming `checkin migrate`", err)
	}
	for range 2 {
		if err := Migrate(ctx, cfg, zap.NewNop()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	s := open(t, noAuto)
	applied, err := appliedMigrations(ctx, s.s, cfg.Keyspace)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations()
	if len(applied) != len(ms) || applied[1] != ms[0].checksum {
		t.Fatalf("schema_migrations = %v", applied)
	}
	if err := s.s.Query(`UPDATE schema_migrations SET checksum = 'changed' WHERE version = 1`).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, noAuto, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "released schema files must not change") {
		t.Errorf("Open with auto-migrate off on a keyspace whose schema file changed: err = %v, want a refusal", err)
	}
	if err := Migrate(ctx, cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "released schema files must not change") {
		t.Errorf("Migrate on a keyspace whose schema file changed: err = %v, want a refusal", err)
	}
	if err := s.s.Query(`UPDATE schema_migrations SET checksum = ? WHERE version = 1`, ms[0].checksum).WithContext(ctx).Exec(); err != nil {
		t.Fatal(err)
	}
	var compaction map[string]string
	if err := s.s.Query(`SELECT compaction FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'checkins_by_user'`, cfg.Keyspace).
		WithContext(ctx).Scan(&compaction); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(compaction["class"], "TimeWindowCompactionStrategy") || compaction["compaction_window_size"] != "1" || compaction["compaction_window_unit"] != "DAYS" {
		t.Fatalf("checkins_by_user compaction = %v, want day windows of TWCS", compaction)
	}

	bad := cfg
	bad.Replication = "{'class': 'NoSuchStrategy'}"
	bad.Keyspace = cfg.Keyspace + "_bad"
	if err := Migrate(ctx, bad, zap.NewNop()); err == nil || errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("Migrate with a bad replication: err = %v, want a permanent error", err)
	}
}

// TestMigrateConcurrently: nodes starting together on a new keyspace each
// run Migrate at the same moment; every one succeeds, and the keyspace is
// then complete. A node lists a new keyspace or table in system_schema
// before it serves it, so a migration that took the listing for a usable
// table failed while another created it ("table schema_migrations does
// not exist", or a session on the keyspace that could not start).
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		cfg := testConfig(t)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = Migrate(t.Context(), cfg, zap.NewNop()) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: Migrate %d of %d started together: %v", round, i, len(errs), err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		noAuto := cfg
		noAuto.AutoMigrate = false
		s := open(t, noAuto)
		c := persistence.Checkin{ID: "c", UserID: "u", LocationID: "l", Timestamp: day0}
		write(t, s, c)
		if got, err := s.GetCheckin(t.Context(), "u", "c"); err != nil || got != c {
			t.Fatalf("round %d: GetCheckin = %+v, %v; want %+v", round, got, err, c)
		}
	}
}

// TestCallErrors: malformed ids are ErrInvalid before anything is sent; a
// closed store fails every call with ErrUnavailable.
func TestCallErrors(t *testing.T) {
	t.Parallel()
	s := open(t, testConfig(t))
	ctx := t.Context()
	ok := persistence.Checkin{ID: "c", UserID: "u", LocationID: "l", Timestamp: day0}
	for _, c := range []persistence.Checkin{
		{ID: "", UserID: "u", LocationID: "l"}, {ID: "c", UserID: "", LocationID: "l"},
		{ID: "c", UserID: "u", LocationID: ""}, {ID: "c\x00d", UserID: "u", LocationID: "l"},
	} {
		if err := s.WriteCheckins(ctx, []persistence.Checkin{ok, c}); !errors.Is(err, persistence.ErrInvalid) {
			t.Fatalf("WriteCheckins(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if _, err := s.CurrentLocation(ctx, "u"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("nothing of an invalid batch may be written; CurrentLocation = %v", err)
	}
	if err := s.CreateUser(ctx, persistence.User{ID: ""}); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("CreateUser(empty id) = %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{ok}); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("WriteCheckins after Close = %v, want ErrUnavailable", err)
	}
	if _, err := s.GetUser(ctx, "u"); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("GetUser after Close = %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("Ping after Close = %v, want ErrUnavailable", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	s2 := open(t, testConfig(t))
	if err := s2.WriteCheckins(cctx, []persistence.Checkin{ok}); !errors.Is(err, persistence.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteCheckins with a cancelled context = %v, want ErrUnavailable and context.Canceled", err)
	}
}
