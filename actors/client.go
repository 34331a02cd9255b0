package actors

import (
	"context"
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/checkin/checkin/messages"
	"github.com/checkin/checkin/persistence"
)

// Client calls user grains wherever the cluster placed them.
type Client struct {
	caller   *caller
	fromView prometheus.Counter // reads answered from the view
	view     *CurrentView       // current locations published by this node's grains
	timeout  time.Duration      // upper bound of one call when the context has no sooner deadline
	retries  int
	writers  *Pool // this node's writers: told of checkins on their way to them
}

// NewClient returns a client with a default per-call timeout. view may be
// nil; with it, current-location reads of users whose grains are active on
// this node are answered from what those grains published. m counts where
// requests were served (checkin_grain_requests_total). writers, this
// node's writer pool, may be nil; with it, a writer holds a partial batch
// back (up to its linger time) while checkins of this client are on their
// way to it through grains on this node.
//
// breaker stops calls to another member that stopped answering (see
// BreakerConfig); log gets those events.
func NewClient(c *pcluster.Cluster, timeout time.Duration, retries int, view *CurrentView, m *Metrics, writers *Pool, breaker BreakerConfig, log *zap.Logger) *Client {
	return &Client{caller: newCaller(c, m, breaker, log), fromView: m.served.WithLabelValues(servedView), timeout: timeout, retries: max(retries, 1), view: view, writers: writers}
}

// ReloadCurrent tells the grain of user id, if it is active on this node,
// to read the user's current location from the store again: a grain of
// the user handed over by another node stored a checkin, or deleted one,
// after this one may have loaded (Deps.LateWrite).
func (cl *Client) ReloadCurrent(id string) {
	if cl.caller.active == nil {
		return
	}
	if pid := cl.caller.active.Active(UserGrainKind, id); pid != nil {
		cl.caller.system.Root.Send(pid, reloadCurrent{})
	}
}

// CreateUser creates the user u.ID through its grain.
func (cl *Client) CreateUser(ctx context.Context, u persistence.User) (persistence.User, error) {
	r, err := callUser[*messages.User](cl, ctx, u.ID, methodCreateUser, &messages.CreateUserRequest{Name: u.Name, CreatedAtMs: u.CreatedAt.UnixMilli()})
	if err != nil {
		return persistence.User{}, fromGrainError(err)
	}
	return fromUserMsg(r), nil
}

// GetUser returns the user as its grain knows it.
func (cl *Client) GetUser(ctx context.Context, id string) (persistence.User, error) {
	r, err := callUser[*messages.User](cl, ctx, id, methodGetUser, &messages.GetUserRequest{})
	if err != nil {
		return persistence.User{}, fromGrainError(err)
	}
	return fromUserMsg(r), nil
}

// DeleteUser deletes the user and every checkin of the user through the
// user's grain (see userGrain.DeleteUser).
func (cl *Client) DeleteUser(ctx context.Context, id string) error {
	if _, err := callUser[*messages.DeleteUserResponse](cl, ctx, id, methodDeleteUser, &messages.DeleteUserRequest{}); err != nil {
		return fromGrainError(err)
	}
	return nil
}

// DeleteCheckin deletes one checkin of the user through the user's grain
// and returns it as it was stored (see userGrain.deleteCheckin).
func (cl *Client) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	// The grain holds the id while it deletes, maybe past this call: a
	// copy, since the caller's may live in a reused request buffer.
	r, err := callUser[*messages.DeleteCheckinResponse](cl, ctx, userID, methodDeleteCheckin, &messages.DeleteCheckinRequest{CheckinId: strings.Clone(checkinID)})
	if err != nil {
		return persistence.Checkin{}, fromGrainError(err)
	}
	c := fromMsg(r.GetCheckin())
	c.UserID = userID
	return c, nil
}

// CompleteCheckin passes c, whose write failed part way at a grain of its
// user that was handed over, to the user's grain wherever it is now, which
// completes it if the store still lists it (userGrain.CompleteCheckin). It
// returns nil once that grain holds it (Deps.HandOverWrite).
func (cl *Client) CompleteCheckin(ctx context.Context, c persistence.Checkin) error {
	m := toMsg(c)
	m.UserId = ""
	if _, err := callUser[*messages.CompleteCheckinResponse](cl, ctx, c.UserID, methodCompleteCheckin, &messages.CompleteCheckinRequest{Checkin: m}); err != nil {
		return fromGrainError(err)
	}
	return nil
}

// errCheckinUnconfirmed is the message of a checkin that got no answer in
// time.
const errCheckinUnconfirmed = "the checkin was not confirmed stored in time and may still be stored: retry with the same id (without one, a retry may store it twice)"

// Checkin records c (c.ID set by the caller) and returns the stored
// checkin; created is false when c.ID was already stored with the same
// content. timestampSet and clientID say which fields the client chose.
func (cl *Client) Checkin(ctx context.Context, c persistence.Checkin, timestampSet, clientID bool) (persistence.Checkin, bool, error) {
	if cl.writers != nil && cl.writers.refusing() {
		// This node's writers are at their bound: the store takes no more
		// checkins than it writes in about the latency target, from this
		// node and, being shared, most likely from the user's node too.
		// Refused here, before a grain call that would most likely end in
		// the same refusal after a round trip to another node.
		return persistence.Checkin{}, false, errWritersAtBound()
	}
	m := toMsg(c)
	// The grain takes the user from its identity. Not sending it also keeps
	// the grain from holding a caller's id string, which may live in a
	// request buffer that is reused once the call returns.
	m.UserId = ""
	r, err := callUser[*messages.CheckinResponse](cl, ctx, c.UserID, methodCheckin, &messages.CheckinRequest{Checkin: m, TimestampSet: timestampSet, ClientId: clientID})
	if unanswered(err) {
		// The grain, its writer or the store was slow or down: the write
		// may have been made, or may still be.
		return persistence.Checkin{}, false, newError(ErrTimeout, CodeTimeout, errCheckinUnconfirmed)
	}
	if err != nil {
		return persistence.Checkin{}, false, fromGrainError(err)
	}
	return fromMsg(r.GetCheckin()), r.GetCreated(), nil
}

// CurrentLocation returns the user's latest checkin from its grain's memory:
// as the grain published it when it is active on this node, else by asking
// the grain (which activates it).
func (cl *Client) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	if c, ok, found := cl.view.get(userID); found {
		cl.fromView.Inc()
		if !ok {
			return c, newError(ErrNotFound, CodeNoCheckins, "user "+userID+" has no checkins")
		}
		return c, nil
	}
	r, err := callUser[*messages.CurrentLocationResponse](cl, ctx, userID, methodCurrentLocation, &messages.CurrentLocationRequest{})
	if err != nil {
		return persistence.Checkin{}, fromGrainError(err)
	}
	return fromMsg(r.GetCheckin()), nil
}

func fromUserMsg(m *messages.User) persistence.User {
	return persistence.User{ID: m.GetId(), Name: m.GetName(), CreatedAt: time.UnixMilli(m.GetCreatedAtMs()).UTC()}
}
