package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/cluster"
	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/messages"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/admit"
	"github.com/checkin/checkin/persistence/metered"
	"github.com/checkin/checkin/persistence/pebble"
	"github.com/checkin/checkin/persistence/scylla"
)

// node is one running checkin process: store, writers, grains, edge.
type node struct {
	cfg      config
	log      *zap.Logger
	store    persistence.Store
	pool     *actors.Pool
	member   *cluster.Node
	view     *actors.CurrentView
	grains   *actors.Client
	edge     *edge.Server
	keys     *edge.APIKeys // re-read on SIGHUP
	cert     *certificate  // re-read on SIGHUP; nil: plain HTTP
	peer     *peerTLS      // re-read on SIGHUP; nil: plain gRPC between members
	etcdCert *certificate  // client certificate to etcd, re-read on SIGHUP; nil: none
	ln       net.Listener
	debug    *http.Server
	served   chan error
	stopped  bool
}

// storeCallFloor is the least bound on the edge's store calls in flight:
// enough to keep a store busy that answers slowly, so that it shows when
// it recovers.
const storeCallFloor = 32

// openStore opens the configured store; ctx cancels the opening (there is
// no deadline on the whole: the store bounds each step of it).
func openStore(ctx context.Context, cfg config, log *zap.Logger) (persistence.Store, error) {
	switch cfg.Store {
	case "pebble":
		s, err := pebble.Open(cfg.DataDir, pebble.WithLogger(log.Named("pebble")),
			pebble.WithCacheSize(int64(cfg.PebbleCacheMB)<<20), pebble.WithMemTableSize(uint64(cfg.PebbleMemTableMB)<<20),
			pebble.WithIOUring(cfg.PebbleIOUring), pebble.WithStuckAfter(cfg.PebbleStuckAfter))
		if err != nil { // not a typed nil inside the interface
			return nil, err
		}
		return s, nil
	case "scylla":
		// Connecting is bounded by scylla.connect-timeout and
		// scylla.timeout, each schema statement by its own minute: a
		// fresh keyspace on a busy cluster takes seconds per table.
		s, err := scylla.Open(ctx, cfg.Scylla, log.Named("scylla"))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store %q", cfg.Store)
}

// startNode wires and starts every part; on error what was started is
// stopped again. ctx cancels the start.
func startNode(ctx context.Context, cfg config, log *zap.Logger) (_ *node, err error) {
	cfg.resolve()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	keys, err := edge.LoadAPIKeys(cfg.APIKeysFile, os.Getenv(edge.EnvAPIKeys))
	if err != nil {
		return nil, err
	}
	if cfg.BackupDir != "" { // before the node joins anything
		if err := usableDir(cfg.BackupDir); err != nil {
			return nil, fmt.Errorf("backup.dir: %w", err)
		}
	}
	var cert *certificate
	if cfg.TLSCertFile != "" {
		if cert, err = loadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	var peer *peerTLS
	if cfg.PeerCertFile != "" {
		if peer, err = loadPeerTLS(cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile); err != nil {
			return nil, err
		}
		cfg.Cluster.TLS = peer.config()
	}
	var etcdCert *certificate
	if cfg.EtcdTLS {
		if cfg.Cluster.Etcd.TLS, etcdCert, err = etcdClientTLS(cfg.EtcdCAFile, cfg.EtcdCertFile, cfg.EtcdKeyFile); err != nil {
			return nil, err
		}
	}
	cfg.Cluster.Etcd.Username, cfg.Cluster.Etcd.Password = os.Getenv(envEtcdUsername), os.Getenv(envEtcdPassword)
	if cfg.Cluster.Etcd.Username == "" && cfg.Cluster.Etcd.Password != "" {
		return nil, fmt.Errorf("%s is set but %s is not", envEtcdPassword, envEtcdUsername)
	}
	n := &node{cfg: cfg, log: log, keys: keys, cert: cert, peer: peer, etcdCert: etcdCert, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = n.stop()
		}
	}()
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	n.store = store
	// A signal during the start stops it between its steps too, those
	// that do not heed ctx (the embedded store's opening, joining the
	// cluster) included: the node must not go on to serve and answer
	// ready when it was asked to stop.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(
		// go_gc_heap_live_bytes: the heap the last collection kept, what
		// memory follows once garbage is gone (heap_alloc includes garbage).
		collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}),
	), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	readBuild().register(reg)
	n.registerCertExpiry(reg)
	m := actors.NewMetrics(reg)
	n.store = metered.New(n.store, metered.NewMetrics(reg)) // every part below calls the store through it
	// A grain handed over to another member answers the calls it holds
	// first: they may wait for the request's deadline, or for a batch the
	// writer gives up on after its flush timeout; a checkin such a batch
	// failed is then passed on to the new owner, for up to the grain's
	// store timeout.
	cfg.Cluster.HandOverTimeout = max(cfg.HTTP.RequestTimeout, cfg.Writer.FlushTimeout) + cfg.Grain.StoreTimeout + time.Second
	system := cluster.NewSystem(cfg.Cluster, log)
	if n.pool, err = actors.NewPool(system, n.store, cfg.Writer, log.Named("writer"), m); err != nil {
		return nil, err
	}
	if n.view, err = actors.NewCurrentView(cfg.Grain.ViewSizeMB); err != nil {
		return nil, err
	}
	notices := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "checkin_record_notices_total",
		Help: "Notices to other members (one per member) and from them: a user or location was updated, or a grain handed over changed a user's checkins."}, []string{"direction"})
	reg.MustRegister(notices)
	sent, received := notices.WithLabelValues("sent"), notices.WithLabelValues("received")
	var member atomic.Pointer[cluster.Node]  // for grains, which may run before Start returns
	var grains atomic.Pointer[actors.Client] // likewise
	kind := actors.NewUserGrainKind(&actors.Deps{View: n.view, Store: n.store, Writers: n.pool, Config: cfg.Grain, Log: log.Named("grain"), Metrics: m,
		LateWrite: func(id string) {
			if mb := member.Load(); mb != nil {
				sent.Add(float64(mb.Broadcast(&messages.RecordChanged{Kind: messages.RecordChanged_KIND_USER_CURRENT, Id: id})))
			}
			// The user may be active here again too (it moved away and
			// back within the hand-over), beside the grain that wrote.
			if cl := grains.Load(); cl != nil {
				cl.ReloadCurrent(id)
			}
		},
		HandOverWrite: func(ctx context.Context, c persistence.Checkin) error {
			if cl := grains.Load(); cl != nil {
				return cl.CompleteCheckin(ctx, c)
			}
			return errors.New("the node is still starting")
		},
		InheritedFromLost: func(id string) bool {
			mb := member.Load()
			return mb != nil && mb.InheritedFromLost(actors.UserGrainKind, id)
		}})
	if n.member, err = cluster.Start(system, cfg.Cluster, log.Named("cluster"), kind); err != nil {
		return nil, err
	}
	member.Store(n.member)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "checkin_cluster_members", Help: "Members of the cluster topology this node sees, itself included."},
		func() float64 { return float64(n.member.Members()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "checkin_cluster_members_removed_total",
		Help: "Members this node removed from the cluster because more than half of the members reported them silent (cluster.evict-silent-after)."},
		func() float64 { return float64(n.member.Removed()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "checkin_cluster_lease_age_seconds",
		Help: "Seconds since etcd last renewed this node's membership lease (0 without etcd); past cluster.etcd-lease-ttl the cluster removes the node."},
		func() float64 { return n.member.LeaseAge().Seconds() }))
	breaker := cfg.Breaker
	breaker.Report = n.member // members most of the cluster stopped calling are removed
	n.grains = actors.NewClient(n.member.Cluster, cfg.HTTP.RequestTimeout, cfg.CallRetries, n.view, m, n.pool, breaker, log.Named("grains"))
	grains.Store(n.grains)
	// The edge's own store calls are held to a bound of their own (the
	// checkin writes have the writers'); the grains' reads are not.
	edgeStore := admit.New(n.store, admit.Config{Target: cfg.StoreLatencyTarget, Floor: storeCallFloor, Ceiling: int64(cfg.HTTP.MaxInflight)}, admit.NewMetrics(reg))
	n.edge, err = edge.New(cfg.HTTP, edge.Deps{Grains: n.grains, Store: edgeStore, Ready: n.ready, Log: log.Named("http"), Registry: reg, APIKeys: keys,
		Notify: func(kind edge.RecordKind, id string) {
			if kind == edge.KindUserDeleted {
				n.forgetWritten(id)
			}
			sent.Add(float64(n.member.Broadcast(&messages.RecordChanged{Kind: noticeKinds[kind], Id: id})))
		},
		Members: n.member.Members})
	if err != nil {
		return nil, err
	}
	system.EventStream.Subscribe(func(ev any) {
		if rc, ok := ev.(*messages.RecordChanged); ok {
			if rc.GetKind() == messages.RecordChanged_KIND_USER_CURRENT {
				received.Inc()
				n.grains.ReloadCurrent(rc.GetId())
				return
			}
			for kind, k := range noticeKinds {
				if k == rc.GetKind() {
					received.Inc()
					n.edge.Forget(kind, rc.GetId())
					if kind == edge.KindUserDeleted {
						n.forgetWritten(rc.GetId())
					}
				}
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.DebugAddr != "" {
		if err := n.startDebug(cfg.DebugAddr); err != nil {
			return nil, err
		}
	}
	if n.ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	if n.cert != nil {
		tlsCfg := n.cert.config()
		go func() { n.served <- n.edge.ServeTLS(n.ln, tlsCfg) }()
	} else {
		go func() { n.served <- n.edge.Serve(n.ln) }()
	}
	log.Info("http server listening", zap.String("addr", n.ln.Addr().String()), zap.Bool("tls", n.cert != nil), zap.String("store", cfg.Store))
	return n, nil
}

// registerCertExpiry exports when each certificate the node shows stops
// being valid, so an alert can fire before it does: a renewal needs new
// files and SIGHUP.
func (n *node) registerCertExpiry(reg prometheus.Registerer) {
	certs := map[string]*certificate{"http": n.cert, "etcd": n.etcdCert}
	if n.peer != nil {
		certs["cluster"] = n.peer.cert
	}
	for name, c := range certs {
		if c == nil {
			continue
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "checkin_tls_certificate_expiry_timestamp_seconds",
			Help:        "When the certificate the node shows stops being valid (Unix seconds), by use: http, cluster, etcd.",
			ConstLabels: prometheus.Labels{"cert": name}}, c.expiry))
	}
}

// forgetWritten makes this node's store forget what it remembers having
// written for a deleted user.
func (n *node) forgetWritten(userID string) {
	if f, ok := persistence.As[persistence.WrittenForgetter](n.store); ok {
		f.ForgetWritten(userID)
	}
}

// noticeKinds maps the edge's record kinds to those of the notices
// members send each other when one changes.
var noticeKinds = map[edge.RecordKind]messages.RecordChanged_Kind{
	edge.KindUser:        messages.RecordChanged_KIND_USER,
	edge.KindLocation:    messages.RecordChanged_KIND_LOCATION,
	edge.KindUserDeleted: messages.RecordChanged_KIND_USER_DELETED,
}

// reload re-reads what SIGHUP re-reads: the API keys file, the TLS
// certificate and the cluster's TLS files, those that are configured. On an error the old ones stay.
func (n *node) reload() {
	done := false
	if n.cfg.APIKeysFile != "" {
		done = true
		if keys, err := n.keys.Reload(); err != nil {
			n.log.Error("API keys not reloaded; the keys in use stay", zap.Int("keys", keys), zap.Error(err))
		} else {
			n.log.Info("API keys reloaded", zap.Int("keys", keys))
		}
	}
	if n.cert != nil {
		done = true
		if err := n.cert.reload(); err != nil {
			n.log.Error("TLS certificate not reloaded; the one in use stays", zap.Error(err))
		} else {
			n.log.Info("TLS certificate reloaded", zap.String("file", n.cfg.TLSCertFile))
		}
	}
	if n.peer != nil {
		done = true
		if err := n.peer.reload(); err != nil {
			n.log.Error("cluster TLS certificate and authority not reloaded; the ones in use stay", zap.Error(err))
		} else {
			n.log.Info("cluster TLS certificate and authority reloaded", zap.String("file", n.cfg.PeerCertFile), zap.String("ca_file", n.cfg.PeerCAFile))
		}
	}
	if n.etcdCert != nil {
		done = true
		if err := n.etcdCert.reload(); err != nil {
			n.log.Error("etcd client certificate not reloaded; the one in use stays", zap.Error(err))
		} else {
			n.log.Info("etcd client certificate reloaded", zap.String("file", n.cfg.EtcdCertFile))
		}
	}
	if !done {
		n.log.Warn("SIGHUP: nothing to reload (no http.api-keys-file, no TLS certificate)")
	}
}

// ready: the store answers and this node is a cluster member.
func (n *node) ready(ctx context.Context) error {
	if err := n.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !n.member.Ready() {
		return errors.New("cluster: this node has not joined yet")
	}
	return nil
}

func (n *node) startDebug(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	cp, _ := persistence.As[checkpointer](n.store)
	mux.Handle("/admin/backup", &backups{dir: n.cfg.BackupDir, cp: cp, log: n.log.Named("backup")})
	mux.Handle("/admin/complete-checkins", &completions{grains: n.grains, store: n.store, log: n.log.Named("repair")})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug listen: %w", err)
	}
	// What net/http logs itself (a handler's panic, accept errors) goes
	// to the node's JSON log too, not to stderr as plain text.
	errLog, err := zap.NewStdLogAt(n.log.Named("debug"), zap.ErrorLevel)
	if err != nil {
		_ = ln.Close()
		return err
	}
	n.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
	go func() { _ = n.debug.Serve(ln) }()
	n.log.Info("debug server listening", zap.String("addr", ln.Addr().String()))
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		n.log.Warn("the debug server listens beyond loopback: anyone who reaches it can profile the node, take backups and complete checkins, without a key",
			zap.String("addr", ln.Addr().String()))
	}
	return nil
}

// stop shuts down in dependency order: stop taking requests and finish
// those in flight, leave the cluster (other members take this node's users
// over; its grains stop), write out queued checkins, close the store.
// Leaving before the writers close means other members' calls reach a
// grain that can still write until the handover.
func (n *node) stop() error {
	if n.stopped {
		return nil
	}
	n.stopped = true
	var errs []error
	if n.edge != nil { // also one that never served: its caches run
		errs = append(errs, n.edge.Shutdown())
	}
	if n.ln != nil {
		// Shutdown closes the listener the server took; one that a stop
		// right after the start reached before the server took it would
		// be served on after the stop.
		_ = n.ln.Close()
	}
	if n.debug != nil {
		errs = append(errs, n.debug.Close())
	}
	if n.member != nil {
		n.member.Stop()
	}
	if n.pool != nil {
		errs = append(errs, n.pool.Close(n.cfg.Writer.FlushTimeout+time.Second))
	}
	if n.view != nil {
		errs = append(errs, n.view.Close())
	}
	if n.store != nil {
		errs = append(errs, closeWithin(n.store.Close, n.cfg.Writer.FlushTimeout+time.Second))
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("shutdown finished with errors", zap.Error(err))
	} else {
		n.log.Info("shutdown complete")
	}
	return err
}

// closeWithin runs closeFn and waits for it at most d. The store's Close
// waits for its calls in flight, and a write the store holds back while
// its disk is full waits for room with no deadline; a node that must stop
// then exits without it, which is safe: every acknowledged write is in the
// synced log, and the next start replays it (as after a crash).
func closeWithin(closeFn func() error, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- closeFn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("the store did not close within %s (a write waits for the disk): stopping without it; every acknowledged write is in its synced log", d)
	}
}
