package cluster

import (
	"net"
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
	deadline := time.Now().Add(5 * time.Second)
	for n.Cluster.GetClusterKind("Probe").Count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a stopped activation is still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// GetFrom asks the owner a caller looked up, waits no longer than the
// caller's time, and tells an owner that did not answer (a member that
// accepts connections and never speaks) from one that did.
func TestPlacementGetFromReportsASilentOwner(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, lookup := startOneMember(t, kind)
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

// startOneMember starts a one-member cluster with the default settings,
// hosting kind, stopped when the test ends, and returns it with its
// placement.
func startOneMember(t *testing.T, kind *pcluster.Kind) (*Node, *placement) {
	t.Helper()
	cfg := DefaultConfig()
	log := zap.NewNop()
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n, n.Cluster.Config.IdentityLookup.(*placement)
}
