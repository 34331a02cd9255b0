package actors

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"

	"github.com/checkin/checkin/cluster"
	"github.com/checkin/checkin/messages"
	"github.com/checkin/checkin/persistence"
)

// GrainConfig tunes user grains.
type GrainConfig struct {
	IdleTimeout    time.Duration // passivate a grain after this long without a request
	MissingTimeout time.Duration // passivate sooner when the user does not exist
	RecentIDs      int           // checkin ids remembered per user for retries (older ones are looked up in the store)
	KnownIDs       int           // further checkin ids per user kept as 8-byte hashes, so that a new id needs no store look-up
	StoreTimeout   time.Duration // deadline of one store call made by a grain, and of passing failed writes on at a hand-over
	ViewSizeMB     int           // memory of the current-location view of active grains
	// DeleteRetry: the first background retry of a checkin delete the
	// store did not confirm comes this long after it; each failed retry
	// doubles the wait, up to maxStoreRetry.
	DeleteRetry time.Duration
	// WriteRetry: the same for a checkin write that failed and may have
	// been applied in part.
	WriteRetry time.Duration
}

// maxStoreRetry caps the wait between background retries of a checkin
// delete or write.
const maxStoreRetry = time.Minute

// DefaultGrainConfig: 10 minute passivation, 16 remembered ids, 256 more
// known by hash.
func DefaultGrainConfig() GrainConfig {
	return GrainConfig{IdleTimeout: 10 * time.Minute, MissingTimeout: 30 * time.Second, RecentIDs: 16, KnownIDs: 256,
		StoreTimeout: 5 * time.Second, ViewSizeMB: 64, DeleteRetry: time.Second, WriteRetry: time.Second}
}

// Validate reports the first setting out of range.
func (c GrainConfig) Validate() error {
	switch {
	case c.IdleTimeout <= 0:
		return errors.New("grain.idle-timeout must be positive")
	case c.MissingTimeout <= 0:
		return errors.New("grain.missing-timeout must be positive")
	case c.RecentIDs < 0:
		return errors.New("grain.recent-ids must not be negative")
	case c.KnownIDs < 0:
		return errors.New("grain.known-ids must not be negative")
	case c.StoreTimeout <= 0:
		return errors.New("grain.store-timeout must be positive")
	case c.ViewSizeMB < 1:
		return errors.New("grain.view-size-mb must be at least 1")
	case c.DeleteRetry <= 0:
		return errors.New("grain.delete-retry must be positive")
	case c.WriteRetry <= 0:
		return errors.New("grain.write-retry must be positive")
	}
	return nil
}

// Deps is what user grains need from their node.
type Deps struct {
	View    *CurrentView // where grains publish current locations (nil: nowhere)
	Store   persistence.Store
	Writers *Pool
	Config  GrainConfig
	Log     *zap.Logger
	Metrics *Metrics
	// LateWrite, if not nil, is called by a grain that was handed over
	// (cluster.HandOver) when a checkin it held became durable, or a
	// delete it held removed one, after the hand-over: the user's grain at
	// the new owner may have loaded the user before, and should read the
	// current location again (Client.ReloadCurrent, on the node that
	// hosts it).
	LateWrite func(userID string)
	// HandOverWrite, if not nil, passes a checkin whose write failed and
	// may have stored part of it, held by a grain that was handed over, to
	// the user's grain at its new owner (Client.CompleteCheckin), which
	// completes it from then on; it returns nil once that grain holds it.
	// Without it a grain handed over forgets such checkins.
	HandOverWrite func(ctx context.Context, c persistence.Checkin) error
	// InheritedFromLost, if not nil, reports whether the user's previous
	// owner left the cluster without draining (cluster.Node
	// InheritedFromLost): it died, or was removed, and writes its grain
	// had not finished are nobody's to complete. A grain activated for
	// such a user looks the checkins it loaded from the listing up by id
	// and writes again those not found (checkInherited).
	InheritedFromLost func(userID string) bool

	idle *passivator // set by NewUserGrainKind
	// failures is Log, at most storeFailureLogsPerSecond lines a second of
	// each message (set by NewUserGrainKind): in a store outage every
	// grain's calls fail.
	failures *zap.Logger
}

// storeFailureLogsPerSecond bounds the warnings of each kind of failed
// store call that grains log.
const storeFailureLogsPerSecond = 10

// NewUserGrainKind returns the cluster kind of user grains on this node.
// Grains passivate by the node's passivator, not by protoactor's receive
// timeout (the generated kind gets none).
func NewUserGrainKind(d *Deps) *pcluster.Kind {
	d.idle = newPassivator(d.Config)
	d.failures = d.Log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, storeFailureLogsPerSecond, 0)
	}))
	return messages.NewUserGrainKind(func() messages.UserGrain { return &userGrain{deps: d} }, 0,
		actor.WithDispatcher(dispatcher()), actor.WithMailbox(newMailbox))
}

// entry is a checkin id the grain knows: being looked up, being written, or
// durable (done). Requests with the same id wait on it.
type entry struct {
	c    persistence.Checkin
	done bool
	// listed: loaded at activation from the user's listing, not written by
	// this activation. A store that writes a checkin's rows one after
	// another (Scylla) lists one whose write failed part way, so a retry
	// of it writes it again, the listed version, before it is answered.
	listed bool
	// rewrite: the write in progress is such a retry's; its callers get
	// the checkin as already stored (200), not as created.
	rewrite bool
	// unwritten: a write of it failed in a way that may have stored part
	// of it (persistence.ErrNotApplied not set); the grain writes it again
	// in the background (checkinWork.unwritten) until the store confirms
	// it. Not done, and not being written while set.
	unwritten bool
	// partial: a write of it failed in a way that may have stored part of
	// it, so it may be stored in part whatever a later attempt says; set
	// with unwritten and kept.
	partial bool
	// adopted: passed on by a grain of the user that was handed over
	// (CompleteCheckin). The store must still list it before it is written
	// again: a delete here may have removed it before it came.
	adopted bool
	waiters []waiter
}

type waiter struct {
	to  replyTo
	req *messages.CheckinRequest
}

// replyTo is where a grain answers a call: straight into the caller's
// reply box when the call came from this node, else to the sender's PID.
type replyTo struct {
	box *replyBox
	pid *actor.PID
}

func (r replyTo) send(ctx actor.SenderContext, m proto.Message) {
	if r.box != nil {
		r.box.deliver(m)
		return
	}
	ctx.Send(r.pid, m)
}

// slot holds an entry beside the hash of its checkin id and, once it is
// durable, its timestamp, so that finding an id and trimming the oldest
// read one small array instead of following a pointer per entry (cache
// misses, with thousands of grains, made each a few percent of a checkin's
// CPU).
type slot struct {
	hash uint64
	ms   int64 // e.c's timestamp, once done
	done bool  // e.done
	e    *entry
}

// idSeed seeds idHash for the life of the process.
var idSeed = maphash.MakeSeed()

func idHash(id string) uint64 { return maphash.String(idSeed, id) }

func (g *userGrain) remember(e *entry) {
	g.entries = append(g.entries, slot{hash: idHash(e.c.ID), ms: e.c.Timestamp.UnixMilli(), done: e.done, e: e})
}

type createOp struct {
	user    persistence.User
	waiters []*actor.PID
}

// deleteOp is a deletion of the user: it waits for the checkins being
// written, then deletes from the store.
type deleteOp struct {
	waiters []*actor.PID
	started bool
}

// checkinDeleteOp is a deletion of one checkin of the user. A grain runs
// them one at a time, in the order asked, so that each reads the current
// location after the one before it; requests for the same id wait on the
// same op.
type checkinDeleteOp struct {
	id      string
	waiters []replyTo
	started bool
	// newest is the newest checkin that became durable while the op ran:
	// the current location read after the delete may not hold it.
	newest *persistence.Checkin
}

// checkinWork is a grain's work on single checkins beyond plain writes:
// deletions, and the deletes and writes the store did not confirm, which
// the grain sends again in the background. A grain holds one only while it
// has some (most never do: a pointer costs idle grains less than the
// state).
type checkinWork struct {
	ops []*checkinDeleteOp // pending, the first running
	// undeleted: ids whose deletion failed unanswered by the store (it may
	// still apply it, or have applied part of it), newest last, at most
	// maxCheckinDeletes (deletes of other ids are refused meanwhile). A
	// checkin with one of them is refused until a delete of it answers:
	// written now, a late delete could remove it after it was
	// acknowledged. The grain deletes them again in the background
	// (retryDeletes) and does not passivate before the store confirmed
	// every one.
	undeleted []string
	timer     *time.Timer   // sends the next retryDeletes; nil when none is due
	wait      time.Duration // how long the next retry scheduled waits (0: grain.delete-retry)
	// unwritten: checkins whose write failed and may have stored part of
	// them (on Scylla: listed, but not found by id, so not deletable), in
	// the order they failed, at most maxUnwritten. The grain writes them
	// again in the background (retryWrites) until the store confirms
	// each, and does not passivate before. They stay in the grain's
	// entries, so a client's retry of one waits for that write, or starts
	// it, and gets the checkin as first sent (its timestamp too).
	unwritten  []*entry
	writeTimer *time.Timer   // sends the next retryWrites; nil when none is due
	writeWait  time.Duration // how long the next write retry waits (0: grain.write-retry)
}

// op returns the pending deletion of checkin id, if any.
func (d *checkinWork) op(id string) *checkinDeleteOp {
	for _, op := range d.ops {
		if op.id == id {
			return op
		}
	}
	return nil
}

// held returns how many checkin ids the grain deletes or holds undeleted.
func (d *checkinWork) held() int {
	n := len(d.undeleted)
	for _, op := range d.ops {
		if !slices.Contains(d.undeleted, op.id) {
			n++
		}
	}
	return n
}

// maxCheckinDeletes bounds the checkin deletions one grain holds (running
// and waiting), and the ids of those it holds undeleted with them; more
// are refused as overload, so that no undeleted id is ever forgotten.
const maxCheckinDeletes = 64

// maxUnwritten bounds the failed writes one grain completes in the
// background; past it the oldest is forgotten (a client's retry with its
// id still completes it).
const maxUnwritten = 64

// userGrain is the state and decisions of one user. Store I/O runs off the
// actor goroutine and comes back through ReenterAfter, so the mailbox keeps
// moving while a batch is written.
type userGrain struct {
	deps    *Deps
	id      string
	user    *persistence.User // nil: the user does not exist
	current *persistence.Checkin
	entries []slot // pending entries and the RecentIDs newest done ones
	// known: sorted hashes of the user's other stored checkin ids, up to
	// KnownIDs, while complete.
	known    []uint64
	creating *createOp
	deleting *deleteOp
	work     *checkinWork // nil: no checkin deletion pending, nothing unconfirmed
	writing  int          // checkins submitted and not yet settled or failed
	// The flags are together, so that they share one word.
	loaded bool
	// complete: every checkin id of the user is in entries or known, so an
	// id in neither is new. Once the grain forgets one (more ids than
	// RecentIDs+KnownIDs), ids it does not hold need a store look-up (a
	// retry may carry any timestamp).
	complete bool
	// stale: the grain no longer knows its user's current location (a
	// checkin deletion could not read it back); it answers current-location
	// reads unavailable and stops as soon as it is idle, so that the next
	// request activates it from the store.
	stale bool
	// viewed: a current-location read came to the grain since it
	// activated, so it publishes the user's state to the node's view and
	// keeps it there; a grain whose user is only written pays nothing for
	// reads that do not come.
	viewed bool
	// leaving: the grain was handed over to another member
	// (cluster.HandOver); it answers new calls errMoved and stops as soon
	// as it is idle.
	leaving bool
	// inherit: the user's last owner left without draining and the
	// checkins loaded from the listing are still to be looked up by id
	// (checkInherited); inheriting: that look-up runs; inheritFailed: one
	// failed (it is tried again at the next call).
	inherit, inheriting, inheritFailed bool

	self   *actor.PID
	idleAt atomic.Int64 // passivator clock: passivate after it; see touch
}

func (g *userGrain) Init(ctx pcluster.GrainContext) {
	g.id = ctx.Identity()
	g.self = ctx.Self()
	g.deps.Metrics.activations.Inc()
	g.deps.Metrics.active.Inc()
	if err := g.load(); err != nil {
		g.deps.Log.Warn("user grain load failed", zap.String("user_id", g.id), zap.Error(err))
	}
	g.inherit = g.deps.InheritedFromLost != nil && g.deps.InheritedFromLost(g.id)
	g.checkInherited(ctx)
	g.touch()
	g.deps.idle.add(g, ctx.ActorSystem())
}

// checkInherited looks up by id the checkins the grain loaded from the
// user's listing (its newest grain.recent-ids), once the user is loaded,
// for a user whose last owner left without draining (g.inherit): a
// checkin listed but not found by id was being written there, part way
// (on Scylla, which writes a checkin's rows one after another), and nobody
// else completes it. Each such checkin is written again, as one passed on
// at a hand-over. Off the grain's goroutine; the grain stays until it is
// done. A look-up that fails is tried again at the next call (existing).
func (g *userGrain) checkInherited(ctx pcluster.GrainContext) {
	if !g.inherit || g.inheriting || g.user == nil {
		return
	}
	var listed []*entry
	var ids []string
	for _, x := range g.entries {
		if x.e.done && x.e.listed {
			listed, ids = append(listed, x.e), append(ids, x.e.c.ID)
		}
	}
	if len(listed) == 0 {
		g.inherit = false
		return
	}
	var missing []int
	g.inheriting = true
	g.writing++ // the grain waits for the store, as for a write
	g.async(ctx, func(c context.Context) error {
		for i, id := range ids {
			_, err := g.deps.Store.GetCheckin(c, g.id, id)
			switch {
			case errors.Is(err, persistence.ErrNotFound):
				missing = append(missing, i)
			case err != nil:
				return err
			}
		}
		return nil
	}, func(err error) {
		g.writing--
		g.inheriting = false
		result := checkChecked
		if err == nil {
			g.inherit = false
		} else {
			result = resultFailed // completed as far as it got; tried again at the next call
			if !g.inheritFailed {
				g.inheritFailed = true
				g.deps.Log.Warn("could not look up the checkins of a user whose last owner left without draining; trying again at the next call",
					zap.String("user_id", g.id), zap.Error(err))
			}
		}
		g.deps.Metrics.inherited.WithLabelValues(result).Inc()
		var found []*entry
		var cs []persistence.Checkin
		for _, i := range missing {
			if e := listed[i]; g.find(e.c.ID) == e && e.done && e.listed {
				found, cs = append(found, e), append(cs, e.c)
			}
		}
		// Written here, or passed on to the new owner if handed over
		// meanwhile; a user being deleted has them deleted with it.
		rewrite, passOn := g.completes(), g.passesOn()
		if len(cs) > 0 && (rewrite || passOn) { // counted before they are written: a reader may see one stored at once
			g.deps.Metrics.inheritedWrites.Add(float64(len(cs)))
			g.deps.Log.Info("found checkins listed but not by id, left by the user's last owner, which left without draining: writing them again",
				zap.String("user_id", g.id), zap.Int("checkins", len(cs)), zap.String("first_checkin_id", cs[0].ID))
		}
		for _, e := range found {
			if rewrite {
				g.rewriteListed(ctx, e)
			} else {
				g.removeEntry(e)
			}
		}
		if len(cs) > 0 && passOn {
			g.passOn(ctx, cs)
		}
		g.touch() // idle again: the deadline the request set while busy was never
		g.whenIdle(ctx)
	})
}

// rewriteListed writes e, loaded from the listing at activation and maybe
// not found by id, again now.
func (g *userGrain) rewriteListed(ctx pcluster.GrainContext, e *entry) {
	e.listed, e.partial = false, true
	g.markDone(e, false)
	g.writeAgain(ctx, e)
}

func (g *userGrain) Terminate(pcluster.GrainContext) {
	if d := g.work; d != nil {
		d.stopTimers()
	}
	g.deps.idle.remove(g)
	g.deps.View.withdraw(g.id)
	g.deps.Metrics.active.Dec()
}

// touch restarts the grain's idle time: grain.idle-timeout, or
// grain.missing-timeout for a user that does not exist. A grain waiting
// for the store (a checkin being written, a user being created) does not
// passivate: its callers would wait for an answer that never comes.
func (g *userGrain) touch() {
	timeout := g.deps.Config.IdleTimeout
	switch {
	case g.busy():
		timeout = math.MaxInt64 / 2 // never, while busy; touched again when done
	case g.loaded && g.user == nil:
		timeout = g.deps.Config.MissingTimeout
	}
	g.deps.idle.keepAlive(g, timeout)
}

// publish puts the user's state in the node's view once reads of it came
// to the grain.
func (g *userGrain) publish() {
	if g.viewed && !g.stale {
		g.deps.View.publish(g.id, g.current)
	}
}

// busy reports whether the grain waits for the store: a checkin being
// written or deleted, a user being created or deleted, a checkin delete
// or write the store has not confirmed yet.
func (g *userGrain) busy() bool {
	return g.writing > 0 || g.creating != nil || g.deleting != nil || g.work != nil
}

// load reads the user and the current location from the store, once per
// activation (again after a failure).
func (g *userGrain) load() error {
	if g.loaded {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.Config.StoreTimeout)
	defer cancel()
	u, err := g.deps.Store.GetUser(ctx, g.id)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		// No user, so no checkins: what this activation held of one (a
		// delete the store applied without confirming it) is gone too.
		g.userGone()
		g.loaded = true
		return nil
	case err != nil:
		return g.storeFailed("cannot load the user: the store is unavailable; retry shortly", err)
	}
	recent, err := g.loadRecent(ctx)
	if err != nil {
		return g.storeFailed("cannot load the user's recent checkins: the store is unavailable; retry shortly", err)
	}
	if cur, settled := newestOf(recent, g.complete); settled {
		g.current = cur // no second read: the newest checkins settle it
	} else {
		cur, err := g.deps.Store.CurrentLocation(ctx, g.id)
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			g.current = nil
		case err != nil:
			return g.storeFailed("cannot load the user's current location: the store is unavailable; retry shortly", err)
		default:
			g.current = &cur
		}
	}
	g.loadKnown(ctx)
	g.user, g.loaded = &u, true
	g.publish()
	return nil
}

// loadKnown makes the grain complete for a user whose older checkin ids fit
// in KnownIDs, by reading them once from a store that lists ids; new ids
// then need no store look-up. Otherwise (or when the read fails) new ids
// are looked up as before.
func (g *userGrain) loadKnown(ctx context.Context) {
	l, ok := persistence.As[persistence.CheckinIDLister](g.deps.Store)
	limit := g.deps.Config.KnownIDs
	if g.complete || !ok || limit == 0 {
		return
	}
	var known []uint64
	all, err := l.EachCheckinID(ctx, g.id, limit+len(g.entries), func(id []byte) {
		h := maphash.Bytes(idSeed, id) // equal to idHash of the same id
		for _, x := range g.entries {
			if x.hash == h && x.e.c.ID == string(id) {
				return // held whole
			}
		}
		known = append(known, h)
	})
	if err != nil || !all || len(known) > limit {
		return
	}
	slices.Sort(known)
	g.known, g.complete = slices.Compact(known), true
}

// knows reports whether h is among the known hashes.
func (g *userGrain) knows(h uint64) bool {
	_, found := slices.BinarySearch(g.known, h)
	return found
}

// forget moves a trimmed entry's hash to known, or gives completeness up
// when known is full.
func (g *userGrain) forget(h uint64) {
	if !g.complete {
		return
	}
	i, found := slices.BinarySearch(g.known, h)
	switch {
	case found:
	case len(g.known) >= g.deps.Config.KnownIDs:
		g.known, g.complete = nil, false
	default:
		g.known = slices.Insert(g.known, i, h)
	}
}

// farFuture bounds the activation read; no stored timestamp reaches it.
var farFuture = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// loadRecent remembers the user's newest RecentIDs checkins, and returns
// them newest first; a user with no more than that is known whole
// (g.complete).
func (g *userGrain) loadRecent(ctx context.Context) ([]persistence.Checkin, error) {
	g.entries, g.known, g.complete = nil, nil, false
	if g.deps.Config.RecentIDs == 0 {
		return nil, nil
	}
	page, err := g.deps.Store.ListCheckins(ctx, persistence.Query{UserID: g.id, From: time.Unix(0, 0).UTC(), To: farFuture,
		Limit: g.deps.Config.RecentIDs, Order: persistence.NewestFirst})
	if err != nil {
		return nil, err
	}
	for _, c := range page.Checkins {
		g.remember(&entry{c: c, done: true, listed: true})
	}
	g.complete = page.Next == nil
	return page.Checkins, nil
}

// newestOf returns the current location that the user's newest checkins
// (newest first: timestamp descending, id ascending) settle: the largest id
// of the newest millisecond. They settle it when they hold that whole
// millisecond: a checkin of an older one follows it, or they are the whole
// history (complete; none at all: no current location). Otherwise settled
// is false and the store must answer.
func newestOf(newest []persistence.Checkin, complete bool) (cur *persistence.Checkin, settled bool) {
	if len(newest) == 0 {
		return nil, complete
	}
	n := 1
	for n < len(newest) && newest[n].Timestamp.Equal(newest[0].Timestamp) {
		n++
	}
	if n == len(newest) && !complete {
		return nil, false
	}
	c := newest[n-1]
	return &c, true
}

// existing returns the user or why it cannot be used; grains of users that
// do not exist passivate sooner.
func (g *userGrain) existing(ctx pcluster.GrainContext) error {
	if g.leaving {
		return errMoved
	}
	if err := g.load(); err != nil {
		return err
	}
	if g.user == nil {
		return newError(ErrNotFound, CodeUserNotFound, "user "+g.id+" does not exist")
	}
	if g.inherit {
		g.checkInherited(ctx)
	}
	return nil
}

func (g *userGrain) GetUser(_ *messages.GetUserRequest, ctx pcluster.GrainContext) (*messages.User, error) {
	defer g.touch()
	if err := g.existing(ctx); err != nil {
		return nil, toGrainError(err)
	}
	return userMsg(*g.user), nil
}

func (g *userGrain) CurrentLocation(_ *messages.CurrentLocationRequest, ctx pcluster.GrainContext) (*messages.CurrentLocationResponse, error) {
	defer g.touch()
	if err := g.existing(ctx); err != nil {
		return nil, toGrainError(err)
	}
	if g.stale {
		return nil, toGrainError(newError(ErrUnavailable, CodeUnavailable, "the current location of user "+g.id+" is being read again; retry"))
	}
	// The next reads on this node are answered from the view (again, if
	// the view dropped the entry to make room).
	g.viewed = true
	g.publish()
	if g.current == nil {
		return nil, toGrainError(newError(ErrNotFound, CodeNoCheckins, "user "+g.id+" has no checkins"))
	}
	return &messages.CurrentLocationResponse{Checkin: toMsg(*g.current)}, nil
}

func (g *userGrain) CreateUser(req *messages.CreateUserRequest, _ func(*messages.User), _ func(error), ctx pcluster.GrainContext) error {
	defer g.touch()
	if g.leaving {
		return errMoved
	}
	if err := g.load(); err != nil {
		return toGrainError(err)
	}
	if g.user != nil {
		return toGrainError(newError(ErrConflict, CodeUserExists, "user "+g.id+" already exists"))
	}
	if g.deleting != nil {
		return toGrainError(newError(ErrUnavailable, CodeUnavailable, "user "+g.id+" is being deleted; retry the create"))
	}
	if g.creating != nil {
		g.creating.waiters = append(g.creating.waiters, ctx.Sender())
		return nil
	}
	u := persistence.User{ID: g.id, Name: req.GetName(), CreatedAt: time.UnixMilli(req.GetCreatedAtMs()).UTC()}
	g.creating = &createOp{user: u, waiters: []*actor.PID{ctx.Sender()}}
	g.async(ctx, func(c context.Context) error { return g.deps.Store.CreateUser(c, u) }, func(err error) {
		op := g.creating
		g.creating = nil
		switch {
		case err == nil:
			u := op.user // not &op.user: that would keep op and its waiters alive
			g.user, g.current, g.complete = &u, nil, true
			g.publish()
			ctx.Send(op.waiters[0], userMsg(op.user))
			op.waiters = op.waiters[1:]
			err = newError(ErrConflict, CodeUserExists, "user "+g.id+" already exists")
		case errors.Is(err, persistence.ErrConflict):
			g.loaded = false // someone else created it: read it on the next call
			err = newError(ErrConflict, CodeUserExists, "user "+g.id+" already exists")
		default:
			// Maybe applied all the same (an answer lost, a timeout): read
			// the user again on the next call rather than deny it.
			g.loaded = false
			err = g.storeFailed("the store did not confirm the user, which may be stored", err)
		}
		for _, w := range op.waiters {
			ctx.Send(w, toGrainError(err))
		}
		g.touch()
	})
	return nil
}

// DeleteUser deletes the user and every checkin of the user. From the
// call on, the user does not exist for new requests (checkins, reads,
// creates are refused); checkins already being written finish and are
// answered first, then the store deletes, and every caller waiting gets the
// outcome: nothing, user_not_found (there was no user; whatever was left of
// one is removed all the same) or unavailable (retry: deleting again is
// safe).
func (g *userGrain) DeleteUser(_ *messages.DeleteUserRequest, _ func(*messages.DeleteUserResponse), _ func(error), ctx pcluster.GrainContext) error {
	defer g.touch()
	if g.leaving {
		return errMoved
	}
	if g.deleting != nil {
		g.deleting.waiters = append(g.deleting.waiters, ctx.Sender())
		return nil
	}
	if g.creating != nil {
		return toGrainError(newError(ErrUnavailable, CodeUnavailable, "user "+g.id+" is being created; retry the delete"))
	}
	g.deleting = &deleteOp{waiters: []*actor.PID{ctx.Sender()}}
	g.dropUnwritten() // written after the deletion, they would bring the user back
	g.user, g.current, g.loaded = nil, nil, true
	g.deps.View.withdraw(g.id)
	g.deleteWhenIdle(ctx)
	return nil
}

// userGone forgets the user and every checkin of it: the store holds
// neither.
func (g *userGrain) userGone() {
	g.user, g.current, g.entries, g.known, g.complete = nil, nil, nil, nil, true
	if g.work != nil {
		g.work.undeleted = nil
		g.tidyWork()
	}
}

// storeFailed logs (a few a second) why a store call of the grain failed,
// and returns the error its callers get: msg, what failed and what to do,
// without the store's own words (hosts, driver messages), which are for
// the operator's log, not for clients.
func (g *userGrain) storeFailed(msg string, err error) *Error {
	log := g.deps.failures
	if log == nil {
		log = g.deps.Log
	}
	log.Warn(msg, zap.String("user_id", g.id), zap.Error(err))
	return newError(ErrUnavailable, CodeUnavailable, msg)
}

// deleteWhenIdle starts a pending deletion once no checkin is being
// written: a write that landed after the deletion would bring the user's
// data back.
func (g *userGrain) deleteWhenIdle(ctx pcluster.GrainContext) {
	op := g.deleting
	if op == nil || op.started || g.writing > 0 || (g.work != nil && len(g.work.ops) > 0) {
		return
	}
	op.started = true
	g.async(ctx, func(c context.Context) error { return g.deps.Store.DeleteUser(c, g.id) }, func(err error) {
		g.deleting = nil
		var reply proto.Message = &messages.DeleteUserResponse{}
		switch {
		case err == nil:
		case errors.Is(err, persistence.ErrNotFound):
			reply = toGrainError(newError(ErrNotFound, CodeUserNotFound, "user "+g.id+" does not exist"))
		default:
			reply = toGrainError(g.storeFailed("cannot delete the user: the store is unavailable; retry the delete", err))
		}
		if err == nil || errors.Is(err, persistence.ErrNotFound) {
			g.userGone()
		} else {
			g.loaded = false // part may be gone: read the user again on the next call
		}
		for _, w := range op.waiters {
			ctx.Send(w, reply)
		}
		g.touch()
		if err == nil {
			// Nothing is left to hold: stop now rather than after the
			// missing-user timeout (the next request activates it again).
			g.passivate(ctx)
		}
	})
}

func (g *userGrain) Checkin(req *messages.CheckinRequest, _ func(*messages.CheckinResponse), _ func(error), ctx pcluster.GrainContext) error {
	return g.checkin(ctx, req, replyTo{pid: ctx.Sender()})
}

func (g *userGrain) checkin(ctx pcluster.GrainContext, req *messages.CheckinRequest, to replyTo) error {
	defer g.touch()
	if err := g.existing(ctx); err != nil {
		return toGrainError(err)
	}
	c := fromMsg(req.GetCheckin())
	c.UserID = g.id
	if d := g.work; d != nil {
		if d.op(c.ID) != nil {
			// Written now, it might land before the delete or after it.
			return toGrainError(newError(ErrUnavailable, CodeUnavailable, "checkin "+c.ID+" is being deleted; retry the checkin"))
		}
		if slices.Contains(d.undeleted, c.ID) {
			return toGrainError(newError(ErrUnavailable, CodeUnavailable, "a delete of checkin "+c.ID+" is not confirmed by the store yet and is retried in the background; retry the checkin later"))
		}
	}
	w := waiter{to: to, req: req}
	if e := g.find(c.ID); e != nil {
		switch {
		case e.adopted:
			// Passed on by the grain handed over; whether the store still
			// lists it, and so what the id holds, is not known yet.
			return toGrainError(newError(ErrUnavailable, CodeUnavailable, "checkin "+c.ID+" failed part way before the user moved to this node and is being completed; retry the checkin"))
		case e.unwritten && conflicts(e, w):
			// e may be stored in part, and is being completed.
			g.answer(ctx, e, w, false)
		case e.unwritten:
			e.waiters = append(e.waiters, w)
			g.writeAgain(ctx, e)
		case !e.done:
			e.waiters = append(e.waiters, w)
		case e.listed && !conflicts(e, w):
			// Listed, maybe from a write that failed part way: write the
			// listed version again (the same rows; writes are idempotent)
			// before answering.
			e.listed, e.rewrite = false, true
			g.markDone(e, false)
			e.waiters = append(e.waiters, w)
			g.writing++
			if err := g.deps.Writers.submit(ctx, e, false); err != nil {
				g.fail(ctx, e, err, false)
			}
		default:
			g.answer(ctx, e, w, false)
		}
		return nil
	}
	e := &entry{c: c, waiters: []waiter{w}}
	g.remember(e)
	g.writing++ // until settle or fail
	// A client-chosen id the grain does not hold may have been stored
	// before, unless the grain knows every checkin id of the user and this
	// one is not among them: the writer looks it up in the same round trip
	// as the write.
	lookup := req.GetClientId() && (!g.complete || g.knows(idHash(c.ID)))
	if err := g.deps.Writers.submit(ctx, e, lookup); err != nil {
		g.fail(ctx, e, err, false) // refused before the store: not written
	}
	return nil
}

func (g *userGrain) DeleteCheckin(req *messages.DeleteCheckinRequest, _ func(*messages.DeleteCheckinResponse), _ func(error), ctx pcluster.GrainContext) error {
	return g.deleteCheckin(ctx, req.GetCheckinId(), replyTo{pid: ctx.Sender()})
}

// deleteCheckin deletes one checkin of the user from the store and, when it
// was the current location, moves the current location to the newest
// checkin left. The caller gets the deleted checkin, checkin_not_found, or
// unavailable (retry: deleting again is safe, and answers
// checkin_not_found once it is gone). A checkin still being written is not
// deleted (unavailable: retry); a checkin with the id of one being
// deleted waits for nothing and is refused the same way.
func (g *userGrain) deleteCheckin(ctx pcluster.GrainContext, id string, to replyTo) error {
	defer g.touch()
	if err := g.existing(ctx); err != nil {
		return toGrainError(err)
	}
	if id == "" {
		return pcluster.NewGrainErrorResponse(pcluster.ErrorReason_INVALID_ARGUMENT, "empty checkin id")
	}
	e := g.find(id)
	if e != nil && !e.done && !e.unwritten {
		return toGrainError(newError(ErrUnavailable, CodeUnavailable, "checkin "+id+" is still being written; retry the delete"))
	}
	if g.work == nil {
		g.work = &checkinWork{}
	}
	d := g.work
	if op := d.op(id); op != nil {
		op.waiters = append(op.waiters, to)
		return nil
	}
	if len(d.ops) >= maxCheckinDeletes || (!slices.Contains(d.undeleted, id) && d.held() >= maxCheckinDeletes) {
		return toGrainError(newError(ErrOverloaded, CodeOverloaded, "too many checkins of user "+g.id+" are being deleted; retry the delete"))
	}
	if e != nil && e.unwritten {
		// Maybe stored in part: no longer completed in the background,
		// but deleted as a listed checkin is (the delete writes it first
		// if it is not found by id, so that it finds every row).
		d.unwritten = slices.DeleteFunc(d.unwritten, func(x *entry) bool { return x == e })
		e.unwritten, e.adopted, e.listed = false, false, true
		g.markDone(e, true)
	}
	d.ops = append(d.ops, &checkinDeleteOp{id: id, waiters: []replyTo{to}})
	g.nextCheckinDelete(ctx)
	return nil
}

// CompleteCheckin takes over a checkin whose write failed part way at a
// grain of the user that was handed over (passOn): unless this activation
// holds the id already, or deletes it, the grain asks the store whether it
// still lists the checkin, and writes it again if so (in the background,
// until the store confirms it, as its own failed writes) or forgets it if
// not (a delete here removed it, or nothing of it was stored). Until that
// is known, checkins with the id are refused as unavailable. A user that
// does not exist (deleted since) has nothing to complete.
func (g *userGrain) CompleteCheckin(req *messages.CompleteCheckinRequest, ctx pcluster.GrainContext) (*messages.CompleteCheckinResponse, error) {
	defer g.touch()
	done := &messages.CompleteCheckinResponse{}
	if err := g.existing(ctx); err != nil {
		if g.loaded && g.user == nil && !g.leaving {
			return done, nil
		}
		return nil, toGrainError(err)
	}
	c := fromMsg(req.GetCheckin())
	c.UserID = g.id
	if c.ID == "" {
		return nil, pcluster.NewGrainErrorResponse(pcluster.ErrorReason_INVALID_ARGUMENT, "empty checkin id")
	}
	if g.deleting != nil {
		return done, nil // the user's deletion takes it along
	}
	if d := g.work; d != nil && (d.op(c.ID) != nil || slices.Contains(d.undeleted, c.ID)) {
		return done, nil // deleted here: the delete decides
	}
	if e := g.find(c.ID); e != nil {
		if e.done && e.listed && e.c.LocationID == c.LocationID && e.c.Timestamp.Equal(c.Timestamp) {
			// Loaded from the listing at activation: this very checkin,
			// maybe not found by id. Write it again now.
			g.rewriteListed(ctx, e)
		}
		return done, nil // otherwise held here already: a write or a retry of the id
	}
	e := &entry{c: c, adopted: true, partial: true}
	g.remember(e)
	g.completeListed(ctx, e)
	return done, nil
}

// completeListed writes e, adopted, again if the store still lists it
// (with the lookup of writeAgain: the failed write may have stored all of
// it), and forgets it if not. A failed read leaves it to the next retry.
func (g *userGrain) completeListed(ctx pcluster.GrainContext, e *entry) {
	g.writing++ // the grain waits for the store, as for a write
	listed := false
	g.async(ctx, func(c context.Context) error {
		q := persistence.Query{UserID: g.id, From: e.c.Timestamp, To: e.c.Timestamp.Add(time.Millisecond),
			Limit: 256, Order: persistence.NewestFirst} // the user's checkins of that millisecond
		for {
			page, err := g.deps.Store.ListCheckins(c, q)
			if err != nil {
				return err
			}
			listed = slices.ContainsFunc(page.Checkins, func(x persistence.Checkin) bool {
				return x.ID == e.c.ID && x.LocationID == e.c.LocationID
			})
			if listed || page.Next == nil {
				return nil
			}
			q.After = page.Next
		}
	}, func(err error) {
		g.writing--
		switch {
		case g.passesOn():
			g.removeEntry(e) // handed over meanwhile: the next owner asks again
			g.passOn(ctx, []persistence.Checkin{e.c})
		case !g.completes(), err == nil && !listed:
			g.removeEntry(e)
			g.tidyWork()
		case err != nil:
			g.unwrite(ctx, e) // adopted still: asked again at the retry
		default:
			e.adopted = false
			g.writeAgain(ctx, e)
		}
		g.touch() // idle again, unless written again: the deadline the request set while busy was never
		g.whenIdle(ctx)
	})
}

// passOn gives checkins whose writes failed and may have stored part of
// them to the user's grain at its new owner (Deps.HandOverWrite), which
// completes them from then on: from here, a late write could bring back
// one the new owner deleted. Off the grain's goroutine, trying again while
// the owner cannot take them yet (it reads the user from the store first)
// until grain.store-timeout; the grain stays until then.
func (g *userGrain) passOn(ctx pcluster.GrainContext, cs []persistence.Checkin) {
	if len(cs) == 0 {
		return
	}
	if g.deps.HandOverWrite == nil {
		g.lostOnHandOver(cs, nil)
		return
	}
	g.writing++ // keeps the grain until the owner holds them
	passed := 0
	g.async(ctx, func(c context.Context) error {
		for _, x := range cs {
			wait := 20 * time.Millisecond
			for {
				err := g.deps.HandOverWrite(c, x)
				if err == nil {
					break
				}
				select {
				case <-c.Done():
					return errors.Join(err, c.Err())
				case <-time.After(wait):
				}
				wait = min(2*wait, time.Second)
			}
			passed++
		}
		return nil
	}, func(err error) {
		g.writing--
		g.deps.Metrics.passedOn.WithLabelValues(resultPassed).Add(float64(passed))
		if passed > 0 {
			g.deps.Log.Info("grain handed over passed failed checkin writes to the user's new owner, which completes them",
				zap.String("user_id", g.id), zap.Int("checkins", passed), zap.String("first_checkin_id", cs[0].ID))
		}
		if passed < len(cs) {
			g.lostOnHandOver(cs[passed:], err)
		}
		g.whenIdle(ctx)
	})
}

// lostOnHandOver logs the failed checkin writes a grain handed over could
// not pass on: they may stay stored in part (listed, not found by id).
func (g *userGrain) lostOnHandOver(cs []persistence.Checkin, err error) {
	g.deps.Metrics.passedOn.WithLabelValues(resultFailed).Add(float64(len(cs)))
	g.deps.Log.Warn("grain handed over with failed checkin writes the user's new owner did not take over: they may stay stored in part until their clients re-send them",
		zap.String("user_id", g.id), zap.Int("checkins", len(cs)), zap.String("first_checkin_id", cs[0].ID), zap.Error(err))
}

// tidyWork drops the grain's checkinWork once nothing is pending or
// unconfirmed, cancelling a retry that was due.
func (g *userGrain) tidyWork() {
	if d := g.work; d != nil && len(d.ops) == 0 && len(d.undeleted) == 0 && len(d.unwritten) == 0 {
		d.stopTimers()
		g.work = nil
	}
}

// stopTimers cancels the retries that are due.
func (d *checkinWork) stopTimers() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.writeTimer != nil {
		d.writeTimer.Stop()
		d.writeTimer = nil
	}
}

// nextCheckinDelete starts the first pending checkin deletion unless it
// runs already.
func (g *userGrain) nextCheckinDelete(ctx pcluster.GrainContext) {
	d := g.work
	if d == nil || len(d.ops) == 0 || d.ops[0].started {
		return
	}
	op := d.ops[0]
	op.started = true
	// Only the current checkin's deletion moves the current location: no
	// checkin with op.id is written while op runs, so it cannot become
	// the current one meanwhile.
	wasCurrent := g.current != nil && g.current.ID == op.id
	var listed *persistence.Checkin // known only from the listing loaded on activation
	if e := g.find(op.id); e != nil && e.listed {
		c := e.c
		listed = &c
	}
	var (
		deleted persistence.Checkin
		cur     *persistence.Checkin
		curErr  error
	)
	g.async(ctx, func(c context.Context) error {
		got, err := g.deps.Store.DeleteCheckin(c, g.id, op.id)
		if errors.Is(err, persistence.ErrNotFound) && listed != nil {
			// Listed but not found by id: a write that stopped part way
			// (see entry.listed). Complete it, so that the delete finds
			// every row; no checkin with op.id is written meanwhile.
			if err := g.deps.Store.WriteCheckins(c, []persistence.Checkin{*listed}); err != nil {
				return err
			}
			got, err = g.deps.Store.DeleteCheckin(c, g.id, op.id)
		}
		if err != nil && !errors.Is(err, persistence.ErrNotFound) {
			return err
		}
		deleted = got
		if wasCurrent {
			if x, err := g.deps.Store.CurrentLocation(c, g.id); err == nil {
				cur = &x
			} else if !errors.Is(err, persistence.ErrNotFound) {
				curErr = err
			}
		}
		return err
	}, func(err error) {
		d.ops = d.ops[1:] // d stays the grain's: it holds ops until now
		var reply proto.Message
		switch {
		case err == nil:
			reply = &messages.DeleteCheckinResponse{Checkin: toMsg(deleted)}
		case errors.Is(err, persistence.ErrNotFound):
			reply = toGrainError(newError(ErrNotFound, CodeCheckinNotFound, "user "+g.id+" has no checkin "+op.id))
		case g.leaving:
			reply = toGrainError(g.storeFailed("cannot delete the checkin: the store is unavailable; send the delete again", err))
		default:
			reply = toGrainError(g.storeFailed("cannot delete the checkin: the store is unavailable; the delete is retried in the background, and sending it again is safe", err))
		}
		if err == nil {
			g.lateWrite()
		}
		if err == nil || errors.Is(err, persistence.ErrNotFound) {
			g.dropEntry(op.id)
			switch {
			case g.current == nil:
			case g.current.ID != op.id:
				// A read of the current location started before the
				// delete (reloadCurrent) may name the deleted checkin:
				// a new pointer makes it read again (it compares them).
				c := *g.current
				g.current = &c
			case wasCurrent:
				g.moveCurrentBack(cur, curErr, op.newest)
			default:
				// It became the current location while it was deleted
				// (a load or reloadCurrent read it from the store before
				// the delete), and nothing was read after the delete.
				g.moveCurrentBack(nil, errors.New("the deleted checkin became the current location while it was deleted"), nil)
			}
			d.undeleted = slices.DeleteFunc(d.undeleted, func(id string) bool { return id == op.id })
		} else if !g.leaving { // handed over: see handOver
			if !slices.Contains(d.undeleted, op.id) {
				// Never past maxCheckinDeletes: deleteCheckin counts
				// the ids being deleted with those undeleted.
				d.undeleted = append(d.undeleted, op.id)
			}
			g.scheduleDeleteRetry(ctx)
		}
		for _, w := range op.waiters {
			w.send(ctx, reply)
		}
		g.tidyWork()
		g.touch()
		g.nextCheckinDelete(ctx)
		g.whenIdle(ctx)
	})
}

// scheduleDeleteRetry arranges for the undeleted ids to be deleted again,
// unless that is arranged already: after grain.delete-retry the first
// time, then after twice the previous wait, up to maxStoreRetry. So a
// delete the store failed part way through (on Scylla, some of the
// checkin's rows removed) is completed even when its client gives up, as
// long as the grain lives; and the grain stays until then.
func (g *userGrain) scheduleDeleteRetry(ctx pcluster.GrainContext) {
	if d := g.work; d != nil && len(d.undeleted) > 0 {
		g.scheduleRetry(ctx, &d.timer, &d.wait, g.deps.Config.DeleteRetry, retryDeletes{})
	}
}

// scheduleRetry sends the grain msg after *wait (first, while it is 0)
// and doubles *wait up to maxStoreRetry, unless *timer is set: a retry is
// due already. The wait is drawn from its upper half, so that the grains
// whose writes an outage failed together do not all retry at the same
// moments once it ends.
func (g *userGrain) scheduleRetry(ctx pcluster.GrainContext, timer **time.Timer, wait *time.Duration, first time.Duration, msg any) {
	if *timer != nil {
		return
	}
	w := *wait
	if w == 0 {
		w = first
	}
	*wait = min(2*w, maxStoreRetry)
	root, self := ctx.ActorSystem().Root, g.self
	*timer = time.AfterFunc(w/2+rand.N(w/2+1), func() { root.Send(self, msg) })
}

// retryDeletes queues a delete, with nobody waiting for its answer, of
// every undeleted id not being deleted already.
func (g *userGrain) retryDeletes(ctx pcluster.GrainContext) {
	d := g.work
	if d == nil || d.timer == nil {
		return // a retry that was due as the last id went
	}
	d.timer = nil
	if g.deleting != nil { // the user's deletion takes the checkins along
		g.scheduleDeleteRetry(ctx) // in case it fails
		return
	}
	for _, id := range d.undeleted {
		if d.op(id) != nil {
			continue
		}
		if len(d.ops) >= maxCheckinDeletes {
			g.scheduleDeleteRetry(ctx) // the rest next time
			break
		}
		g.deps.Metrics.deleteRetries.Inc()
		d.ops = append(d.ops, &checkinDeleteOp{id: id})
	}
	g.nextCheckinDelete(ctx)
	g.touch()
}

// scheduleWriteRetry arranges for the unwritten checkins to be written
// again, unless that is arranged already: after grain.write-retry the
// first time, then after twice the previous wait, up to maxStoreRetry. So
// a write the store failed part way through (on Scylla, a checkin listed
// but not found by id, which a delete by id then misses) is completed
// even when its client gives up, as long as the grain lives; and the
// grain stays until then.
func (g *userGrain) scheduleWriteRetry(ctx pcluster.GrainContext) {
	if d := g.work; d != nil && len(d.unwritten) > 0 {
		g.scheduleRetry(ctx, &d.writeTimer, &d.writeWait, g.deps.Config.WriteRetry, retryWrites{})
	}
}

// retryWrites writes every unwritten checkin again, with nobody waiting for
// the answer.
func (g *userGrain) retryWrites(ctx pcluster.GrainContext) {
	d := g.work
	if d == nil || d.writeTimer == nil {
		return // a retry that was due as the last one went
	}
	d.writeTimer = nil
	for _, e := range slices.Clone(d.unwritten) {
		g.deps.Metrics.writeRetries.Inc()
		g.writeAgain(ctx, e)
	}
	g.touch()
}

// writeAgain submits an unwritten checkin to its writer again. The writer
// looks its id up first: the failed write may have stored all of it.
func (g *userGrain) writeAgain(ctx pcluster.GrainContext, e *entry) {
	if d := g.work; d != nil {
		d.unwritten = slices.DeleteFunc(d.unwritten, func(x *entry) bool { return x == e })
	}
	e.unwritten = false
	if e.adopted {
		g.completeListed(ctx, e)
		return
	}
	g.writing++
	if err := g.deps.Writers.submit(ctx, e, true); err != nil {
		g.fail(ctx, e, err, true) // still maybe stored in part
	}
}

// completes reports whether the grain completes a failed write that may
// have stored part of its checkin: not while it deletes its user, nor once
// it was handed over (see dropUnwritten).
func (g *userGrain) completes() bool { return !g.leaving && g.deleting == nil }

// passesOn reports whether the grain, handed over, passes such a write to
// the user's new owner instead (passOn).
func (g *userGrain) passesOn() bool {
	return g.leaving && g.deleting == nil && g.deps.HandOverWrite != nil
}

// unwrite keeps e, whose write failed and may have stored part of it, to
// be written again in the background (see checkinWork.unwritten).
func (g *userGrain) unwrite(ctx pcluster.GrainContext, e *entry) {
	if g.work == nil {
		g.work = &checkinWork{}
	}
	d := g.work
	if len(d.unwritten) == maxUnwritten {
		oldest := d.unwritten[0]
		oldest.unwritten = false
		g.removeEntry(oldest)
		g.forget(idHash(oldest.c.ID)) // it may be stored: a retry of its id is looked up
		d.unwritten = slices.Delete(d.unwritten, 0, 1)
		g.deps.Log.Warn("too many failed checkin writes of one user to complete: the oldest is no longer written again, and may stay stored in part until the client re-sends it",
			zap.String("user_id", g.id), zap.String("checkin_id", oldest.c.ID))
	}
	e.unwritten, e.partial = true, true
	d.unwritten = append(d.unwritten, e)
	g.scheduleWriteRetry(ctx)
}

// dropUnwritten stops completing unwritten checkins, forgets them and
// returns them: the user is being deleted, or the grain was handed over
// (the new owner does not know their ids and may take checkins with them,
// which a late write from here would overwrite; passOn gives them to it).
func (g *userGrain) dropUnwritten() []persistence.Checkin {
	d := g.work
	if d == nil {
		return nil
	}
	dropped := make([]persistence.Checkin, 0, len(d.unwritten))
	for _, e := range d.unwritten {
		e.unwritten = false
		g.removeEntry(e)
		dropped = append(dropped, e.c)
	}
	d.unwritten = nil
	if d.writeTimer != nil {
		d.writeTimer.Stop()
		d.writeTimer = nil
	}
	g.tidyWork()
	return dropped
}

// removeEntry forgets e.
func (g *userGrain) removeEntry(e *entry) {
	for i, x := range g.entries {
		if x.e == e {
			g.entries = slices.Delete(g.entries, i, i+1)
			return
		}
	}
}

// moveCurrentBack sets the current location after the current checkin was
// deleted: the newest of what the store read afterwards (cur, nil when the
// user has no checkin left) and of newest, the newest checkin that became
// durable meanwhile. A failed read (curErr) leaves the grain stale.
func (g *userGrain) moveCurrentBack(cur *persistence.Checkin, curErr error, newest *persistence.Checkin) {
	if curErr != nil {
		g.deps.Log.Warn("current location not read after a checkin delete; reloading the user", zap.String("user_id", g.id), zap.Error(curErr))
		g.stale = true
		g.deps.View.withdraw(g.id)
		return
	}
	if newest != nil && (cur == nil || newest.Newer(*cur)) {
		cur = newest
	}
	g.current = cur
	g.publish()
}

// dropEntry forgets the durable entry of a deleted checkin id. Its hash
// stays known, so a new checkin with the id is looked up in the store,
// which no longer has it.
func (g *userGrain) dropEntry(id string) {
	h := idHash(id)
	for i, x := range g.entries {
		if x.hash == h && x.done && x.e.c.ID == id {
			g.forget(h)
			g.entries = slices.Delete(g.entries, i, i+1)
			return
		}
	}
}

// whenIdle runs what waits for the grain to stop writing: a deletion of
// the user, and the stop of a stale grain or one handed over.
func (g *userGrain) whenIdle(ctx pcluster.GrainContext) {
	g.deleteWhenIdle(ctx)
	if (g.stale || g.leaving) && !g.busy() {
		g.passivate(ctx)
	}
}

// ReceiveDefault takes calls from this node (the generated dispatcher
// takes those from other nodes) and the writers' answers.
func (g *userGrain) ReceiveDefault(ctx pcluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case *localRequest:
		g.serveLocal(ctx, m)
	case *writeResult:
		g.written(ctx, m)
	case passivateNow:
		g.passivate(ctx)
	case retryDeletes:
		g.retryDeletes(ctx)
	case retryWrites:
		g.retryWrites(ctx)
	case *cluster.HandOver:
		g.handOver(ctx)
	case reloadCurrent:
		g.reloadCurrent(ctx, 1)
	}
}

// lateWrite tells the node, once the grain was handed over, that it
// changed what the store holds for its user (Deps.LateWrite).
func (g *userGrain) lateWrite() {
	if g.leaving && g.deps.LateWrite != nil {
		g.deps.LateWrite(g.id)
	}
}

// reloadCurrent asks a grain to read its user's current location from the
// store again (Client.ReloadCurrent).
type reloadCurrent struct{}

// maxReloads bounds the reads of one reloadCurrent whose result this
// grain's own checkins or deletes overtook.
const maxReloads = 3

// reloadCurrent reads the current location from the store again: another
// activation of the user, handed over and still writing what it held,
// changed the store after this one loaded. A result that this grain's own
// checkins or deletes overtook (the current location changed while it
// read) is read again instead of taken.
func (g *userGrain) reloadCurrent(ctx pcluster.GrainContext, attempt int) {
	if g.leaving || !g.loaded || g.user == nil || g.deleting != nil {
		return // nothing loaded yet, or nothing to keep
	}
	// The other activation stored checkins this one does not hold: an id
	// it does not know may be stored, so every client-chosen id is looked
	// up from now on.
	g.known, g.complete = nil, false
	before := g.current
	var cur *persistence.Checkin
	g.async(ctx, func(c context.Context) error {
		x, err := g.deps.Store.CurrentLocation(c, g.id)
		switch {
		case err == nil:
			cur = &x
		case errors.Is(err, persistence.ErrNotFound):
			err = nil // no checkin left
		}
		return err
	}, func(err error) {
		switch {
		case err != nil:
			g.deps.Log.Warn("current location not read again after another activation's late write", zap.String("user_id", g.id), zap.Error(err))
		case g.leaving || g.user == nil || g.deleting != nil:
			// handed over or deleted meanwhile: nothing to keep
		case g.current != before:
			if attempt < maxReloads {
				g.reloadCurrent(ctx, attempt+1)
			}
		default:
			g.current = cur
			g.publish()
		}
	})
}

// handOver takes the grain out of service: another member owns its user
// now, or this one is leaving. Calls it already took (checkins being
// written, deletes) are answered as usual; new ones get errMoved, so that
// their callers ask the new owner; it stops once idle. Its entry in the
// node's view goes at once, so that reads here ask the new owner too.
//
// Deletes it retries in the background stop here (as when its node stops):
// the new owner does not know their ids, so it takes checkins with them,
// and a retry from here could delete one it acknowledged. Deletes callers
// wait for run on and are answered. Checkin writes it completes in the
// background go to the new owner instead (passOn), which writes them
// again only while the store still lists them, in its own order with the
// user's deletes.
func (g *userGrain) handOver(ctx pcluster.GrainContext) {
	if g.leaving {
		return
	}
	g.deps.Metrics.handOvers.Inc()
	g.leaving = true
	g.viewed = false
	g.deps.View.withdraw(g.id)
	g.passOn(ctx, g.dropUnwritten())
	if d := g.work; d != nil {
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
		d.undeleted = nil
		d.ops = slices.DeleteFunc(d.ops, func(op *checkinDeleteOp) bool { return !op.started && len(op.waiters) == 0 })
		g.tidyWork()
	}
	g.whenIdle(ctx)
}

// passivate stops the grain unless it waits for the store (a checkin being
// written, a user being created): stopped then, its callers would wait for
// answers that never come. It stops at once, before any request queued
// behind this message; the mailbox hands those to dead letters, which
// tell their callers to ask again (a new activation answers).
func (g *userGrain) passivate(ctx pcluster.GrainContext) {
	if g.busy() {
		g.deps.idle.resume(g)
		g.touch()
		return
	}
	ctx.Stop(ctx.Self())
}

// serveLocal runs a call from this node as the generated dispatcher runs
// one from another node: answers and errors reach the caller alike.
func (g *userGrain) serveLocal(ctx pcluster.GrainContext, m *localRequest) {
	var (
		res proto.Message
		err error
	)
	switch req := m.req.(type) {
	case *messages.CheckinRequest:
		err = g.checkin(ctx, req, replyTo{box: m.box})
	case *messages.CurrentLocationRequest:
		res, err = g.CurrentLocation(req, ctx)
	case *messages.GetUserRequest:
		res, err = g.GetUser(req, ctx)
	case *messages.CreateUserRequest:
		err = g.CreateUser(req, nil, nil, ctx)
	case *messages.DeleteUserRequest:
		err = g.DeleteUser(req, nil, nil, ctx)
	case *messages.DeleteCheckinRequest:
		err = g.deleteCheckin(ctx, req.GetCheckinId(), replyTo{box: m.box})
	case *messages.CompleteCheckinRequest:
		res, err = g.CompleteCheckin(req, ctx)
	default:
		err = pcluster.NewGrainErrorResponse(pcluster.ErrorReason_INVALID_ARGUMENT, fmt.Sprintf("no user grain method takes %T", m.req))
	}
	switch {
	case err != nil:
		m.box.deliver(pcluster.FromError(err))
	case res != nil:
		m.box.deliver(res)
	}
}

// written takes a writer's answer for one checkin: the entry it was
// submitted with, answered once.
func (g *userGrain) written(ctx pcluster.GrainContext, r *writeResult) {
	defer g.touch()
	e := r.e
	if e.done {
		return
	}
	// A write the store refused changed nothing; any other failure may
	// have stored part of the checkin, which the grain then completes
	// (unless it is deleting its user or was handed over). So may an
	// earlier attempt have, whatever this one says.
	maybe := r.err != nil && (e.partial || !errors.Is(r.err, persistence.ErrNotApplied))
	switch {
	case r.err != nil && (errors.Is(r.err, persistence.ErrUnavailable) || errors.Is(r.err, context.DeadlineExceeded)):
		msg := "the store is unavailable and did not store the checkin; retry with the same id"
		switch {
		case maybe && !e.rewrite && (g.completes() || g.passesOn()):
			// A rewrite of a listed checkin that fails goes back to
			// listed (see fail): the next retry writes it again, not the
			// grain.
			msg = "the store did not confirm the checkin, and may have stored part of it, which the user's grain completes in the background; retry with the same id"
		case maybe:
			msg = "the store did not confirm the checkin, and may have stored part of it; retry with the same id"
		}
		g.fail(ctx, e, newError(ErrUnavailable, CodeUnavailable, msg), maybe)
	case r.err != nil:
		g.fail(ctx, e, errors.New("store write failed: "+r.err.Error()), maybe)
	case r.existing != nil:
		e.c = *r.existing
		g.advance(e.c) // stored already, by an attempt that failed unanswered perhaps
		// Maybe by an attempt that ended after a running checkin delete
		// read the current location back: it must count too.
		g.durableMeanwhile(e.c)
		g.settle(ctx, e, false)
	default:
		g.advance(e.c)
		g.durableMeanwhile(e.c)
		g.lateWrite()
		g.settle(ctx, e, !e.rewrite)
	}
}

// durableMeanwhile tells the running checkin deletion, if any, that c is
// durable: the current location it read back may not hold it.
func (g *userGrain) durableMeanwhile(c persistence.Checkin) {
	if d := g.work; d != nil && len(d.ops) > 0 {
		if op := d.ops[0]; op.started && (op.newest == nil || c.Newer(*op.newest)) {
			op.newest = &c
		}
	}
}

// advance makes c, durable, the current location if it is newer.
func (g *userGrain) advance(c persistence.Checkin) {
	if g.deleting == nil && (g.current == nil || c.Newer(*g.current)) {
		g.current = &c
		g.publish() // before anyone hears of the checkin
	}
}

// settle marks e durable and answers everyone waiting on it; created tells
// whether this write stored e (not found stored already), which is
// answered to the first waiter whose request matches e.
func (g *userGrain) settle(ctx pcluster.GrainContext, e *entry, created bool) {
	e.rewrite = false
	g.markDone(e, true)
	g.writing--
	for _, w := range e.waiters {
		// The first waiter that asked for e as written created it. When
		// e was written again in the background (writeAgain), the
		// waiters are requests that came meanwhile, in any order, and
		// some may name another location.
		first := created && !conflicts(e, w)
		created = created && !first
		g.answer(ctx, e, w, first)
	}
	e.waiters = nil
	g.trim()
	g.tidyWork() // e may have been the last unwritten checkin
	g.whenIdle(ctx)
}

// answer replies to one request for the durable checkin e.
// markDone sets whether e is durable, in e and in its slot.
func (g *userGrain) markDone(e *entry, done bool) {
	e.done = done
	for i := range g.entries {
		if x := &g.entries[i]; x.e == e {
			x.done, x.ms = done, e.c.Timestamp.UnixMilli()
			break
		}
	}
}

// answer answers w with e, or, unless w's request created e, with a
// conflict when the request differs from e.
func (g *userGrain) answer(ctx pcluster.GrainContext, e *entry, w waiter, created bool) {
	if !created && conflicts(e, w) {
		w.to.send(ctx, toGrainError(newError(ErrConflict, CodeCheckinConflict,
			"checkin "+e.c.ID+" was already recorded with a different location or timestamp")))
		return
	}
	w.to.send(ctx, &messages.CheckinResponse{Checkin: toMsg(e.c), Created: created})
}

// conflicts reports whether w's request is a re-sent id with another
// location or timestamp than e.
func conflicts(e *entry, w waiter) bool {
	req := fromMsg(w.req.GetCheckin())
	return req.LocationID != e.c.LocationID || (w.req.GetTimestampSet() && !req.Timestamp.Equal(e.c.Timestamp))
}

// fail passes err to e's waiters. A write that may have stored part of e
// (maybe) is completed in the background while the grain is neither
// deleting its user nor handed over; otherwise e is forgotten, so a retry
// tries again.
func (g *userGrain) fail(ctx pcluster.GrainContext, e *entry, err error, maybe bool) {
	g.writing--
	if e.rewrite {
		// Listed before and still listed: the next retry writes it again.
		e.rewrite, e.listed = false, true
		g.markDone(e, true)
		for _, w := range e.waiters {
			w.to.send(ctx, toGrainError(err))
		}
		e.waiters = nil
		g.whenIdle(ctx)
		return
	}
	switch {
	case maybe && g.completes():
		g.unwrite(ctx, e)
	case maybe && g.passesOn():
		g.removeEntry(e)
		g.passOn(ctx, []persistence.Checkin{e.c})
	default:
		g.removeEntry(e)
		g.tidyWork()
	}
	for _, w := range e.waiters {
		w.to.send(ctx, toGrainError(err))
	}
	e.waiters = nil
	g.whenIdle(ctx)
}

func (g *userGrain) find(id string) *entry {
	h := idHash(id)
	for _, x := range g.entries {
		if x.hash == h && x.e.c.ID == id {
			return x.e
		}
	}
	return nil
}

// trim keeps the pending entries and the RecentIDs newest done ones.
func (g *userGrain) trim() {
	for {
		done, oldest := 0, -1
		for i, x := range g.entries {
			if x.done {
				done++
				if oldest < 0 || x.ms < g.entries[oldest].ms {
					oldest = i
				}
			}
		}
		if done <= g.deps.Config.RecentIDs {
			return
		}
		g.forget(g.entries[oldest].hash)
		g.entries = append(g.entries[:oldest], g.entries[oldest+1:]...)
		if done-1 <= g.deps.Config.RecentIDs { // the usual case: one over
			return
		}
	}
}

// retryDeletes tells a grain to delete its undeleted ids again.
type retryDeletes struct{}

// retryWrites tells a grain to write its unwritten checkins again.
type retryWrites struct{}

// asyncDone carries the outcome of a store call back to the grain.
type asyncDone struct{ err error }

// async runs fn off the actor goroutine with the store deadline and calls
// then on the grain's goroutine with its error, once fn returned: a store
// call that outlives its deadline (a frozen disk does not heed contexts)
// holds the grain's operation until it ends, rather than have the grain
// go on (and then read what fn still writes) while it may still apply.
func (g *userGrain) async(ctx pcluster.GrainContext, fn func(context.Context) error, then func(error)) {
	timeout := g.deps.Config.StoreTimeout
	system := ctx.ActorSystem()
	f := actor.NewFuture(system, -1) // no timeout of its own: fn has one
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		err := fn(c)
		cancel()
		system.Root.Send(f.PID(), asyncDone{err: err})
	}()
	ctx.ReenterAfter(f, func(res interface{}, err error) {
		if d, ok := res.(asyncDone); ok {
			then(d.err)
			return
		}
		then(errors.Join(persistence.ErrUnavailable, err))
	})
}

func userMsg(u persistence.User) *messages.User {
	return &messages.User{Id: u.ID, Name: u.Name, CreatedAtMs: u.CreatedAt.UnixMilli()}
}
