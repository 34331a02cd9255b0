package persistence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// memReader is a PartitionReader over a map of partitions, the way a backend
// lays checkins out: one partition per (user, bucket) and one per
// (user, location, bucket).
type memReader struct {
	parts   map[partKey][]Checkin
	reads   []int64 // buckets passed to ReadBucket, in call order
	yielded []int64 // buckets Buckets handed out, in order
}

type partKey struct {
	user, location string
	bucket         int64
}

func newMemReader(cs ...Checkin) *memReader {
	m := &memReader{parts: make(map[partKey][]Checkin)}
	for _, c := range cs {
		b := BucketOf(c.Timestamp)
		for _, k := range []partKey{{c.UserID, "", b}, {c.UserID, c.LocationID, b}} {
			m.parts[k] = append(m.parts[k], c)
		}
	}
	return m
}

func (m *memReader) Buckets(_ context.Context, userID, locationID string, lo, hi int64, order Order, yield func(int64) bool) error {
	var bs []int64
	for k := range m.parts {
		if k.user == userID && k.location == locationID && k.bucket >= lo && k.bucket <= hi {
			bs = append(bs, k.bucket)
		}
	}
	slices.Sort(bs)
	if order == NewestFirst {
		slices.Reverse(bs)
	}
	for _, b := range bs {
		m.yielded = append(m.yielded, b)
		if !yield(b) {
			break
		}
	}
	return nil
}

func (m *memReader) ReadBucket(_ context.Context, userID, locationID string, bucket int64, from, to time.Time, after *Position, order Order, limit int) ([]Checkin, error) {
	m.reads = append(m.reads, bucket)
	var out []Checkin
	for _, c := range m.parts[partKey{userID, locationID, bucket}] {
		if c.Timestamp.Before(from) || !c.Timestamp.Before(to) {
			continue
		}
		if after != nil && !follows(c, *after, order) {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Checkin) int { return compareIn(order, a, b) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// compareIn orders checkins as a range read in the given order returns them.
func compareIn(order Order, a, b Checkin) int {
	c := a.Timestamp.Compare(b.Timestamp)
	if c == 0 {
		c = strings.Compare(a.ID, b.ID)
		if order == NewestFirst {
			return c
		}
		return -c
	}
	if order == NewestFirst {
		return -c
	}
	return c
}

// follows reports whether c comes strictly after p in the given order.
func follows(c Checkin, p Position, order Order) bool {
	return compareIn(order, c, Checkin{ID: p.CheckinID, Timestamp: p.Timestamp}) > 0
}

var base = BucketStart(19792) // 2024-03-10T00:00:00Z

// at returns a time in the day bucket `day` buckets after base.
func at(day int, d time.Duration) time.Time {
	return base.Add(time.Duration(day)*BucketWidth + d)
}

func ck(id string, loc string, ts time.Time) Checkin {
	return Checkin{ID: id, UserID: "u1", LocationID: loc, Timestamp: ts}
}

func ids(cs []Checkin) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func TestListCheckins(t *testing.T) {
	h := time.Hour
	spread := []Checkin{ // days 0, 1, 5 and 9; days 2-4 and 6-8 are empty
		ck("a", "l1", at(0, 1*h)),
		ck("b", "l2", at(0, 2*h)),
		ck("c", "l1", at(1, 0)), // exactly at a bucket start
		ck("d", "l2", at(5, 3*h)),
		ck("e", "l1", at(5, BucketWidth-time.Millisecond)), // last ms of a bucket
		ck("f", "l1", at(9, 12*h)),
	}
	ties := []Checkin{
		ck("t3", "l1", at(0, h)),
		ck("t1", "l1", at(0, h)),
		ck("t2", "l1", at(0, h)),
		ck("t0", "l1", at(0, 2*h)),
		ck("t4", "l1", at(0, 0)),
	}
	all := Query{UserID: "u1", From: at(-100, 0), To: at(100, 0), Limit: 100}
	with := func(q Query, f func(*Query)) Query { f(&q); return q }
	pos := func(c Checkin) *Position { return &Position{Timestamp: c.Timestamp, CheckinID: c.ID} }

	tests := []struct {
		name     string
		checkins []Checkin
		q        Query
		want     []string
		wantNext *Position
		maxReads int // when > 0: at most this many ReadBucket calls
	}{
		{name: "empty store", q: all, want: []string{}},
		{name: "other user only", checkins: []Checkin{{ID: "x", UserID: "u2", LocationID: "l1", Timestamp: at(0, 0)}}, q: all, want: []string{}},
		{name: "one bucket newest first", checkins: spread[:2], q: all, want: []string{"b", "a"}},
		{name: "one bucket oldest first", checkins: spread[:2], q: with(all, func(q *Query) { q.Order = OldestFirst }), want: []string{"a", "b"}},
		{name: "buckets with gaps newest first", checkins: spread, q: all, want: []string{"f", "e", "d", "c", "b", "a"}},
		{name: "buckets with gaps oldest first", checkins: spread, q: with(all, func(q *Query) { q.Order = OldestFirst }), want: []string{"a", "b", "c", "d", "e", "f"}},
		{
			name: "page full stops the walk", checkins: spread, q: with(all, func(q *Query) { q.Limit = 2 }),
			want: []string{"f", "e"}, wantNext: pos(spread[4]), maxReads: 2, // f in day 9, e and d in day 5: the extra one is in the 2nd bucket
		},
		{
			name: "page full stops the walk oldest first", checkins: spread, q: with(all, func(q *Query) { q.Limit = 3; q.Order = OldestFirst }),
			want: []string{"a", "b", "c"}, wantNext: pos(spread[2]), maxReads: 3,
		},
		{name: "exact limit has no next page", checkins: spread, q: with(all, func(q *Query) { q.Limit = 6 }), want: []string{"f", "e", "d", "c", "b", "a"}},
		{name: "one more than limit has a next page", checkins: spread, q: with(all, func(q *Query) { q.Limit = 5 }), want: []string{"f", "e", "d", "c", "b"}, wantNext: pos(spread[1])},
		{
			name: "exact limit remaining after position", checkins: spread, q: with(all, func(q *Query) { q.Limit = 3; q.After = pos(spread[3]) }),
			want: []string{"c", "b", "a"},
		},
		{
			name: "after position in the middle of a bucket", checkins: spread, q: with(all, func(q *Query) { q.Limit = 2; q.After = pos(spread[1]); q.Order = OldestFirst }),
			want: []string{"c", "d"}, wantNext: pos(spread[3]),
		},
		{
			name: "after position at the last ms of a bucket", checkins: spread, q: with(all, func(q *Query) { q.Limit = 10; q.After = pos(spread[4]) }),
			want: []string{"d", "c", "b", "a"},
		},
		{
			name: "after the last checkin", checkins: spread, q: with(all, func(q *Query) { q.After = pos(spread[0]) }),
			want: []string{},
		},
		{
			name: "after position of a checkin that is not stored", checkins: spread, q: with(all, func(q *Query) { q.After = &Position{Timestamp: at(5, 4*h), CheckinID: "zz"} }),
			want: []string{"d", "c", "b", "a"},
		},
		{name: "ties newest first: id ascending", checkins: ties, q: all, want: []string{"t0", "t1", "t2", "t3", "t4"}},
		{name: "ties oldest first: id descending", checkins: ties, q: with(all, func(q *Query) { q.Order = OldestFirst }), want: []string{"t4", "t3", "t2", "t1", "t0"}},
		{
			name: "page ends inside ties", checkins: ties, q: with(all, func(q *Query) { q.Limit = 2 }),
			want: []string{"t0", "t1"}, wantNext: pos(ties[1]),
		},
		{
			name: "page starts inside ties", checkins: ties, q: with(all, func(q *Query) { q.Limit = 2; q.After = pos(ties[1]) }),
			want: []string{"t2", "t3"}, wantNext: pos(ties[0]),
		},
		{
			name: "page starts inside ties oldest first", checkins: ties, q: with(all, func(q *Query) { q.Limit = 5; q.After = pos(ties[0]); q.Order = OldestFirst }),
			want: []string{"t2", "t1", "t0"},
		},
		{
			name: "from inclusive to exclusive at bucket starts", checkins: spread, q: with(all, func(q *Query) { q.From = at(1, 0); q.To = at(9, 12*h) }),
			want: []string{"e", "d", "c"},
		},
		{
			name: "to exactly at a bucket start excludes that bucket", checkins: spread, q: with(all, func(q *Query) { q.From = at(0, 0); q.To = at(1, 0) }),
			want: []string{"b", "a"},
		},
		{
			name: "sub-millisecond bounds", checkins: spread, q: with(all, func(q *Query) {
				q.From = at(5, BucketWidth-time.Millisecond-time.Nanosecond) // rounds up to e
				q.To = at(9, 12*h+time.Nanosecond)                           // f is before it
			}),
			want: []string{"f", "e"},
		},
		{
			name: "range without a whole millisecond", checkins: spread, q: with(all, func(q *Query) {
				q.From = at(9, 12*h+time.Nanosecond)
				q.To = at(9, 12*h+2*time.Nanosecond)
			}),
			want: []string{},
		},
		{name: "location filter", checkins: spread, q: with(all, func(q *Query) { q.LocationID = "l1" }), want: []string{"f", "e", "c", "a"}},
		{
			name: "location filter pages", checkins: spread, q: with(all, func(q *Query) { q.LocationID = "l1"; q.Limit = 2; q.After = pos(spread[5]) }),
			want: []string{"e", "c"}, wantNext: pos(spread[2]),
		},
		{name: "unknown location", checkins: spread, q: with(all, func(q *Query) { q.LocationID = "l9" }), want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newMemReader(tt.checkins...)
			page, err := ListCheckins(context.Background(), r, tt.q)
			if err != nil {
				t.Fatalf("ListCheckins: %v", err)
			}
			if got := ids(page.Checkins); !slices.Equal(got, tt.want) {
				t.Errorf("checkins = %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantNext == nil && page.Next != nil:
				t.Errorf("next = %+v, want nil", *page.Next)
			case tt.wantNext != nil && page.Next == nil:
				t.Errorf("next = nil, want %+v", *tt.wantNext)
			case tt.wantNext != nil && (!page.Next.Timestamp.Equal(tt.wantNext.Timestamp) || page.Next.CheckinID != tt.wantNext.CheckinID):
				t.Errorf("next = %+v, want %+v", *page.Next, *tt.wantNext)
			}
			if tt.maxReads > 0 && len(r.reads) > tt.maxReads {
				t.Errorf("read buckets %v, want at most %d reads", r.reads, tt.maxReads)
			}
			// The walk asks for no bucket it does not read.
			if !slices.Equal(r.yielded, r.reads) {
				t.Errorf("buckets asked for %v, read %v", r.yielded, r.reads)
			}
		})
	}
}

// TestListCheckinsPaging follows Next to the end with every page size and
// checks the pages concatenate to the independently sorted input.
func TestListCheckinsPaging(t *testing.T) {
	var cs []Checkin
	for day := range 12 {
		if day%3 == 1 {
			continue // empty buckets
		}
		for i := range day % 4 {
			ts := at(day, time.Duration(i%2)*time.Hour) // pairs of equal timestamps
			cs = append(cs, ck(fmt.Sprintf("c%02d-%d", day, i), fmt.Sprintf("l%d", i%2), ts))
		}
	}
	for _, order := range []Order{NewestFirst, OldestFirst} {
		want := slices.Clone(cs)
		slices.SortFunc(want, func(a, b Checkin) int { return compareIn(order, a, b) })
		for limit := 1; limit <= len(cs)+1; limit++ {
			t.Run(fmt.Sprintf("order %d limit %d", order, limit), func(t *testing.T) {
				r := newMemReader(cs...)
				q := Query{UserID: "u1", From: at(0, 0), To: at(12, 0), Limit: limit, Order: order}
				var got []Checkin
				for pages := 0; ; pages++ {
					if pages > len(cs)+1 {
						t.Fatalf("paging does not end")
					}
					page, err := ListCheckins(context.Background(), r, q)
					if err != nil {
						t.Fatalf("ListCheckins: %v", err)
					}
					if len(page.Checkins) > limit {
						t.Fatalf("page of %d checkins, limit %d", len(page.Checkins), limit)
					}
					got = append(got, page.Checkins...)
					if page.Next == nil {
						break
					}
					if len(page.Checkins) != limit {
						t.Fatalf("short page of %d with a next position", len(page.Checkins))
					}
					q.After = page.Next
				}
				if !slices.Equal(ids(got), ids(want)) {
					t.Fatalf("paged = %v\nwant    %v", ids(got), ids(want))
				}
			})
		}
	}
}

func TestListCheckinsInvalid(t *testing.T) {
	ok := Query{UserID: "u1", From: at(0, 0), To: at(1, 0), Limit: 10}
	with := func(f func(*Query)) Query { q := ok; f(&q); return q }
	tests := []struct {
		name string
		q    Query
	}{
		{"empty user", with(func(q *Query) { q.UserID = "" })},
		{"zero limit", with(func(q *Query) { q.Limit = 0 })},
		{"negative limit", with(func(q *Query) { q.Limit = -1 })},
		{"from equals to", with(func(q *Query) { q.To = q.From })},
		{"from after to", with(func(q *Query) { q.From, q.To = q.To, q.From })},
		{"unknown order", with(func(q *Query) { q.Order = 7 })},
		{"after not a whole ms", with(func(q *Query) { q.After = &Position{Timestamp: at(0, time.Microsecond), CheckinID: "a"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ListCheckins(context.Background(), newMemReader(), tt.q)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("valid query passes", func(t *testing.T) {
		if _, err := ListCheckins(context.Background(), newMemReader(), ok); err != nil {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestListCheckinsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := newMemReader(ck("a", "l1", at(0, 0)))
	_, err := ListCheckins(ctx, r, Query{UserID: "u1", From: at(0, 0), To: at(1, 0), Limit: 10})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrUnavailable and context.Canceled", err)
	}
}

// errReader fails every call; ListCheckins must return its errors unchanged.
type errReader struct{ bucketsErr, readErr error }

func (e errReader) Buckets(_ context.Context, _, _ string, _, _ int64, _ Order, yield func(int64) bool) error {
	if e.bucketsErr != nil {
		return e.bucketsErr
	}
	yield(BucketOf(base))
	return nil
}

func (e errReader) ReadBucket(context.Context, string, string, int64, time.Time, time.Time, *Position, Order, int) ([]Checkin, error) {
	return nil, e.readErr
}

func TestListCheckinsReaderErrors(t *testing.T) {
	boom := fmt.Errorf("%w: disk on fire", ErrUnavailable)
	q := Query{UserID: "u1", From: at(0, 0), To: at(1, 0), Limit: 10}
	tests := []struct {
		name string
		r    errReader
	}{
		{"buckets fails", errReader{bucketsErr: boom}},
		{"read fails", errReader{readErr: boom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ListCheckins(context.Background(), tt.r, q); !errors.Is(err, boom) {
				t.Fatalf("err = %v, want %v", err, boom)
			}
		})
	}
}

func TestNewestCheckin(t *testing.T) {
	u := func(id, loc string, ts time.Time) Checkin {
		return Checkin{ID: id, UserID: "u", LocationID: loc, Timestamp: ts}
	}
	tests := []struct {
		name      string
		cs        []Checkin
		emptyDays []int // bucket index entries without rows
		want      string
		reads     []int64 // buckets read, in order (nil: not checked)
	}{
		{name: "one", cs: []Checkin{u("a", "L1", at(3, time.Hour))}, want: "a"},
		{name: "latest timestamp, not the last written", cs: []Checkin{
			u("new", "L1", at(5, time.Hour)), u("old", "L2", at(5, time.Minute)), u("older", "L1", at(2, 0))}, want: "new",
			reads: []int64{BucketOf(at(5, 0)), BucketOf(at(5, 0))}},
		{name: "equal timestamps: the larger id", cs: []Checkin{
			u("b", "L1", at(4, time.Hour)), u("c", "L2", at(4, time.Hour)), u("a", "L3", at(4, time.Hour)), u("z", "L1", at(4, time.Minute))}, want: "c"},
		{name: "the newest bucket's index entry has no rows", cs: []Checkin{u("a", "L1", at(1, 0)), u("b", "L1", at(2, time.Second))},
			emptyDays: []int{9}, want: "b", reads: []int64{BucketOf(at(9, 0)), BucketOf(at(2, 0)), BucketOf(at(2, 0))}},
		{name: "another user's checkins do not count", cs: []Checkin{u("a", "L1", at(1, 0)), {ID: "x", UserID: "v", LocationID: "L1", Timestamp: at(8, 0)}}, want: "a"},
		{name: "none", cs: []Checkin{{ID: "x", UserID: "v", LocationID: "L1", Timestamp: at(8, 0)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newMemReader(tc.cs...)
			for _, d := range tc.emptyDays {
				r.parts[partKey{"u", "", BucketOf(at(d, 0))}] = nil
			}
			got, err := NewestCheckin(context.Background(), r, "u")
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("NewestCheckin = %+v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got.ID != tc.want || got.UserID != "u" {
				t.Fatalf("NewestCheckin = %+v, %v; want %s", got, err, tc.want)
			}
			for _, c := range tc.cs {
				if c.ID == tc.want && (got.LocationID != c.LocationID || !got.Timestamp.Equal(c.Timestamp)) {
					t.Errorf("NewestCheckin = %+v, want %+v", got, c)
				}
			}
			if tc.reads != nil && !slices.Equal(r.reads, tc.reads) {
				t.Errorf("read buckets %v, want %v (the newest non-empty one only)", r.reads, tc.reads)
			}
		})
	}
	if _, err := NewestCheckin(context.Background(), newMemReader(), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty user id: %v, want ErrInvalid", err)
	}
	boom := errors.New("boom")
	for _, r := range []PartitionReader{errReader{bucketsErr: boom}, errReader{readErr: boom}} {
		if _, err := NewestCheckin(context.Background(), r, "u"); !errors.Is(err, boom) {
			t.Errorf("reader error: %v, want it passed on", err)
		}
	}
}

// TestWalkersRefuseADoneContext: with no bucket to visit, a done context
// still fails the read with ErrUnavailable instead of an empty page or
// ErrNotFound (which a caller would take for "no checkins").
func TestWalkersRefuseADoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := newMemReader()
	q := Query{UserID: "u1", From: BucketStart(0), To: BucketStart(3), Limit: 10}
	if _, err := ListCheckins(ctx, r, q); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("ListCheckins: err = %v, want ErrUnavailable and context.Canceled", err)
	}
	if _, err := NewestCheckin(ctx, r, "u1"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("NewestCheckin: err = %v, want ErrUnavailable and context.Canceled", err)
	}
}
