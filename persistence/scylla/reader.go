package scylla

import (
	"context"
	"math"
	"time"

	"github.com/checkin/checkin/persistence"
)

// Range reads: Store implements persistence.PartitionReader, and
// ListCheckins is persistence.ListCheckins over it.
//
// Partitions cluster by (ts DESC, checkin_id ASC), which is NewestFirst
// order; OldestFirst reads them with ORDER BY ts ASC, checkin_id DESC, the
// exact reverse. Continuing after a position (T, I) needs "ts < T OR (ts = T
// AND checkin_id > I)" in clustering order, which one CQL tuple comparison
// cannot express on mixed-order clustering columns ((ts, checkin_id) > (T, I)
// compares by value in ascending order of both columns: checked on Cassandra
// 5.0 by TestTupleComparisonMixedOrder). So a continuation is two slices: the
// rest of millisecond T (ts = T AND checkin_id > I), then the older
// milliseconds (ts < T); both are plain single-column slices that Cassandra
// and Scylla serve from the clustering index.
const (
	cqlBucketsByUser             = `SELECT bucket FROM buckets_by_user WHERE user_id = ? AND bucket >= ? AND bucket <= ?`
	cqlBucketsByUserAsc          = cqlBucketsByUser + ` ORDER BY bucket ASC`
	cqlBucketsByUserLocation     = `SELECT bucket FROM buckets_by_user_location WHERE user_id = ? AND location_id = ? AND bucket >= ? AND bucket <= ?`
	cqlBucketsByUserLocationAsc  = cqlBucketsByUserLocation + ` ORDER BY bucket ASC`
	selectByUser                 = `SELECT ts, checkin_id, location_id FROM checkins_by_user WHERE user_id = ? AND bucket = ? AND `
	selectByUserLocation         = `SELECT ts, checkin_id, location_id FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ? AND `
	sliceNewest                  = `ts >= ? AND ts < ? LIMIT ?`
	sliceOldest                  = `ts >= ? AND ts < ? ORDER BY ts ASC, checkin_id DESC LIMIT ?`
	restOfMsNewest               = `ts = ? AND checkin_id > ? LIMIT ?`
	restOfMsOldest               = `ts = ? AND checkin_id < ? ORDER BY ts ASC, checkin_id DESC LIMIT ?`
	cqlRangeByUserNewest         = selectByUser + sliceNewest
	cqlRangeByUserOldest         = selectByUser + sliceOldest
	cqlRestByUserNewest          = selectByUser + restOfMsNewest
	cqlRestByUserOldest          = selectByUser + restOfMsOldest
	cqlRangeByUserLocationNewest = selectByUserLocation + sliceNewest
	cqlRangeByUserLocationOldest = selectByUserLocation + sliceOldest
	cqlRestByUserLocationNewest  = selectByUserLocation + restOfMsNewest
	cqlRestByUserLocationOldest  = selectByUserLocation + restOfMsOldest
)

// readPageSize bounds the rows one response carries; larger reads page.
const readPageSize = 1000

// Buckets yields the non-empty buckets in [lo, hi] from the bucket index
// of the user (or of the user at the location), in the given order.
func (s *Store) Buckets(ctx context.Context, userID, locationID string, lo, hi int64, order persistence.Order, yield func(int64) bool) error {
	if lo > hi {
		return nil
	}
	var cql string
	var args []any
	switch {
	case locationID == "" && order == persistence.NewestFirst:
		cql, args = cqlBucketsByUser, []any{userID, lo, hi}
	case locationID == "":
		cql, args = cqlBucketsByUserAsc, []any{userID, lo, hi}
	case order == persistence.NewestFirst:
		cql, args = cqlBucketsByUserLocation, []any{userID, locationID, lo, hi}
	default:
		cql, args = cqlBucketsByUserLocationAsc, []any{userID, locationID, lo, hi}
	}
	q := s.s.Query(cql, args...).WithContext(ctx).Consistency(s.readCL).Idempotent(true).PageSize(readPageSize)
	defer q.Release()
	it := q.Iter()
	// The iterator fetches the index a page at a time: a walk that stops
	// early reads no further pages.
	var b int64
	for it.Scan(&b) {
		if !yield(b) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return storeErr("read bucket index", err)
	}
	return nil
}

// ReadBucket returns up to limit checkins of one partition with from <= ts
// < to, in the order's direction, strictly after `after` when it is set.
func (s *Store) ReadBucket(ctx context.Context, userID, locationID string, bucket int64, from, to time.Time, after *persistence.Position, order persistence.Order, limit int) ([]persistence.Checkin, error) {
	fromMs := max(from.UnixMilli(), persistence.BucketStart(bucket).UnixMilli())
	toMs := min(to.UnixMilli(), persistence.BucketStart(bucket+1).UnixMilli())
	if fromMs >= toMs || limit <= 0 {
		return nil, nil
	}
	newest := order == persistence.NewestFirst
	pk := []any{userID, bucket}
	rangeCQL, restCQL := cqlRangeByUserOldest, cqlRestByUserOldest
	switch {
	case locationID == "" && newest:
		rangeCQL, restCQL = cqlRangeByUserNewest, cqlRestByUserNewest
	case locationID != "" && newest:
		pk = []any{userID, locationID, bucket}
		rangeCQL, restCQL = cqlRangeByUserLocationNewest, cqlRestByUserLocationNewest
	case locationID != "":
		pk = []any{userID, locationID, bucket}
		rangeCQL, restCQL = cqlRangeByUserLocationOldest, cqlRestByUserLocationOldest
	}

	var out []persistence.Checkin
	if after != nil {
		am := after.Timestamp.UnixMilli()
		if am >= fromMs && am < toMs {
			rest, err := s.readSlice(ctx, restCQL, append(pk[:len(pk):len(pk)], am, after.CheckinID), userID, limit)
			if err != nil {
				return nil, err
			}
			out = rest
		}
		// Then the milliseconds after am in the order's direction.
		if newest {
			toMs = min(toMs, am)
		} else {
			fromMs = max(fromMs, am+1)
		}
	}
	if len(out) < limit && fromMs < toMs {
		more, err := s.readSlice(ctx, rangeCQL, append(pk[:len(pk):len(pk)], fromMs, toMs), userID, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// readSlice runs one partition slice query; args lack the LIMIT, which is
// appended.
func (s *Store) readSlice(ctx context.Context, cql string, args []any, userID string, limit int) ([]persistence.Checkin, error) {
	limit = min(limit, math.MaxInt32)
	q := s.s.Query(cql, append(args, limit)...).WithContext(ctx).Consistency(s.readCL).Idempotent(true).
		PageSize(min(limit, readPageSize))
	defer q.Release()
	it := q.Iter()
	out := make([]persistence.Checkin, 0, min(limit, readPageSize))
	var ms int64
	var id, loc string
	for it.Scan(&ms, &id, &loc) {
		out = append(out, persistence.Checkin{ID: id, UserID: userID, LocationID: loc, Timestamp: time.UnixMilli(ms).UTC()})
	}
	if err := it.Close(); err != nil {
		return nil, storeErr("read checkins", err)
	}
	return out, nil
}
