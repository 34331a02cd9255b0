package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// Config of a node's cluster membership.
type Config struct {
	Name           string        // cluster name; nodes with different names never meet
	Addr           string        // host:port of this node's remote endpoint (port 0: any free port)
	AdvertisedAddr string        // host:port other nodes reach this node at (empty: Addr)
	Provider       string        // membership provider: standalone
	RequestTimeout time.Duration // protoactor's internal request timeout
	LogLevel       string        // minimum level of protoactor's own logs
}

// DefaultConfig is a one-node cluster on loopback.
func DefaultConfig() Config {
	return Config{Name: "checkin", Addr: "127.0.0.1:0", Provider: "standalone", RequestTimeout: 5 * time.Second, LogLevel: "warn"}
}

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster.name must not be empty")
	}
	if _, _, err := splitAddr(c.Addr); err != nil {
		return fmt.Errorf("cluster.addr: %w", err)
	}
	if c.AdvertisedAddr != "" {
		if _, _, err := splitAddr(c.AdvertisedAddr); err != nil {
			return fmt.Errorf("cluster.advertised-addr: %w", err)
		}
	}
	if c.Provider != "standalone" {
		return fmt.Errorf("cluster.provider: unknown provider %q (known: standalone)", c.Provider)
	}
	if c.RequestTimeout <= 0 {
		return errors.New("cluster.request-timeout must be positive")
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("cluster.log-level: %w", err)
	}
	return nil
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
	logger := slog.New(zapslog.NewHandler(core, zapslog.WithName("protoactor")))
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
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
	ccfg := pcluster.Configure(cfg.Name, &standalone{}, disthash.New(), remote.Configure(host, port, ropts...),
		pcluster.WithKinds(kinds...), pcluster.WithRequestTimeout(cfg.RequestTimeout))
	c := pcluster.New(system, ccfg)
	defer func() { // protoactor panics when it cannot start (e.g. the port is taken)
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: start member on %s: %v", cfg.Addr, r)
		}
	}()
	c.StartMember()
	n = &Node{System: system, Cluster: c, log: log, graceful: cfg.Provider != "standalone"}
	log.Info("cluster member started", zap.String("address", system.Address()), zap.String("member_id", system.ID), zap.String("provider", cfg.Provider))
	return n, nil
}

// Ready reports whether this node is a member of the current topology.
func (n *Node) Ready() bool {
	return n.Cluster.MemberList.ContainsMemberID(n.System.ID)
}

// Stop leaves the cluster and stops every actor on this node. With other
// members it leaves gracefully (protoactor waits about two seconds for them
// to take over); alone it stops at once.
func (n *Node) Stop() {
	n.Cluster.Shutdown(n.graceful)
	n.log.Info("cluster member stopped", zap.String("address", n.System.Address()))
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
