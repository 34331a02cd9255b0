package edge

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/checkin/checkin/persistence"
)

// A cursor is opaque to clients: version, order, the position of the last
// checkin returned, and a hash of the query it belongs to, base64url-encoded.
const cursorVersion = 1

func queryHash(userID, locationID string, order persistence.Order) uint32 {
	h := fnv.New32a()
	h.Write([]byte(userID))
	h.Write([]byte{0, byte(order)})
	h.Write([]byte(locationID))
	return h.Sum32()
}

func encodeCursor(q persistence.Query, p persistence.Position) string {
	buf := make([]byte, 0, 14+len(p.CheckinID))
	buf = append(buf, cursorVersion, byte(q.Order))
	buf = binary.BigEndian.AppendUint64(buf, uint64(p.Timestamp.UnixMilli()))
	buf = binary.BigEndian.AppendUint32(buf, queryHash(q.UserID, q.LocationID, q.Order))
	buf = append(buf, p.CheckinID...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// decodeCursor returns the position in s, checking that s was made for q.
func decodeCursor(s string, q persistence.Query) (*persistence.Position, error) {
	bad := badRequest("invalid_cursor", "cursor is not one this API returned for this query")
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) < 15 || buf[0] != cursorVersion {
		return nil, bad
	}
	if persistence.Order(buf[1]) != q.Order || binary.BigEndian.Uint32(buf[10:14]) != queryHash(q.UserID, q.LocationID, q.Order) {
		return nil, bad
	}
	id := string(buf[14:])
	if !ValidID(id) {
		return nil, bad
	}
	ts := time.UnixMilli(int64(binary.BigEndian.Uint64(buf[2:10]))).UTC()
	return &persistence.Position{Timestamp: ts, CheckinID: id}, nil
}

// A record cursor (listing users or locations) holds its version, the
// kind of record and the id of the last record returned.
const recordCursorVersion = 2

func encodeRecordCursor(kind RecordKind, lastID string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{recordCursorVersion, byte(kind)}, lastID...))
}

// decodeRecordCursor returns the id in s, checking that s was made for a
// listing of kind.
func decodeRecordCursor(s string, kind RecordKind) (string, error) {
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) < 3 || buf[0] != recordCursorVersion || RecordKind(buf[1]) != kind || !ValidID(string(buf[2:])) {
		return "", badRequest("invalid_cursor", "cursor is not one this API returned for this listing")
	}
	return string(buf[2:]), nil
}
