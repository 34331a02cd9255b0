package persistence

import (
	"context"
	"fmt"
	"math"
	"time"
)

// PartitionReader is what a backend implements to serve range reads;
// ListCheckins walks it.
//
// A partition is (user, bucket) when locationID is empty and (user, location,
// bucket) otherwise. The from and to bounds ListCheckins passes are whole
// milliseconds.
type PartitionReader interface {
	// Buckets calls yield with each bucket in [lo, hi] that holds at least
	// one checkin of the user (locationID == "") or of the user at the
	// location, in the given order (NewestFirst: descending, OldestFirst:
	// ascending), until yield returns false. Walkers stop as soon as they
	// hold what they need, so a backend finds the buckets as they are asked
	// for, not all of them up front. It may also yield a bucket that turns
	// out empty (an index entry written before its rows).
	Buckets(ctx context.Context, userID, locationID string, lo, hi int64, order Order, yield func(bucket int64) bool) error
	// ReadBucket returns up to limit checkins of one partition with
	// from <= Timestamp < to, ordered by (Timestamp desc, ID asc) for
	// NewestFirst and the exact reverse (Timestamp asc, ID desc) for
	// OldestFirst, starting strictly after `after` in that order when after
	// is not nil.
	ReadBucket(ctx context.Context, userID, locationID string, bucket int64, from, to time.Time, after *Position, order Order, limit int) ([]Checkin, error)
}

// ListCheckins serves one page of q from r. It walks the non-empty buckets
// of the range in the query's order, starting at the bucket of q.After, and
// stops reading as soon as it holds one checkin more than the page needs:
// that extra checkin proves a next page exists, and it is not returned.
// Next is set to the position of the page's last checkin exactly when more
// matching checkins follow.
//
// The range is narrowed to whole milliseconds, the precision checkins are
// stored with. A query whose range holds no whole millisecond returns an
// empty page. Malformed queries return an error wrapping ErrInvalid; a
// cancelled context returns an error wrapping ErrUnavailable and the
// context's error.
func ListCheckins(ctx context.Context, r PartitionReader, q Query) (Page, error) {
	if err := q.validate(); err != nil {
		return Page{}, err
	}
	// Checked here, not only between buckets: a walk that finds no bucket
	// would answer a done context with an empty page.
	if err := ctx.Err(); err != nil {
		return Page{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	from, to := ceilMillis(q.From), ceilMillis(q.To)
	if !from.Before(to) {
		return Page{}, nil
	}
	lo, hi := BucketOf(from), BucketOf(to.Add(-time.Millisecond))
	var afterBucket int64
	if q.After != nil {
		afterBucket = BucketOf(q.After.Timestamp)
		if q.Order == NewestFirst {
			hi = min(hi, afterBucket)
		} else {
			lo = max(lo, afterBucket)
		}
	}
	if lo > hi {
		return Page{}, nil
	}

	want := q.Limit
	if want < math.MaxInt {
		want++
	}
	var (
		out     []Checkin
		readErr error
	)
	err := r.Buckets(ctx, q.UserID, q.LocationID, lo, hi, q.Order, func(b int64) bool {
		if err := ctx.Err(); err != nil {
			readErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
			return false
		}
		var after *Position
		if q.After != nil && b == afterBucket {
			after = q.After
		}
		got, err := r.ReadBucket(ctx, q.UserID, q.LocationID, b, from, to, after, q.Order, want-len(out))
		if err != nil {
			readErr = err
			return false
		}
		out = append(out, got...)
		return len(out) < want
	})
	if err == nil {
		err = readErr
	}
	if err != nil {
		return Page{}, err
	}
	page := Page{Checkins: out}
	if len(out) > q.Limit {
		page.Checkins = out[:q.Limit:q.Limit]
		last := page.Checkins[q.Limit-1]
		page.Next = &Position{Timestamp: last.Timestamp, CheckinID: last.ID}
	}
	return page, nil
}

// validate reports why q cannot be served, wrapping ErrInvalid.
func (q Query) validate() error {
	if err := CheckID("user", q.UserID); err != nil {
		return err
	}
	if q.LocationID != "" {
		if err := CheckID("location", q.LocationID); err != nil {
			return err
		}
	}
	switch {
	case q.Limit <= 0:
		return fmt.Errorf("%w: limit %d, want > 0", ErrInvalid, q.Limit)
	case !q.From.Before(q.To):
		return fmt.Errorf("%w: from %v is not before to %v", ErrInvalid, q.From, q.To)
	case q.Order != NewestFirst && q.Order != OldestFirst:
		return fmt.Errorf("%w: unknown order %d", ErrInvalid, q.Order)
	case q.After != nil && !q.After.Timestamp.Equal(Millis(q.After.Timestamp)):
		return fmt.Errorf("%w: after position %v is not a whole millisecond", ErrInvalid, q.After.Timestamp)
	}
	return nil
}

// ceilMillis returns the first whole millisecond at or after t, in UTC.
func ceilMillis(t time.Time) time.Time {
	m := Millis(t)
	if m.Before(t) {
		m = m.Add(time.Millisecond)
	}
	return m
}

// NewestCheckin returns the user's current location as the partitions hold
// it: the checkin with the latest timestamp, the larger id on equal
// timestamps (Checkin.Newer), or an error wrapping ErrNotFound when the user
// has none. It reads the newest non-empty bucket's first row, then, since
// partitions order equal timestamps by id ascending, the last row of that
// millisecond (a one-row read in OldestFirst order). Nothing is written per
// checkin to serve it, and it is right whatever order writes landed in.
func NewestCheckin(ctx context.Context, r PartitionReader, userID string) (Checkin, error) {
	if err := CheckID("user", userID); err != nil {
		return Checkin{}, err
	}
	if err := ctx.Err(); err != nil { // else no bucket found reads as ErrNotFound
		return Checkin{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var (
		c       Checkin
		found   bool
		readErr error
	)
	err := r.Buckets(ctx, userID, "", math.MinInt64, math.MaxInt64, NewestFirst, func(b int64) bool {
		if err := ctx.Err(); err != nil {
			readErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
			return false
		}
		// An index entry may precede its rows (or outlive a failed write):
		// an empty bucket is skipped.
		first, err := r.ReadBucket(ctx, userID, "", b, BucketStart(b), BucketStart(b+1), nil, NewestFirst, 1)
		if err != nil || len(first) == 0 {
			readErr = err
			return err == nil
		}
		ts := first[0].Timestamp
		last, err := r.ReadBucket(ctx, userID, "", b, ts, ts.Add(time.Millisecond), nil, OldestFirst, 1)
		if err != nil {
			readErr = err
			return false
		}
		c, found = first[0], true
		if len(last) == 1 && last[0].Newer(c) {
			c = last[0]
		}
		return false
	})
	if err == nil {
		err = readErr
	}
	switch {
	case err != nil:
		return Checkin{}, err
	case !found:
		return Checkin{}, fmt.Errorf("%w: current location of user %q", ErrNotFound, userID)
	}
	c.UserID = userID
	return c, nil
}
