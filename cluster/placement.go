package cluster

import (
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// placement is the identity lookup: it decides which member hosts a
// grain and activates it there, at most once per member.
//
// The owner of an identity is chosen by rendezvous hashing over the
// members that host its kind: every member scores mix(hash(identity) ^
// hash(member address)) and the highest score wins. Members agree on
// the owner whenever they agree on the topology; a member joining or
// leaving moves only the identities it wins or held. The score goes
// through a 64-bit finalizer so members on adjacent ports of one host
// split identities evenly (a plain FNV-1a of identity and address, what
// protoactor's disthash lookup scores with, splits three such members
// about 50/25/25).
//
// The owner keeps its activations in a map guarded by a mutex: a local
// look-up spawns the grain directly (no actor hop, no future); a remote
// one asks the owner's activator actor. Activations are dropped from the
// map when they stop (protoactor publishes ActivationTerminating), in
// constant time, or when they are handed over: when the topology changes,
// grains this member no longer owns get HandOver, and so does every grain
// of a member that leaves, so that the new owner can activate them.
type placement struct {
	c       *pcluster.Cluster
	self    string // this member's address
	timeout time.Duration
	// handOverTimeout: how long a grain handed over may run on (HandOver)
	handOverTimeout time.Duration
	log             *slog.Logger
	ring            atomic.Pointer[ring]

	mu     sync.Mutex
	active map[identityKey]*actor.PID
	props  map[string]*actor.Props // per kind: sets the cluster identity from the actor's name
	seq    uint64

	activator *actor.PID
	sub       *eventstream.Subscription
	stopped   atomic.Bool

	// topoMu orders topology and draining changes: the ring is made of
	// the last members less the draining ones.
	topoMu   sync.Mutex
	members  []*pcluster.Member
	draining map[string]bool // by address
	// handing: activations handed over and not yet stopped, by actor id
	// (guarded by mu)
	handing map[string]handedOver
	// timers: the pending ends of hand-overs (stopLeft); endHandOvers
	// stops them and does their work (guarded by mu)
	timers map[*time.Timer]struct{}
	// remote: other members' activations this member's callers found
	remote *PIDCache
	// lost: the members that left the topology without draining in the
	// last lostMemory, newest last (InheritedFromLost).
	lost atomic.Pointer[[]lostMember]
	// applied, if set before Setup, is called with each topology once
	// the ring and the caches follow it
	applied func(*pcluster.ClusterTopology)
	// predecessorLost: the member last at this member's address left
	// without draining (it died, and this one was started in its place),
	// noted with the first ring that has this member (onTopology)
	predecessorLost atomic.Bool
}

// handedOver is an activation handed over, and when its hand-over ends.
type handedOver struct {
	pid *actor.PID
	end time.Time
}

// lostMember is a member that left the topology without draining: it
// died, or the cluster removed it. Writes its grains had not finished
// are nobody's to complete; the next owner of each of its users may look.
type lostMember struct {
	addr string
	at   time.Time
	ring *ring // the ring while it was a member
}

// lostMemory is how long activations look back for members lost: a user
// whose grain a lost member held is checked when its grain next activates,
// if that is within this time.
const lostMemory = time.Hour

// Draining names the members that are leaving (Node.Stop): they stay
// members, so the calls they hold are answered, but own no grains. The
// membership provider publishes it on the event stream before each
// topology it publishes. A member stays draining for the placement until
// it leaves the topology (its record goes before protoactor drops it, and
// in between it must not own grains again) or a member serving at its
// address registers (a node started again on the same address).
type Draining struct {
	Addresses []string // members whose records say draining
	Serving   []string // members whose records do not
}

var _ pcluster.IdentityLookup = (*placement)(nil)

type identityKey struct{ kind, identity string }

// activatorName is the name of the actor that serves other members'
// activation requests; every member registers it under the same name.
const activatorName = "checkin-placement"

func newPlacement(timeout, handOverTimeout time.Duration, pidCacheSize int) *placement {
	return &placement{timeout: timeout, handOverTimeout: handOverTimeout, active: map[identityKey]*actor.PID{}, props: map[string]*actor.Props{},
		handing: map[string]handedOver{}, timers: map[*time.Timer]struct{}{}, remote: NewPIDCache(pidCacheSize)}
}

// RemotePIDs is the cache of other members' activations this member
// called (callers use it instead of protoactor's, which has no bound).
func (p *placement) RemotePIDs() *PIDCache { return p.remote }

// Setup is called by protoactor when the member starts.
func (p *placement) Setup(c *pcluster.Cluster, kinds []string, _ bool) {
	p.c = c
	p.self = c.ActorSystem.Address()
	p.log = c.Logger()
	p.ring.Store(&ring{})
	for _, k := range kinds {
		if ak := c.GetClusterKind(k); ak != nil {
			p.props[k] = ak.Props.Clone(actor.WithOnInit(setIdentityFromName))
		}
	}
	var err error
	p.activator, err = c.ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(p.receive), activatorName)
	if err != nil {
		panic("cluster: start the placement activator: " + err.Error())
	}
	p.sub = c.ActorSystem.EventStream.Subscribe(func(ev any) {
		switch e := ev.(type) {
		case *pcluster.ClusterTopology:
			p.onTopology(e.Members, nil)
			if p.applied != nil {
				p.applied(e)
			}
		case *Draining:
			p.onTopology(nil, e)
		case *pcluster.ActivationTerminating:
			p.onTerminating(e)
		}
	})
}

// Get returns the PID of the identity's activation on its owner,
// activating it there if needed; nil when no member hosts the kind or the
// owner did not answer within the timeout.
func (p *placement) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	pid, _ := p.activateOn(p.Owner(ci.Kind, ci.Identity), ci, p.timeout)
	return pid
}

// Owner returns the address of the member that owns identity of kind in
// this member's view of the topology; "" when no member hosts the kind.
func (p *placement) Owner(kind, identity string) string {
	return p.ring.Load().owner(kind, identity)
}

// GetFrom is Get for a caller that looked the owner up (Owner) and has
// less time than the cluster's request timeout: it asks owner, waiting at
// most timeout (and never longer than the cluster's request timeout), and
// reports whether the owner answered at all.
func (p *placement) GetFrom(owner string, ci *pcluster.ClusterIdentity, timeout time.Duration) (pid *actor.PID, answered bool) {
	return p.activateOn(owner, ci, min(timeout, p.timeout))
}

// activateOn activates ci on owner (this member or another).
func (p *placement) activateOn(owner string, ci *pcluster.ClusterIdentity, timeout time.Duration) (pid *actor.PID, answered bool) {
	switch owner {
	case "":
		return nil, true
	case p.self:
		return p.activate(ci.Kind, ci.Identity), true
	}
	res, err := p.c.ActorSystem.Root.RequestFuture(actor.NewPID(owner, activatorName),
		&pcluster.ActivationRequest{ClusterIdentity: ci}, timeout).Result()
	if err != nil {
		// A dead letter is no answer either: the owner's endpoint cannot
		// be reached (this node's remote gave up connecting to it, and
		// drops what is sent there), or the owner is stopping and its
		// activator is gone.
		return nil, !errors.Is(err, actor.ErrTimeout) && !errors.Is(err, actor.ErrDeadLetter)
	}
	if r, ok := res.(*pcluster.ActivationResponse); ok && !r.Failed {
		return r.Pid, true
	}
	return nil, true
}

// Active returns the activation of identity on this member, or nil; it
// neither activates nor allocates. Callers on this member use it before
// anything else: the common case of a grain call is a grain that is active
// here.
func (p *placement) Active(kind, identity string) *actor.PID {
	p.mu.Lock()
	pid := p.active[identityKey{kind, identity}]
	p.mu.Unlock()
	return pid
}

// RemovePid forgets an activation a caller found dead.
func (p *placement) RemovePid(ci *pcluster.ClusterIdentity, pid *actor.PID) {
	p.forget(identityKey{ci.Kind, ci.Identity}, pid)
}

// HandOver is what the placement sends an activation this member no
// longer hosts: the topology gave its identity to another member, or this
// member is leaving. The activation should stop as soon as it has answered
// the calls it holds (a checkin being written), and meanwhile answer new
// calls with an answer that makes their callers ask the new owner. Poisoning
// it instead would drop the answers to the calls it holds, and their
// callers would wait out their deadline for a checkin that was written.
// An activation still running Config.HandOverTimeout after it was handed
// over is stopped all the same. Sent only to activations on this member.
type HandOver struct{}

// IgnoreDeadLetterLogging: an activation that stopped just before its
// hand-over is no news.
func (*HandOver) IgnoreDeadLetterLogging() {}

var handOver = &HandOver{}

// leaveDelay is how long a leaving member's activations keep serving after
// it left the membership and before they are handed over, when it leaves
// without draining first (Node.drain): about the time the other members
// take to see it leave (an etcd watch event), so that calls they send
// meanwhile are answered here instead of refused.
const leaveDelay = 250 * time.Millisecond

// Shutdown hands every activation on this member over and returns once
// every activation handed over, by it or before, has stopped: each is
// waited for until its hand-over ends, then stopped. From its start the
// member activates nothing more. protoactor calls it after the member
// left the membership when it leaves gracefully, and may call it more than
// once; Node.Stop calls it for a member alone, which protoactor does not.
func (p *placement) Shutdown() {
	if p.stopped.Swap(true) {
		return
	}
	p.mu.Lock()
	serving := len(p.active) > 0 // none after a drain (Node.Stop)
	p.mu.Unlock()
	if serving && !p.alone() {
		time.Sleep(leaveDelay)
	}
	// Under topoMu: a topology change under way hands its activations
	// over (and arms their timers) before, and none comes after.
	p.topoMu.Lock()
	p.c.ActorSystem.EventStream.Unsubscribe(p.sub)
	p.sendHandOver(p.takeActive(func(identityKey) bool { return true }))
	p.topoMu.Unlock()
	p.endHandOvers()
	p.c.ActorSystem.Root.Stop(p.activator)
}

// alone reports whether the last topology has no member but this one.
func (p *placement) alone() bool {
	p.topoMu.Lock()
	defer p.topoMu.Unlock()
	return !slices.ContainsFunc(p.members, func(m *pcluster.Member) bool { return m.Address() != p.self })
}

// takeActive removes the activations for which move is true from the map
// (so that calls on this member look their owner up again) and returns them.
func (p *placement) takeActive(move func(identityKey) bool) []*actor.PID {
	var pids []*actor.PID
	kinds := map[string]int{}
	end := time.Now().Add(p.handOverTimeout)
	p.mu.Lock()
	for key, pid := range p.active {
		if move(key) {
			pids = append(pids, pid)
			delete(p.active, key)
			p.handing[pid.Id] = handedOver{pid: pid, end: end}
			kinds[key.kind]++
		}
	}
	p.mu.Unlock()
	for kind, n := range kinds {
		if ak := p.c.GetClusterKind(kind); ak != nil {
			for range n {
				ak.Dec()
			}
		}
	}
	return pids
}

// handOver sends pids (taken by takeActive) HandOver and, in the
// background, stops those still running when their hand-over ends.
func (p *placement) handOver(pids []*actor.PID) {
	if len(pids) == 0 {
		return
	}
	p.sendHandOver(pids)
	p.mu.Lock()
	defer p.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(p.handOverTimeout, func() { // not before t is set: it takes mu
		p.mu.Lock()
		_, pending := p.timers[t]
		delete(p.timers, t)
		p.mu.Unlock()
		if pending { // else endHandOvers ended these hand-overs
			p.stopLeft(pids, false)
		}
	})
	p.timers[t] = struct{}{}
}

func (p *placement) sendHandOver(pids []*actor.PID) {
	for _, pid := range pids {
		p.c.ActorSystem.Root.Send(pid, handOver)
	}
}

// endHandOvers waits for every activation handed over to stop, each until
// its hand-over ends, stops those still running then and waits for them
// too; it takes the pending timers' work over. It reports whether every
// one stopped.
func (p *placement) endHandOvers() bool {
	p.mu.Lock()
	for t := range p.timers {
		t.Stop()
	}
	clear(p.timers)
	handing := make([]handedOver, 0, len(p.handing))
	for _, h := range p.handing {
		handing = append(handing, h)
	}
	p.mu.Unlock()
	system := p.c.ActorSystem
	futures := make([]*actor.Future, len(handing))
	for i, h := range handing {
		futures[i] = actor.NewFuture(system, max(time.Until(h.end), 0))
		// A stopped one (the dead-letter process) answers Terminated too.
		proc, _ := system.ProcessRegistry.Get(h.pid)
		proc.SendSystemMessage(h.pid, &actor.Watch{Watcher: futures[i].PID()})
	}
	var left []*actor.PID
	for i, f := range futures {
		if f.Wait() != nil { // the hand-over ended first
			left = append(left, handing[i].pid)
		}
	}
	p.stopLeft(left, true)
	for _, pid := range left {
		if _, alive := system.ProcessRegistry.Get(pid); alive {
			return false
		}
	}
	return true
}

// stopLeft stops those of pids whose hand-over ended that still run; with
// wait it returns once they stopped (or a stop's own timeout passed).
func (p *placement) stopLeft(pids []*actor.PID, wait bool) {
	var stopping []*actor.Future
	left := 0
	for _, pid := range pids {
		if _, alive := p.c.ActorSystem.ProcessRegistry.Get(pid); alive {
			if wait {
				stopping = append(stopping, p.c.ActorSystem.Root.StopFuture(pid))
			} else {
				p.c.ActorSystem.Root.Stop(pid)
			}
			left++
		}
	}
	if left > 0 {
		p.log.Warn("placement: activations still running at the end of their hand-over; stopped", slog.Int("activations", left), slog.Duration("timeout", p.handOverTimeout))
	}
	for _, f := range stopping {
		_ = f.Wait()
	}
}

// activate returns the local activation of identity, spawning it if there
// is none; nil for a kind this member does not host, or an identity it
// does not own by its topology as it is now. Callers (this member's, or
// another member's through the activator) chose this member by a topology
// that may have changed since: checked under mu, which a change's
// takeActive also takes after storing its ring, an activation either
// exists before the change hands it over or is refused, and is never
// left running here, unknown to the owner, after a change passed it by.
func (p *placement) activate(kind, identity string) *actor.PID {
	key := identityKey{kind, identity}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pid := p.active[key]; pid != nil {
		return pid
	}
	if p.stopped.Load() { // leaving: the next owner activates it
		return nil
	}
	if p.ring.Load().owner(kind, identity) != p.self {
		return nil
	}
	props := p.props[kind]
	if props == nil {
		return nil
	}
	p.seq++
	pid, err := p.c.ActorSystem.Root.SpawnNamed(props, activationName(kind, identity, p.seq))
	if err != nil {
		p.log.Error("placement: spawn failed", slog.String("kind", kind), slog.String("identity", identity), slog.Any("error", err))
		return nil
	}
	if ak := p.c.GetClusterKind(kind); ak != nil {
		ak.Inc()
	}
	p.active[key] = pid
	return pid
}

// onTerminating drops a stopped activation from the map, or from those
// being handed over, in one step: a topology change between two steps
// would move it from the one to the other after the first looked, and
// leave it among those handed over for good (every later drain would wait
// for it).
func (p *placement) onTerminating(e *pcluster.ActivationTerminating) {
	if e.Pid == nil {
		return
	}
	p.mu.Lock()
	delete(p.handing, e.Pid.Id)
	var key identityKey
	found := false
	if e.ClusterIdentity != nil {
		key = identityKey{e.ClusterIdentity.Kind, e.ClusterIdentity.Identity}
		found = p.dropLocked(key, e.Pid)
	}
	p.mu.Unlock()
	p.dropped(key, found)
}

// forget removes key's activation if it is pid.
func (p *placement) forget(key identityKey, pid *actor.PID) {
	p.mu.Lock()
	found := p.dropLocked(key, pid)
	p.mu.Unlock()
	p.dropped(key, found)
}

// dropLocked removes key's activation if it is pid, and reports whether
// it did. p.mu is held.
func (p *placement) dropLocked(key identityKey, pid *actor.PID) bool {
	cur := p.active[key]
	found := cur != nil && cur.Equal(pid)
	if found {
		delete(p.active, key)
	}
	return found
}

// dropped counts an activation dropped by dropLocked (found) out of its
// kind.
func (p *placement) dropped(key identityKey, found bool) {
	if ak := p.c.GetClusterKind(key.kind); found && ak != nil {
		ak.Dec()
	}
}

// onTopology installs new members, or a new set of draining members, and
// hands over the activations this member no longer owns (they stop in the
// background once they answered the calls they hold; the new owner
// activates them on their next call).
func (p *placement) onTopology(members []*pcluster.Member, d *Draining) {
	p.topoMu.Lock()
	defer p.topoMu.Unlock()
	if members != nil {
		p.noteLost(members)
		for _, m := range p.members {
			// By id: a member started again at the address of one that
			// died is another process, whose activations have other names.
			if !slices.ContainsFunc(members, func(n *pcluster.Member) bool { return n.Id == m.Id }) {
				p.remote.removeAddress(m.Address()) // it left
			}
		}
		p.members = members
	}
	if p.draining == nil {
		p.draining = map[string]bool{}
	}
	if d != nil {
		for _, a := range d.Addresses {
			if i := slices.IndexFunc(p.members, func(m *pcluster.Member) bool { return m.Address() == a }); i >= 0 && !p.draining[a] {
				// Calls go to the new owners from now on, not to the
				// draining member's activations callers found before.
				p.c.PidCache.RemoveByMember(p.members[i])
				p.remote.removeAddress(a)
			}
			p.draining[a] = true
		}
		for _, a := range d.Serving {
			delete(p.draining, a)
		}
	}
	if members != nil {
		for a := range p.draining {
			if !slices.ContainsFunc(members, func(m *pcluster.Member) bool { return m.Address() == a }) {
				delete(p.draining, a) // it left
			}
		}
	}
	serving := make([]*pcluster.Member, 0, len(p.members))
	for _, m := range p.members {
		if !p.draining[m.Address()] {
			serving = append(serving, m)
		}
	}
	r := newRing(serving)
	p.ring.Store(r)
	if p.predecessorLost.Load() && slices.ContainsFunc(serving, func(m *pcluster.Member) bool { return m.Address() == p.self }) &&
		p.predecessorLost.CompareAndSwap(true, false) {
		// It owned what this member owns now (the same address, the same
		// place on the ring), as far as the rest of the cluster is alike.
		lost := append(slices.Clone(p.lostMembers()), lostMember{addr: p.self, at: time.Now(), ring: r})
		p.lost.Store(&lost)
		p.log.Warn("placement: the member last at this address left without draining; its users' grains look for checkins it left in part as they activate")
	}
	moved := p.takeActive(func(key identityKey) bool { return r.owner(key.kind, key.identity) != p.self })
	if len(moved) > 0 {
		p.log.Info("placement: handing over activations", slog.Int("activations", len(moved)),
			slog.Int("members", len(p.members)), slog.Int("draining", len(p.draining)))
		p.handOver(moved)
	}
}

// lostMembers returns the members lost lately (p.lost).
func (p *placement) lostMembers() []lostMember {
	if l := p.lost.Load(); l != nil {
		return *l
	}
	return nil
}

// noteLost remembers the members of the last topology that are not in
// members and were not draining (topoMu held, before the topology and the
// draining set are updated).
func (p *placement) noteLost(members []*pcluster.Member) {
	now := time.Now()
	var lost []lostMember
	for _, m := range p.lostMembers() {
		if now.Sub(m.at) < lostMemory {
			lost = append(lost, m)
		}
	}
	before := len(lost)
	old := p.ring.Load()
	for _, m := range p.members {
		addr := m.Address()
		if addr != p.self && !p.draining[addr] && !slices.ContainsFunc(members, func(n *pcluster.Member) bool { return n.Address() == addr }) {
			lost = append(lost, lostMember{addr: addr, at: now, ring: old})
		}
	}
	if len(lost) > before {
		p.log.Warn("placement: a member left without draining; its users' grains look for checkins it left in part as they activate",
			slog.Int("members_lost", len(lost)-before))
	}
	p.lost.Store(&lost)
}

// InheritedFromLost reports whether the owner of identity of kind was, in
// the last lostMemory, a member that left without draining (it died, or
// the cluster removed it): its grain may have left writes unfinished.
func (p *placement) InheritedFromLost(kind, identity string) bool {
	now := time.Now()
	for _, m := range p.lostMembers() {
		if now.Sub(m.at) < lostMemory && m.ring.owner(kind, identity) == m.addr {
			return true
		}
	}
	return false
}

// drained reports whether this member drained: it waits up to see for it
// to own no grains in its own view (it saw itself draining), then for
// every activation it handed over to stop, each until its hand-over ends
// (from when this member saw the change, however late), and stops those
// still running then (endHandOvers).
func (p *placement) drained(see time.Duration) bool {
	deadline := time.Now().Add(see)
	for {
		owns := false
		for _, ms := range p.ring.Load().byKind {
			for _, m := range ms {
				owns = owns || m.addr == p.self
			}
		}
		p.mu.Lock()
		done := !owns && len(p.active) == 0
		p.mu.Unlock()
		if done {
			return p.endHandOvers()
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receive serves activation requests from other members.
func (p *placement) receive(ctx actor.Context) {
	req, ok := ctx.Message().(*pcluster.ActivationRequest)
	if !ok || req.ClusterIdentity == nil {
		return
	}
	ci := req.ClusterIdentity
	// The requester computed the owner from its topology; activate
	// activates only what this member owns by its own, so that members
	// that disagree during a change do not activate one identity twice.
	pid := p.activate(ci.Kind, ci.Identity)
	ctx.Respond(&pcluster.ActivationResponse{Pid: pid, Failed: pid == nil})
}

// activationName is the actor name of an activation: kind, identity and a
// sequence number, so that the identity can be read back from the name
// (each activation shares its kind's props instead of cloning them).
func activationName(kind, identity string, seq uint64) string {
	return kind + "/" + identity + "$" + strconv.FormatUint(seq, 36)
}

func setIdentityFromName(ctx actor.Context) {
	if ci := identityFromName(ctx.Self().Id); ci != nil {
		pcluster.SetClusterIdentity(ctx, ci)
	}
}

// identityFromName reads the cluster identity back from an activation's
// name; nil when the name is not one activationName made.
func identityFromName(name string) *pcluster.ClusterIdentity {
	slash, dollar := strings.IndexByte(name, '/'), strings.LastIndexByte(name, '$')
	if slash < 0 || dollar < slash {
		return nil
	}
	return pcluster.NewClusterIdentity(name[slash+1:dollar], name[:slash])
}

// ring is one topology's members, by kind, for rendezvous hashing.
type ring struct {
	byKind map[string][]ringMember
}

type ringMember struct {
	addr string
	seed uint64 // hash of addr
}

func newRing(members []*pcluster.Member) *ring {
	r := &ring{byKind: map[string][]ringMember{}}
	for _, m := range members {
		addr := m.Address()
		for _, k := range m.Kinds {
			r.byKind[k] = append(r.byKind[k], ringMember{addr: addr, seed: mix64(fnv64(addr))})
		}
	}
	for _, ms := range r.byKind { // every member orders alike, so ties break alike
		slices.SortFunc(ms, func(a, b ringMember) int { return strings.Compare(a.addr, b.addr) })
	}
	return r
}

// owner returns the address of the member that hosts identity of kind, or
// "" when no member hosts kind.
func (r *ring) owner(kind, identity string) string {
	ms := r.byKind[kind]
	switch len(ms) {
	case 0:
		return ""
	case 1:
		return ms[0].addr
	}
	h := fnv64(identity)
	best, bestScore := 0, uint64(0)
	for i, m := range ms {
		if s := mix64(h ^ m.seed); s > bestScore || i == 0 {
			best, bestScore = i, s
		}
	}
	return ms[best].addr
}

// fnv64 is 64-bit FNV-1a.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: every input bit flips about half the
// output bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
