package edge

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

func TestCursorRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		q    persistence.Query
		p    persistence.Position
	}{
		{"newest, all locations", persistence.Query{UserID: "alice", Order: persistence.NewestFirst},
			persistence.Position{Timestamp: time.Date(2024, 5, 1, 12, 0, 0, 123_000_000, time.UTC), CheckinID: "0190f5c2-7a1b-7c3d-9e4f-5a6b7c8d9e0f"}},
		{"oldest, one location", persistence.Query{UserID: "alice", LocationID: "cafe-1", Order: persistence.OldestFirst},
			persistence.Position{Timestamp: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), CheckinID: "c1"}},
		{"epoch", persistence.Query{UserID: "u", Order: persistence.NewestFirst},
			persistence.Position{Timestamp: time.Unix(0, 0).UTC(), CheckinID: "x"}},
		{"far future", persistence.Query{UserID: "u", Order: persistence.OldestFirst},
			persistence.Position{Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), CheckinID: "x"}},
		{"longest ids", persistence.Query{UserID: strings.Repeat("u", 64), LocationID: strings.Repeat("l", 64)},
			persistence.Position{Timestamp: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), CheckinID: strings.Repeat("c", 64)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := encodeCursor(tt.q, tt.p)
			if strings.ContainsAny(s, "+/=") {
				t.Errorf("cursor %q is not URL-safe", s)
			}
			got, err := decodeCursor(s, tt.q)
			if err != nil {
				t.Fatalf("decodeCursor: %v", err)
			}
			if !got.Timestamp.Equal(tt.p.Timestamp) || got.CheckinID != tt.p.CheckinID {
				t.Errorf("decoded %v %q, want %v %q", got.Timestamp, got.CheckinID, tt.p.Timestamp, tt.p.CheckinID)
			}
			if got.Timestamp.Location() != time.UTC {
				t.Errorf("decoded timestamp in %v, want UTC", got.Timestamp.Location())
			}
		})
	}
}

// TestCursorOtherQuery checks that a cursor only works for the user,
// location filter and order it was made for. (from, to and limit may
// change between pages.)
func TestCursorOtherQuery(t *testing.T) {
	made := persistence.Query{UserID: "alice", LocationID: "cafe-1", Order: persistence.NewestFirst}
	s := encodeCursor(made, persistence.Position{Timestamp: time.Unix(1714564800, 0).UTC(), CheckinID: "c1"})
	tests := []struct {
		name string
		q    persistence.Query
		ok   bool
	}{
		{"same query", made, true},
		{"other range and limit", persistence.Query{UserID: "alice", LocationID: "cafe-1", From: time.Unix(5, 0), To: time.Unix(9, 0), Limit: 7}, true},
		{"other user", persistence.Query{UserID: "bob", LocationID: "cafe-1"}, false},
		{"other location", persistence.Query{UserID: "alice", LocationID: "cafe-2"}, false},
		{"no location", persistence.Query{UserID: "alice"}, false},
		{"other order", persistence.Query{UserID: "alice", LocationID: "cafe-1", Order: persistence.OldestFirst}, false},
		// user+location split differently must not hash the same
		{"shifted boundary", persistence.Query{UserID: "alicec", LocationID: "afe-1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCursor(s, tt.q)
			if tt.ok {
				if err != nil {
					t.Fatalf("decodeCursor: %v", err)
				}
				return
			}
			wantAPIError(t, err, "invalid_cursor", "cursor")
		})
	}
}

// TestCursorTampered changes the bytes of a valid cursor. The version, the
// order and the query hash are checked, and the id must be a valid id; the
// timestamp and a still-valid id are not authenticated, by design: they only
// position a read the client may make anyway.
func TestCursorTampered(t *testing.T) {
	q := persistence.Query{UserID: "alice", Order: persistence.NewestFirst}
	valid := encodeCursor(q, persistence.Position{Timestamp: time.Unix(1714564800, 0).UTC(), CheckinID: "c1"})
	raw, err := base64.RawURLEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) string {
		b := f(append([]byte(nil), raw...))
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name   string
		cursor string
	}{
		{"version", edit(func(b []byte) []byte { b[0] = 2; return b })},
		{"version zero", edit(func(b []byte) []byte { b[0] = 0; return b })},
		{"order byte", edit(func(b []byte) []byte { b[1] = 1; return b })},
		{"hash first byte", edit(func(b []byte) []byte { b[10] ^= 0x01; return b })},
		{"hash last byte", edit(func(b []byte) []byte { b[13] ^= 0x80; return b })},
		{"id made invalid", edit(func(b []byte) []byte { b[14] = '/'; return b })},
		{"id made too long", edit(func(b []byte) []byte { return append(b, strings.Repeat("x", 63)...) })},
		{"id cut off", edit(func(b []byte) []byte { return b[:14] })},
		{"header cut", edit(func(b []byte) []byte { return b[:9] })},
		{"one byte", edit(func(b []byte) []byte { return b[:1] })},
		{"last char dropped", valid[:len(valid)-1]},
		{"char appended", valid + "!"},
		{"padding added", base64.URLEncoding.EncodeToString(raw)},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid) + "+/"},
		{"empty", ""},
		{"not base64", "not a cursor!"},
		{"percent-encoded", "%41%42"},
		{"garbage base64", base64.RawURLEncoding.EncodeToString([]byte("hello, this is no cursor"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cursor == valid {
				t.Fatal("edit did not change the cursor")
			}
			_, err := decodeCursor(tt.cursor, q)
			wantAPIError(t, err, "invalid_cursor")
		})
	}
}
