package scylla

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/checkin/checkin/persistence"
)

// The current location of a user is one row of current_location holding one
// blob cell, written with a write timestamp derived from the checkin (not the
// clock), so that the newest checkin wins by the database's own
// last-write-wins rule, whatever order the writes arrive in and on whichever
// node. No read-before-write, no lightweight transaction.
//
// CQL resolves two versions of a cell by write timestamp; on equal write
// timestamps the larger value wins, compared as unsigned bytes (checked on
// Cassandra 5.0 by TestCurrentTieBreakByValue; Scylla's cell merge,
// compare_atomic_cell_for_merge, compares the same way). Hence:
//
//   - the write timestamp is ts_ms*1000 + idMicros(id): a later millisecond
//     always wins, and within one millisecond a larger id wins wherever the
//     first three bytes of the ids differ enough to map to different
//     microseconds;
//   - for ids that map to the same microsecond the value decides, and the
//     value starts with the checkin id followed by a 0x00 byte, so the
//     larger id (in byte order, as Go compares strings) has the larger value.
//
// The whole checkin is one cell, so two checkins never mix. Ids must not
// contain a 0x00 byte (checkID enforces it). Anything else written to
// current_location must use timestamps of the same scheme, or it wins or
// loses against checkins by wall-clock accident.

// idMicros maps a checkin id to [0, 999], preserving order: a < b implies
// idMicros(a) <= idMicros(b). It reads the first three bytes of the id as a
// fraction of 2^24 (missing bytes count as zero).
func idMicros(id string) int64 {
	var p int64
	for i := range 3 {
		p <<= 8
		if i < len(id) {
			p |= int64(id[i])
		}
	}
	return p * 1000 >> 24
}

// writeTimestamp is the CQL write timestamp (microseconds) of the current
// location write of a checkin at ms.
func writeTimestamp(ms int64, checkinID string) int64 {
	return ms*1000 + idMicros(checkinID)
}

// encodeCurrent returns the current_location value of a checkin:
// checkin id | 0x00 | ts (8 bytes, big endian) | location id.
func encodeCurrent(c persistence.Checkin, ms int64) []byte {
	b := make([]byte, 0, len(c.ID)+1+8+len(c.LocationID))
	b = append(append(b, c.ID...), 0)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	return append(b, c.LocationID...)
}

// decodeCurrent is the inverse of encodeCurrent; the user id is not stored.
func decodeCurrent(v []byte) (persistence.Checkin, error) {
	i := strings.IndexByte(string(v), 0)
	if i < 0 || len(v) < i+1+8 {
		return persistence.Checkin{}, fmt.Errorf("persistence/scylla: corrupt current location value of %d bytes", len(v))
	}
	ms := int64(binary.BigEndian.Uint64(v[i+1:]))
	return persistence.Checkin{
		ID:         string(v[:i]),
		LocationID: string(v[i+9:]),
		Timestamp:  time.UnixMilli(ms).UTC(),
	}, nil
}
