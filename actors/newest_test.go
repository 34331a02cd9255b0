package actors

import (
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

func TestNewestOf(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ck := func(id string, ms int) persistence.Checkin {
		return persistence.Checkin{ID: id, UserID: "u", LocationID: "L" + id, Timestamp: t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	tests := []struct {
		name     string
		newest   []persistence.Checkin // as ListCheckins returns them: newest first, ties by id ascending
		complete bool
		want     string // "": no current location
		settled  bool
	}{
		{"no checkins at all", nil, true, "", true},
		{"not loaded", nil, false, "", false},
		{"one millisecond, then an older one", []persistence.Checkin{ck("b", 5), ck("a", 4)}, false, "b", true},
		{"a tie, then an older millisecond", []persistence.Checkin{ck("a", 5), ck("c", 5), ck("b", 3)}, false, "c", true},
		{"a tie filling the page: more of it may follow", []persistence.Checkin{ck("a", 5), ck("c", 5)}, false, "", false},
		{"a tie that is the whole history", []persistence.Checkin{ck("a", 5), ck("c", 5)}, true, "c", true},
		{"one checkin, the whole history", []persistence.Checkin{ck("a", 5)}, true, "a", true},
		{"one checkin filling the page", []persistence.Checkin{ck("a", 5)}, false, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur, settled := newestOf(tc.newest, tc.complete)
			if settled != tc.settled {
				t.Fatalf("settled = %v, want %v", settled, tc.settled)
			}
			switch {
			case tc.want == "" && cur != nil:
				t.Errorf("current = %+v, want none", *cur)
			case tc.want != "" && (cur == nil || cur.ID != tc.want || cur.LocationID != "L"+tc.want):
				t.Errorf("current = %+v, want checkin %s", cur, tc.want)
			}
		})
	}
}
