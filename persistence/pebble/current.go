package pebble

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/checkin/checkin/persistence"
)

// currentMergerName is stored in the database; a database written with one
// merger cannot be opened with another. Bump the version when the value
// encoding or the rule changes.
const currentMergerName = "checkin.current.v1"

// currentMerger keeps, for every famCurrent key, the operand whose checkin is
// newest by persistence.Checkin.Newer. Max is associative and commutative, so
// the current location does not depend on the order writes arrive or commit
// in, and needs no read-modify-write.
//
// Only famCurrent keys are ever written with Merge.
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
