package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/checkin/checkin/persistence"
)

// currentFromPartitions returns the user's newest checkin, read from the
// by-user partitions: keys sort by bucket, then newest timestamp first, then
// checkin id, so the newest checkin opens the last bucket, and among
// checkins of that same timestamp the larger id (the one
// persistence.Checkin.Newer prefers) sorts last. One seek to the last key,
// one back to the start of its bucket, a step per equal timestamp: no write
// of its own per checkin, and right whatever order batches commit in.
func currentFromPartitions(ctx context.Context, db *pebbledb.DB, userID string) (persistence.Checkin, error) {
	prefix := appendUserFamily(nil, userID, famByUser)
	n := len(prefix)
	it, err := db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(bytes.Clone(prefix))})
	if err != nil {
		return persistence.Checkin{}, storeErr(err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return persistence.Checkin{}, storeErr(err)
		}
		return persistence.Checkin{}, fmt.Errorf("%w: current location of user %q", persistence.ErrNotFound, userID)
	}
	if len(it.Key()) < n+16 {
		return persistence.Checkin{}, fmt.Errorf("%w: checkin key of %d bytes", errCorrupt, len(it.Key()))
	}
	if !it.SeekGE(append(prefix, it.Key()[n:n+8]...)) {
		return persistence.Checkin{}, storeErr(it.Error()) // the key just seen is gone: only an error does that
	}
	if len(it.Key()) < n+16 {
		return persistence.Checkin{}, fmt.Errorf("%w: checkin key of %d bytes", errCorrupt, len(it.Key()))
	}
	newest := bytes.Clone(it.Key()[n+8 : n+16])
	c := persistence.Checkin{UserID: userID, Timestamp: time.UnixMilli(decodeInvertedMillis(newest)).UTC()}
	for ok := true; ok; ok = it.Next() {
		k := it.Key()
		if len(k) < n+16 {
			return persistence.Checkin{}, fmt.Errorf("%w: checkin key of %d bytes", errCorrupt, len(k))
		}
		if !bytes.Equal(k[n+8:n+16], newest) {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return persistence.Checkin{}, storeErr(err)
		}
		c.ID, c.LocationID = string(k[n+16:]), string(v)
	}
	if err := it.Error(); err != nil {
		return persistence.Checkin{}, storeErr(err)
	}
	return c, nil
}

// currentMergerName is stored in the database; a database written with one
// merger cannot be opened with another, so the merger stays registered
// although nothing is merged any more.
const currentMergerName = "checkin.current.v1"

// currentMerger kept, for every famCurrent key, the operand whose checkin is
// newest by persistence.Checkin.Newer. Databases written before the current
// location was read from the by-user partitions hold such keys; nothing reads
// them and compactions merge them with this.
var currentMerger = &pebbledb.Merger{
	Name:  currentMergerName,
	Merge: newCurrentValueMerger,
}

// A current-location value is: ts (8 bytes, appendMillis) | uvarint length
// of the checkin id | checkin id | location id.
func appendCurrent(dst []byte, ms int64, checkinID, locationID string) []byte {
	dst = appendMillis(dst, ms)
	dst = binary.AppendUvarint(dst, uint64(len(checkinID)))
	return append(append(dst, checkinID...), locationID...)
}

// decodeCurrent returns the checkin in v, without its user id.
func decodeCurrent(v []byte) (persistence.Checkin, error) {
	if len(v) < 8 {
		return persistence.Checkin{}, fmt.Errorf("%w: current value of %d bytes", errCorrupt, len(v))
	}
	ms := decodeMillis(v)
	n, w := binary.Uvarint(v[8:])
	rest := v[8+max(w, 0):]
	if w <= 0 || n > uint64(len(rest)) {
		return persistence.Checkin{}, fmt.Errorf("%w: current value with bad id length", errCorrupt)
	}
	return persistence.Checkin{
		ID:         string(rest[:n]),
		LocationID: string(rest[n:]),
		Timestamp:  time.UnixMilli(ms).UTC(),
	}, nil
}

// currentValueMerger holds the best operand seen so far.
type currentValueMerger struct {
	best    []byte
	checkin persistence.Checkin // decoded best
}

func newCurrentValueMerger(_, value []byte) (pebbledb.ValueMerger, error) {
	c, err := decodeCurrent(value)
	if err != nil {
		return nil, err
	}
	return &currentValueMerger{best: bytes.Clone(value), checkin: c}, nil
}

// MergeNewer and MergeOlder are the same: the result does not depend on the
// order of operands.
func (m *currentValueMerger) MergeNewer(value []byte) error { return m.add(value) }

func (m *currentValueMerger) MergeOlder(value []byte) error { return m.add(value) }

func (m *currentValueMerger) add(value []byte) error {
	c, err := decodeCurrent(value)
	if err != nil {
		return err
	}
	if wins(c, value, m.checkin, m.best) {
		m.best = append(m.best[:0], value...)
		m.checkin = c
	}
	return nil
}

// wins reports whether operand c (encoded as v) replaces cur (encoded as
// curV). Checkins neither of which is Newer than the other have the same
// timestamp and id; callers never reuse an id for another location, but the
// byte comparison keeps the merge a total order even if one did.
func wins(c persistence.Checkin, v []byte, cur persistence.Checkin, curV []byte) bool {
	if c.Newer(cur) {
		return true
	}
	return !cur.Newer(c) && bytes.Compare(v, curV) > 0
}

func (m *currentValueMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.best, nil, nil
}
