package cluster

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.uber.org/zap"
)

// A real one-member cluster: the placement activates an identity once
// however many callers ask at the same time, gives the grain its identity,
// forgets an activation when it stops, and activates it anew afterwards.
func TestPlacementActivatesOnceAndForgetsStopped(t *testing.T) {
	var inits atomic.Int64
	seen := make(chan string, 16)
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			inits.Add(1)
			if ci := pcluster.GetClusterIdentity(ctx); ci != nil {
				seen <- ci.Kind + "/" + ci.Identity
			}
		}
	}))
	n, lookup := startOneMember(t, kind)
	ci := pcluster.NewClusterIdentity("user/with$odd/chars", "Probe")

	var wg sync.WaitGroup
	pids := make([]*actor.PID, 32)
	for i := range pids {
		wg.Go(func() { pids[i] = lookup.Get(ci) })
	}
	wg.Wait()
	for _, pid := range pids {
		if pid == nil || !pid.Equal(pids[0]) {
			t.Fatalf("concurrent look-ups returned %v and %v, want one activation", pids[0], pid)
		}
	}
	select {
	case got := <-seen:
		if got != "Probe/user/with$odd/chars" {
			t.Fatalf("the grain sees identity %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the grain did not start")
	}
	if got := n.Cluster.GetClusterKind("Probe").Count(); got != 1 {
		t.Errorf("kind count %d after one activation, want 1", got)
	}
	if got := lookup.Active("Probe", ci.Identity); got == nil || !got.Equal(pids[0]) {
		t.Errorf("Active returned %v, want the activation %v", got, pids[0])
	}
	if got := lookup.Active("Probe", "never-activated"); got != nil {
		t.Errorf("Active returned %v for an identity never activated", got)
	}
	if got := lookup.Get(pcluster.NewClusterIdentity("x", "Unknown")); got != nil {
		t.Errorf("a kind no member hosts was activated as %v", got)
	}

	if err := n.System.Root.PoisonFuture(pids[0]).Wait(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopped activation to be no longer counted", 5*time.Second, func() bool {
		return n.Cluster.GetClusterKind("Probe").Count() == 0
	})
	if got := lookup.Active("Probe", ci.Identity); got != nil {
		t.Errorf("Active returned %v after the activation stopped", got)
	}
	again := lookup.Get(ci)
	if again == nil || again.Equal(pids[0]) {
		t.Fatalf("after the grain stopped, Get returned %v (the old activation was %v)", again, pids[0])
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the new activation did not start")
	}
	if got := inits.Load(); got != 2 {
		t.Errorf("%d activations in all, want 2", got)
	}
}

// startOneMember starts a one-member cluster with the default settings,
// hosting kind, stopped when the test ends, and returns it with its
// placement.
func startOneMember(t *testing.T, kind *pcluster.Kind) (*Node, *placement) {
	t.Helper()
	return startMemberWith(t, DefaultConfig(), kind)
}

// startMemberWith is startOneMember with the settings of cfg.
func startMemberWith(t *testing.T, cfg Config, kind *pcluster.Kind) (*Node, *placement) {
	t.Helper()
	log := zap.NewNop()
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n, n.Cluster.Config.IdentityLookup.(*placement)
}

// An activation the topology gives to another member is handed over, not
// stopped: it leaves the map at once (callers here look its owner up
// again), gets HandOver, and runs on until it stops by itself (a grain
// answering the calls it holds); one that never stops is stopped when the
// hand-over timeout ends.
func TestPlacementHandsActivationsOver(t *testing.T) {
	handed := make(chan *actor.PID, 4)
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*HandOver); ok {
			handed <- ctx.Self() // and keeps running: it holds a call
		}
	}))
	cfg := DefaultConfig()
	// The moved activation must still run when the test looks, after it
	// got HandOver: a hand-over timeout that a loaded machine does not
	// outlast between the topology change and the look (with 500 ms, a
	// test held up that long found it stopped, as if stopped at once).
	cfg.HandOverTimeout = 3 * time.Second
	n, p := startMemberWith(t, cfg, kind)

	self, other := selfAndOther(t, p)
	both := newRing([]*pcluster.Member{self, other})
	var movedID, keptID string
	for i := 0; movedID == "" || keptID == ""; i++ {
		id := "u" + strconv.Itoa(i)
		if both.owner("Probe", id) == other.Address() {
			movedID = id
		} else {
			keptID = id
		}
	}
	moved := p.Get(pcluster.NewClusterIdentity(movedID, "Probe"))
	kept := p.Get(pcluster.NewClusterIdentity(keptID, "Probe"))
	if moved == nil || kept == nil {
		t.Fatal("no activation")
	}

	p.onTopology([]*pcluster.Member{self, other}, nil)
	if got := p.Active("Probe", movedID); got != nil {
		t.Errorf("the moved activation is still found here: %v", got)
	}
	if got := p.Active("Probe", keptID); got == nil || !got.Equal(kept) {
		t.Errorf("the activation this member still owns is %v, want %v", got, kept)
	}
	if got := n.Cluster.GetClusterKind("Probe").Count(); got != 1 {
		t.Errorf("kind count %d after the hand-over, want 1", got)
	}
	select {
	case pid := <-handed:
		if !pid.Equal(moved) {
			t.Errorf("HandOver reached %v, want the moved activation %v", pid, moved)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the moved activation got no HandOver")
	}
	if _, alive := n.System.ProcessRegistry.Get(moved); !alive {
		t.Fatal("the moved activation was stopped at once: the calls it holds would get no answer")
	}
	if p.drained(0) {
		t.Error("drained with an activation still handing over")
	}
	waitUntil(t, "the activation that never stops is stopped at the end of its hand-over", 20*time.Second, func() bool {
		_, alive := n.System.ProcessRegistry.Get(moved)
		return !alive
	})
	select {
	case pid := <-handed:
		t.Errorf("HandOver reached %v, which this member still owns", pid)
	default:
	}
}

// A caller that chose this member as the owner by the topology before a
// change (here, this member alone) and asks for the activation after the
// change handed over what moved (two members) gets none for an identity
// the other member owns now: activated here, it would run beside the
// owner's, never handed over, and the callers that found it would read
// and write through a second activation of the user until it passivated.
func TestPlacementActivatesOnlyWhatItOwns(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, p := startOneMember(t, kind)
	self, other := selfAndOther(t, p)
	var theirs, ours string
	for i := 0; theirs == "" || ours == ""; i++ {
		id := "u" + strconv.Itoa(i)
		if p.Owner("Probe", id) != p.self {
			t.Fatalf("owner of %s before the change: %s, want this member alone", id, p.Owner("Probe", id))
		}
		if newRing([]*pcluster.Member{self, other}).owner("Probe", id) == other.Address() {
			theirs = id
		} else {
			ours = id
		}
	}
	p.onTopology([]*pcluster.Member{self, other}, nil)
	if pid := p.activate("Probe", theirs); pid != nil {
		t.Errorf("activated %s, which the other member owns, as %v", theirs, pid)
	}
	if got := p.Active("Probe", theirs); got != nil {
		t.Errorf("an activation of %s is left here: %v", theirs, got)
	}
	if pid := p.activate("Probe", ours); pid == nil {
		t.Errorf("no activation of %s, which this member owns", ours)
	}
}

// Draining members own no grains; a member stays draining after its record
// is gone until it leaves the topology, and serves again when a member at
// its address registers as serving.
func TestPlacementDraining(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, p := startOneMember(t, kind)
	self, other := selfAndOther(t, p)
	p.onTopology([]*pcluster.Member{self, other}, nil)
	owners := func() map[string]int {
		m := map[string]int{}
		for i := range 200 {
			m[p.Owner("Probe", "u"+strconv.Itoa(i))]++
		}
		return m
	}
	if o := owners(); o[p.self] == 0 || o[other.Address()] == 0 {
		t.Fatalf("owners %v: want both members", o)
	}

	p.onTopology(nil, &Draining{Addresses: []string{other.Address()}, Serving: []string{p.self}})
	if o := owners(); o[p.self] != 200 {
		t.Errorf("owners %v with the other member draining: want this member alone", o)
	}
	p.onTopology(nil, &Draining{Serving: []string{p.self}}) // its record went; protoactor still lists it
	if o := owners(); o[p.self] != 200 {
		t.Errorf("owners %v after the draining member's record went: it must not own grains again", o)
	}
	p.onTopology([]*pcluster.Member{self}, nil) // it left
	p.onTopology([]*pcluster.Member{self, other}, nil)
	p.onTopology(nil, &Draining{Serving: []string{p.self, other.Address()}}) // started again at its address
	if o := owners(); o[p.self] == 0 || o[other.Address()] == 0 {
		t.Errorf("owners %v after a member serving at the drained address joined: want both members", o)
	}

	if p.drained(0) {
		t.Error("drained while this member owns grains")
	}
	p.onTopology(nil, &Draining{Addresses: []string{p.self}, Serving: []string{other.Address()}})
	if o := owners(); o[other.Address()] != 200 {
		t.Errorf("owners %v with this member draining: want the other alone", o)
	}
	if !p.drained(time.Second) {
		t.Error("not drained: this member draining, with no activation")
	}
}

// A member that leaves without draining is remembered as lost: the users it
// owned are inherited from it (their grains look for writes it left
// unfinished); a member that drained first is not, nor are the users it
// never owned.
func TestPlacementRemembersLostMembers(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, p := startOneMember(t, kind)
	self, other := selfAndOther(t, p)
	theirs, ours := splitByOwner(self, other)
	inherited := func(ids []string) int { return inheritedCount(p, ids) }

	p.onTopology([]*pcluster.Member{self, other}, nil)
	if n := inherited(theirs) + inherited(ours); n != 0 {
		t.Fatalf("%d users inherited from a lost member before any left", n)
	}
	p.onTopology(nil, &Draining{Addresses: []string{other.Address()}, Serving: []string{p.self}})
	p.onTopology([]*pcluster.Member{self}, nil) // drained, then left
	if n := inherited(theirs); n != 0 {
		t.Errorf("%d of the users of a member that drained before it left are inherited from a lost member, want none", n)
	}

	p.onTopology([]*pcluster.Member{self, other}, nil)
	p.onTopology(nil, &Draining{Serving: []string{p.self, other.Address()}}) // started again at its address
	p.onTopology([]*pcluster.Member{self}, nil)                              // died
	if n := inherited(theirs); n != len(theirs) {
		t.Errorf("%d of the %d users of a member that left without draining are inherited from it, want all", n, len(theirs))
	}
	if n := inherited(ours); n != 0 {
		t.Errorf("%d of the users this member owned all along are inherited from the lost member, want none", n)
	}
}

// A member started at the address of one that left without draining (it
// died, and its supervisor started it again there: a new member id, the
// same place on the ring) owns that member's users: they are inherited
// from a lost member, from the first topology that has this member on;
// the users of the others are not.
func TestPlacementInheritsFromAnUndrainedPredecessor(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, p := startOneMember(t, kind)
	self, other := selfAndOther(t, p)
	theirs, ours := splitByOwner(self, other)
	count := func(ids []string) int { return inheritedCount(p, ids) }
	p.onTopology([]*pcluster.Member{self, other}, nil)
	if n := count(ours); n != 0 {
		t.Fatalf("%d of this member's users inherited from a lost member with no predecessor lost", n)
	}
	p.predecessorLost.Store(true) // what the etcd membership finds at start
	p.onTopology([]*pcluster.Member{self, other}, nil)
	if n := count(ours); n != len(ours) {
		t.Errorf("%d of the %d users this member took from its undrained predecessor are inherited from it, want all", n, len(ours))
	}
	if n := count(theirs); n != 0 {
		t.Errorf("%d of the other member's users are inherited from a lost member, want none", n)
	}
}

// splitByOwner returns 20 or more Probe ids each that other and self own
// when both are members.
func splitByOwner(self, other *pcluster.Member) (theirs, ours []string) {
	both := newRing([]*pcluster.Member{self, other})
	for i := 0; len(theirs) < 20 || len(ours) < 20; i++ {
		id := "u" + strconv.Itoa(i)
		if both.owner("Probe", id) == other.Address() {
			theirs = append(theirs, id)
		} else {
			ours = append(ours, id)
		}
	}
	return theirs, ours
}

// inheritedCount counts the ids of Probe p takes for inherited from a
// lost member.
func inheritedCount(p *placement, ids []string) (n int) {
	for _, id := range ids {
		if p.InheritedFromLost("Probe", id) {
			n++
		}
	}
	return n
}

// selfAndOther returns p's member (on loopback) and another on port 1,
// both hosting Probe, for topologies a test hands p itself.
func selfAndOther(t *testing.T, p *placement) (self, other *pcluster.Member) {
	t.Helper()
	_, port, err := net.SplitHostPort(p.self)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	ms := members([]string{"Probe"}, n, 1)
	if ms[0].Address() != p.self {
		t.Fatalf("this member is %s, not on loopback", p.self)
	}
	return ms[0], ms[1]
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// handedOverProbe starts a member with the hand-over timeout hot, hosting
// Probe grains that ignore HandOver (each holds a call that never ends),
// activates one that the topology of this member and another moves to the
// other, and moves it there. It returns the placement and the moved
// activation, still running: handed over.
func handedOverProbe(t *testing.T, hot time.Duration) (*Node, *placement, *actor.PID) {
	t.Helper()
	handed := make(chan struct{}, 1)
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*HandOver); ok {
			select {
			case handed <- struct{}{}:
			default:
			}
		}
	}))
	cfg := DefaultConfig()
	cfg.HandOverTimeout = hot
	n, p := startMemberWith(t, cfg, kind)
	self, other := selfAndOther(t, p)
	theirs, _ := splitByOwner(self, other)
	pid := p.Get(pcluster.NewClusterIdentity(theirs[0], "Probe"))
	if pid == nil {
		t.Fatal("no activation")
	}
	p.onTopology([]*pcluster.Member{self, other}, nil)
	select {
	case <-handed:
	case <-time.After(10 * time.Second):
		t.Fatal("the moved activation got no HandOver")
	}
	return n, p, pid
}

// Shutdown ends every hand-over, not only those of the activations it
// takes itself: an activation handed over before (the topology moved it,
// the cluster removed this member, or a drain gave up) is waited for until
// its hand-over ends and then stopped, before Shutdown returns. It was
// left to a timer that outlived the member, running beside the stopping
// node (its writer pool closing) for up to a hand-over timeout.
func TestPlacementShutdownEndsEarlierHandOvers(t *testing.T) {
	n, p, moved := handedOverProbe(t, 3*time.Second)
	if _, alive := n.System.ProcessRegistry.Get(moved); !alive {
		t.Fatal("the moved activation stopped before its hand-over ended")
	}
	p.Shutdown()
	if _, alive := n.System.ProcessRegistry.Get(moved); alive {
		t.Error("an activation handed over before Shutdown still runs after it returned")
	}
}

// A drain waits for the activations it handed over until their hand-over
// ends, however long this member took to see itself draining (its etcd
// watch may deliver the change late on a loaded machine): they are
// stopped at its end, and the member drained. drained timed the hand-over
// from its own start, so a drain seen late gave up on activations that
// still had time, and the node left undrained.
func TestPlacementDrainWaitsForTheHandOver(t *testing.T) {
	n, p, moved := handedOverProbe(t, 2*time.Second)
	self, other := selfAndOther(t, p)
	p.onTopology(nil, &Draining{Addresses: []string{self.Address()}, Serving: []string{other.Address()}})
	// The drain was seen just now: no time is left of drained's own.
	if !p.drained(0) {
		t.Error("not drained: the activation handed over was not waited for until its hand-over ended")
	}
	if _, alive := n.System.ProcessRegistry.Get(moved); alive {
		t.Error("the activation handed over still runs after the drain")
	}
}

// GetFrom asks the owner a caller looked up, waits no longer than the
// caller's time, and tells an owner that did not answer (a member that
// accepts connections and never speaks) from one that did. It stays the
// last test of the package to start a member: a member that starts sets
// gRPC's global logger, which races with gRPC's logging of the connection
// to the silent member this test leaves behind until that connection goes
// idle (made short here).
func TestPlacementGetFromReportsASilentOwner(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	// A cluster request timeout far above the caller's 300 ms, so that
	// waiting the one or the other cannot be mistaken for each other
	// however slowly a loaded machine answers (with the default 2 s, a
	// GetFrom held up 1.7 s past its 300 ms would fail the test). Not
	// longer: the member's stop waits out the request to the silent one.
	cfg := DefaultConfig()
	cfg.RequestTimeout = 8 * time.Second
	cfg.idleConnTimeout = 500 * time.Millisecond
	_, lookup := startMemberWith(t, cfg, kind)
	ci := pcluster.NewClusterIdentity("u1", "Probe")

	if owner := lookup.Owner("Probe", "u1"); owner != lookup.self {
		t.Fatalf("Owner = %q in a one-member cluster, want this member %q", owner, lookup.self)
	}
	if pid, answered := lookup.GetFrom(lookup.self, ci, time.Second); pid == nil || !answered {
		t.Errorf("GetFrom(this member) = %v, %v: want the activation, answered", pid, answered)
	}
	if pid, answered := lookup.GetFrom("", ci, time.Second); pid != nil || !answered {
		t.Errorf("GetFrom(no owner) = %v, %v: want nil, answered (nobody to ask)", pid, answered)
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() { // accept and hold, never answer
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	pid, answered := lookup.GetFrom(silent.Addr().String(), ci, 300*time.Millisecond)
	if pid != nil || answered {
		t.Errorf("GetFrom(a silent member) = %v, %v: want nil, not answered", pid, answered)
	}
	if took := time.Since(start); took >= lookup.timeout {
		t.Errorf("GetFrom with 300 ms waited %v, the whole cluster request timeout (%v)", took, lookup.timeout)
	}
}
