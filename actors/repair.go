package actors

import (
	"context"
	"errors"
	"time"

	"github.com/checkin/checkin/persistence"
)

// Repair is what CompleteListed found for one user.
type Repair struct {
	Listed  int `json:"listed"`    // checkins the user's listing shows
	NotByID int `json:"not_by_id"` // of those, not found by id: writes that stopped part way
	Passed  int `json:"passed"`    // of those, handed to the user's grain to complete
}

// repairPage is how many listed checkins CompleteListed reads at a time.
const repairPage = 1000

// CompleteListed finds the checkins of user userID that the store lists but
// does not find by id (on Scylla, writes that stopped part way) and that no
// grain completes any more, because the grain's node crashed or stopped
// during a store outage too long to pass them on, and hands each to the
// user's grain (Client.CompleteCheckin), which writes it again if the store
// still lists it, in order with the user's checkins and deletes. A checkin
// being written meanwhile is found so too and left to its write. One store
// read by id per listed checkin: a tool for operators after a crash, not
// for a request path.
func CompleteListed(ctx context.Context, cl *Client, store persistence.Store, userID string) (Repair, error) {
	var r Repair
	q := persistence.Query{UserID: userID, From: time.Unix(0, 0).UTC(), To: farFuture, Limit: repairPage, Order: persistence.NewestFirst}
	for {
		page, err := store.ListCheckins(ctx, q)
		if err != nil {
			return r, err
		}
		for _, c := range page.Checkins {
			r.Listed++
			_, err := store.GetCheckin(ctx, userID, c.ID)
			switch {
			case err == nil:
				continue
			case !errors.Is(err, persistence.ErrNotFound):
				return r, err
			}
			r.NotByID++
			if err := cl.CompleteCheckin(ctx, c); err != nil {
				return r, err
			}
			r.Passed++
		}
		if page.Next == nil {
			return r, nil
		}
		q.After = page.Next
	}
}
