package cluster

import (
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Validate refuses settings that cannot work, and accepts the defaults.
func TestConfigValidate(t *testing.T) {
	etcd := func(c Config) Config {
		c.Provider = "etcd"
		return c
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		valid bool
	}{
		{"defaults", func(*Config) {}, true},
		{"etcd defaults", func(c *Config) { *c = etcd(*c) }, true},
		{"etcd, any free port, advertised as such", func(c *Config) { *c = etcd(*c); c.Addr = "127.0.0.1:0" }, true},
		{"etcd, advertised address and port of a fixed port", func(c *Config) {
			*c = etcd(*c)
			c.Addr, c.AdvertisedAddr = "0.0.0.0:7946", "10.0.0.5:17946"
		}, true},
		{"hand-over timeout 0: the request timeout", func(c *Config) { c.HandOverTimeout = 0 }, true},
		// A negative hand-over timeout stops every grain handed over at
		// once (the calls it holds get no answer), and makes a stopping
		// member wait for ever for one that does not stop (a future
		// with a negative timeout never times out).
		{"negative hand-over timeout", func(c *Config) { c.HandOverTimeout = -time.Second }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			if err := c.Validate(); (err == nil) != tt.valid {
				t.Errorf("Validate() = %v, want valid %v", err, tt.valid)
			}
		})
	}
}

// A member alone (provider standalone) stops its grains when it stops, as
// Stop says: protoactor's non-graceful shutdown does not shut the identity
// lookup down, so they ran on, their Terminate never called (the grain's
// timers and registrations kept), after the node stopped.
func TestStopStopsTheGrainsOfALoneMember(t *testing.T) {
	stopped := make(chan struct{}, 1)
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Stopped); ok {
			stopped <- struct{}{}
		}
	}))
	cfg := DefaultConfig()
	log := zap.NewNop()
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	p := n.Cluster.Config.IdentityLookup.(*placement)
	pid := p.Get(pcluster.NewClusterIdentity("u1", "Probe"))
	if pid == nil {
		n.Stop()
		t.Fatal("no activation")
	}
	n.Stop()
	if _, alive := n.System.ProcessRegistry.Get(pid); alive {
		t.Error("the grain still runs after its member stopped")
	}
	select {
	case <-stopped:
	default:
		t.Error("the grain was not stopped (no Stopped) by the time Stop returned")
	}
}

// A node that fails to join (etcd does not answer) gives its cluster port
// back: protoactor starts the remote endpoint before the membership, and
// panics when that fails; Start turned the panic into an error and left
// the endpoint serving on the port (a second attempt in the process could
// not bind it), with its goroutines.
func TestStartThatFailsFreesThePort(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0") // an etcd endpoint that refuses
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()

	cfg := DefaultConfig()
	cfg.Provider = "etcd"
	cfg.Addr = addr
	cfg.Etcd.Endpoints = []string{deadAddr}
	cfg.Etcd.DialTimeout = 500 * time.Millisecond
	cfg.Etcd.Prefix = "/checkin-test/start-fails"
	log := zap.NewNop()
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err == nil {
		n.Stop()
		t.Fatal("started without etcd")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the cluster port of a node that failed to start is still taken: %v", err)
	}
	ln.Close()
}

// A node whose cluster port is taken fails to start, with an error.
func TestStartOnATakenPortFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := DefaultConfig()
	cfg.Addr = taken.Addr().String()
	log := zap.NewNop()
	if n, err := Start(NewSystem(cfg, log), cfg, log); err == nil {
		n.Stop()
		t.Fatal("started on a taken port")
	}
}

// A member count that changed (Members: the metric, the log, what the
// node's users see) means calls already route by the new topology: a
// caller that saw the member come or go and then called a grain it owns
// now reached the old owner (and, for a member gone silent, waited for
// its timeout).
func TestMembersChangeOnceThePlacementFollows(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	cfg := DefaultConfig()
	log := zap.NewNop()
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	p := n.Cluster.Config.IdentityLookup.(*placement)
	self := n.Cluster.MemberList.Members().Members()
	// Another member at this member's address: protoactor's gossip
	// sends to each member of a topology, and one at another address
	// would go on dialling it after Stop (gRPC's logging then races with
	// the next test's start).
	other := &pcluster.Member{Host: self[0].Host, Port: self[0].Port, Id: "other", Kinds: []string{"Probe"}}
	ringSize := func() int { return len(p.ring.Load().byKind["Probe"]) }
	for i := range 300 {
		members := append(slices.Clone(self), other)
		if i%2 == 1 {
			members = slices.Clone(self)
		}
		published := make(chan struct{})
		go func() {
			defer close(published)
			n.System.EventStream.Publish(&pcluster.ClusterTopology{Members: members})
		}()
		for deadline := time.Now().Add(10 * time.Second); n.Members() != len(members); runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: Members() = %d 10 s after a topology of %d was published", i, n.Members(), len(members))
			}
		}
		if got := ringSize(); got != len(members) {
			t.Fatalf("round %d: Members() = %d while the placement routes by %d members", i, len(members), got)
		}
		<-published
	}
}

// A member that cannot reach another (gone, its address now closing every
// connection) gives up on it after protoactor's connect attempts, and then
// stops dialling it: no attempt's connection goes on reconnecting. Its
// logs of those attempts are warnings: every member logs them whenever
// another one stops or dies, and alerts on errors must not page on that.
func TestDialsToAMemberThatIsGoneStop(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	var mu sync.Mutex
	var dials []time.Time
	go func() {
		for {
			c, err := gone.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			dials = append(dials, time.Now())
			mu.Unlock()
			c.Close()
		}
	}()
	dialed := func() int { mu.Lock(); defer mu.Unlock(); return len(dials) }

	cfg := DefaultConfig()
	cfg.idleConnTimeout = 500 * time.Millisecond // the default's 30 s would make a long test
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	n, err := Start(NewSystem(cfg, log), cfg, log, pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {})))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	addr := gone.Addr().String()
	gaveUp := make(chan struct{})
	var once sync.Once
	sub := n.System.EventStream.Subscribe(func(ev any) {
		if e, ok := ev.(*remote.EndpointTerminatedEvent); ok && e.Address == addr {
			once.Do(func() { close(gaveUp) })
		}
	})
	defer n.System.EventStream.Unsubscribe(sub)

	n.System.Root.Send(actor.NewPID(addr, "probe"), &pcluster.ClusterIdentity{Identity: "u1", Kind: "Probe"})
	select {
	case <-gaveUp: // protoactor tries five times, 2 s apart
	case <-time.After(60 * time.Second):
		t.Fatalf("no EndpointTerminatedEvent for %s 60 s after a send; %d dials", addr, dialed())
	}
	if dialed() == 0 {
		t.Fatal("the member gave up on the address without dialling it")
	}
	// gRPC's backoff starts at 1 s and grows 1.6-fold: connections left
	// reconnecting would dial several times in 6 s.
	before := dialed()
	time.Sleep(6 * time.Second)
	if after := dialed(); after != before {
		t.Errorf("%d dials of %s in the 6 s after the member gave up on it (%d before): connections of its failed attempts go on reconnecting", after-before, addr, before)
	}
	failed := logs.FilterMessage("EndpointWriter failed to connect").All()
	if len(failed) == 0 {
		t.Fatal("no \"EndpointWriter failed to connect\" line: protoactor's messages changed, and the level mapping with them")
	}
	for _, e := range append(failed, logs.FilterLevelExact(zapcore.ErrorLevel).All()...) {
		if e.Level != zapcore.WarnLevel {
			t.Errorf("%q logged at %v, want a warning: a member that is gone is no defect of this one", e.Message, e.Level)
		}
	}
}
