package pebble

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/checkin/checkin/persistence"
)

// reader serves persistence.ListCheckins from bounded iterators over the
// partition families.
type reader struct{ db *pebbledb.DB }

var _ persistence.PartitionReader = reader{}

// ctxCheckEvery is how many keys an iterator visits between context checks.
const ctxCheckEvery = 256

// Buckets finds the non-empty buckets in the partitions themselves: a
// partition's keys begin with its bucket, so one seek past a bucket lands on
// the first key of the next bucket that holds a row. No bucket index is
// written (layout 3), and a walk that stops early seeks no further.
func (r reader) Buckets(ctx context.Context, userID, locationID string, lo, hi int64, order persistence.Order, yield func(int64) bool) error {
	if lo > hi {
		return nil
	}
	prefix := appendPartitionPrefix(nil, userID, locationID)
	n := len(prefix)
	lower := appendBucket(bytes.Clone(prefix), lo)
	upper := prefixSuccessor(appendBucket(bytes.Clone(prefix), hi)) // past every key of bucket hi
	it, err := r.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr(err)
	}
	seek := bytes.Clone(prefix)
	newest := order == persistence.NewestFirst
	ok := it.First()
	if newest {
		ok = it.Last()
	}
	for ok {
		k := it.Key()
		if len(k) < n+8 {
			_ = it.Close()
			return fmt.Errorf("%w: checkin key of %d bytes", errCorrupt, len(k))
		}
		b := decodeBucket(k[n : n+8])
		if !yield(b) {
			break
		}
		if err := ctx.Err(); err != nil {
			_ = it.Close()
			return storeErr(err)
		}
		switch {
		case newest && b == math.MinInt64, !newest && b == math.MaxInt64:
			ok = false
		case newest:
			ok = it.SeekLT(appendBucket(seek[:n], b)) // the last key before bucket b
		default:
			ok = it.SeekGE(appendBucket(seek[:n], b+1))
		}
	}
	return storeErr(it.Close())
}

func (r reader) ReadBucket(ctx context.Context, userID, locationID string, bucket int64, from, to time.Time, after *persistence.Position, order persistence.Order, limit int) ([]persistence.Checkin, error) {
	fromMs := max(from.UnixMilli(), persistence.BucketStart(bucket).UnixMilli())
	toMs := min(to.UnixMilli(), persistence.BucketStart(bucket+1).UnixMilli())
	if fromMs >= toMs || limit <= 0 {
		return nil, nil
	}
	part := appendPartition(nil, userID, locationID, bucket)
	n := len(part)
	// Keys of the partition in [from, to): newest (to-1) first.
	lower := appendInvertedMillis(bytes.Clone(part), toMs-1)
	upper := prefixSuccessor(appendInvertedMillis(bytes.Clone(part), fromMs))
	if after != nil {
		pos := append(appendInvertedMillis(bytes.Clone(part), after.Timestamp.UnixMilli()), after.CheckinID...)
		if order == persistence.NewestFirst {
			// Forward order: the first key after pos is pos+0x00.
			if pos = append(pos, 0); bytes.Compare(pos, lower) > 0 {
				lower = pos
			}
		} else if bytes.Compare(pos, upper) < 0 {
			// Reverse order: keys before pos.
			upper = pos
		}
	}
	if bytes.Compare(lower, upper) >= 0 {
		return nil, nil
	}

	var out []persistence.Checkin
	// Checkin keys sort newest first: oldest first is reverse key order.
	err := r.scan(ctx, lower, upper, order == persistence.OldestFirst, func(k, v []byte) (bool, error) {
		if len(k) < n+8 {
			return false, fmt.Errorf("%w: checkin key of %d bytes", errCorrupt, len(k))
		}
		c := persistence.Checkin{
			ID:         string(k[n+8:]),
			UserID:     userID,
			LocationID: locationID,
			Timestamp:  time.UnixMilli(decodeInvertedMillis(k[n : n+8])).UTC(),
		}
		if locationID == "" {
			c.LocationID = string(v)
		}
		out = append(out, c)
		return len(out) < limit, nil
	})
	return out, err
}

// scan visits the keys in [lower, upper) in key order, or in reverse, until
// visit returns false or an error.
func (r reader) scan(ctx context.Context, lower, upper []byte, reverse bool, visit func(k, v []byte) (bool, error)) error {
	it, err := r.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr(err)
	}
	first, next := it.First, it.Next
	if reverse {
		first, next = it.Last, it.Prev
	}
	i := 0
	for ok := first(); ok; ok = next() {
		if i++; i%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				_ = it.Close()
				return storeErr(err)
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return storeErr(err)
		}
		more, err := visit(it.Key(), v)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !more {
			break
		}
	}
	return storeErr(it.Close())
}
