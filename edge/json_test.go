package edge

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// The hand-written current-location encoding must decode to what
// encoding/json makes of currentJSON.
func TestHandEncodedJSONMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123_000_000, time.UTC)
	tests := []struct {
		name     string
		loc      string
		lat, lon float64
	}{
		{"plain", "MoMA", 40.7614, -73.9776},
		{"quotes and backslashes", `Joe's "Pizza" \\ Bar`, 0, 0},
		{"control characters", "line\nbreak\ttab\x00nul\x1f", -90, 180},
		{"unicode and html", "Café <b>&</b> 東京 \u2028", 1e-7, -1e-9},
		{"integral and tiny", "x", 45, 0.000001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := persistence.Checkin{ID: "c-1", UserID: "u_1", LocationID: "l-1", Timestamp: ts}
			l := persistence.Location{ID: "l-1", Name: tc.loc, Lat: tc.lat, Lon: tc.lon, CreatedAt: ts.Add(-time.Hour)}
			// the answer as currentLocation assembles it
			got := append(appendLocationJSON(appendCurrentHead(nil, cur), l), '}')
			want, err := json.Marshal(currentJSON{UserID: cur.UserID, LocationID: cur.LocationID, Timestamp: formatTime(cur.Timestamp),
				CheckinID: cur.ID, Location: toLocationJSON(l)})
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			// and the location alone, as GET /v1/locations/{id} answers
			var gl, wl any
			if err := json.Unmarshal(appendLocationJSON(nil, l), &gl); err != nil {
				t.Fatalf("invalid location JSON: %v", err)
			}
			wantLoc, _ := json.Marshal(toLocationJSON(l))
			_ = json.Unmarshal(wantLoc, &wl)
			if !reflect.DeepEqual(gl, wl) {
				t.Fatalf("location: got %s\nwant %s", appendLocationJSON(nil, l), wantLoc)
			}
		})
	}
}

func TestAppendCheckinJSONMatchesEncodingJSON(t *testing.T) {
	ci := persistence.Checkin{ID: "0192-abc_DEF", UserID: "u-1", LocationID: "L_9", Timestamp: time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)}
	want, err := json.Marshal(toCheckinJSON(ci))
	if err != nil {
		t.Fatal(err)
	}
	if got := appendCheckinJSON(nil, ci); string(got) != string(want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
