package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Config of a node's cluster membership.
type Config struct {
	Name           string        // cluster name; nodes with different names never meet
	Addr           string        // host:port of this node's remote endpoint (port 0: any free port)
	AdvertisedAddr string        // host:port other nodes reach this node at (empty: Addr)
	Provider       string        // membership provider: standalone or etcd
	RequestTimeout time.Duration // protoactor's internal requests, and asking another member to activate a grain
	LogLevel       string        // minimum level of protoactor's own logs
	// HandOverTimeout is how long a grain handed over to another member
	// (HandOver: the topology moved it, or this member is leaving) may run
	// on to answer the calls it holds before it is stopped all the same:
	// as long as those calls may wait. 0: RequestTimeout.
	HandOverTimeout time.Duration
	// PIDCacheSize is the most PIDs of other members' activations this
	// member caches (PIDCache). 0: DefaultPIDCacheSize.
	PIDCacheSize int
	// EvictSilentAfter is how long another member that this node stopped
	// calling (Silent) must have answered none of its pings before it
	// reports the member to the others; a member that more than half of
	// the members report is removed from the cluster (evict.go). 0: this
	// node reports none, and removes none. Provider etcd only.
	EvictSilentAfter time.Duration
	// TLS, when set, secures the actor endpoint: members serve and dial
	// with it, so it must work for both ends (certificates, and the
	// verification of the peer's). nil: plain gRPC.
	TLS  *tls.Config
	Etcd EtcdConfig // with Provider etcd

	// idleConnTimeout: dialIdleTimeout when 0; tests shorten it.
	idleConnTimeout time.Duration
}

// dialIdleTimeout is how long a connection to another member that carries
// no stream lives before gRPC closes it and stops dialling its address.
// A connection in use always holds one (the endpoint's message stream,
// from the moment it connects until it is lost), so only the connections
// of failed connect attempts reach it: protoactor retries a member it
// cannot reach a few times and keeps only its last attempt's connection
// to close. Without a bound each earlier attempt goes on dialling the
// address of a member that is gone, with gRPC's backoff, for gRPC's
// default of 30 minutes.
const dialIdleTimeout = 30 * time.Second

// EtcdConfig is where members of an etcd-provided cluster register.
type EtcdConfig struct {
	Endpoints   []string      // host:port of etcd servers
	Prefix      string        // key prefix of the member records
	DialTimeout time.Duration // connecting to etcd, and the check at start
	// LeaseTTL is how long a member's record outlives its last renewal
	// (whole seconds, at least MinLeaseTTL): the time the others take to
	// see a member that died leave, and the longest pause a member survives
	// (Node.Evicted).
	LeaseTTL time.Duration
	// TLS, when set, is the client side of TLS to etcd (authorities to
	// verify the servers, a client certificate for servers that require
	// one). nil: plain text.
	TLS *tls.Config
	// Username and Password authenticate to an etcd with auth enabled
	// (empty Username: none). They are never logged.
	Username, Password string
}

// MinLeaseTTL is the shortest membership lease: etcd renews a lease a
// third of its time before it runs out, and grants none much shorter.
const MinLeaseTTL = 2 * time.Second

// Providers are the membership providers Start knows.
var Providers = []string{"standalone", "etcd"}

// DefaultConfig is a one-node cluster on loopback.
func DefaultConfig() Config {
	return Config{Name: "checkin", Addr: "127.0.0.1:0", Provider: "standalone", RequestTimeout: 2 * time.Second, LogLevel: "warn", EvictSilentAfter: 10 * time.Second,
		PIDCacheSize: DefaultPIDCacheSize,
		Etcd:         EtcdConfig{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/checkin", DialTimeout: 5 * time.Second, LeaseTTL: 3 * time.Second}}
}

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	// The name is part of etcd keys, and the reports of silent members
	// live beside the member records under the name and a '.'.
	if c.Name == "" || strings.ContainsAny(c.Name, "/.") {
		return errors.New("cluster.name must not be empty, and must not hold '/' or '.'")
	}
	if c.EvictSilentAfter < 0 {
		return errors.New("cluster.evict-silent-after must be 0 (never) or positive")
	}
	if _, _, err := splitAddr(c.Addr); err != nil {
		return fmt.Errorf("cluster.addr: %w", err)
	}
	if c.AdvertisedAddr != "" {
		if _, _, err := splitAddr(c.AdvertisedAddr); err != nil {
			return fmt.Errorf("cluster.advertised-addr: %w", err)
		}
	}
	if !slices.Contains(Providers, c.Provider) {
		return fmt.Errorf("cluster.provider: unknown provider %q (known: %s)", c.Provider, strings.Join(Providers, ", "))
	}
	if c.Provider == "etcd" {
		if len(c.Etcd.Endpoints) == 0 {
			return errors.New("cluster.etcd-endpoints must name at least one etcd server")
		}
		for _, e := range c.Etcd.Endpoints {
			if _, _, err := splitAddr(e); err != nil {
				return fmt.Errorf("cluster.etcd-endpoints: %w", err)
			}
		}
		if !strings.HasPrefix(c.Etcd.Prefix, "/") {
			return errors.New("cluster.etcd-prefix must start with /")
		}
		if c.Etcd.DialTimeout <= 0 {
			return errors.New("cluster.etcd-dial-timeout must be positive")
		}
		if c.Etcd.LeaseTTL < MinLeaseTTL || c.Etcd.LeaseTTL%time.Second != 0 {
			return fmt.Errorf("cluster.etcd-lease-ttl must be whole seconds, at least %s", MinLeaseTTL)
		}
		if h, _, _ := splitAddr(c.advertised()); h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
			return fmt.Errorf("cluster.advertised-addr: other members cannot reach %q; set a routable host", c.advertised())
		}
		if _, port, _ := splitAddr(c.AdvertisedAddr); c.AdvertisedAddr != "" && port == 0 {
			return fmt.Errorf("cluster.advertised-addr: other members cannot reach port 0 of %q; name the port they reach this node's cluster.addr at", c.AdvertisedAddr)
		}
	}
	if c.RequestTimeout <= 0 {
		return errors.New("cluster.request-timeout must be positive")
	}
	if c.HandOverTimeout < 0 {
		return errors.New("cluster: the hand-over timeout must be 0 (the request timeout) or positive")
	}
	if c.PIDCacheSize != 0 && c.PIDCacheSize < pidShards { // 0: the default
		return fmt.Errorf("cluster.pid-cache-size must be at least %d", pidShards)
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("cluster.log-level: %w", err)
	}
	return nil
}

func (c Config) advertised() string {
	if c.AdvertisedAddr != "" {
		return c.AdvertisedAddr
	}
	return c.Addr
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

// Node is this process's cluster member.
type Node struct {
	System   *actor.ActorSystem
	Cluster  *pcluster.Cluster
	log      *zap.Logger
	graceful bool // hand grains over to other members on Stop
	members  atomic.Int64
	joined   atomic.Bool              // this node is in the current topology
	others   atomic.Pointer[[]string] // addresses of the other members, for Broadcast
	stopping atomic.Bool              // Stop began: leaving the topology is not an eviction
	evicted  chan struct{}            // closed when the cluster removed this node (Evicted)
	evict    sync.Once
	etcd     *etcdMembers // the membership, with provider etcd
}

// NewSystem creates the actor system with protoactor's logs routed into log.
// Spawn node-local actors on it before Start.
func NewSystem(cfg Config, log *zap.Logger) *actor.ActorSystem {
	var lvl zapcore.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	core, err := zapcore.NewIncreaseLevelCore(log.Core(), lvl)
	if err != nil { // the requested level is below the logger's own: keep the logger's
		core = log.Core()
	}
	// No stack traces: they point into the runtime, not at a cause of ours,
	// and make one line of each of its error logs (a lost peer) a page.
	logger := slog.New(peerLossAsWarning{zapslog.NewHandler(core, zapslog.WithName("protoactor"), zapslog.AddStacktraceAt(slog.LevelError+100))})
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
}

// peerLoss are protoactor's error-level messages about a connection to
// another member that was lost or could not be made: what every member
// logs each time another one stops, restarts or dies (a deploy), and what
// this node then does about it is logged by this node (the topology
// change, a member removed). peerLossAsWarning logs them as warnings, so
// that alerts on error-level logs page on defects, not on deploys.
var peerLoss = map[string]bool{
	"EndpointWriter lost connection":                    true,
	"EndpointWriter failed to connect":                  true,
	"EndpointWriter failed to create receive stream":    true,
	"EndpointWriter failed to send connect request":     true,
	"EndpointWriter failed to receive connect response": true,
}

// peerLossAsWarning is a slog handler that turns the error records of
// peerLoss into warnings and passes every record on to its handler.
type peerLossAsWarning struct{ slog.Handler }

func (h peerLossAsWarning) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && peerLoss[r.Message] {
		r.Level = slog.LevelWarn
	}
	return h.Handler.Handle(ctx, r)
}

func (h peerLossAsWarning) WithAttrs(attrs []slog.Attr) slog.Handler {
	return peerLossAsWarning{h.Handler.WithAttrs(attrs)}
}

func (h peerLossAsWarning) WithGroup(name string) slog.Handler {
	return peerLossAsWarning{h.Handler.WithGroup(name)}
}

// Start joins system to the cluster described by cfg, hosting kinds.
func Start(system *actor.ActorSystem, cfg Config, log *zap.Logger, kinds ...*pcluster.Kind) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, _ := splitAddr(cfg.Addr)
	var ropts []remote.ConfigOption
	if cfg.AdvertisedAddr != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(cfg.AdvertisedAddr))
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
		ropts = append(ropts, remote.WithServerOptions(grpc.Creds(creds)))
	}
	ropts = append(ropts, remote.WithDialOptions(grpc.WithTransportCredentials(creds),
		grpc.WithIdleTimeout(cmp.Or(cfg.idleConnTimeout, dialIdleTimeout))))
	provider, err := newProvider(cfg, log)
	if err != nil {
		return nil, err
	}
	p := newPlacement(cfg.RequestTimeout, cmp.Or(cfg.HandOverTimeout, cfg.RequestTimeout), cmp.Or(cfg.PIDCacheSize, DefaultPIDCacheSize))
	if m, ok := provider.(*etcdMembers); ok {
		m.undrained = func() { p.predecessorLost.Store(true) }
	}
	ccfg := pcluster.Configure(cfg.Name, provider, p, remote.Configure(host, port, ropts...),
		pcluster.WithKinds(kinds...), pcluster.WithRequestTimeout(cfg.RequestTimeout))
	c := pcluster.New(system, ccfg)
	defer func() { // protoactor panics when it cannot start (the port is taken, etcd does not answer)
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("cluster: start member on %s: %v", cfg.Addr, r)
			abandon(c, p)
		}
	}()
	n = &Node{System: system, log: log, graceful: cfg.Provider != "standalone", evicted: make(chan struct{})}
	n.etcd, _ = provider.(*etcdMembers)
	// Once the placement routes by a topology, not before: whoever sees
	// the member count (metrics, readiness, the log) change finds calls
	// already going to the new owners.
	p.applied = func(t *pcluster.ClusterTopology) {
		self := system.Address()
		in := slices.ContainsFunc(t.Members, func(m *pcluster.Member) bool { return m.Address() == self })
		if n.joined.Swap(in) && !in && !n.stopping.Load() {
			n.evict.Do(func() { close(n.evicted) })
		}
		n.members.Store(int64(len(t.Members)))
		others := make([]string, 0, len(t.Members))
		for _, m := range t.Members {
			if addr := m.Address(); addr != self {
				others = append(others, addr)
			}
		}
		n.others.Store(&others)
		log.Info("cluster topology changed", zap.Int("members", len(t.Members)), zap.Int("joined", len(t.Joined)), zap.Int("left", len(t.Left)))
	}
	c.StartMember()
	n.Cluster = c
	log.Info("cluster member started", zap.String("address", system.Address()), zap.String("member_id", system.ID), zap.String("provider", cfg.Provider), zap.Bool("tls", cfg.TLS != nil))
	return n, nil
}

// abandon stops what protoactor started of a member that failed to start
// (it starts the remote endpoint, the placement and gossip before the
// membership): the endpoint would go on serving on the port. A part that
// never started may panic as it stops.
func abandon(c *pcluster.Cluster, p *placement) {
	for _, stop := range []func(){
		c.Gossip.Shutdown,
		func() {
			if p.c != nil { // set up
				p.Shutdown()
			}
		},
		func() {
			if c.Remote != nil {
				c.Remote.Shutdown(false)
			}
		},
	} {
		func() {
			defer func() { _ = recover() }()
			stop()
		}()
	}
}

// Ready reports whether this node is a member of the current topology. It
// compares addresses: providers name members differently (etcd's member ids
// are not the actor system's id).
func (n *Node) Ready() bool { return n.joined.Load() }

// Evicted is closed when the cluster removed this node after it had
// joined, without Stop: its membership lease ran out (the process was
// paused, or cut off from etcd, for longer than the lease) and the members,
// this one included, saw it leave. protoactor never lets a member that
// left back in under the same identity (its id stays on every member's
// block list), so such a node cannot rejoin: it hosts no grains and stays
// not Ready for good. The process should stop and be started again, which
// joins under a new identity.
func (n *Node) Evicted() <-chan struct{} { return n.evicted }

// LeaseAge is the time since etcd last renewed this node's membership
// lease: about a third of the lease at most while etcd answers; once it
// passes the lease, the cluster removes the node (Evicted). 0 without
// etcd.
func (n *Node) LeaseAge() time.Duration {
	if n.etcd == nil {
		return 0
	}
	return n.etcd.leaseAge()
}

// Silent tells the node that it has stopped calling the member at addr
// (host:port), for it did not answer; Answers, that the member answers
// again or was forgotten. In between the node pings the member; after
// Config.EvictSilentAfter without an answer it reports the member to the
// others, and a member that most of them report is removed (evict.go).
// They never block.
func (n *Node) Silent(addr string) {
	if n.etcd != nil {
		n.etcd.silent.silent(addr)
	}
}

// Answers: see Silent.
func (n *Node) Answers(addr string) {
	if n.etcd != nil {
		n.etcd.silent.answers(addr)
	}
}

// Removed returns how many members this node removed from the cluster
// because most members reported them silent.
func (n *Node) Removed() int {
	if n.etcd == nil {
		return 0
	}
	return n.etcd.silent.removedCount()
}

// InheritedFromLost reports whether the owner of identity of kind was,
// within the last hour, a member that left the cluster without draining
// (it died, or the cluster removed it), so that its grain may have left
// writes unfinished that nobody completes.
func (n *Node) InheritedFromLost(kind, identity string) bool {
	p, ok := n.Cluster.Config.IdentityLookup.(*placement)
	return ok && p.InheritedFromLost(kind, identity)
}

// Members returns how many members the current topology has, this node
// included.
func (n *Node) Members() int { return int(n.members.Load()) }

// Broadcast sends msg to every other member of the current topology, where
// it is published on that member's actor system event stream (subscribe
// with System.EventStream). Delivery is best effort, as for any message to
// another member: one that is down or unreachable misses it, and nothing
// tells the sender. msg must be a protobuf message known to both sides. It
// returns how many members it was sent to.
func (n *Node) Broadcast(msg proto.Message) int {
	others := n.others.Load()
	if others == nil {
		return 0
	}
	for _, addr := range *others {
		n.System.Root.Send(actor.NewPID(addr, "eventstream"), msg)
	}
	return len(*others)
}

// Stop leaves the cluster and stops every grain on this node: each is
// handed over (HandOver) and stopped once it answered the calls it holds,
// within the hand-over timeout. With other members it first drains
// (drain), then leaves gracefully (protoactor waits about two seconds for
// them to take over); alone it stops without waiting for anyone.
func (n *Node) Stop() {
	n.stopping.Store(true)
	if n.graceful && n.drain() && n.etcd != nil {
		// The next member at this address has nothing of this one's
		// to complete.
		if err := n.etcd.releaseAddress(); err != nil {
			n.log.Warn("could not release this node's address in etcd: the next node there checks the users it holds for checkins left in part", zap.Error(err))
		}
	}
	if p, ok := n.Cluster.Config.IdentityLookup.(*placement); ok && !n.graceful {
		// protoactor shuts the identity lookup down only when it leaves
		// gracefully: the grains would run on.
		p.Shutdown()
	}
	n.Cluster.Shutdown(n.graceful)
	n.log.Info("cluster member stopped", zap.String("address", n.System.Address()))
}

// drain hands this node's grains over to the other members while it is
// still a member: its etcd record is marked draining, every member (this
// one included) stops counting it as an owner, its grains answer the
// calls they hold and then stop, and calls that reach them afterwards
// are sent to the new owners. Only then does the node leave. A member that
// leaves without draining is dropped by the others at once, and the
// answers its grains still send them are lost: their callers wait out
// their deadline for checkins that were written. It reports whether the
// node leaves cleanly: drained, or alone (a node removed, or one whose
// drain failed, may leave writes in part).
func (n *Node) drain() bool {
	select {
	case <-n.evicted: // the others dropped it already; its record is gone
		return false
	default:
	}
	m, ok := n.Cluster.Config.ClusterProvider.(*etcdMembers)
	p, ok2 := n.Cluster.Config.IdentityLookup.(*placement)
	if !ok || !ok2 || m.client == nil || n.Members() < 2 {
		return true
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), m.ttl)
	err := m.drain(ctx)
	cancel()
	if err != nil {
		n.log.Warn("could not mark this node draining in etcd: leaving without handing its grains over first", zap.Error(err))
		return false
	}
	// The watch shows this member its own record draining within a lease,
	// unless etcd fails; each grain then has its whole hand-over.
	if !p.drained(m.ttl) {
		n.log.Warn("grains still running at the end of the drain: leaving all the same", zap.Duration("took", time.Since(start)))
		return false
	}
	// Answers to calls that reached this node just before the others saw
	// it drain (a dead letter for an activation that stopped) are on their
	// way; once it leaves, the others drop what it sends.
	time.Sleep(drainLinger)
	n.log.Info("drained: the other members own this node's users", zap.Duration("took", time.Since(start)))
	return true
}

// drainLinger is how long a drained node stays a member before it leaves.
const drainLinger = 200 * time.Millisecond

// newProvider returns the membership provider cfg names. The etcd one
// checks at start that etcd answers (etcdMembers.StartMember), so a node
// with a wrong address fails with a clear error instead of waiting for
// members forever.
func newProvider(cfg Config, log *zap.Logger) (pcluster.ClusterProvider, error) {
	if cfg.Provider != "etcd" {
		return &standalone{}, nil
	}
	ecfg := clientv3.Config{Endpoints: cfg.Etcd.Endpoints, DialTimeout: cfg.Etcd.DialTimeout, Logger: log.Named("etcd"),
		TLS: cfg.Etcd.TLS, Username: cfg.Etcd.Username, Password: cfg.Etcd.Password,
		// Reconnect within a second of etcd coming back (gRPC's default
		// backs off to two minutes): a member must renew its lease
		// within the lease's time of etcd's return.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: time.Second})}}
	return &etcdMembers{etcd: ecfg, dir: cfg.Etcd.Prefix + "/" + cfg.Name + "/", addrDir: cfg.Etcd.Prefix + "/" + cfg.Name + ".addr/", ttl: cfg.Etcd.LeaseTTL, log: log.Named("etcd"),
		silent: newSilentReports(cfg.Etcd.Prefix+"/"+cfg.Name+".silent/", cfg.EvictSilentAfter), pingTimeout: cfg.RequestTimeout}, nil
}

// standalone is the membership of a one-node cluster: the node itself.
type standalone struct{}

func (standalone) StartMember(c *pcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	c.MemberList.UpdateClusterTopology(pcluster.Members{{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}})
	return nil
}

func (standalone) StartClient(*pcluster.Cluster) error {
	return errors.New("cluster: standalone has no clients")
}

func (standalone) Shutdown(bool) error { return nil }
