package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key families. Every key starts with one family byte; ids inside a key are
// followed by sep unless they are the key's last component. User and
// location ids never contain sep (persistence.CheckID enforces it), so the prefix of one
// id never matches the keys of another.
//
// The checkin families mirror the partitions of the Scylla backend: a key's
// prefix up to and including the bucket is the partition, the rest is the
// clustering order (timestamp descending, checkin id ascending).
const (
	// famUser | user id → userRecord (JSON)
	famUser byte = 0x01
	// famLocation | location id → locationRecord (JSON)
	famLocation byte = 0x02
	// famByUser | user id | sep | bucket | inverted ts | checkin id → location id
	famByUser byte = 0x03
	// famByUserLocation | user id | sep | location id | sep | bucket | inverted ts | checkin id → empty
	famByUserLocation byte = 0x04
	// famBucketsByUser | user id | sep | bucket → empty: the non-empty buckets of a user
	famBucketsByUser byte = 0x05
	// famBucketsByUserLocation | user id | sep | location id | sep | bucket → empty
	famBucketsByUserLocation byte = 0x06
	// famCheckinByID | user id | sep | checkin id → ts | location id
	famCheckinByID byte = 0x07
	// famCurrent | user id → merge operands of the current location, in
	// databases written before it was read from famByUser (see current.go);
	// no longer written
	famCurrent byte = 0x08

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
	if locationID == "" {
		dst = append(append(append(dst, famByUser), userID...), sep)
	} else {
		dst = append(append(append(append(append(dst, famByUserLocation), userID...), sep), locationID...), sep)
	}
	return appendBucket(dst, bucket)
}

// appendCheckinKey appends the key of one checkin inside a partition.
func appendCheckinKey(dst []byte, userID, locationID string, bucket, ms int64, checkinID string) []byte {
	dst = appendPartition(dst, userID, locationID, bucket)
	return append(appendInvertedMillis(dst, ms), checkinID...)
}

// appendBucketIndex appends the prefix of the bucket index of a user (or of
// a user at a location); the index keys are the prefix followed by a bucket.
func appendBucketIndex(dst []byte, userID, locationID string) []byte {
	if locationID == "" {
		return append(append(append(dst, famBucketsByUser), userID...), sep)
	}
	return append(append(append(append(append(dst, famBucketsByUserLocation), userID...), sep), locationID...), sep)
}

func appendCheckinByIDKey(dst []byte, userID, checkinID string) []byte {
	return append(append(append(append(dst, famCheckinByID), userID...), sep), checkinID...)
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
