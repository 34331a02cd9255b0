package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key families. Every key starts with one family byte; ids inside a key are
// followed by sep unless they are the key's last component. User and
// location ids never contain sep (persistence.CheckID enforces it), so the
// prefix of one id never matches the keys of another.
//
// A user's checkin rows all live under famUserScoped: famUserScoped | user id
// | sep | sub-family | rest. One user's keys sit side by side, so the three
// rows of a checkin, and the checkins of one user, go into the memtable next
// to each other (WriteCheckins orders a batch by user): the skiplist finds
// each insert position from the last one instead of from the top. Layout 1
// began with the sub-family byte; layout 2 added this prefix; layout 3 (the
// current one, see layout.go) has the same keys and no bucket index rows.
//
// The checkin sub-families mirror the partitions of the Scylla backend: a
// key's prefix up to and including the bucket is the partition, the rest is
// the clustering order (timestamp descending, checkin id ascending).
const (
	// famMeta | name → the store's own records (layoutKey)
	famMeta byte = 0x00
	// famUser | user id → userRecord (JSON)
	famUser byte = 0x01
	// famLocation | location id → locationRecord (JSON)
	famLocation byte = 0x02

	// Sub-families of famUserScoped; the prefix "famUserScoped | user id |
	// sep |" is left out below.

	// famByUser | bucket | inverted ts | checkin id → location id
	famByUser byte = 0x03
	// famByUserLocation | location id | sep | bucket | inverted ts | checkin id → empty
	famByUserLocation byte = 0x04
	// 0x05 and 0x06 held the bucket indexes of a user and of a user at a
	// location (bucket → empty) up to layout 2. Layout 3 finds buckets in
	// the partitions; databases upgraded from layout 2 keep the old index
	// rows, which nothing reads. Never reuse the two bytes.
	// famCheckinByID | checkin id → ts | location id
	famCheckinByID byte = 0x07

	// famCurrent | user id → merge operands of the current location, in
	// databases written before it was read from famByUser (see current.go);
	// no longer written
	famCurrent byte = 0x08
	// famUserScoped | user id | sep | sub-family | … → the user's checkin rows
	famUserScoped byte = 0x09

	sep byte = 0x00
)

// signBit flips int64 order into uint64 order: encoded big-endian, negative
// values sort before positive ones.
const signBit = 1 << 63

func appendUserKey(dst []byte, userID string) []byte {
	return append(append(dst, famUser), userID...)
}

func appendLocationKey(dst []byte, locationID string) []byte {
	return append(append(dst, famLocation), locationID...)
}

// appendPartition appends the partition prefix of (user, bucket) when
// locationID is empty, else of (user, location, bucket).
func appendPartition(dst []byte, userID, locationID string, bucket int64) []byte {
	return appendBucket(appendPartitionPrefix(dst, userID, locationID), bucket)
}

// appendPartitionPrefix appends what the partitions of a user (or of a
// user at a location) share: their keys are this prefix, a bucket and the
// clustering key.
func appendPartitionPrefix(dst []byte, userID, locationID string) []byte {
	if locationID == "" {
		return appendUserFamily(dst, userID, famByUser)
	}
	return append(append(appendUserFamily(dst, userID, famByUserLocation), locationID...), sep)
}

// appendUserFamily appends the prefix of one family of a user's keys.
func appendUserFamily(dst []byte, userID string, fam byte) []byte {
	return append(append(append(append(dst, famUserScoped), userID...), sep), fam)
}

// appendCheckinKey appends the key of one checkin inside a partition.
func appendCheckinKey(dst []byte, userID, locationID string, bucket, ms int64, checkinID string) []byte {
	dst = appendPartition(dst, userID, locationID, bucket)
	return append(appendInvertedMillis(dst, ms), checkinID...)
}

func appendCheckinByIDKey(dst []byte, userID, checkinID string) []byte {
	return append(appendUserFamily(dst, userID, famCheckinByID), checkinID...)
}

func appendBucket(dst []byte, b int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(b)^signBit)
}

func decodeBucket(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ signBit)
}

// appendMillis appends ms so that byte order is time order.
func appendMillis(dst []byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(ms)^signBit)
}

func decodeMillis(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ signBit)
}

// appendInvertedMillis appends ms so that byte order is reverse time order:
// forward iteration yields the newest checkin first.
func appendInvertedMillis(dst []byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(dst, ^(uint64(ms) ^ signBit))
}

func decodeInvertedMillis(b []byte) int64 {
	return int64(^binary.BigEndian.Uint64(b) ^ signBit)
}

// prefixSuccessor returns the smallest key greater than every key that starts
// with p, or nil if there is none (p is all 0xff). It may modify p.
func prefixSuccessor(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			p[i]++
			return p[:i+1]
		}
	}
	return nil
}

// errCorrupt reports a stored key or value this code cannot decode.
var errCorrupt = errors.New("persistence/pebble: corrupt record")

// appendCheckinByID encodes the value of famCheckinByID.
func appendCheckinByID(dst []byte, ms int64, locationID string) []byte {
	return append(appendMillis(dst, ms), locationID...)
}

func decodeCheckinByID(v []byte) (ms int64, locationID string, err error) {
	if len(v) < 8 {
		return 0, "", fmt.Errorf("%w: checkin value of %d bytes", errCorrupt, len(v))
	}
	return decodeMillis(v), string(v[8:]), nil
}
