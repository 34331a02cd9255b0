package main

// End-to-end test of the HTTP API v1 against the real binary (see
// e2etest_helpers_test.go for the harness). CHECKIN_TEST_STORE=scylla (with
// CHECKIN_TEST_CQL_HOSTS) runs it on Scylla instead of the embedded store.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/checkin/checkin/cmd/internal/testcert"
)

const day = 24 * time.Hour

var generatedID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// TestE2E runs most of the API against one node; every subtest uses its own
// ids, so they run in parallel.
func TestE2E(t *testing.T) {
	t.Parallel()
	p := startProc(t, storeFlags(t)...)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *proc)
	}{
		{"users", testUsers},
		{"locations", testLocations},
		{"updates", testUpdates},
		{"delete a user", testDeleteUser},
		{"delete a location", testDeleteLocation},
		{"delete a checkin", testDeleteCheckin},
		{"list users and locations", testListRecords},
		{"checkins", testCheckins},
		{"current location", testCurrentLocation},
		{"list", testList},
		{"paging across buckets", testPagingBuckets},
		{"paging while writing", testPagingWhileWriting},
		{"concurrent checkins", testConcurrentCheckins},
		{"operations", testOperations},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, p)
		})
	}
}

// badBody is a request that must be refused with 400 and leave nothing
// behind. In body, $ID stands for a fresh valid id.
type badBody struct {
	name    string
	body    string
	code    string // "": any code
	mention string // the message must contain this ("": anything)
}

func checkBadBodies(t *testing.T, p *proc, path, getPrefix string, cases []badBody) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := uniqueID("bad")
			msg := wantError(t, p.do(t, "POST", path, strings.ReplaceAll(tc.body, "$ID", id)), http.StatusBadRequest, tc.code)
			if tc.mention != "" && !strings.Contains(strings.ToLower(msg), tc.mention) {
				t.Errorf("message %q does not mention %q", msg, tc.mention)
			}
			if getPrefix != "" && strings.Contains(tc.body, "$ID") {
				if r := p.do(t, "GET", getPrefix+id, nil); r.status != http.StatusNotFound {
					t.Errorf("refused request left something behind: GET %s%s = %s", getPrefix, id, r)
				}
			}
		})
	}
}

// testUpdates: PATCH changes the fields it names and keeps the rest, every
// later read (including one cached before the update, and the location a
// current-location answer embeds) shows the change, and a refused update
// changes nothing.
func testUpdates(t *testing.T, p *proc) {
	t.Run("rename a user", func(t *testing.T) {
		t.Parallel()
		id := p.mkUser(t, "upd")
		before := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK) // now cached
		got := decodeOK[apiUser](t, p.do(t, "PATCH", "/v1/users/"+id, `{"name":"  Renée Lee  "}`), http.StatusOK, "id", "name", "created_at")
		want := apiUser{ID: id, Name: "Renée Lee", CreatedAt: before.CreatedAt}
		if got != want {
			t.Errorf("PATCH answered %+v, want %+v", got, want)
		}
		if got := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK); got != want {
			t.Errorf("GET after PATCH = %+v, want %+v", got, want)
		}
	})

	t.Run("move and rename a location, one field at a time", func(t *testing.T) {
		t.Parallel()
		l := p.mkLocation(t, "upd")
		user := p.mkUser(t, "upd")
		c := ck{uniqueID("c"), l.ID, ms(time.Now().Add(-time.Minute))}
		p.mkCheckin(t, user, c)
		p.checkCurrent(t, user, c, l) // the location is now cached
		steps := []struct {
			body string
			set  func(*apiLocation)
		}{
			{`{"lat":-33.5}`, func(l *apiLocation) { l.Lat = -33.5 }},
			{`{"lon":151.25}`, func(l *apiLocation) { l.Lon = 151.25 }},
			{`{"name":"Opera House"}`, func(l *apiLocation) { l.Name = "Opera House" }},
			{`{"name":"MoMA","lat":40.7614,"lon":-73.9776}`, func(l *apiLocation) { l.Name, l.Lat, l.Lon = "MoMA", 40.7614, -73.9776 }},
			{`{"lat":90,"lon":-180}`, func(l *apiLocation) { l.Lat, l.Lon = 90, -180 }},
		}
		for _, st := range steps {
			st.set(&l)
			got := decodeOK[apiLocation](t, p.do(t, "PATCH", "/v1/locations/"+l.ID, st.body), http.StatusOK, "id", "name", "lat", "lon", "created_at")
			if got != l {
				t.Fatalf("PATCH %s answered %+v, want %+v", st.body, got, l)
			}
			if got := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK); got != l {
				t.Fatalf("GET after PATCH %s = %+v, want %+v", st.body, got, l)
			}
			p.checkCurrent(t, user, c, l)
		}
	})

	t.Run("unknown records", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "PATCH", "/v1/users/"+uniqueID("ghost"), `{"name":"x"}`), http.StatusNotFound, "user_not_found")
		id := uniqueID("nowhere")
		wantError(t, p.do(t, "PATCH", "/v1/locations/"+id, `{"lat":1}`), http.StatusNotFound, "location_not_found")
		wantError(t, p.do(t, "GET", "/v1/locations/"+id, nil), http.StatusNotFound, "location_not_found")
		wantError(t, p.do(t, "PATCH", "/v1/users/a.b", `{"name":"x"}`), http.StatusBadRequest, "invalid_id")
	})

	t.Run("refused updates change nothing", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "upd")
		u := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK)
		l := p.mkLocation(t, "upd")
		cases := []struct {
			name, path, body, code string
		}{
			{"empty user update", "/v1/users/" + user, `{}`, "empty_update"},
			{"null name", "/v1/users/" + user, `{"name":null}`, "invalid_json"},
			{"blank name", "/v1/users/" + user, `{"name":"   "}`, "invalid_name"},
			{"name too long", "/v1/users/" + user, `{"name":"` + strings.Repeat("n", 1000) + `"}`, "invalid_name"},
			{"user id in body", "/v1/users/" + user, `{"id":"other","name":"x"}`, "unknown_field"},
			{"created_at in body", "/v1/users/" + user, `{"created_at":"2020-01-01T00:00:00Z"}`, "unknown_field"},
			{"not JSON", "/v1/users/" + user, `name=x`, "invalid_json"},
			{"no body", "/v1/users/" + user, ``, "invalid_json"},
			{"empty location update", "/v1/locations/" + l.ID, `{}`, "empty_update"},
			{"lat out of range", "/v1/locations/" + l.ID, `{"name":"ok","lat":90.5}`, "invalid_coordinates"},
			{"lon out of range", "/v1/locations/" + l.ID, `{"lon":-181}`, "invalid_coordinates"},
			{"lat as string", "/v1/locations/" + l.ID, `{"lat":"1"}`, "invalid_json"},
			{"null lon", "/v1/locations/" + l.ID, `{"lat":1,"lon":null}`, "invalid_json"},
			{"unknown location field", "/v1/locations/" + l.ID, `{"alt":3}`, "unknown_field"},
		}
		for _, tc := range cases {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			if msg := wantError(t, p.do(t, "PATCH", tc.path, body), http.StatusBadRequest, tc.code); msg == "" {
				t.Errorf("%s: empty error message", tc.name)
			}
		}
		if got := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK); got != u {
			t.Errorf("user after refused updates = %+v, want %+v", got, u)
		}
		if got := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK); got != l {
			t.Errorf("location after refused updates = %+v, want %+v", got, l)
		}
	})
}

// testDeleteUser: DELETE removes the user and every checkin of the user
// from every read, leaves other users alone, answers 404 when there is no
// user, and the id can be created again, empty.
func testDeleteUser(t *testing.T, p *proc) {
	user, other := p.mkUser(t, "del"), p.mkUser(t, "del")
	l1, l2 := p.mkLocation(t, "del"), p.mkLocation(t, "del")
	now := ms(time.Now())
	var mine, theirs []ck
	for i := range 12 { // across several day buckets, at two locations
		c := ck{uniqueID("d"), []string{l1.ID, l2.ID}[i%2], now.Add(-time.Duration(i) * 29 * time.Hour)}
		mine = append(mine, c)
		theirs = append(theirs, ck{uniqueID("o"), c.Loc, c.TS})
	}
	p.mkCheckins(t, user, mine)
	p.mkCheckins(t, other, theirs)
	p.checkCurrent(t, user, latest(mine), l1) // cached
	decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK)

	r := p.do(t, "DELETE", "/v1/users/"+user, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE = %s, want 204 and no body", r)
	}
	for _, path := range []string{"/v1/users/" + user, "/v1/users/" + user + "/location", "/v1/users/" + user + "/checkins",
		"/v1/users/" + user + "/checkins?location_id=" + l1.ID} {
		wantError(t, p.do(t, "GET", path, nil), http.StatusNotFound, "user_not_found")
	}
	wantError(t, p.do(t, "POST", "/v1/users/"+user+"/checkins", mine[0].body()), http.StatusNotFound, "user_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/users/"+user, nil), http.StatusNotFound, "user_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/users/"+uniqueID("ghost"), nil), http.StatusNotFound, "user_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/users/a.b", nil), http.StatusBadRequest, "invalid_id")
	wantCheckins(t, other, p.listAll(t, other, nil, 100, nil), query{}.expect(theirs))

	// The id again: a new user with no checkins; the old checkin ids are
	// free, and new checkins land in the old buckets and are listed.
	decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": user, "name": "again"}), http.StatusCreated)
	wantError(t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusNotFound, "no_checkins")
	if got := p.listAll(t, user, nil, 100, nil); len(got) != 0 {
		t.Fatalf("the user created again lists %d checkins, want none", len(got))
	}
	again := []ck{{mine[3].ID, l2.ID, mine[3].TS}, {uniqueID("n"), l1.ID, mine[5].TS}}
	p.mkCheckins(t, user, again)
	wantCheckins(t, user, p.listAll(t, user, nil, 100, nil), query{}.expect(again))
	p.checkCurrent(t, user, latest(again), l2)
}

// testDeleteCheckin: DELETE of one checkin removes it from every read;
// when it was the current location, the newest checkin left becomes it;
// the id can be used again; other users keep theirs.
func testDeleteCheckin(t *testing.T, p *proc) {
	user, other := p.mkUser(t, "dck"), p.mkUser(t, "dck")
	l1, l2 := p.mkLocation(t, "dck"), p.mkLocation(t, "dck")
	locs := map[string]apiLocation{l1.ID: l1, l2.ID: l2}
	now := ms(time.Now())
	var mine []ck
	for i := range 6 { // across day buckets, at two locations
		mine = append(mine, ck{uniqueID("k"), []string{l1.ID, l2.ID}[i%2], now.Add(-time.Duration(i) * 20 * time.Hour)})
	}
	theirs := []ck{{mine[0].ID, l2.ID, mine[0].TS}} // the same id, another user
	p.mkCheckins(t, user, mine)
	p.mkCheckins(t, other, theirs)
	p.checkCurrent(t, user, latest(mine), l1) // the node's view holds it now

	del := func(c ck) {
		t.Helper()
		if r := p.do(t, "DELETE", "/v1/users/"+user+"/checkins/"+c.ID, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("DELETE %s = %s, want 204 and no body", c.ID, r)
		}
		mine = slices.DeleteFunc(mine, func(x ck) bool { return x.ID == c.ID })
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+c.ID, nil), http.StatusNotFound, "checkin_not_found")
		wantError(t, p.do(t, "DELETE", "/v1/users/"+user+"/checkins/"+c.ID, nil), http.StatusNotFound, "checkin_not_found")
		wantCheckins(t, user, p.listAll(t, user, nil, 2, nil), query{}.expect(mine))
		for _, l := range []string{l1.ID, l2.ID} {
			q := query{loc: l}
			wantCheckins(t, user, p.listAll(t, user, q.values(), 100, nil), q.expect(mine))
		}
		if len(mine) > 0 {
			cur := latest(mine)
			p.checkCurrent(t, user, cur, locs[cur.Loc])
		} else {
			wantError(t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusNotFound, "no_checkins")
		}
	}
	del(mine[0])           // the current one: the next newest takes its place
	del(mine[len(mine)-1]) // the oldest
	wantCheckins(t, other, p.listAll(t, other, nil, 100, nil), query{}.expect(theirs))

	wantError(t, p.do(t, "DELETE", "/v1/users/"+user+"/checkins/"+uniqueID("never"), nil), http.StatusNotFound, "checkin_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/users/"+uniqueID("ghost")+"/checkins/"+mine[0].ID, nil), http.StatusNotFound, "user_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/users/"+user+"/checkins/"+strings.Repeat("x", 65), nil), http.StatusBadRequest, "invalid_id")
	wantError(t, p.do(t, "DELETE", "/v1/users/a.b/checkins/"+mine[0].ID, nil), http.StatusBadRequest, "invalid_id")

	// The deleted id again, elsewhere and later: a new checkin (201), the
	// current location.
	again := ck{theirs[0].ID, l2.ID, now.Add(time.Minute)}
	p.mkCheckin(t, user, again)
	mine = append(mine, again)
	p.checkCurrent(t, user, again, l2)
	for len(mine) > 0 {
		del(latest(mine))
	}
}

// testDeleteLocation: DELETE removes a location; checkins made there stay,
// a current-location answer for one shows "location": null, new checkins
// there are refused, and the id can be created again.
func testDeleteLocation(t *testing.T, p *proc) {
	user := p.mkUser(t, "dl")
	l := p.mkLocation(t, "dl")
	k := ck{uniqueID("dl"), l.ID, ms(time.Now().Add(-time.Minute))}
	p.mkCheckin(t, user, k)
	p.checkCurrent(t, user, k, l) // the location is now cached

	if r := p.do(t, "DELETE", "/v1/locations/"+l.ID, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE = %s, want 204 and no body", r)
	}
	wantError(t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusNotFound, "location_not_found")
	cur := decodeOK[map[string]any](t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusOK,
		"user_id", "location_id", "timestamp", "checkin_id", "location")
	if cur["location"] != nil || cur["location_id"] != l.ID || cur["checkin_id"] != k.ID {
		t.Errorf("current location after the delete = %v, want the checkin with location_id %s and location null", cur, l.ID)
	}
	wantCheckins(t, user, p.listAll(t, user, nil, 10, nil), query{}.expect([]ck{k}))
	later := ck{uniqueID("dl"), l.ID, ms(time.Now())}
	wantError(t, p.do(t, "POST", "/v1/users/"+user+"/checkins", later.body()), http.StatusNotFound, "location_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/locations/"+l.ID, nil), http.StatusNotFound, "location_not_found")
	wantError(t, p.do(t, "DELETE", "/v1/locations/a.b", nil), http.StatusBadRequest, "invalid_id")

	again := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": l.ID, "name": "again", "lat": 1, "lon": 2}), http.StatusCreated)
	p.checkCurrent(t, user, k, again) // the checkin's location, as it is now
	p.mkCheckin(t, user, later)
	p.checkCurrent(t, user, later, again)
}

// testListRecords pages through GET /v1/users and /v1/locations (other
// tests create records meanwhile): each record this test made is listed
// once with its fields, no id twice; bad cursors and limits are refused.
func testListRecords(t *testing.T, p *proc) {
	mine := map[string]apiUser{}
	for range 5 {
		id := p.mkUser(t, "lr")
		mine[id] = decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK)
	}
	myLocs := map[string]apiLocation{}
	for range 3 {
		l := p.mkLocation(t, "lr")
		myLocs[l.ID] = l
	}
	users, userCursor := listEvery(t, p, "/v1/users", 7, func(u apiUser) string { return u.ID })
	for id, want := range mine {
		if got, ok := users[id]; !ok || got != want {
			t.Errorf("user %s listed as %+v (listed: %v), want %+v", id, got, ok, want)
		}
	}
	locs, _ := listEvery(t, p, "/v1/locations", 1000, func(l apiLocation) string { return l.ID })
	for id, want := range myLocs {
		if got, ok := locs[id]; !ok || got != want {
			t.Errorf("location %s listed as %+v (listed: %v), want %+v", id, got, ok, want)
		}
	}
	wantError(t, p.do(t, "GET", "/v1/users?cursor=not-a-cursor", nil), http.StatusBadRequest, "invalid_cursor")
	if userCursor != "" { // a users cursor is no locations cursor
		wantError(t, p.do(t, "GET", "/v1/locations?cursor="+userCursor, nil), http.StatusBadRequest, "invalid_cursor")
	}
	wantError(t, p.do(t, "GET", "/v1/locations?limit=0", nil), http.StatusBadRequest, "invalid_limit")
	wantError(t, p.do(t, "GET", "/v1/users?limit=1001", nil), http.StatusBadRequest, "invalid_limit")
	wantError(t, p.do(t, "GET", "/v1/users?limt=5", nil), http.StatusBadRequest, "unknown_parameter")
	wantError(t, p.do(t, "GET", "/v1/locations?cursor=a&cursor=b", nil), http.StatusBadRequest, "repeated_parameter")
}

// listEvery follows a listing's cursors to the end, limit records a page,
// failing on a page over the limit or an id listed twice; it returns the
// records by id and the last cursor it followed ("" for one page).
func listEvery[T any](t *testing.T, p *proc, path string, limit int, idOf func(T) string) (map[string]T, string) {
	t.Helper()
	type page struct {
		Users      []T     `json:"users"`
		Locations  []T     `json:"locations"`
		NextCursor *string `json:"next_cursor"`
	}
	all := map[string]T{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatalf("%s does not end", path)
		}
		pg := decodeOK[page](t, p.do(t, "GET", fmt.Sprintf("%s?limit=%d&cursor=%s", path, limit, cursor), nil), http.StatusOK,
			path[strings.LastIndex(path, "/")+1:], "next_cursor") // "users" or "locations", and the cursor
		items := append(pg.Users, pg.Locations...)
		if len(items) > limit {
			t.Fatalf("%s: a page of %d, want at most %d", path, len(items), limit)
		}
		for _, r := range items {
			if _, dup := all[idOf(r)]; dup {
				t.Fatalf("%s: %s listed twice", path, idOf(r))
			}
			all[idOf(r)] = r
		}
		if pg.NextCursor == nil {
			return all, cursor
		}
		cursor = *pg.NextCursor
	}
}

func testUsers(t *testing.T, p *proc) {
	userKeys := []string{"id", "name", "created_at"}

	t.Run("create with id, then get", func(t *testing.T) {
		t.Parallel()
		id := uniqueID("u")
		before := time.Now()
		u := decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "Zoë ☕ Müller"}), http.StatusCreated, userKeys...)
		after := time.Now()
		if u.ID != id || u.Name != "Zoë ☕ Müller" {
			t.Errorf("created %+v, want id %q and the name sent", u, id)
		}
		wantRecent(t, "created_at", u.CreatedAt, before, after)
		if got := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK, userKeys...); got != u {
			t.Errorf("GET = %+v, want what POST returned: %+v", got, u)
		}
	})

	t.Run("create without id", func(t *testing.T) {
		t.Parallel()
		ids := map[string]bool{}
		for range 3 {
			u := decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", `{"name":"anon"}`), http.StatusCreated, userKeys...)
			if !generatedID.MatchString(u.ID) {
				t.Errorf("generated id %q is not 1-64 of [A-Za-z0-9_-]", u.ID)
			}
			if ids[u.ID] {
				t.Errorf("generated id %q twice", u.ID)
			}
			ids[u.ID] = true
			if got := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+u.ID, nil), http.StatusOK); got != u {
				t.Errorf("GET = %+v, want %+v", got, u)
			}
		}
	})

	t.Run("id of 64 characters", func(t *testing.T) {
		t.Parallel()
		id := uniqueID("u64_")
		id += strings.Repeat("x", 64-len(id))
		decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "long"}), http.StatusCreated)
		decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK)
	})

	t.Run("duplicate id", func(t *testing.T) {
		t.Parallel()
		id := uniqueID("dup")
		first := decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "first"}), http.StatusCreated)
		wantError(t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "second"}), http.StatusConflict, "user_exists")
		wantError(t, p.do(t, "POST", "/v1/users", map[string]any{"id": id, "name": "first"}), http.StatusConflict, "user_exists")
		if got := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+id, nil), http.StatusOK); got != first {
			t.Errorf("after the refused duplicate GET = %+v, want the first user %+v", got, first)
		}
	})

	t.Run("get unknown", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/users/"+uniqueID("nobody"), nil), http.StatusNotFound, "user_not_found")
	})

	for _, bad := range []string{"bad.id", "bad%20id", "bad!id", "bad~id", strings.Repeat("a", 65)} {
		t.Run("bad id in path "+bad[:min(len(bad), 10)], func(t *testing.T) {
			t.Parallel()
			wantError(t, p.do(t, "GET", "/v1/users/"+bad, nil), http.StatusBadRequest, "invalid_id")
		})
	}

	t.Run("bad body", func(t *testing.T) {
		t.Parallel()
		checkBadBodies(t, p, "/v1/users", "/v1/users/", []badBody{
			{"missing name", `{"id":"$ID"}`, "", "name"},
			{"null name", `{"id":"$ID","name":null}`, "", "name"},
			{"empty name", `{"id":"$ID","name":""}`, "", "name"},
			{"blank name", `{"id":"$ID","name":"   "}`, "", "name"},
			{"name too long", `{"id":"$ID","name":"` + strings.Repeat("n", 1000) + `"}`, "", "name"},
			{"unknown field", `{"id":"$ID","name":"x","email":"x@example.com"}`, "unknown_field", "email"},
			{"name is a number", `{"id":"$ID","name":5}`, "invalid_json", "name"},
			{"id is a number", `{"id":5,"name":"x"}`, "invalid_json", "id"},
			{"malformed JSON", `{"id":"$ID","name":"x"`, "", ""},
			{"not JSON", `id=$ID&name=x`, "", ""},
			{"array", `[{"id":"$ID","name":"x"}]`, "", ""},
			{"string", `"$ID"`, "", ""},
			{"empty body", ``, "", ""},
			{"two objects", `{"id":"$ID","name":"x"}{"id":"$ID","name":"y"}`, "", ""},
			{"id with a space", `{"id":"a b","name":"x"}`, "invalid_id", "id"},
			{"id with a dot", `{"id":"a.b","name":"x"}`, "invalid_id", "id"},
			{"empty id", `{"id":"","name":"x"}`, "invalid_id", "id"},
			{"id of 65 characters", `{"id":"` + strings.Repeat("a", 65) + `","name":"x"}`, "invalid_id", "id"},
		})
	})
}

func testLocations(t *testing.T, p *proc) {
	locKeys := []string{"id", "name", "lat", "lon", "created_at"}

	t.Run("create with id, then get", func(t *testing.T) {
		t.Parallel()
		id := uniqueID("l")
		before := time.Now()
		l := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": id, "name": "Brandenburger Tor", "lat": 52.516275, "lon": 13.377704}), http.StatusCreated, locKeys...)
		after := time.Now()
		if l.ID != id || l.Name != "Brandenburger Tor" || l.Lat != 52.516275 || l.Lon != 13.377704 {
			t.Errorf("created %+v, want what was sent", l)
		}
		wantRecent(t, "created_at", l.CreatedAt, before, after)
		if got := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+id, nil), http.StatusOK, locKeys...); got != l {
			t.Errorf("GET = %+v, want %+v", got, l)
		}
	})

	t.Run("create without id", func(t *testing.T) {
		t.Parallel()
		l := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", `{"name":"somewhere","lat":-33.8568,"lon":151.2153}`), http.StatusCreated, locKeys...)
		if !generatedID.MatchString(l.ID) {
			t.Errorf("generated id %q is not 1-64 of [A-Za-z0-9_-]", l.ID)
		}
		if got := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK); got != l {
			t.Errorf("GET = %+v, want %+v", got, l)
		}
	})

	for _, tc := range []struct {
		name     string
		lat, lon float64
	}{
		{"north-east corner", 90, 180},
		{"south-west corner", -90, -180},
		{"null island", 0, 0},
	} {
		t.Run("coordinates "+tc.name, func(t *testing.T) {
			t.Parallel()
			id := uniqueID("lc")
			l := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": id, "name": tc.name, "lat": tc.lat, "lon": tc.lon}), http.StatusCreated)
			if l.Lat != tc.lat || l.Lon != tc.lon {
				t.Errorf("stored (%v, %v), want (%v, %v)", l.Lat, l.Lon, tc.lat, tc.lon)
			}
		})
	}

	t.Run("duplicate id", func(t *testing.T) {
		t.Parallel()
		id := uniqueID("ldup")
		first := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": id, "name": "first", "lat": 1, "lon": 2}), http.StatusCreated)
		wantError(t, p.do(t, "POST", "/v1/locations", map[string]any{"id": id, "name": "second", "lat": 3, "lon": 4}), http.StatusConflict, "location_exists")
		if got := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+id, nil), http.StatusOK); got != first {
			t.Errorf("after the refused duplicate GET = %+v, want the first %+v", got, first)
		}
	})

	t.Run("get unknown", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/locations/"+uniqueID("nowhere"), nil), http.StatusNotFound, "location_not_found")
	})

	t.Run("bad id in path", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/locations/no.where", nil), http.StatusBadRequest, "invalid_id")
		wantError(t, p.do(t, "GET", "/v1/locations/"+strings.Repeat("b", 65), nil), http.StatusBadRequest, "invalid_id")
	})

	t.Run("bad body", func(t *testing.T) {
		t.Parallel()
		checkBadBodies(t, p, "/v1/locations", "/v1/locations/", []badBody{
			{"lat 91", `{"id":"$ID","name":"x","lat":91,"lon":0}`, "invalid_coordinates", "lat"},
			{"lat -90.5", `{"id":"$ID","name":"x","lat":-90.5,"lon":0}`, "invalid_coordinates", "lat"},
			{"lon -181", `{"id":"$ID","name":"x","lat":0,"lon":-181}`, "invalid_coordinates", "lon"},
			{"lon 180.0001", `{"id":"$ID","name":"x","lat":0,"lon":180.0001}`, "invalid_coordinates", "lon"},
			{"missing lat", `{"id":"$ID","name":"x","lon":0}`, "", "lat"},
			{"missing lon", `{"id":"$ID","name":"x","lat":0}`, "", "lon"},
			{"missing name", `{"id":"$ID","lat":0,"lon":0}`, "", "name"},
			{"lat is a string", `{"id":"$ID","name":"x","lat":"52.5","lon":0}`, "invalid_json", "lat"},
			{"unknown field", `{"id":"$ID","name":"x","lat":0,"lon":0,"alt":30}`, "unknown_field", "alt"},
			{"malformed JSON", `{"id":"$ID","name":"x","lat":0,`, "", ""},
			{"array", `[{"id":"$ID","name":"x","lat":0,"lon":0}]`, "", ""},
			{"bad id", `{"id":"no/where","name":"x","lat":0,"lon":0}`, "invalid_id", "id"},
		})
	})
}

func testCheckins(t *testing.T, p *proc) {
	ciKeys := []string{"id", "user_id", "location_id", "timestamp"}
	locA, locB := p.mkLocation(t, "ca"), p.mkLocation(t, "cb")
	post := func(t *testing.T, user string, body any) response {
		t.Helper()
		return p.do(t, "POST", "/v1/users/"+user+"/checkins", body)
	}

	t.Run("given timestamp is returned in UTC with ms precision; retry", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		id := uniqueID("c")
		got := decodeOK[apiCheckin](t, post(t, user, map[string]any{"id": id, "location_id": locA.ID, "timestamp": "2024-05-01T14:00:00.123456+02:00"}), http.StatusCreated, ciKeys...)
		want := apiCheckin{ID: id, UserID: user, LocationID: locA.ID, Timestamp: "2024-05-01T12:00:00.123Z"}
		if got != want {
			t.Fatalf("created %+v, want %+v", got, want)
		}
		// The same content again (the same instant, written differently) is a retry.
		for _, ts := range []string{"2024-05-01T14:00:00.123456+02:00", "2024-05-01T12:00:00.123Z"} {
			if again := decodeOK[apiCheckin](t, post(t, user, map[string]any{"id": id, "location_id": locA.ID, "timestamp": ts}), http.StatusOK, ciKeys...); again != want {
				t.Errorf("retry with %s answered %+v, want %+v", ts, again, want)
			}
		}
		wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), []ck{{id, locA.ID, time.Date(2024, 5, 1, 12, 0, 0, 123e6, time.UTC)}})
	})

	t.Run("default timestamp is the server's now; retry without timestamp", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		id := uniqueID("c")
		before := time.Now()
		got := decodeOK[apiCheckin](t, post(t, user, map[string]any{"id": id, "location_id": locB.ID}), http.StatusCreated, ciKeys...)
		after := time.Now()
		wantRecent(t, "timestamp", got.Timestamp, before, after)
		if got.ID != id || got.UserID != user || got.LocationID != locB.ID {
			t.Errorf("created %+v", got)
		}
		time.Sleep(20 * time.Millisecond) // a retry's "now" differs; the stored checkin must not
		if again := decodeOK[apiCheckin](t, post(t, user, map[string]any{"id": id, "location_id": locB.ID}), http.StatusOK); again != got {
			t.Errorf("retry answered %+v, want the stored %+v", again, got)
		}
		// Without an id, the server makes one.
		gen := decodeOK[apiCheckin](t, post(t, user, map[string]any{"location_id": locA.ID}), http.StatusCreated)
		if !generatedID.MatchString(gen.ID) || gen.ID == id {
			t.Errorf("generated checkin id %q", gen.ID)
		}
		all := p.listAll(t, user, nil, 50, nil)
		if len(all) != 2 {
			t.Errorf("listed %d checkins, want 2 (the retry must not write twice): %+v", len(all), all)
		}
	})

	t.Run("same id different content", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		orig := ck{uniqueID("c"), locA.ID, ms(time.Now().Add(-time.Hour))}
		p.mkCheckin(t, user, orig)
		for _, other := range []ck{
			{orig.ID, locB.ID, orig.TS},                  // other location
			{orig.ID, locA.ID, orig.TS.Add(time.Second)}, // other timestamp
		} {
			wantError(t, post(t, user, other.body()), http.StatusConflict, "checkin_conflict")
		}
		wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), []ck{orig})
		p.checkCurrent(t, user, orig, locA)
	})

	t.Run("read one by id", func(t *testing.T) {
		t.Parallel()
		user, other := p.mkUser(t, "cu"), p.mkUser(t, "cu")
		c := ck{uniqueID("c"), locA.ID, ms(time.Now().Add(-time.Minute))}
		p.mkCheckin(t, user, c)
		want := apiCheckin{ID: c.ID, UserID: user, LocationID: c.Loc, Timestamp: fmtTS(c.TS)}
		if got := decodeOK[apiCheckin](t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+c.ID, nil), http.StatusOK, ciKeys...); got != want {
			t.Errorf("GET by id = %+v, want %+v", got, want)
		}
		// A checkin id belongs to its user.
		wantError(t, p.do(t, "GET", "/v1/users/"+other+"/checkins/"+c.ID, nil), http.StatusNotFound, "checkin_not_found")
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+uniqueID("never"), nil), http.StatusNotFound, "checkin_not_found")
		wantError(t, p.do(t, "GET", "/v1/users/"+uniqueID("ghost")+"/checkins/"+c.ID, nil), http.StatusNotFound, "user_not_found")
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+strings.Repeat("x", 65), nil), http.StatusBadRequest, "invalid_id")
		// Deleting the user deletes the checkin: a user created again with
		// the same id does not find it.
		if r := p.do(t, "DELETE", "/v1/users/"+user, nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE user = %s", r)
		}
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+c.ID, nil), http.StatusNotFound, "user_not_found")
		if r := p.do(t, "POST", "/v1/users", map[string]any{"id": user, "name": "again"}); r.status != http.StatusCreated {
			t.Fatalf("create the user again = %s", r)
		}
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/checkins/"+c.ID, nil), http.StatusNotFound, "checkin_not_found")
	})

	t.Run("unknown user or location", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		wantError(t, post(t, uniqueID("ghost"), map[string]any{"location_id": locA.ID}), http.StatusNotFound, "user_not_found")
		wantError(t, post(t, user, map[string]any{"location_id": uniqueID("nowhere")}), http.StatusNotFound, "location_not_found")
		wantError(t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusNotFound, "no_checkins")
	})

	t.Run("users and locations that did not exist at first", func(t *testing.T) {
		t.Parallel()
		// Several users at once, so requests for others share connections
		// (and server buffers) in between.
		for i := range 8 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				user, loc := uniqueID("late"), uniqueID("late")
				// Asked for before they exist (nothing may remember the 404) …
				wantError(t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusNotFound, "user_not_found")
				wantError(t, p.do(t, "GET", "/v1/users/"+user+"/location", nil), http.StatusNotFound, "user_not_found")
				wantError(t, post(t, user, map[string]any{"location_id": loc}), http.StatusNotFound, "user_not_found")
				wantError(t, p.do(t, "GET", "/v1/locations/"+loc, nil), http.StatusNotFound, "location_not_found")
				// … then created.
				u := decodeOK[apiUser](t, p.do(t, "POST", "/v1/users", map[string]any{"id": user, "name": "late"}), http.StatusCreated)
				if u.ID != user {
					t.Errorf("created user %q, want %q", u.ID, user)
				}
				wantError(t, post(t, user, map[string]any{"location_id": loc}), http.StatusNotFound, "location_not_found")
				l := decodeOK[apiLocation](t, p.do(t, "POST", "/v1/locations", map[string]any{"id": loc, "name": "late", "lat": 1, "lon": 2}), http.StatusCreated)
				c := ck{uniqueID("late"), loc, ms(time.Now().Add(-time.Minute))}
				r := post(t, user, c.body())
				if got := decodeOK[apiCheckin](t, r, http.StatusCreated); got != (apiCheckin{c.ID, user, c.Loc, fmtTS(c.TS)}) {
					t.Errorf("checkin answer %+v", got)
				}
				p.checkCurrent(t, user, c, l)
				wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), []ck{c})
			})
		}
	})

	t.Run("timestamps at the edges", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		// More than 5 minutes ahead is refused, less is taken.
		wantError(t, post(t, user, map[string]any{"location_id": locA.ID, "timestamp": time.Now().Add(10 * time.Minute).Format(time.RFC3339Nano)}), http.StatusBadRequest, "timestamp_in_future")
		soon := ck{uniqueID("soon"), locB.ID, ms(time.Now().Add(4 * time.Minute))}
		p.mkCheckin(t, user, soon)
		// 1970 is the earliest time.
		wantError(t, post(t, user, map[string]any{"location_id": locA.ID, "timestamp": "1969-12-31T23:59:59.999Z"}), http.StatusBadRequest, "")
		wantError(t, post(t, user, map[string]any{"location_id": locA.ID, "timestamp": "1900-01-01T00:00:00Z"}), http.StatusBadRequest, "")
		epoch := ck{uniqueID("epoch"), locA.ID, time.Unix(0, 0).UTC()}
		p.mkCheckin(t, user, epoch)
		// Both are listed by default (the default range covers them) and the
		// near-future one is the current location.
		wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), []ck{soon, epoch})
		p.checkCurrent(t, user, soon, locB)
	})

	t.Run("bad body", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cu")
		loc := locA.ID
		var cases []badBody
		for _, ts := range []string{"yesterday", "2024-05-01", "2024-05-01 12:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T12:00:00", ""} {
			cases = append(cases, badBody{"timestamp " + ts, `{"id":"$ID","location_id":"` + loc + `","timestamp":"` + ts + `"}`, "invalid_time", "timestamp"})
		}
		cases = append(cases,
			badBody{"timestamp is a number", `{"id":"$ID","location_id":"` + loc + `","timestamp":1714564800}`, "invalid_json", "timestamp"},
			badBody{"missing location_id", `{"id":"$ID"}`, "", "location_id"},
			badBody{"bad location_id", `{"id":"$ID","location_id":"no where"}`, "invalid_id", "location_id"},
			badBody{"bad id", `{"id":"c 1","location_id":"` + loc + `"}`, "invalid_id", "id"},
			badBody{"unknown field", `{"id":"$ID","location_id":"` + loc + `","user_id":"` + user + `"}`, "unknown_field", "user_id"},
			badBody{"malformed JSON", `{"id":"$ID","location_id":`, "", ""},
			badBody{"array", `["$ID"]`, "", ""},
		)
		t.Run("requests", func(t *testing.T) { checkBadBodies(t, p, "/v1/users/"+user+"/checkins", "", cases) })
		wantError(t, post(t, "bad.user", map[string]any{"location_id": loc}), http.StatusBadRequest, "invalid_id")
		// None of it was written.
		if got := p.listAll(t, user, nil, 50, nil); len(got) != 0 {
			t.Errorf("refused checkins were written: %+v", got)
		}
	})
}

func testCurrentLocation(t *testing.T, p *proc) {
	t.Run("new user", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/users/"+p.mkUser(t, "cl")+"/location", nil), http.StatusNotFound, "no_checkins")
	})
	t.Run("unknown user", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/users/"+uniqueID("ghost")+"/location", nil), http.StatusNotFound, "user_not_found")
	})
	t.Run("bad user id", func(t *testing.T) {
		t.Parallel()
		wantError(t, p.do(t, "GET", "/v1/users/a.b/location", nil), http.StatusBadRequest, "invalid_id")
	})
	t.Run("out of order", func(t *testing.T) {
		t.Parallel()
		user := p.mkUser(t, "cl")
		locs := map[string]apiLocation{}
		var a, b, c apiLocation
		for _, l := range []*apiLocation{&a, &b, &c} {
			*l = p.mkLocation(t, "cl")
			locs[l.ID] = *l
		}
		base := ms(time.Now().Add(-time.Hour))
		newest := ck{uniqueID("c3"), c.ID, base.Add(30 * time.Minute)}
		older := []ck{{uniqueID("c1"), a.ID, base}, {uniqueID("c2"), b.ID, base.Add(10 * time.Minute)}}
		p.mkCheckin(t, user, newest)
		for _, o := range older {
			p.mkCheckin(t, user, o)
			p.checkCurrent(t, user, newest, c) // a late older checkin does not move it
		}
		// A newer one does.
		newer := ck{uniqueID("c4"), a.ID, base.Add(40 * time.Minute)}
		p.mkCheckin(t, user, newer)
		p.checkCurrent(t, user, newer, a)
		// Same timestamp: the larger id wins, whichever arrives first.
		tie := uniqueID("tie")
		tieB := ck{tie + "-b", b.ID, base.Add(50 * time.Minute)}
		tieA := ck{tie + "-a", c.ID, tieB.TS}
		p.mkCheckin(t, user, tieB)
		p.mkCheckin(t, user, tieA)
		all := append([]ck{newest, newer, tieB, tieA}, older...)
		if w := latest(all); w != tieB {
			t.Fatalf("test bug: latest = %+v", w)
		}
		p.checkCurrent(t, user, tieB, b)
		wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), query{}.expect(all))
	})
}

// testList checks the filters of the list endpoint on a small, hand-made
// set of checkins around bucket (day) boundaries.
func testList(t *testing.T, p *proc) {
	user := p.mkUser(t, "ls")
	a, b := p.mkLocation(t, "lsa"), p.mkLocation(t, "lsb")
	d0 := time.Now().UTC().Truncate(day).Add(-10 * day)
	id := func(n string) string { return uniqueID("ls" + n) }
	c := []ck{
		{id("1"), a.ID, d0.Add(time.Hour)},
		{id("2"), b.ID, d0.Add(2 * time.Hour)},
		{id("3"), a.ID, d0.Add(2 * time.Hour)}, // tie with 2
		{id("4"), a.ID, d0.Add(day)},           // first instant of a bucket
		{id("5"), b.ID, d0.Add(day - time.Millisecond)},
		{id("6"), a.ID, d0.Add(3*day + 12*time.Hour)}, // day 2 is empty
		{id("7"), b.ID, d0.Add(3*day + 12*time.Hour + time.Millisecond)},
		{id("8"), a.ID, d0.Add(5 * day)},
	}
	p.mkCheckins(t, user, c)

	berlin := time.FixedZone("+02:00", 2*60*60)
	for _, tc := range []struct {
		name string
		q    query
	}{
		{"default: all, newest first", query{}},
		{"oldest first", query{oldest: true}},
		{"from is inclusive", query{from: c[3].TS}},
		{"to is exclusive", query{to: c[3].TS}},
		{"from and to at checkins", query{from: c[4].TS, to: c[5].TS}},
		{"from and to in another zone", query{from: c[4].TS.In(berlin), to: c[6].TS.In(berlin)}},
		{"one millisecond", query{from: c[6].TS, to: c[6].TS.Add(time.Millisecond)}},
		{"empty range", query{from: d0.Add(2 * day), to: d0.Add(3 * day)}},
		{"location b", query{loc: b.ID}},
		{"location a oldest first in a range", query{loc: a.ID, from: c[0].TS, to: c[7].TS, oldest: true}},
		{"location with none in range", query{loc: b.ID, from: d0.Add(4 * day)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := tc.q.expect(c)
			pg := p.listPage(t, user, tc.q.values())
			wantCheckins(t, user, pg.Checkins, want)
			if pg.NextCursor != nil {
				t.Errorf("next_cursor %q after the last page, want null", *pg.NextCursor)
			}
		})
	}

	t.Run("limit", func(t *testing.T) {
		t.Parallel()
		all := query{}.expect(c)
		pg := p.listPage(t, user, url.Values{"limit": {"1"}})
		wantCheckins(t, user, pg.Checkins, all[:1])
		if pg.NextCursor == nil {
			t.Errorf("limit 1 of %d: next_cursor is null", len(c))
		}
		pg = p.listPage(t, user, url.Values{"limit": {"1000"}})
		wantCheckins(t, user, pg.Checkins, all)
		if pg.NextCursor != nil {
			t.Errorf("limit 1000 of %d: next_cursor %q, want null", len(c), *pg.NextCursor)
		}
		for _, limit := range []int{2, 3, 5} {
			wantCheckins(t, user, p.listAll(t, user, nil, limit, nil), all)
			wantCheckins(t, user, p.listAll(t, user, query{oldest: true, loc: a.ID}.values(), limit, nil), query{oldest: true, loc: a.ID}.expect(c))
		}
	})

	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		r := p.do(t, "GET", "/v1/users/"+p.mkUser(t, "ls")+"/checkins", nil)
		pg := decodeOK[apiPage](t, r, http.StatusOK, "checkins", "next_cursor")
		if pg.Checkins == nil || len(pg.Checkins) != 0 || pg.NextCursor != nil {
			t.Errorf("a user without checkins: %s, want {\"checkins\":[],\"next_cursor\":null}", r.body)
		}
	})

	// Cursors made for other queries.
	cursorOf := func(t *testing.T, user string, v url.Values) string {
		v.Set("limit", "1")
		pg := p.listPage(t, user, v)
		if pg.NextCursor == nil {
			t.Fatalf("no cursor for %v", v)
		}
		return *pg.NextCursor
	}
	other := p.mkUser(t, "ls")
	p.mkCheckins(t, other, []ck{{id("o1"), a.ID, d0}, {id("o2"), a.ID, d0.Add(time.Hour)}})

	for _, tc := range []struct {
		name    string
		user    string
		params  string
		status  int
		code    string
		mention string // a 400's message must name what is wrong
	}{
		{"limit 0", user, "limit=0", 400, "invalid_limit", "limit"},
		{"limit 1001", user, "limit=1001", 400, "invalid_limit", "limit"},
		{"limit abc", user, "limit=abc", 400, "invalid_limit", "limit"},
		{"limit -1", user, "limit=-1", 400, "invalid_limit", "limit"},
		{"limit 2.5", user, "limit=2.5", 400, "invalid_limit", "limit"},
		{"from equals to", user, "from=2024-05-01T00:00:00Z&to=2024-05-01T00:00:00Z", 400, "invalid_range", "from"},
		{"from after to", user, "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", 400, "invalid_range", "from"},
		{"same instant in two zones", user, "from=2024-05-01T02:00:00%2B02:00&to=2024-05-01T00:00:00Z", 400, "invalid_range", "from"},
		{"bad from", user, "from=yesterday", 400, "invalid_time", "from"},
		{"bad to", user, "to=2024-05-01", 400, "invalid_time", "to"},
		{"from before 1970", user, "from=1969-01-01T00:00:00Z", 400, "", "from"},
		{"garbage cursor", user, "cursor=!!!not-a-cursor", 400, "invalid_cursor", "cursor"},
		{"short cursor", user, "cursor=AAAA", 400, "invalid_cursor", "cursor"},
		{"cursor of another user", user, "cursor=" + cursorOf(t, other, url.Values{}), 400, "invalid_cursor", "cursor"},
		{"cursor of the other order", user, "order=oldest&cursor=" + cursorOf(t, user, url.Values{}), 400, "invalid_cursor", "cursor"},
		{"cursor of another location filter", user, "location_id=" + a.ID + "&cursor=" + cursorOf(t, user, url.Values{"location_id": {b.ID}}), 400, "invalid_cursor", "cursor"},
		{"order sideways", user, "order=sideways", 400, "invalid_order", "order"},
		{"bad location_id", user, "location_id=a.b", 400, "invalid_id", "location_id"},
		{"misspelt filter", user, "location=" + a.ID, 400, "unknown_parameter", "location_id"},
		{"misspelt limit", user, "limt=5", 400, "unknown_parameter", "limt"},
		{"limit twice", user, "limit=5&limit=6", 400, "repeated_parameter", "limit"},
		{"filter twice", user, "location_id=" + a.ID + "&location_id=" + b.ID, 400, "repeated_parameter", "location_id"},
		{"unknown user", uniqueID("ghost"), "", 404, "user_not_found", ""},
		{"bad user id", "a.b", "", 400, "invalid_id", "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg := wantError(t, p.do(t, "GET", "/v1/users/"+tc.user+"/checkins?"+tc.params, nil), tc.status, tc.code)
			if tc.mention != "" && !strings.Contains(strings.ToLower(msg), tc.mention) {
				t.Errorf("message %q does not mention %q", msg, tc.mention)
			}
		})
	}
}

// testPagingBuckets pages with limit 7 through ~120 checkins spread over
// 30 days (day buckets) with empty days, every order, filter and range.
func testPagingBuckets(t *testing.T, p *proc) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	user := p.mkUser(t, "pg")
	locs := []string{p.mkLocation(t, "pg").ID, p.mkLocation(t, "pg").ID, p.mkLocation(t, "pg").ID}
	base := time.Now().UTC().Truncate(day).Add(-35 * day)
	var days []int
	for d := range 30 {
		if d%5 == 3 || d >= 12 && d <= 15 {
			continue // empty days
		}
		days = append(days, d)
	}
	var cs []ck
	for i := range 120 {
		d := base.Add(time.Duration(days[rng.IntN(len(days))]) * day)
		var ts time.Time
		switch {
		case i%20 == 0:
			ts = d // first instant of the bucket
		case i%20 == 1:
			ts = d.Add(day - time.Millisecond) // last instant of the bucket
		case i%15 == 2:
			ts = cs[i-1].TS // a tie
		default:
			ts = d.Add(time.Duration(rng.Int64N(day.Milliseconds())) * time.Millisecond)
		}
		cs = append(cs, ck{uniqueID("pg"), locs[rng.IntN(len(locs))], ts})
	}
	rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	p.mkCheckins(t, user, cs)

	t.Run("default limit is 50", func(t *testing.T) {
		t.Parallel()
		pg := p.listPage(t, user, url.Values{})
		wantCheckins(t, user, pg.Checkins, query{}.expect(cs)[:50])
		if pg.NextCursor == nil {
			t.Error("next_cursor is null after 50 of 120")
		}
	})
	t.Run("limit 1000 is one page", func(t *testing.T) {
		t.Parallel()
		pg := p.listPage(t, user, url.Values{"limit": {"1000"}, "order": {"oldest"}})
		wantCheckins(t, user, pg.Checkins, query{oldest: true}.expect(cs))
		if pg.NextCursor != nil {
			t.Error("next_cursor is not null after all 120")
		}
	})
	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"whole range", time.Time{}, time.Time{}},
		{"days 5.5 to 20", base.Add(5*day + 12*time.Hour), base.Add(20 * day)},
		{"bucket boundaries with empty days", base.Add(11 * day), base.Add(17 * day)},
	}
	for _, r := range ranges {
		for _, loc := range []string{"", locs[0], locs[2]} {
			for _, oldest := range []bool{false, true} {
				q := query{from: r.from, to: r.to, loc: loc, oldest: oldest}
				name := fmt.Sprintf("%s location %q oldest %v", r.name, loc, oldest)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					want := q.expect(cs)
					if r.name == "whole range" && len(want) < 20 {
						t.Fatalf("test bug: only %d checkins expected", len(want))
					}
					wantCheckins(t, user, p.listAll(t, user, q.values(), 7, nil), want)
				})
			}
		}
	}
}

// testPagingWhileWriting adds checkins between pages: those behind the
// cursor must not show up, those ahead of it must show up once, and the
// pre-existing ones must all be listed exactly once.
func testPagingWhileWriting(t *testing.T, p *proc) {
	for _, oldest := range []bool{false, true} {
		t.Run(fmt.Sprintf("oldest %v", oldest), func(t *testing.T) {
			t.Parallel()
			user := p.mkUser(t, "pw")
			loc := p.mkLocation(t, "pw").ID
			now := time.Now().UTC()
			base := now.Truncate(day).Add(-20 * day)
			var pre []ck
			for i := range 40 {
				pre = append(pre, ck{uniqueID("pw"), loc, base.Add(time.Duration(i)*6*time.Hour + time.Duration(i%7)*time.Minute)})
			}
			p.mkCheckins(t, user, pre)
			var ahead, behind []ck
			k := 0
			q := query{oldest: oldest}
			got := p.listAll(t, user, q.values(), 6, func(pg apiPage) {
				if pg.NextCursor == nil || len(pg.Checkins) == 0 {
					return
				}
				k++
				pos := parseTS(t, pg.Checkins[len(pg.Checkins)-1].Timestamp)
				step := time.Duration(k) * time.Millisecond
				var bh, ah ck
				if oldest {
					bh = ck{uniqueID("pwb"), loc, pos.Add(-step)}
					ah = ck{uniqueID("pwa"), loc, ms(now.Add(-time.Hour)).Add(step)}
				} else {
					bh = ck{uniqueID("pwb"), loc, pos.Add(step)}
					ah = ck{uniqueID("pwa"), loc, base.Add(-time.Hour - step)}
				}
				p.mkCheckin(t, user, bh)
				p.mkCheckin(t, user, ah)
				behind, ahead = append(behind, bh), append(ahead, ah)
			})
			if k < 5 {
				t.Fatalf("test bug: only %d pages", k)
			}
			wantCheckins(t, user, got, q.expect(append(append([]ck{}, pre...), ahead...)))
			// All of it is there for a fresh read.
			everything := append(append(append([]ck{}, pre...), ahead...), behind...)
			wantCheckins(t, user, p.listAll(t, user, q.values(), 1000, nil), q.expect(everything))
		})
	}
}

// testConcurrentCheckins sends 50 checkins for one user at once.
func testConcurrentCheckins(t *testing.T, p *proc) {
	user := p.mkUser(t, "cc")
	locs := map[string]apiLocation{}
	var locIDs []string
	for range 5 {
		l := p.mkLocation(t, "cc")
		locs[l.ID] = l
		locIDs = append(locIDs, l.ID)
	}
	now := time.Now()
	var cs []ck
	for range 50 {
		cs = append(cs, ck{uniqueID("cc"), locIDs[rand.IntN(len(locIDs))], ms(now.Add(-time.Duration(rand.Int64N(int64(10 * day)))))})
	}
	send := func(wantStatus int) {
		t.Helper()
		results := make([]response, len(cs))
		errs := make([]error, len(cs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				<-start
				results[i], errs[i] = p.try(context.Background(), "POST", "/v1/users/"+user+"/checkins", c.body())
			})
		}
		close(start)
		wg.Wait()
		for i, c := range cs {
			if errs[i] != nil {
				t.Errorf("checkin %s: %v", c.ID, errs[i])
				continue
			}
			got := decodeOK[apiCheckin](t, results[i], wantStatus)
			if want := (apiCheckin{c.ID, user, c.Loc, fmtTS(c.TS)}); got != want {
				t.Errorf("answer %+v, want %+v", got, want)
			}
		}
	}
	send(http.StatusCreated)
	if t.Failed() {
		t.FailNow()
	}
	want := query{}.expect(cs)
	wantCheckins(t, user, p.listAll(t, user, nil, 1000, nil), want)
	cur := latest(cs)
	p.checkCurrent(t, user, cur, locs[cur.Loc])
	// Retrying all of them at once writes nothing new.
	send(http.StatusOK)
	wantCheckins(t, user, p.listAll(t, user, nil, 1000, nil), want)
	p.checkCurrent(t, user, cur, locs[cur.Loc])

	// One checkin sent 10 times at once: created once, the others are retries.
	dup := ck{uniqueID("ccdup"), locIDs[0], ms(now.Add(-11 * day))}
	resps := make([]response, 10)
	errs := make([]error, len(resps))
	var wg sync.WaitGroup
	for i := range resps {
		wg.Go(func() {
			resps[i], errs[i] = p.try(context.Background(), "POST", "/v1/users/"+user+"/checkins", dup.body())
		})
	}
	wg.Wait()
	created := 0
	var statuses []int
	for i, r := range resps {
		if errs[i] != nil {
			t.Fatalf("checkin %s: %v", dup.ID, errs[i])
		}
		statuses = append(statuses, r.status)
		if got := decodeOK[apiCheckin](t, r, r.status); got != (apiCheckin{dup.ID, user, dup.Loc, fmtTS(dup.TS)}) {
			t.Errorf("answer %+v", got)
		}
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("status %d for a re-sent checkin, want 201 once and 200 after", r.status)
		}
	}
	if created != 1 {
		t.Errorf("the same checkin sent 10 times at once was created %d times (statuses %v)", created, statuses)
	}
	wantCheckins(t, user, p.listAll(t, user, nil, 1000, nil), query{}.expect(append(cs, dup)))
}

func testOperations(t *testing.T, p *proc) {
	t.Run("healthz", func(t *testing.T) {
		t.Parallel()
		r := p.do(t, "GET", "/healthz", nil)
		decodeOK[map[string]any](t, r, http.StatusOK)
		if r.header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id header")
		}
	})
	t.Run("readyz", func(t *testing.T) {
		t.Parallel()
		decodeOK[map[string]any](t, p.do(t, "GET", "/readyz", nil), http.StatusOK)
	})
	t.Run("metrics", func(t *testing.T) {
		t.Parallel()
		user, loc := p.mkUser(t, "m"), p.mkLocation(t, "m")
		p.mkCheckin(t, user, ck{uniqueID("m"), loc.ID, ms(time.Now())})
		for range 3 { // requests of every method, so labels of one could be mistaken for another's
			for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
				p.do(t, m, "/v1/users/"+user, nil)
			}
		}
		r := p.do(t, "GET", "/metrics", nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /metrics = %d %s", r.status, r.header.Get("Content-Type"))
		}
		body := string(r.body)
		for _, name := range []string{"checkin_http_requests_total", "checkin_writer_batch_size"} {
			if !strings.Contains(body, "\n"+name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		if !regexp.MustCompile(`(?m)^checkin_http_requests_total\{[^}]*status="201"[^}]*\} [1-9]`).MatchString(body) {
			t.Error("/metrics counts no request with status 201")
		}
		for _, m := range regexp.MustCompile(`(?m)^checkin_http_requests_total\{.*method="([^"]*)"`).FindAllStringSubmatch(body, -1) {
			switch m[1] {
			// OTHER: a method none of HTTP's; "": a request refused before
			// its headers were read (the label set stays bounded).
			case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER", "":
			default:
				t.Errorf("checkin_http_requests_total has method label %q", m[1])
			}
		}
		if !regexp.MustCompile(`(?m)^checkin_writer_batch_size_count [1-9]`).MatchString(body) {
			t.Error("checkin_writer_batch_size counted no batch after a checkin")
		}
		// The checkin reached the store through the metered decorator.
		if !regexp.MustCompile(`(?m)^checkin_store_calls_total\{op="write_checkins",outcome="ok"\} [1-9]`).MatchString(body) {
			t.Error("checkin_store_calls_total counted no successful write_checkins after a checkin")
		}
		if !regexp.MustCompile(`(?m)^checkin_store_call_seconds_count\{op="write_checkins"\} [1-9]`).MatchString(body) {
			t.Error("checkin_store_call_seconds timed no write_checkins after a checkin")
		}
	})
	t.Run("openapi", func(t *testing.T) {
		t.Parallel()
		r := p.do(t, "GET", "/openapi.yaml", nil)
		if r.status != http.StatusOK || !strings.HasPrefix(string(r.body), "openapi:") {
			t.Errorf("GET /openapi.yaml = %d, body starts %q", r.status, string(r.body[:min(len(r.body), 40)]))
		}
	})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/nope"},
		{"GET", "/v1/nope"},
		{"GET", "/v2/users/x"},
		{"GET", "/v1/users/x/y"},
	} {
		t.Run("unknown route "+tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			wantError(t, p.do(t, tc.method, tc.path, nil), http.StatusNotFound, "route_not_found")
		})
	}
	for _, tc := range []struct{ method, path string }{
		{"POST", "/healthz"},
		{"PUT", "/v1/locations/x"},
		{"PUT", "/v1/users/x/checkins"},
	} {
		t.Run("wrong method "+tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			wantError(t, p.do(t, tc.method, tc.path, "{}"), http.StatusMethodNotAllowed, "method_not_allowed")
		})
	}
}

// TestRestart stops a node while checkins are being written — a shutdown,
// or SIGKILL — starts a new one on the same data, and finds every
// acknowledged checkin and the same current location.
func TestRestart(t *testing.T) {
	t.Parallel()
	type variant struct {
		name  string
		crash bool
		flags []string
	}
	variants := []variant{{name: "shutdown"}, {name: "crash", crash: true}}
	if testStore() == "pebble" {
		variants = append(variants, variant{name: "crash, io_uring syncs", crash: true, flags: []string{"--pebble.io-uring=true"}})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			testRestart(t, v.crash, append(storeFlags(t), v.flags...))
		})
	}
}

func testRestart(t *testing.T, crash bool, flags []string) {
	a := startProc(t, flags...)
	user := a.mkUser(t, "ru")
	userBody := a.do(t, "GET", "/v1/users/"+user, nil).body
	locs := map[string]apiLocation{}
	var locIDs []string
	for range 3 {
		l := a.mkLocation(t, "ru")
		locs[l.ID] = l
		locIDs = append(locIDs, l.ID)
	}
	now := time.Now()
	// Phase 1: acknowledged before the stop, the newest one without a timestamp.
	var phase1 []ck
	for range 40 {
		phase1 = append(phase1, ck{uniqueID("r1"), locIDs[rand.IntN(3)], ms(now.Add(-time.Duration(rand.Int64N(int64(5 * day)))))})
	}
	a.mkCheckins(t, user, phase1)
	nowCI := decodeOK[apiCheckin](t, a.do(t, "POST", "/v1/users/"+user+"/checkins", map[string]any{"id": uniqueID("r1now"), "location_id": locIDs[1]}), http.StatusCreated)
	phase1 = append(phase1, ck{nowCI.ID, nowCI.LocationID, parseTS(t, nowCI.Timestamp)})
	cur := latest(phase1)
	before := a.checkCurrent(t, user, cur, locs[cur.Loc])

	// Phase 2: older checkins keep coming while the node shuts down or
	// crashes.
	posted := newWriteLog()
	for _, c := range phase1 {
		posted.add(user, c, true)
	}
	quit := make(chan struct{})
	wait := posted.writeUntil(quit, 8, func(int) (*proc, string, ck) {
		return a, user, ck{uniqueID("r2"), locIDs[rand.IntN(3)], ms(now.Add(-6*day - time.Duration(rand.Int64N(int64(3*day)))))}
	})
	deadline := time.Now().Add(20 * time.Second)
	for posted.acked.Load()-int64(len(phase1)) < 50 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if crash {
		a.kill(t)
	} else {
		a.stop(t)
	}
	close(quit)
	wait()
	if n := posted.acked.Load() - int64(len(phase1)); n < 50 {
		t.Fatalf("only %d checkins acknowledged under load", n)
	}

	b := startProc(t, flags...)
	if r := b.do(t, "GET", "/v1/users/"+user, nil); r.status != http.StatusOK || string(r.body) != string(userBody) {
		t.Errorf("user after restart: %s, want 200 %s", r, userBody)
	}
	for _, l := range locs {
		if got := decodeOK[apiLocation](t, b.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK); got != l {
			t.Errorf("location after restart %+v, want %+v", got, l)
		}
	}
	// Every acknowledged checkin is there; unacknowledged ones may or may not be.
	stored := posted.check(t, user, b.listAll(t, user, nil, 100, nil))
	t.Logf("%d checkins acknowledged, %d posts not, %d stored", posted.acked.Load(), posted.attempts()-int(posted.acked.Load()), len(stored))
	if after := b.checkCurrent(t, user, cur, locs[cur.Loc]); after != before {
		t.Errorf("current location changed over the restart:\n%+v\n%+v", before, after)
	}
	// Retries are still recognised, from the store this time.
	old := phase1[0]
	if again := decodeOK[apiCheckin](t, b.do(t, "POST", "/v1/users/"+user+"/checkins", old.body()), http.StatusOK); again != (apiCheckin{old.ID, user, old.Loc, fmtTS(old.TS)}) {
		t.Errorf("retry after restart answered %+v", again)
	}
	conflict := old
	conflict.Loc = locIDs[(slices.Index(locIDs, old.Loc)+1)%3]
	wantError(t, b.do(t, "POST", "/v1/users/"+user+"/checkins", conflict.body()), http.StatusConflict, "checkin_conflict")
	wantError(t, b.do(t, "POST", "/v1/users", map[string]any{"id": user, "name": "again"}), http.StatusConflict, "user_exists")
	// And the node takes new checkins.
	next := ck{uniqueID("r3"), locIDs[2], ms(time.Now())}
	b.mkCheckin(t, user, next)
	b.checkCurrent(t, user, next, locs[next.Loc])
}

// TestOverloadRefusesCheckinsOverHTTP: with a latency target no store can
// meet (--writer.latency-target=1us), the node's bound on the checkins its
// writers hold falls to its floor (64) once a window of batches is written,
// and checkins beyond it are answered at once with 503 overloaded and
// Retry-After, never 504 or 500; each one acknowledged is stored, each one
// refused is not (its id is free), and each refusal is counted.
func TestOverloadRefusesCheckinsOverHTTP(t *testing.T) {
	t.Parallel()
	// A long linger makes checkins gather at the writers (a partial batch
	// waits for company while more checkins are on their way), however
	// fast the machine serves HTTP against its store.
	p := startProc(t, append(storeFlags(t), "--writer.latency-target=1us", "--writer.linger=500ms")...)
	if got := p.metric(t, "checkin_writer_admission_limit"); got <= 64 {
		t.Fatalf("the bound starts at %v, want writer.queue-size times writer.count", got)
	}
	refused := refuseCheckinsAtFloor(t, p, "checkin_writer_admission_limit")
	if got := p.metric(t, "checkin_writer_rejected_total"); got != float64(refused) {
		t.Errorf("checkin_writer_rejected_total %v, want the %d refused", got, refused)
	}
}

// TestOverloadRefusesRequestsOverHTTP: with a latency target no request
// can meet (--http.latency-target=1us), the node's bound on the /v1
// requests in flight falls to its floor (64) once a window of requests
// has ended, and checkins beyond it are answered at once with 503
// overloaded and Retry-After, before any work: each one acknowledged is
// stored, each one refused is not. /metrics is served throughout: the
// bound holds /v1 only.
func TestOverloadRefusesRequestsOverHTTP(t *testing.T) {
	t.Parallel()
	// The writers' bound is off, so that every refusal is the edge's; the
	// linger keeps checkins in flight, as above.
	p := startProc(t, append(storeFlags(t), "--http.latency-target=1us", "--writer.latency-target=0", "--writer.linger=500ms")...)
	if got := p.metric(t, "checkin_http_admission_limit"); got != 4096 {
		t.Fatalf("the bound starts at %v, want http.max-inflight (4096)", got)
	}
	refused := refuseCheckinsAtFloor(t, p, "checkin_http_admission_limit")
	var counted float64 // requests answered 503, on whichever route label
	for _, m := range regexp.MustCompile(`(?m)^checkin_http_requests_total\{[^}]*status="503"[^}]*\} (\S+)$`).FindAllStringSubmatch(string(p.do(t, "GET", "/metrics", nil).body), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		counted += v
	}
	if counted != float64(refused) {
		t.Errorf("requests answered 503: %v counted, want the %d refused", counted, refused)
	}
}

// refuseCheckinsAtFloor takes the bound p reports as limit to its floor
// (64) with checkins one at a time, then sends checkins from 512 clients
// at once, round after round until one refused some (at most ten); it
// checks that each was acknowledged or refused with 503 overloaded and
// Retry-After (never 504 or 500, and some of each), that those
// acknowledged are stored and those refused are not (their ids are free),
// and returns how many were refused.
func refuseCheckinsAtFloor(t *testing.T, p *proc, limit string) int {
	t.Helper()
	p.hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 512
	loc := p.mkLocation(t, "ovl")
	const clients, each = 512, 12
	users := make([]string, clients)
	for i := range users {
		users[i] = p.mkUser(t, "ovu")
	}
	// One checkin after another until the node has judged a window of
	// them: the bound is at its floor before the load begins.
	deadline := time.Now().Add(30 * time.Second)
	for k := 0; p.metric(t, limit) != 64; k++ {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after %d checkins one at a time, want its floor 64", limit, p.metric(t, limit), k)
		}
		p.mkCheckin(t, users[0], ck{ID: fmt.Sprint("ov-warm-", k), Loc: loc.ID, TS: time.Now().UTC().Truncate(time.Millisecond)})
		time.Sleep(10 * time.Millisecond)
	}
	type result struct {
		user, id string
		r        response
	}
	// A round: every client sends each checkins, one after another. A
	// fast store (the embedded one) may hold more than the floor only now
	// and then, so rounds go on until one refused a checkin.
	var acked, refused []result
	for round := 0; round < 10 && len(refused) == 0; round++ {
		results := make(chan result, clients*each)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					id := fmt.Sprintf("ov-%d-%d-%d", round, i, k)
					r, err := p.try(context.Background(), "POST", "/v1/users/"+users[i]+"/checkins", map[string]any{"id": id, "location_id": loc.ID})
					if err != nil {
						t.Errorf("checkin %s: %v", id, err)
						return
					}
					results <- result{users[i], id, r}
				}
			}()
		}
		wg.Wait()
		close(results)
		for res := range results {
			switch res.r.status {
			case http.StatusCreated:
				acked = append(acked, res)
			case http.StatusServiceUnavailable:
				if wantError(t, res.r, http.StatusServiceUnavailable, "overloaded") == "" || res.r.header.Get("Retry-After") != "1" {
					t.Fatalf("refused checkin %s: %s, Retry-After %q; want overloaded with Retry-After 1", res.id, res.r, res.r.header.Get("Retry-After"))
				}
				refused = append(refused, res)
			default:
				t.Fatalf("checkin %s: %s; want 201, or 503 overloaded", res.id, res.r)
			}
		}
	}
	t.Logf("%d acknowledged, %d refused", len(acked), len(refused))
	if len(refused) == 0 || len(acked) == 0 {
		t.Fatalf("%d acknowledged, %d refused: want both", len(acked), len(refused))
	}
	for _, res := range acked[:min(len(acked), 200)] {
		decodeOK[apiCheckin](t, p.do(t, "GET", "/v1/users/"+res.user+"/checkins/"+res.id, nil), http.StatusOK)
	}
	for _, res := range refused[:min(len(refused), 200)] {
		wantError(t, p.do(t, "GET", "/v1/users/"+res.user+"/checkins/"+res.id, nil), http.StatusNotFound, "checkin_not_found")
	}
	return len(refused)
}

// TestOverloadRefusesStoreReadsOverHTTP: with a latency target no store
// can meet (--http.store-latency-target=1us), the node's bound on its
// store calls outside the checkin write path falls to its floor (32) once
// a window of calls has ended, and range reads beyond it are answered at
// once with 503 overloaded and Retry-After, never 504 or 500; each one
// answered holds the user's checkins, and each refusal is counted. On the
// Scylla store whatever CHECKIN_TEST_STORE says: the embedded store
// answers a read on the request's own goroutine without waiting, so its
// calls seldom overlap (ten rounds of 512 clients' range reads never had
// more than 32 in flight at once in four runs of six), and the bound
// matters where calls wait on a store over the network.
func TestOverloadRefusesStoreReadsOverHTTP(t *testing.T) {
	t.Parallel()
	hosts := os.Getenv("CHECKIN_TEST_CQL_HOSTS")
	needServers(t, hosts != "", "the store-call bound test needs CHECKIN_TEST_CQL_HOSTS: run .ci/cassandra-up, then CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 make test")
	p := startProc(t, "--store=scylla", "--scylla.hosts="+hosts, "--scylla.keyspace="+newKeyspace(t, hosts), "--http.store-latency-target=1us")
	p.hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 512
	if got := p.metric(t, "checkin_store_admission_limit"); got != 4096 {
		t.Fatalf("the bound starts at %v, want http.max-inflight (4096)", got)
	}
	loc := p.mkLocation(t, "ovr")
	const users, perUser, clients, each = 16, 40, 512, 8
	ids := make([]string, users)
	want := make(map[string][]string, users) // user → checkin ids, newest first
	base := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	for i := range ids {
		ids[i] = p.mkUser(t, "ovr")
		cs := make([]ck, perUser)
		for k := range cs {
			cs[k] = ck{ID: fmt.Sprintf("ovr-%d-%d", i, k), Loc: loc.ID, TS: base.Add(time.Duration(k) * time.Second)}
			want[ids[i]] = append([]string{cs[k].ID}, want[ids[i]]...)
		}
		p.mkCheckins(t, ids[i], cs)
	}
	read := func(user string) (response, error) {
		return p.try(context.Background(), "GET", "/v1/users/"+user+"/checkins?limit=100", nil)
	}
	// Reads one after another until the node has judged a window of them:
	// the bound is at its floor before the load begins.
	deadline := time.Now().Add(30 * time.Second)
	for k := 0; p.metric(t, "checkin_store_admission_limit") != 32; k++ {
		if time.Now().After(deadline) {
			t.Fatalf("the bound is %v after %d reads one at a time, want its floor 32", p.metric(t, "checkin_store_admission_limit"), k)
		}
		decodeOK[apiPage](t, p.do(t, "GET", "/v1/users/"+ids[0]+"/checkins?limit=100", nil), http.StatusOK)
		time.Sleep(10 * time.Millisecond)
	}
	// A round: every client reads each times, one read after another. A
	// fast store (the embedded one) may have more calls than the floor in
	// flight only now and then, so rounds go on until one refused a read
	// (at most ten).
	var answered, refused int
	for round := 0; round < 10 && refused == 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := ids[i%users]
				for range each {
					r, err := read(user)
					if err != nil {
						t.Errorf("read %s: %v", user, err)
						return
					}
					switch r.status {
					case http.StatusOK:
						var page apiPage
						if err := json.Unmarshal(r.body, &page); err != nil {
							t.Errorf("read %s: %v", user, err)
							return
						}
						got := make([]string, len(page.Checkins))
						for k, c := range page.Checkins {
							got[k] = c.ID
						}
						if !slices.Equal(got, want[user]) {
							t.Errorf("read %s: checkins %v, want %v", user, got, want[user])
						}
						mu.Lock()
						answered++
						mu.Unlock()
					case http.StatusServiceUnavailable:
						if wantError(t, r, http.StatusServiceUnavailable, "overloaded") == "" || r.header.Get("Retry-After") != "1" {
							t.Errorf("refused read: %s, Retry-After %q; want overloaded with Retry-After 1", r, r.header.Get("Retry-After"))
						}
						mu.Lock()
						refused++
						mu.Unlock()
					default:
						t.Errorf("read %s: %s; want 200, or 503 overloaded", user, r)
					}
				}
			}()
		}
		wg.Wait()
	}
	t.Logf("%d answered, %d refused", answered, refused)
	if refused == 0 || answered == 0 {
		t.Fatalf("%d answered, %d refused: want both", answered, refused)
	}
	if got := p.metric(t, "checkin_store_refused_total"); got != float64(refused) {
		t.Errorf("checkin_store_refused_total %v, want the %d refused", got, refused)
	}
}

// TestBodyLimit: a body over --http.body-limit gets 413 as a JSON error.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	p := startProc(t, append(storeFlags(t), "--http.body-limit=2048")...)
	user := p.mkUser(t, "bl")
	big := `{"name":"` + strings.Repeat("x", 4096) + `"}`
	wantError(t, p.do(t, "POST", "/v1/users", big), http.StatusRequestEntityTooLarge, "")
	bigCheckin := `{"location_id":"x","id":"` + strings.Repeat("y", 4096) + `"}`
	wantError(t, p.do(t, "POST", "/v1/users/"+user+"/checkins", bigCheckin), http.StatusRequestEntityTooLarge, "")
	// Just under the limit the request is read (and refused for its content).
	under := `{"name":"` + strings.Repeat("x", 1900) + `"}`
	wantError(t, p.do(t, "POST", "/v1/users", under), http.StatusBadRequest, "")
	decodeOK[map[string]any](t, p.do(t, "GET", "/healthz", nil), http.StatusOK)
}

// TestAPIKeys runs a node that requires API keys from a file: /v1 answers
// 401 without a key of the file, and SIGHUP makes the node re-read the file
// (a file without keys is refused and the keys in use stay).
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	const key1, key2 = "first-key-0123456789abcdef", "second-key-0123456789abcdef"
	file := filepath.Join(t.TempDir(), "api-keys")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# clients\n" + key1 + "\n")
	p := startProc(t, append(storeFlags(t), "--http.api-keys-file="+file)...)
	p.allowErrorLogs = true // the refused reload below is logged as an error
	hup := func(wantMsg string) { t.Helper(); p.hup(t, wantMsg) }
	user := uniqueID("key")
	wantError(t, p.do(t, "POST", "/v1/users", map[string]string{"id": user, "name": "K"}), http.StatusUnauthorized, "unauthorized")
	decodeOK[map[string]any](t, p.do(t, "GET", "/healthz", nil), http.StatusOK)
	p.bearer = key1
	decodeOK[map[string]any](t, p.do(t, "POST", "/v1/users", map[string]string{"id": user, "name": "K"}), http.StatusCreated)

	write(key2 + "\n")
	hup("API keys reloaded")
	wantError(t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusUnauthorized, "unauthorized")
	p.bearer = key2
	decodeOK[map[string]any](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK)

	write("# every key retired by mistake\n")
	hup("API keys not reloaded; the keys in use stay")
	decodeOK[map[string]any](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK)
	if strings.Contains(p.log.String(), key1) || strings.Contains(p.log.String(), key2) {
		t.Error("the log holds an API key")
	}
}

// TestBackup takes a backup of a serving embedded-store node through POST
// /admin/backup on its debug server, then starts a second node on the
// backup: it serves every checkin acknowledged before the backup and none
// written after it. (It runs the embedded store whatever CHECKIN_TEST_STORE
// says: backups are of that store.)
func TestBackup(t *testing.T) {
	t.Parallel()
	backupRoot := filepath.Join(t.TempDir(), "backups")
	p := startProc(t, "--data.dir="+t.TempDir(), "--debug.addr=127.0.0.1:0", "--backup.dir="+backupRoot)
	admin := debugURL(t, p) + "/admin/backup"
	post := func(method string) response { t.Helper(); return adminDo(t, p, method, admin) }

	user := p.mkUser(t, "bk")
	loc := p.mkLocation(t, "bk")
	base := ms(time.Now().Add(-time.Hour))
	var before, after []ck
	for i := range 40 {
		before = append(before, ck{ID: fmt.Sprintf("before-%02d", i), Loc: loc.ID, TS: base.Add(time.Duration(i) * time.Second)})
	}
	for i := range 10 {
		after = append(after, ck{ID: fmt.Sprintf("after-%02d", i), Loc: loc.ID, TS: base.Add(time.Duration(100+i) * time.Second)})
	}
	p.mkCheckins(t, user, before)

	wantError(t, post(http.MethodGet), http.StatusMethodNotAllowed, "method_not_allowed")
	b := decodeOK[struct {
		Dir    string  `json:"dir"`
		TookMS float64 `json:"took_ms"`
	}](t, post(http.MethodPost), http.StatusOK, "dir", "took_ms")
	if filepath.Dir(b.Dir) != backupRoot || b.TookMS <= 0 {
		t.Fatalf("backup answer %+v, want a new directory in %s and its duration", b, backupRoot)
	}
	p.mkCheckins(t, user, after)
	second := decodeOK[struct {
		Dir string `json:"dir"`
	}](t, post(http.MethodPost), http.StatusOK, "dir")
	if second.Dir == b.Dir {
		t.Errorf("a second backup went into the first one's directory %s", b.Dir)
	}
	if !p.log.waitFor("backup written") {
		t.Error("no \"backup written\" log line within 10 s of the answer")
	}

	// Restore: a node on the backup serves what was acknowledged before it.
	restored := startProc(t, "--data.dir="+b.Dir)
	got := restored.listAll(t, user, url.Values{"order": {"oldest"}}, 100, nil)
	if len(got) != len(before) {
		t.Fatalf("the restored node lists %d checkins, want the %d acknowledged before the backup: %+v", len(got), len(before), got)
	}
	for i, c := range got {
		if want := (apiCheckin{ID: before[i].ID, UserID: user, LocationID: loc.ID, Timestamp: fmtTS(before[i].TS)}); c != want {
			t.Errorf("restored checkin %d = %+v, want %+v", i, c, want)
		}
	}
	decodeOK[apiLocation](t, restored.do(t, "GET", "/v1/locations/"+loc.ID, nil), http.StatusOK)
}

// adminDo sends a request without a body to url (p's debug server).
func adminDo(t *testing.T, p *proc, method, url string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// debugURL returns the base URL of p's debug server, from its log.
func debugURL(t *testing.T, p *proc) string {
	t.Helper()
	for _, l := range p.log.lines() {
		if l.Msg == "debug server listening" {
			return "http://" + l.Addr
		}
	}
	t.Fatal("no \"debug server listening\" line with the address")
	return ""
}

// TestCompleteCheckinsEndpoint: the debug server's completion run answers
// JSON lines over real HTTP, for named users or every user, and counts
// what the users list. On this store every listed checkin is found by id,
// so none is handed to a grain (completing one is TestCompleteListedAfterCrash's,
// in actors, on a store that fails writes part way).
func TestCompleteCheckinsEndpoint(t *testing.T) {
	t.Parallel()
	p := startProc(t, "--data.dir="+t.TempDir(), "--debug.addr=127.0.0.1:0")
	admin := debugURL(t, p) + "/admin/complete-checkins"
	type line struct {
		UserID  string  `json:"user_id"`
		Users   int     `json:"users"`
		Listed  int     `json:"listed"`
		NotByID int     `json:"not_by_id"`
		Passed  int     `json:"passed"`
		Failed  int     `json:"failed"`
		Last    string  `json:"last_user_id"`
		TookMS  float64 `json:"took_ms"`
		Error   string  `json:"error"`
	}
	run := func(method, query string) (int, []line) {
		t.Helper()
		res := adminDo(t, p, method, admin+query)
		if res.status != http.StatusOK {
			return res.status, nil
		}
		var lines []line
		dec := json.NewDecoder(bytes.NewReader(res.body))
		for dec.More() {
			var l line
			if err := dec.Decode(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		return res.status, lines
	}
	if status, _ := run(http.MethodGet, ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", status)
	}
	wantError(t, adminDo(t, p, http.MethodPost, admin+"?user_id=no%20such"), http.StatusBadRequest, "invalid_id")
	a, b := p.mkUser(t, "ca"), p.mkUser(t, "cb")
	loc := p.mkLocation(t, "ca")
	base := ms(time.Now().Add(-time.Hour))
	p.mkCheckins(t, a, []ck{{ID: "a1", Loc: loc.ID, TS: base}, {ID: "a2", Loc: loc.ID, TS: base.Add(time.Second)}})
	p.mkCheckins(t, b, []ck{{ID: "b1", Loc: loc.ID, TS: base}})

	status, lines := run(http.MethodPost, "?user_id="+a)
	if want := (line{Users: 1, Listed: 2, Last: a}); status != http.StatusOK || len(lines) != 1 || lines[0].TookMS <= 0 || func() line { l := lines[0]; l.TookMS = 0; return l }() != want {
		t.Fatalf("one user: %d %+v, want 200 and one line %+v with took_ms", status, lines, want)
	}
	status, lines = run(http.MethodPost, "")
	if status != http.StatusOK || len(lines) != 1 {
		t.Fatalf("every user: %d %+v, want 200 and one line", status, lines)
	}
	if l := lines[0]; l.Users < 2 || l.Listed < 3 || l.NotByID != 0 || l.Passed != 0 || l.Failed != 0 || l.Error != "" || l.Last == "" {
		t.Fatalf("every user: %+v, want at least the 2 users and 3 checkins made here, none passed or failed, and the last user", l)
	}
	every := lines[0]
	// Resuming after the first user of the listing goes over the rest.
	first := min(a, b)
	if status, lines = run(http.MethodPost, "?after="+first); status != http.StatusOK || len(lines) != 1 || lines[0].Users >= every.Users || lines[0].Last != every.Last {
		t.Errorf("after %s: %d %+v, want the users after it, up to %s", first, status, lines, every.Last)
	}
	if status, lines = run(http.MethodPost, "?after="+every.Last); status != http.StatusOK || len(lines) != 1 || lines[0].Users != 0 {
		t.Errorf("after the last user: %d %+v, want none", status, lines)
	}
	// The totals name every count, and last_user_id, when no user was done
	// too: a script reads them whatever the run did.
	res := adminDo(t, p, http.MethodPost, admin+"?after="+every.Last)
	var totals map[string]any
	if err := json.Unmarshal(res.body, &totals); err != nil {
		t.Fatalf("after the last user: %s (%v)", res.body, err)
	}
	for _, k := range []string{"users", "listed", "not_by_id", "passed", "last_user_id", "took_ms"} {
		if _, ok := totals[k]; !ok {
			t.Errorf("after the last user: the totals %s have no %q", res.body, k)
		}
	}
	if !p.log.waitFor("listed checkins completed") {
		t.Error("no \"listed checkins completed\" log line within 10 s of the answer")
	}
}

// TestDrain: on SIGTERM a node with http.drain-delay goes on serving while
// /readyz answers 503 and every answer closes its connection; a second
// signal ends the delay and the node stops cleanly.
func TestDrain(t *testing.T) {
	t.Parallel()
	p := startProc(t, append(storeFlags(t), "--http.drain-delay=60s")...)
	user := p.mkUser(t, "dr")
	loc := p.mkLocation(t, "dr")
	decodeOK[map[string]any](t, p.do(t, "GET", "/readyz", nil), http.StatusOK)
	if r := p.do(t, "GET", "/healthz", nil); r.close {
		t.Fatal("a node that is not draining closes connections")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := p.do(t, "GET", "/readyz", nil)
		if r.status == http.StatusServiceUnavailable {
			wantError(t, r, http.StatusServiceUnavailable, "not_ready")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 10s after SIGTERM", r.status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	c := ck{ID: uniqueID("drain"), Loc: loc.ID, TS: ms(time.Now())}
	r := p.do(t, "POST", "/v1/users/"+user+"/checkins", c.body())
	if r.status != http.StatusCreated || !r.close {
		t.Fatalf("checkin while draining: %d, connection close %v; want 201 and close", r.status, r.close)
	}
	if p.log.has("shutting down") {
		t.Fatal("the node began to stop before the drain delay was over")
	}
	start := time.Now()
	p.stop(t) // its SIGTERM is the second signal
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the second signal did not cut the drain short: stopped after %s", took)
	}
	if !p.log.has("second signal: stopping without the rest of the drain delay") {
		t.Error("no log line for the second signal")
	}
}

// TestTLS: with a certificate the node serves its API over HTTPS only, and
// SIGHUP makes new connections get a renewed certificate from the same
// files.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, err := testcert.Write(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, append(storeFlags(t), "--http.tls-cert-file="+certFile, "--http.tls-key-file="+keyFile)...)
	addr := strings.TrimPrefix(p.base, "http://")
	// trust returns a pool holding the certificate now in the file.
	trust := func() *x509.CertPool {
		t.Helper()
		pem, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			t.Fatal("no certificate in the file")
		}
		return roots
	}
	// serial returns the serial number of the certificate a new connection
	// gets; it fails the test unless that verifies against the file.
	serial := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: trust(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	p.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust()}}}
	plain := p.base
	p.base = "https://" + addr
	user := p.mkUser(t, "tls")
	decodeOK[map[string]any](t, p.do(t, "GET", "/v1/users/"+user, nil), http.StatusOK)
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP is served on the HTTPS port")
		}
	}
	if got := serial(); got != 1 {
		t.Fatalf("certificate serial %d, want 1", got)
	}

	if _, _, err := testcert.Write(dir, 2); err != nil {
		t.Fatal(err)
	}
	p.hup(t, "TLS certificate reloaded")
	if got := serial(); got != 2 {
		t.Errorf("after SIGHUP a new connection got certificate %d, want the renewed 2", got)
	}
	p.wantCertExpiry(t, "http", certFile) // the renewed certificate's
}

// TestBuildInfo: a node says which build it is, in its first log line and
// as checkin_build_info on /metrics.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	p := startProc(t, storeFlags(t)...)
	goVersion := `go_version="` + runtime.Version() + `"`
	r := p.do(t, "GET", "/metrics", nil)
	var line string
	for _, l := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(l, "checkin_build_info{") {
			line = l
		}
	}
	if !strings.Contains(line, goVersion) || !strings.Contains(line, `revision="`) || !strings.HasSuffix(line, "} 1") {
		t.Errorf("checkin_build_info line %q, want the build's labels (%s) and the value 1", line, goVersion)
	}
	if !strings.Contains(p.log.String(), `"msg":"checkin","version":`) || !strings.Contains(p.log.String(), `"go_version":"`+runtime.Version()+`"`) {
		t.Error("no start line with the build")
	}
}

// runBinary runs the binary to its end (bounded) and returns its output
// and exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, checkinBin, args...)
	cmd.Env = cleanEnv(env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("checkin %s did not exit within %s; output:\n%s", strings.Join(args, " "), startTimeout, out)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run checkin: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// envTwin is the contract's rule: CHECKIN_ + upper case, '.' and '-' → '_'.
func envTwin(flagName string) string {
	return "CHECKIN_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

// helpEntry returns the part of a --help text about one flag: from the line
// naming it to the next flag.
func helpEntry(help, name string) string {
	lines := strings.Split(help, "\n")
	isFlagLine := func(l string) (string, bool) {
		l = strings.TrimLeft(l, " \t")
		if !strings.HasPrefix(l, "-") {
			return "", false
		}
		l = strings.TrimPrefix(strings.TrimPrefix(l, "-"), "-")
		end := strings.IndexFunc(l, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
		})
		if end < 0 {
			end = len(l)
		}
		return l[:end], true
	}
	for i, l := range lines {
		if n, ok := isFlagLine(l); ok && n == name {
			entry := l
			for _, next := range lines[i+1:] {
				if _, ok := isFlagLine(next); ok {
					break
				}
				entry += "\n" + next
			}
			return entry
		}
	}
	return ""
}

func TestHelp(t *testing.T) {
	t.Parallel()
	out, code := runBinary(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exited with %d:\n%s", code, out)
	}
	if strings.Contains(out, "http server listening") {
		t.Fatalf("--help started a server:\n%s", out)
	}
	fs := flag.NewFlagSet("checkin", flag.ContinueOnError)
	cfg := defaultConfig()
	cfg.register(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		entry := helpEntry(out, f.Name)
		if entry == "" {
			t.Errorf("--help does not list --%s", f.Name)
		} else if !strings.Contains(entry, envTwin(f.Name)) {
			t.Errorf("--help lists --%s without its env twin %s:\n%s", f.Name, envTwin(f.Name), entry)
		}
	})
	// The ones the contract names, with their documented defaults.
	for name, def := range map[string]string{"http.addr": ":8080", "data.dir": "./data", "store": "pebble"} {
		if entry := helpEntry(out, name); !strings.Contains(entry, envTwin(name)) || !strings.Contains(entry, def) {
			t.Errorf("--help entry of --%s lacks %s or the default %q:\n%s", name, envTwin(name), def, entry)
		}
	}
	if n < 10 {
		t.Errorf("only %d flags registered", n)
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clusterCert, clusterKey, err := testcert.Write(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clusterKey+".txt", []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string // the message names this
	}{
		{"writer.count negative", []string{"--writer.count=-1"}, nil, "writer.count"},
		{"writer.count negative from env", nil, []string{"CHECKIN_WRITER_COUNT=-1"}, "writer.count"},
		{"body limit too small", []string{"--http.body-limit=10"}, nil, "http.body-limit"},
		{"unknown store", []string{"--store=nosuch"}, nil, "nosuch"},
		{"bad log level", []string{"--log.level=loud"}, nil, "log.level"},
		{"bad duration", []string{"--grain.idle-timeout=soon"}, nil, "grain.idle-timeout"},
		{"bad duration from env", nil, []string{"CHECKIN_GRAIN_IDLE_TIMEOUT=soon"}, "CHECKIN_GRAIN_IDLE_TIMEOUT"},
		{"bad http addr", []string{"--http.addr=nonsense"}, nil, "http.addr"},
		{"unknown flag", []string{"--no-such-flag=1"}, nil, "no-such-flag"},
		{"a word that is no flag", []string{"--cluster.etcd-tls", "true", "--store=scylla"}, nil, `unexpected argument "true"`},
		{"migrate after flags", []string{"migrate"}, nil, `unexpected argument "migrate"`},
		{"backup dir that cannot be written", []string{"--debug.addr=127.0.0.1:0", "--backup.dir=/proc/no-backups-here"}, nil, "backup.dir"},
		{"unreachable store", []string{"--store=scylla", "--scylla.hosts=127.0.0.1:1", "--scylla.connect-timeout=1s"}, nil, "open store"},
		{"cluster port taken", []string{"--cluster.addr=127.0.0.1:" + takenPort(t)}, nil, "cluster"},
		{"API key too short", nil, []string{"CHECKIN_HTTP_API_KEYS=tiny-key"}, "CHECKIN_HTTP_API_KEYS: key 1"},
		{"API keys file missing", []string{"--http.api-keys-file=/nonexistent/keys"}, nil, "http.api-keys-file"},
		{"TLS certificate missing", []string{"--http.tls-cert-file=/nonexistent/cert.pem", "--http.tls-key-file=/nonexistent/key.pem"}, nil, "http.tls-cert-file"},
		{"cluster TLS without its authority", []string{"--cluster.tls-cert-file=" + clusterCert, "--cluster.tls-key-file=" + clusterKey}, nil, "cluster.tls-ca-file"},
		{"cluster TLS certificate missing", []string{"--cluster.tls-cert-file=/nonexistent/cert.pem", "--cluster.tls-key-file=/nonexistent/key.pem", "--cluster.tls-ca-file=" + clusterCert}, nil, "cluster.tls-cert-file"},
		{"cluster TLS authority not PEM", []string{"--cluster.tls-cert-file=" + clusterCert, "--cluster.tls-key-file=" + clusterKey, "--cluster.tls-ca-file=" + clusterKey + ".txt"}, nil, "cluster.tls-ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--http.addr=127.0.0.1:0", "--cluster.addr=127.0.0.1:0", "--data.dir=" + t.TempDir()}, tc.args...)
			out, code := runBinary(t, tc.env, args...)
			if code == 0 {
				t.Errorf("exit code 0, want non-zero")
			}
			if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
				t.Errorf("it panicked")
			}
			if strings.Contains(out, "http server listening") {
				t.Errorf("it started serving")
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestKeyspaceName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)
	for _, name := range []string{"TestE2E", "TestE2E/users/create_with_id,_then_get", strings.Repeat("VeryLongName/", 10), "Test Ünïcode #1"} {
		a, b := testKeyspace(name), testKeyspace(name)
		if !valid.MatchString(a) {
			t.Errorf("testKeyspace(%q) = %q: not a valid keyspace name of at most 48 characters", name, a)
		}
		if a == b {
			t.Errorf("testKeyspace(%q) gave %q twice", name, a)
		}
	}
}

// TestPassivation: a user grain that forgot a checkin id (recent-ids) or
// passivated (idle-timeout) still recognises retries and conflicts from the
// store and reloads the current location.
func TestPassivation(t *testing.T) {
	t.Parallel()
	p := startProc(t, append(storeFlags(t), "--grain.idle-timeout=300ms", "--grain.recent-ids=2")...)
	user := p.mkUser(t, "pv")
	a, b := p.mkLocation(t, "pv"), p.mkLocation(t, "pv")
	now := ms(time.Now())
	cs := []ck{
		{uniqueID("pv"), a.ID, now.Add(-time.Hour)}, // the newest, sent first
		{uniqueID("pv"), b.ID, now.Add(-3 * time.Hour)},
		{uniqueID("pv"), a.ID, now.Add(-2 * time.Hour)},
		{uniqueID("pv"), b.ID, now.Add(-4 * time.Hour)},
	}
	for _, c := range cs {
		p.mkCheckin(t, user, c)
	}
	retries := func(t *testing.T) {
		for _, c := range cs {
			if got := decodeOK[apiCheckin](t, p.do(t, "POST", "/v1/users/"+user+"/checkins", c.body()), http.StatusOK); got != (apiCheckin{c.ID, user, c.Loc, fmtTS(c.TS)}) {
				t.Errorf("retry of %s answered %+v", c.ID, got)
			}
			other := c
			other.TS = c.TS.Add(time.Minute)
			wantError(t, p.do(t, "POST", "/v1/users/"+user+"/checkins", other.body()), http.StatusConflict, "checkin_conflict")
		}
	}
	// The grain remembers only the last 2 ids: the first ones come from the store.
	retries(t)
	// Wait for the grain to passivate.
	activations := p.metric(t, "checkin_grain_activations_total")
	deadline := time.Now().Add(15 * time.Second)
	for {
		active := p.metric(t, "checkin_grains_active")
		if active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkin_grains_active is still %v long after --grain.idle-timeout", active)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.checkCurrent(t, user, cs[0], a)
	if again := p.metric(t, "checkin_grain_activations_total"); again == activations {
		t.Errorf("no new grain activation after passivation (checkin_grain_activations_total stays %v)", again)
	}
	retries(t)
	// A late older checkin after reactivation does not move the current location.
	late := ck{uniqueID("pv"), b.ID, now.Add(-5 * time.Hour)}
	p.mkCheckin(t, user, late)
	p.checkCurrent(t, user, cs[0], a)
	wantCheckins(t, user, p.listAll(t, user, nil, 50, nil), query{}.expect(append(cs, late)))
}

// takenPort returns a loopback port that a listener of this test holds.
func takenPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
