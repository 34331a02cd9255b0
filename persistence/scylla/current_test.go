package scylla

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// TestIdMicrosPreservesOrder: a < b implies idMicros(a) <= idMicros(b), and
// the result is in [0, 999].
func TestIdMicrosPreservesOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"", "a", "a\x01", "ab", "b", "z", "\xff\xff\xff\xff", "c00001-ab", "c00001-ac", "é", "zz"}
	for range 5000 {
		b := make([]byte, rng.IntN(6))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		ids = append(ids, string(b))
	}
	slices.Sort(ids)
	for i, id := range ids {
		m := idMicros(id)
		if m < 0 || m > 999 {
			t.Fatalf("idMicros(%q) = %d, outside [0, 999]", id, m)
		}
		if i > 0 && m < idMicros(ids[i-1]) {
			t.Fatalf("idMicros(%q) = %d < idMicros(%q) = %d", id, m, ids[i-1], idMicros(ids[i-1]))
		}
	}
	if idMicros("a") == idMicros("z") {
		t.Fatal("ids with different first bytes map to the same microsecond")
	}
}

// TestCurrentOrder: the (write timestamp, value) pair the database compares
// orders checkins exactly as persistence.Checkin.Newer does, for ASCII and
// non-ASCII ids, before and after 1970.
func TestCurrentOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "b", "z", "0", "-", "é", "ü", "\x7f", "ab"}
	base := []time.Time{time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC)}
	var cs []persistence.Checkin
	for range 3000 {
		var id strings.Builder
		for range 1 + rng.IntN(4) {
			id.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		ts := base[rng.IntN(2)].Add(time.Duration(rng.IntN(3)) * time.Millisecond)
		cs = append(cs, persistence.Checkin{ID: id.String(), LocationID: "l", Timestamp: ts})
	}
	dbNewer := func(a, b persistence.Checkin) bool { // what CQL does: timestamp, then unsigned bytes
		ta, tb := writeTimestamp(a.Timestamp.UnixMilli(), a.ID), writeTimestamp(b.Timestamp.UnixMilli(), b.ID)
		if ta != tb {
			return ta > tb
		}
		return string(encodeCurrent(a, a.Timestamp.UnixMilli())) > string(encodeCurrent(b, b.Timestamp.UnixMilli()))
	}
	for i := range 20000 {
		a, b := cs[rng.IntN(len(cs))], cs[i%len(cs)]
		if a.ID == b.ID && a.Timestamp.Equal(b.Timestamp) {
			continue
		}
		if got, want := dbNewer(a, b), a.Newer(b); got != want {
			t.Fatalf("database order says %v, Newer says %v, for %q@%v vs %q@%v", got, want, a.ID, a.Timestamp, b.ID, b.Timestamp)
		}
	}
}

func TestCurrentValueRoundTrip(t *testing.T) {
	for _, c := range []persistence.Checkin{
		{ID: "c1", LocationID: "l1", Timestamp: time.UnixMilli(1710028800123).UTC()},
		{ID: "é", LocationID: "", Timestamp: time.UnixMilli(-1).UTC()},
		{ID: "x", LocationID: "with\x00nul", Timestamp: time.UnixMilli(0).UTC()},
	} {
		got, err := decodeCurrent(encodeCurrent(c, c.Timestamp.UnixMilli()))
		if err != nil || got != c {
			t.Fatalf("round trip of %+v = %+v, %v", c, got, err)
		}
	}
	if _, err := decodeCurrent([]byte("no separator")); err == nil {
		t.Fatal("decodeCurrent accepted a value without separator")
	}
}
