package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/checkin/checkin/cluster"
	"github.com/checkin/checkin/messages"
)

// caller makes typed grain calls the way the generated grain client does
// (a cluster.GrainRequest carrying the marshalled request, answered by the
// grain's generated dispatcher), but waits for the answer in a pooled reply
// box instead of a protoactor future. A future costs a process-registry
// entry, a timer and a context per call, and the grain's actor keeps the
// last sender it saw, so the future of each grain's last call stayed on
// the heap: at 10k active users that was the largest share of the live
// objects the GC marks.
//
// A box is registered once under a fixed id and reused: it serves one call
// at a time. A box whose call timed out may still receive the late answer,
// so it is retired (unregistered; the late answer goes to dead letters)
// instead of reused.
type caller struct {
	system  *actor.ActorSystem
	cluster *pcluster.Cluster
	active  activeLookup       // nil when the identity lookup has no local fast path
	pids    pidCache           // other members' activations called
	free    chan *replyBox     // idle boxes; beyond its capacity boxes are retired
	local   prometheus.Counter // calls to grains on this node
	remote  prometheus.Counter // calls forwarded to the grain's owner
	moved   prometheus.Counter // calls answered errMoved
	silent  *breakers          // other members that stopped answering
}

// boxSeq numbers the reply boxes of the process: their ids are unique in
// the actor system's registry whatever number of clients share it.
var boxSeq atomic.Uint64

// maxIdleBoxes bounds the boxes kept for reuse: about the grain calls in
// flight at once on a busy node.
const maxIdleBoxes = 8192

// pidCache holds the PIDs of other members' activations this member
// called: the placement's bounded cache (cluster.PIDCache), else
// protoactor's.
type pidCache interface {
	Get(identity, kind string) (*actor.PID, bool)
	Set(identity, kind string, pid *actor.PID)
	RemoveByValue(identity, kind string, pid *actor.PID)
}

// activeLookup is the local fast path of the cluster's identity lookup
// (cluster's placement has it): the activation of an identity on this
// member, if any, found without allocating.
type activeLookup interface {
	Active(kind, identity string) *actor.PID
}

func newCaller(c *pcluster.Cluster, m *Metrics, breaker BreakerConfig, log *zap.Logger) *caller {
	active, _ := c.IdentityLookup.(activeLookup)
	var pids pidCache = c.PidCache
	if l, ok := c.IdentityLookup.(interface{ RemotePIDs() *cluster.PIDCache }); ok {
		pids = l.RemotePIDs()
	}
	return &caller{system: c.ActorSystem, cluster: c, active: active, pids: pids, free: make(chan *replyBox, maxIdleBoxes),
		local: m.served.WithLabelValues(servedLocal), remote: m.served.WithLabelValues(servedRemote), moved: m.moved,
		silent: newBreakers(breaker, log, m.failedFast)}
}

// replyBox is the actor.Process grains answer to.
type replyBox struct {
	pid *actor.PID
	// ch gets the answer and, from timer, the end of the call's time
	// (expired). Capacity 2: a timer that fires as the answer arrives
	// still finds room, and call reads both before the box is reused.
	ch    chan any
	timer *time.Timer // calls expire when it fires
}

// expired is what a reply box's timer delivers: the call ran out of time.
type expired struct{}

var _ actor.Process = (*replyBox)(nil)

func (b *replyBox) SendUserMessage(_ *actor.PID, m any) {
	_, msg, _ := actor.UnwrapEnvelope(m)
	b.deliver(msg)
}

// deliver hands the answer to the waiting caller. Grains on this node call
// it directly (replyTo), skipping the process registry.
func (b *replyBox) deliver(msg any) {
	select {
	case b.ch <- msg:
	default: // a second answer to one call: not expected, dropped
	}
}

func (b *replyBox) SendSystemMessage(_ *actor.PID, m any) { b.SendUserMessage(nil, m) }
func (b *replyBox) Stop(*actor.PID)                       {}

func (c *caller) box() *replyBox {
	select {
	case b := <-c.free:
		return b
	default:
	}
	b := &replyBox{ch: make(chan any, 2)}
	b.timer = time.AfterFunc(time.Hour, func() { b.deliver(expired{}) })
	b.timer.Stop()
	id := "checkin-reply-" + strconv.FormatUint(boxSeq.Add(1), 36)
	pid, ok := c.system.ProcessRegistry.Add(b, id)
	if !ok { // the id is taken: cannot happen, boxSeq is the process's
		panic("actors: reply box id " + id + " already registered")
	}
	b.pid = pid
	return b
}

func (c *caller) release(b *replyBox) {
	if len(b.ch) != 0 { // an unread answer: not expected; never reuse such a box
		c.retire(b)
		return
	}
	select {
	case c.free <- b:
	default:
		c.retire(b)
	}
}

func (c *caller) retire(b *replyBox) { c.system.ProcessRegistry.Remove(b.pid) }

// localRequest is a grain call to an activation on this node: the typed
// request as is, where a call to another node carries it marshalled in a
// cluster.GrainRequest. The grain's answer is the same either way. The
// request is not copied: the grain may keep it and the strings it holds
// (a checkin's id and location) past the call, so callers build a new one
// per call from strings that stay unchanged.
type localRequest struct {
	req proto.Message
	box *replyBox // where the grain answers
}

// placementBackoff is the wait before attempt n+1 of a call that found no
// placement, times n.
const placementBackoff = 20 * time.Millisecond

// errCallTimeout reports a grain that did not answer in time.
var errCallTimeout = errors.New("no answer within the call timeout")

// call sends req to the grain identity of kind as method and returns the
// grain's answer (a proto message or a *cluster.GrainErrorResponse).
// Messages to a grain that stopped in between (dead letters) or was
// handed over to another member (errMoved) and calls that found no
// placement are retried, up to attempts times in all, within
// the timeout.
//
// coming, if not nil, counts the call while it is in progress with a grain
// on this node (the writer pool's checkins on their way): from its start,
// so that a call whose grain is being activated here counts too, until it
// turns out to go to another member.
func (c *caller) call(ctx context.Context, identity, kind string, method int32, req proto.Message, timeout time.Duration, attempts int, coming *atomic.Int64) (any, error) {
	var remote *pcluster.GrainRequest // marshalled once, for the first remote attempt
	counted := coming != nil
	if counted {
		coming.Add(1)
	}
	defer func() {
		if counted {
			coming.Add(-1)
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil, errCallTimeout
	}
	deadline := time.Now().Add(timeout)
	b := c.box()
	local := &localRequest{req: req, box: b}
	for attempt := 1; ; attempt++ {
		pid, err := c.pid(identity, kind, deadline)
		if err != nil {
			c.release(b)
			return nil, err
		}
		if pid == nil { // no member could activate it (the topology may be changing)
			if wait := time.Duration(attempt) * placementBackoff; attempt < attempts && time.Until(deadline) > wait {
				time.Sleep(wait)
				continue
			}
			c.release(b)
			return nil, fmt.Errorf("no placement for %s/%s after %d attempts", kind, identity, attempt)
		}
		var msg any = local
		served := c.local
		isRemote := pid.Address != c.system.Address()
		if !isRemote {
			if coming != nil && !counted {
				coming.Add(1)
				counted = true
			}
		} else {
			if counted {
				coming.Add(-1)
				counted = false
			}
			if !c.silent.allow(pid.Address, time.Now(), deadline) {
				c.release(b)
				return nil, errMemberSilent
			}
			served = c.remote
			if remote == nil {
				data, err := proto.Marshal(req)
				if err != nil {
					c.release(b)
					return nil, err
				}
				remote = &pcluster.GrainRequest{MethodIndex: method, MessageData: data}
			}
			msg = remote
		}
		c.system.Root.RequestWithCustomSender(pid, msg, b.pid)
		// Counted once sent, not before: a local request is then in the
		// grain's mailbox, so whoever sees the count (tests wait on it
		// before sending the next request) knows that a request sent
		// after it is served after it.
		served.Inc()
		b.timer.Reset(time.Until(deadline))
		// A context that can be cancelled needs a select; the edge's
		// usual one cannot, and one channel is cheaper to wait on.
		var res any
		if done := ctx.Done(); done == nil {
			res = <-b.ch
		} else {
			select {
			case res = <-b.ch:
			case <-done:
				b.timer.Stop()
				c.retire(b)
				return nil, ctx.Err()
			}
		}
		if _, timedOut := res.(expired); timedOut {
			// A silent grain on another member may have moved: ask again
			// next time. A local one stays: it is alive and slow (forgetting
			// it would let a second activation of the identity start here).
			c.pids.RemoveByValue(identity, kind, pid)
			c.retire(b) // the answer may still come
			if isRemote {
				c.silent.timedOut(pid.Address, time.Now())
			}
			return nil, errCallTimeout
		}
		if !b.timer.Stop() {
			<-b.ch // the timer fired as the answer came: take its expired
		}
		if isRemote {
			c.silent.answered(pid.Address)
		}
		// A grain that stopped (dead letter) or was handed over to
		// another member (moved): ask the owner again.
		moved := isMoved(res)
		if _, dead := res.(*actor.DeadLetterResponse); dead || moved {
			c.forget(identity, kind, pid)
			if moved {
				c.moved.Inc()
				c.awaitNewOwner(identity, kind, pid.Address, deadline)
			}
			if attempt < attempts && time.Now().Before(deadline) {
				continue
			}
			c.release(b)
			return nil, fmt.Errorf("grain %s/%s is gone (%d attempts)", kind, identity, attempt)
		}
		c.release(b)
		return res, nil
	}
}

// pid returns the grain's PID: its activation on this member, else the
// cluster's cache of other members' activations, else it activates it
// through the identity lookup. Only PIDs on other members are cached: each
// cache entry keeps a key string of its own, which for local activations
// was an object per grain for the GC to mark, beside the placement's entry.
// Through this module's placement (ownerLookup) the owner is known before
// it is asked: a member that stopped answering is not asked
// (errMemberSilent), the question waits no longer than deadline, and its
// answer or silence counts for the member's breaker; an owner that did not
// answer is errOwnerSilent.
func (c *caller) pid(identity, kind string, deadline time.Time) (*actor.PID, error) {
	if c.active != nil {
		if pid := c.active.Active(kind, identity); pid != nil {
			return pid, nil
		}
	}
	if pid, ok := c.pids.Get(identity, kind); ok && pid != nil {
		return pid, nil
	}
	// The identity is kept by the placement and the activation: a copy,
	// since callers may pass strings that live in a request's buffer.
	id := strings.Clone(identity)
	var pid *actor.PID
	if l, ok := c.cluster.IdentityLookup.(ownerLookup); ok {
		owner := l.Owner(kind, id)
		remote := owner != "" && owner != c.system.Address()
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, errCallTimeout
		}
		if remote && !c.silent.allow(owner, time.Now(), deadline) {
			return nil, errMemberSilent
		}
		var answered bool
		pid, answered = l.GetFrom(owner, pcluster.NewClusterIdentity(id, kind), wait)
		switch {
		case !remote:
		case answered:
			c.silent.answered(owner)
		default:
			c.silent.timedOut(owner, time.Now())
			return nil, errOwnerSilent
		}
	} else {
		pid = c.cluster.Get(id, kind)
	}
	if pid != nil && (c.active == nil || pid.Address != c.system.Address()) {
		c.pids.Set(identity, kind, pid)
	}
	return pid, nil
}

// movedWait bounds how long a call whose grain was handed over waits for
// this member to see the identity's new owner.
const movedWait = time.Second

// awaitNewOwner waits, up to movedWait and deadline, until this member's
// view of the topology no longer makes addr the owner of identity. A grain
// is handed over when its member sees the topology change (a member
// joined, or it drains); the caller's member sees the change about then,
// and asking before it does would only ask addr again.
func (c *caller) awaitNewOwner(identity, kind, addr string, deadline time.Time) {
	l, ok := c.cluster.IdentityLookup.(ownerLookup)
	if !ok {
		return
	}
	until := time.Now().Add(movedWait)
	if deadline.Before(until) {
		until = deadline
	}
	for l.Owner(kind, identity) == addr && time.Now().Before(until) {
		time.Sleep(5 * time.Millisecond)
	}
}

// ownerLookup is the identity lookup of package cluster, which places
// grains by a hash of the topology each member holds: the owner of an
// identity is known without asking anyone.
type ownerLookup interface {
	Owner(kind, identity string) string
	GetFrom(owner string, ci *pcluster.ClusterIdentity, timeout time.Duration) (pid *actor.PID, answered bool)
}

// errOwnerSilent is the error of a call whose grain's owner did not answer
// the request to activate it in time: the call itself was not sent.
var errOwnerSilent = errors.New("the node that holds this user did not answer in time; the request was not sent: retry shortly")

// forget drops pid, found dead (its process is gone), wherever pid found
// it; the placement forgets a local one only if it is still the identity's
// activation.
func (c *caller) forget(identity, kind string, pid *actor.PID) {
	if c.active != nil && pid.Address == c.system.Address() {
		c.cluster.IdentityLookup.RemovePid(pcluster.NewClusterIdentity(identity, kind), pid)
		return
	}
	c.pids.RemoveByValue(identity, kind, pid)
}

// methodIndex is the index protoc-gen-go-grain gives method of service: its
// position in the service definition.
func methodIndex(service, method protoreflect.Name) int32 {
	s := messages.File_checkin_proto.Services().ByName(service)
	if s == nil {
		panic("actors: no service " + string(service))
	}
	m := s.Methods().ByName(method)
	if m == nil {
		panic("actors: no method " + string(service) + "." + string(method))
	}
	return int32(m.Index())
}

var (
	methodCreateUser      = methodIndex("UserGrain", "CreateUser")
	methodGetUser         = methodIndex("UserGrain", "GetUser")
	methodDeleteUser      = methodIndex("UserGrain", "DeleteUser")
	methodDeleteCheckin   = methodIndex("UserGrain", "DeleteCheckin")
	methodCheckin         = methodIndex("UserGrain", "Checkin")
	methodCurrentLocation = methodIndex("UserGrain", "CurrentLocation")
	methodCompleteCheckin = methodIndex("UserGrain", "CompleteCheckin")
)

// UserGrainKind is the kind the generated code registers user grains as.
const UserGrainKind = "UserGrain"

// callUser calls method of user grain id and returns its answer as R.
func callUser[R proto.Message](cl *Client, ctx context.Context, id string, method int32, req proto.Message) (R, error) {
	var zero R
	var coming *atomic.Int64
	if method == methodCheckin && cl.writers != nil {
		coming = &cl.writers.coming
	}
	res, err := cl.caller.call(ctx, id, UserGrainKind, method, req, cl.timeout, cl.retries, coming)
	if err != nil {
		return zero, err
	}
	switch m := res.(type) {
	case R:
		return m, nil
	case *pcluster.GrainErrorResponse:
		return zero, m
	case error:
		return zero, m
	default:
		return zero, fmt.Errorf("unexpected answer %T from user grain", res)
	}
}
