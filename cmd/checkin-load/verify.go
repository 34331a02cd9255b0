package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// VerifyReport is the outcome of reading every acknowledged checkin back.
type VerifyReport struct {
	Acknowledged int `json:"acknowledged"` // distinct checkin ids answered 2xx
	Users        int `json:"users"`
	Found        int `json:"found"`
	Lost         int `json:"lost"`       // acknowledged, not listed
	Mismatched   int `json:"mismatched"` // listed with another location or timestamp
	// NotByID counts acknowledged checkins that are listed but not found by
	// their id (GET /v1/users/{id}/checkins/{checkin_id}): stored in part.
	NotByID       int      `json:"not_by_id"`
	NotByIDSample []string `json:"not_by_id_sample,omitempty"` // user/checkin id, at most 20
	// UnackedNotByID counts checkins listed among the acknowledged ones
	// that were never acknowledged (their write failed or timed out) and
	// are not found by id either: stored in part, and not completed (yet).
	// Not a loss, so not a failure of the run; the service completes such
	// writes in the background while the user's grain stays where it is.
	UnackedNotByID       int      `json:"unacked_not_by_id"`
	UnackedStored        int      `json:"unacked_stored"`                     // never acknowledged, listed and found by id: stored whole
	UnackedNotByIDSample []string `json:"unacked_not_by_id_sample,omitempty"` // user/checkin id, at most 20
	// Others counts the checkins listed in the ranges read back that this
	// run did not send (earlier runs on the same users, other clients):
	// neither checked nor counted above.
	Others int `json:"others"`
	// StaleCurrent counts users whose current location is older than their
	// newest acknowledged checkin (or who have none).
	StaleCurrent    int      `json:"stale_current"`
	StaleSample     []string `json:"stale_sample,omitempty"` // user: current checkin id < newest acknowledged id, at most 20
	UnverifiedUsers int      `json:"unverified_users"`
	// Deleted counts acknowledged checkins the run deleted (--mix.delete:
	// answered 204), which must not be listed nor be the current location;
	// Resurrected those listed all the same. UncertainDeletes counts
	// deletes without a final answer: those checkins are checked neither way.
	Deleted           int      `json:"deleted"`
	Resurrected       int      `json:"resurrected"`
	ResurrectedSample []string `json:"resurrected_sample,omitempty"` // user/checkin id, at most 20
	UncertainDeletes  int      `json:"uncertain_deletes"`
	ReadErrors        int64    `json:"read_errors"`
	LostSample        []string `json:"lost_sample,omitempty"` // user/checkin id, at most 20
	ElapsedS          float64  `json:"elapsed_s"`
}

// verifyPageLimit is the page size of the read-back.
const verifyPageLimit = 1000

// outcomes are what verify must know besides the acknowledged checkins:
// those the run deleted (gone) or tried to delete without learning whether
// it did (uncertain), and the checkins it sent without learning whether
// they were stored (unacked: user and id).
type outcomes struct {
	gone, uncertain, unacked []ack
}

// verify lists, for every user with acknowledged checkins, the range from
// its earliest to its latest acknowledged or deleted checkin (following
// next_cursor to the end), and counts acknowledged checkins that are not
// there, and deleted ones that are. Each acknowledged checkin listed is
// also read by its id. It also reads the user's current
// location, which must be the newest acknowledged checkin left or a newer
// one (a checkin that was stored although its answer never came), and
// never a deleted one.
func (r *runner) verify(ctx context.Context, acks []ack, dels outcomes) *VerifyReport {
	start := time.Now()
	byUser := map[string]map[string]ack{}
	goneByUser := map[string]map[string]ack{}
	add := func(to map[string]map[string]ack, a ack) {
		m := to[a.User]
		if m == nil {
			m = map[string]ack{}
			to[a.User] = m
		}
		m[a.ID] = a
	}
	for _, a := range acks {
		add(byUser, a)
	}
	rep := &VerifyReport{UncertainDeletes: len(dels.uncertain)}
	unackedByUser := map[string]map[string]ack{} // sent, outcome unknown
	for _, a := range dels.unacked {
		add(unackedByUser, a)
	}
	uncertainByUser := map[string]map[string]ack{} // acknowledged, then deleted or not: either is right
	for _, a := range dels.uncertain {
		delete(byUser[a.User], a.ID)
		add(uncertainByUser, a)
	}
	for _, a := range dels.gone {
		delete(byUser[a.User], a.ID)
		add(goneByUser, a)
		rep.Deleted++
	}
	users := make([]string, 0, len(byUser))
	for u, m := range byUser {
		if len(m) > 0 || len(goneByUser[u]) > 0 {
			users = append(users, u)
		}
		rep.Acknowledged += len(m)
	}
	for u := range goneByUser {
		if _, ok := byUser[u]; !ok {
			users = append(users, u)
		}
	}
	rep.Users = len(users)
	slices.Sort(users)

	var mu sync.Mutex
	var checked, readErrs atomic.Int64
	stop := r.verifyProgress(start, &checked, len(users))
	r.forEach(ctx, len(users), func(i int, req *fasthttp.Request, resp *fasthttp.Response) {
		u := users[i]
		want, gone := byUser[u], goneByUser[u]
		got, err := r.listAll(ctx, req, resp, u, want, gone, &readErrs)
		var cur *ack
		if err == nil {
			cur, err = r.current(ctx, req, resp, u, &readErrs)
		}
		var notByID, unackedNotByID []string
		unackedStored, others := 0, 0
		for id := range got {
			if _, acked := want[id]; acked || err != nil {
				continue
			}
			if _, uncertain := uncertainByUser[u][id]; uncertain {
				continue // acknowledged; its delete may not have been applied
			}
			if _, deleted := gone[id]; deleted {
				continue // counted below as resurrected
			}
			if _, sent := unackedByUser[u][id]; !sent {
				others++
				continue
			}
			var found bool
			found, err = r.byID(ctx, req, resp, u, id, &readErrs)
			switch {
			case err != nil:
			case found:
				unackedStored++
			default:
				unackedNotByID = append(unackedNotByID, u+"/"+id)
			}
		}
		for id, a := range want {
			if g, ok := got[id]; err != nil || !ok || g != a {
				continue // counted below as lost or mismatched
			}
			var found bool
			if found, err = r.byID(ctx, req, resp, u, id, &readErrs); !found && err == nil {
				notByID = append(notByID, u+"/"+id)
			}
		}
		mu.Lock()
		if err != nil {
			rep.UnverifiedUsers++
			fmt.Fprintf(r.stderr, "verify: user %s: %v\n", u, err)
		} else {
			for id, a := range want {
				g, ok := got[id]
				switch {
				case !ok:
					rep.Lost++
					if len(rep.LostSample) < 20 {
						rep.LostSample = append(rep.LostSample, u+"/"+id)
					}
				case g.Loc != a.Loc || g.TS != a.TS:
					rep.Mismatched++
				default:
					rep.Found++
				}
			}
			rep.NotByID += len(notByID)
			for _, s := range notByID {
				if len(rep.NotByIDSample) < 20 {
					rep.NotByIDSample = append(rep.NotByIDSample, s)
				}
			}
			rep.UnackedNotByID += len(unackedNotByID)
			rep.UnackedStored += unackedStored
			rep.Others += others
			for _, s := range unackedNotByID {
				if len(rep.UnackedNotByIDSample) < 20 {
					rep.UnackedNotByIDSample = append(rep.UnackedNotByIDSample, s)
				}
			}
			for id := range gone {
				if _, ok := got[id]; ok {
					rep.Resurrected++
					if len(rep.ResurrectedSample) < 20 {
						rep.ResurrectedSample = append(rep.ResurrectedSample, u+"/"+id)
					}
				}
			}
			stale := ""
			if cur != nil {
				if _, deleted := gone[cur.ID]; deleted {
					stale = u + ": " + cur.ID + " was deleted"
				}
			}
			if newest := newestOf(want); stale == "" && len(want) > 0 && (cur == nil || newer(newest, *cur)) {
				stale = u + ": no current location"
				if cur != nil {
					stale = u + ": " + cur.ID + " < " + newest.ID
				}
			}
			if stale != "" {
				rep.StaleCurrent++
				if len(rep.StaleSample) < 20 {
					rep.StaleSample = append(rep.StaleSample, stale)
				}
			}
		}
		mu.Unlock()
		checked.Add(1)
	})
	stop()
	slices.Sort(rep.LostSample)
	slices.Sort(rep.NotByIDSample)
	slices.Sort(rep.UnackedNotByIDSample)
	slices.Sort(rep.StaleSample)
	slices.Sort(rep.ResurrectedSample)
	rep.ReadErrors = readErrs.Load()
	rep.ElapsedS = time.Since(start).Seconds()
	return rep
}

// listAll returns the user's checkins in the range that holds every id in
// want and in gone, by id.
func (r *runner) listAll(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, user string,
	want, gone map[string]ack, readErrs *atomic.Int64) (map[string]ack, error) {
	lo, hi := int64(1<<62), int64(-1<<62)
	for _, m := range []map[string]ack{want, gone} {
		for _, a := range m {
			lo, hi = min(lo, a.TS), max(hi, a.TS)
		}
	}
	base := "/v1/users/" + url.PathEscape(user) + "/checkins?limit=" + fmt.Sprint(verifyPageLimit) +
		"&from=" + url.QueryEscape(time.UnixMilli(lo).UTC().Format(timeLayout)) +
		"&to=" + url.QueryEscape(time.UnixMilli(hi+1).UTC().Format(timeLayout))
	got := map[string]ack{}
	cursor := ""
	for pages := 0; ; pages++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if pages > 1_000_000 {
			return nil, fmt.Errorf("list: more than %d pages", pages)
		}
		path := base
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Checkins []struct {
				ID         string `json:"id"`
				LocationID string `json:"location_id"`
				Timestamp  string `json:"timestamp"`
			} `json:"checkins"`
			NextCursor *string `json:"next_cursor"`
		}
		err := r.tryEach(ctx, req, resp, fasthttp.MethodGet, []byte(path), nil, func() { readErrs.Add(1) })
		if st := resp.StatusCode(); err == nil && st != 200 {
			if !retryable(st) {
				readErrs.Add(1) // retryable ones were counted by tryEach
			}
			err = fmt.Errorf("list answered %s", statusKind(st, resp.Body()))
		}
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(resp.Body(), &page); err != nil {
			readErrs.Add(1)
			return nil, fmt.Errorf("list: %w", err)
		}
		for _, c := range page.Checkins {
			t, perr := time.Parse(time.RFC3339Nano, c.Timestamp)
			if perr != nil {
				return nil, fmt.Errorf("list: checkin %s: timestamp %q: %w", c.ID, c.Timestamp, perr)
			}
			if _, dup := got[c.ID]; dup {
				return nil, fmt.Errorf("list: checkin %s listed twice", c.ID)
			}
			got[c.ID] = ack{User: user, ID: c.ID, Loc: c.LocationID, TS: t.UnixMilli()}
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return got, nil
		}
		if len(page.Checkins) == 0 {
			return nil, fmt.Errorf("list: empty page with a next_cursor")
		}
		cursor = *page.NextCursor
	}
}

// newestOf returns the newest of acks: the latest timestamp, ties to the
// larger id, as the service picks a current location.
func newestOf(acks map[string]ack) ack {
	var n ack
	first := true
	for _, a := range acks {
		if first || newer(a, n) {
			n, first = a, false
		}
	}
	return n
}

// newer reports whether a is newer than b (see newestOf).
func newer(a, b ack) bool { return a.TS > b.TS || a.TS == b.TS && a.ID > b.ID }

// byID reads the user's checkin id by its id: found, or not (404
// checkin_not_found).
func (r *runner) byID(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, user, id string, readErrs *atomic.Int64) (bool, error) {
	path := "/v1/users/" + url.PathEscape(user) + "/checkins/" + url.PathEscape(id)
	if err := r.tryEach(ctx, req, resp, fasthttp.MethodGet, []byte(path), nil, func() { readErrs.Add(1) }); err != nil {
		return false, err
	}
	switch st := resp.StatusCode(); {
	case st == 200:
		return true, nil
	case st == 404 && statusKind(st, resp.Body()) == "404:checkin_not_found":
		return false, nil
	default:
		if !retryable(st) {
			readErrs.Add(1)
		}
		return false, fmt.Errorf("checkin %s by id answered %s", id, statusKind(st, resp.Body()))
	}
}

// current reads the user's current location: nil when the user has none
// (404 no_checkins).
func (r *runner) current(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, user string, readErrs *atomic.Int64) (*ack, error) {
	path := "/v1/users/" + url.PathEscape(user) + "/location"
	err := r.tryEach(ctx, req, resp, fasthttp.MethodGet, []byte(path), nil, func() { readErrs.Add(1) })
	if err != nil {
		return nil, err
	}
	switch st := resp.StatusCode(); {
	case st == 404 && statusKind(st, resp.Body()) == "404:no_checkins":
		return nil, nil
	case st != 200:
		if !retryable(st) {
			readErrs.Add(1)
		}
		return nil, fmt.Errorf("current location answered %s", statusKind(st, resp.Body()))
	}
	var c struct {
		CheckinID  string `json:"checkin_id"`
		LocationID string `json:"location_id"`
		Timestamp  string `json:"timestamp"`
	}
	if err := json.Unmarshal(resp.Body(), &c); err != nil {
		readErrs.Add(1)
		return nil, fmt.Errorf("current location: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, c.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("current location: timestamp %q: %w", c.Timestamp, err)
	}
	return &ack{User: user, ID: c.CheckinID, Loc: c.LocationID, TS: t.UnixMilli()}, nil
}

func (r *runner) verifyProgress(start time.Time, checked *atomic.Int64, total int) (stop func()) {
	return r.ticker(func(now time.Time) {
		fmt.Fprintf(r.stderr, "verify %6.1fs  users %d/%d\n", now.Sub(start).Seconds(), checked.Load(), total)
	})
}
