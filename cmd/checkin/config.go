package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/cluster"
	"github.com/checkin/checkin/cmd/internal/goruntime"
	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence/pebble"
	"github.com/checkin/checkin/persistence/scylla"
)

// config is every setting of a node; each is a flag with an env twin.
type config struct {
	HTTP         edge.Config
	APIKeysFile  string // API keys, one per line; re-read on SIGHUP
	TLSCertFile  string // with TLSKeyFile: serve HTTPS; re-read on SIGHUP
	TLSKeyFile   string
	PeerCertFile string // with PeerKeyFile and PeerCAFile: mutual TLS on the cluster port; re-read on SIGHUP
	PeerKeyFile  string
	PeerCAFile   string
	EtcdTLS      bool // TLS to etcd, verified against EtcdCAFile (or the system's authorities)
	EtcdCAFile   string
	EtcdCertFile string // with EtcdKeyFile: client certificate for an etcd that requires one
	EtcdKeyFile  string
	DrainDelay   time.Duration // on SIGTERM, serve this long while draining (edge.Server.Drain)
	// StoreLatencyTarget is the latency the store calls made for requests
	// outside the checkin write path are kept near (admit.Store); 0: off.
	StoreLatencyTarget time.Duration
	Cluster            cluster.Config
	Writer             actors.WriterConfig
	Grain              actors.GrainConfig
	Scylla             scylla.Config
	CallRetries        int
	Breaker            actors.BreakerConfig // calls to a member that stopped answering
	Store              string
	DataDir            string
	PebbleCacheMB      int // block cache of the embedded store
	PebbleMemTableMB   int // one memtable of the embedded store
	PebbleIOUring      bool
	PebbleStuckAfter   time.Duration // writes (reads) in flight with none finishing this long: the disk does not answer
	LogLevel           string
	DebugAddr          string
	BackupDir          string // checkpoints of the embedded store (POST /admin/backup)
	Runtime            goruntime.Config
}

func defaultConfig() config {
	return config{HTTP: edge.DefaultConfig(), Cluster: cluster.DefaultConfig(), Writer: actors.DefaultWriterConfig(),
		Grain: actors.DefaultGrainConfig(), Scylla: scylla.DefaultConfig(), CallRetries: 3, Breaker: actors.DefaultBreakerConfig(), Runtime: goruntime.DefaultConfig(), Store: "pebble", DataDir: "./data", LogLevel: "info",
		PebbleCacheMB: pebble.DefaultCacheSize >> 20, PebbleMemTableMB: pebble.DefaultMemTableSize >> 20, PebbleIOUring: false, PebbleStuckAfter: pebble.DefaultStuckAfter,
		StoreLatencyTarget: 500 * time.Millisecond}
}

// register binds every setting to a flag of fs.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTP.Addr, "http.addr", c.HTTP.Addr, "HTTP listen address (host:port; port 0 picks a free port)")
	fs.DurationVar(&c.HTTP.RequestTimeout, "http.request-timeout", c.HTTP.RequestTimeout, "deadline of one request's work")
	fs.IntVar(&c.HTTP.BodyLimit, "http.body-limit", c.HTTP.BodyLimit, "largest request body in bytes")
	fs.IntVar(&c.HTTP.MaxInflight, "http.max-inflight", c.HTTP.MaxInflight, "/v1 requests served at once; more are refused with 503 (the operations endpoints never are)")
	fs.DurationVar(&c.HTTP.LatencyTarget, "http.latency-target", c.HTTP.LatencyTarget, "the time in the node that /v1 requests are kept near when the node is overloaded, by refusing requests beyond an adaptive bound on those in flight (between 64, or http.max-inflight if lower, and http.max-inflight) with 503 at once; fewer requests may be answered, but those answered come in time (0: off, only http.max-inflight bounds them)")
	fs.IntVar(&c.HTTP.MaxConns, "http.max-conns", c.HTTP.MaxConns, "connections served at once, idle keep-alive ones included; more are answered 503 and closed")
	fs.IntVar(&c.HTTP.MaxConnsPerIP, "http.max-conns-per-ip", c.HTTP.MaxConnsPerIP, "connections served at once from one client address; more are answered 429 and closed (connections from http.trusted-proxies are not bounded; 0: no bound)")
	fs.DurationVar(&c.HTTP.IdleTimeout, "http.idle-timeout", c.HTTP.IdleTimeout, "a connection with no request for this long (a new one before its first, a keep-alive one between two) is closed without an answer (it holds one of http.max-conns)")
	fs.Float64Var(&c.HTTP.RateLimit, "http.rate-limit", c.HTTP.RateLimit, "requests per second each client may send to /v1, more are refused with 429 (a client is its API key, or its IP address on a node without keys; per node, or shared with http.rate-scope=cluster; 0: no limit)")
	fs.IntVar(&c.HTTP.RateBurst, "http.rate-burst", c.HTTP.RateBurst, "requests a client may send at once above http.rate-limit (0: the rate rounded up)")
	fs.StringVar(&c.HTTP.RateScope, "http.rate-scope", c.HTTP.RateScope, "node: every node allows each client http.rate-limit and http.rate-burst; cluster: each allows its share, both divided by the cluster's members, so that a client spread evenly over the nodes gets about the limit in all")
	fs.IntVar(&c.HTTP.RateClients, "http.rate-clients", c.HTTP.RateClients, "clients whose rate is tracked at once; beyond it quiet clients are forgotten first")
	fs.StringVar(&c.HTTP.ProxyHeader, "http.proxy-header", c.HTTP.ProxyHeader, "header that carries the client's address from a trusted proxy, e.g. X-Real-IP (rate limits and access logs; empty: the peer's address)")
	fs.Var((*commaList)(&c.HTTP.TrustedProxies), "http.trusted-proxies", "comma-separated IPs or CIDR ranges of the proxies whose http.proxy-header is believed")
	fs.DurationVar(&c.HTTP.ShutdownGrace, "http.shutdown-grace", c.HTTP.ShutdownGrace, "how long shutdown waits for requests in flight")
	fs.StringVar(&c.TLSCertFile, "http.tls-cert-file", c.TLSCertFile, "PEM certificate (chain) of the node: with http.tls-key-file the API is served over HTTPS only (TLS 1.2+), both re-read on SIGHUP (empty: plain HTTP)")
	fs.StringVar(&c.TLSKeyFile, "http.tls-key-file", c.TLSKeyFile, "PEM private key of http.tls-cert-file")
	fs.DurationVar(&c.DrainDelay, "http.drain-delay", c.DrainDelay, "on SIGTERM, how long the node goes on serving while /readyz answers 503 and each answer closes its connection, so load balancers move away before it stops (0: stop at once)")
	fs.DurationVar(&c.StoreLatencyTarget, "http.store-latency-target", c.StoreLatencyTarget, "the latency the store calls made for requests outside the checkin write path (range reads, reads by id, reads of users and locations the cache misses, user and location writes) are kept near when the store or node is overloaded, by refusing calls beyond an adaptive bound with 503 (0: off, only http.max-inflight bounds them)")
	fs.BoolVar(&c.HTTP.AccessLog, "http.access-log", c.HTTP.AccessLog, "log every request")
	fs.StringVar(&c.APIKeysFile, "http.api-keys-file", c.APIKeysFile, "file of API keys, one per line (# comments), re-read on SIGHUP; with keys here or in "+edge.EnvAPIKeys+" every /v1 request needs \"Authorization: Bearer <key>\" (empty and no env keys: /v1 is open)")
	fs.IntVar(&c.HTTP.CacheSizeMB, "cache.size-mb", c.HTTP.CacheSizeMB, "size of the user and location cache in MB")
	fs.DurationVar(&c.HTTP.CacheTTL, "cache.ttl", c.HTTP.CacheTTL, "how long a cached user or location is kept")

	fs.StringVar(&c.Store, "store", c.Store, "storage backend: pebble (embedded) or scylla")
	fs.StringVar(&c.DataDir, "data.dir", c.DataDir, "directory of the embedded store")
	fs.IntVar(&c.PebbleCacheMB, "pebble.cache-size-mb", c.PebbleCacheMB, "block cache of the embedded store in MB")
	fs.IntVar(&c.PebbleMemTableMB, "pebble.memtable-size-mb", c.PebbleMemTableMB, "one memtable of the embedded store in MB (also bounds the log replayed at start)")
	fs.DurationVar(&c.PebbleStuckAfter, "pebble.stuck-after", c.PebbleStuckAfter, "how long writes (or reads) of the embedded store may be in flight with none finishing before the node counts its disk as not answering: not ready, and new writes (reads) refused at once until one finishes")
	fs.BoolVar(&c.PebbleIOUring, "pebble.io-uring", c.PebbleIOUring, "sync the embedded store's files through io_uring where the kernel allows it, so that waiting for the disk does not hold a Go P (false: blocking fsync calls). Either way a write is acknowledged only once synced")

	fs.IntVar(&c.Writer.Writers, "writer.count", 0, "writer actors per node (0: 1 for pebble, 4 for scylla)")
	fs.IntVar(&c.Writer.MaxBatch, "writer.max-batch", c.Writer.MaxBatch, "checkins per store batch at most")
	fs.DurationVar(&c.Writer.Linger, "writer.linger", c.Writer.Linger, "how long a partial batch waits at most for company while checkins are on their way or the node is busy (0: never)")
	fs.IntVar(&c.Writer.QueueSize, "writer.queue-size", c.Writer.QueueSize, "checkins queued per writer before new ones get 503")
	fs.IntVar(&c.Writer.MaxInflight, "writer.max-inflight", 0, "store batches in flight per writer (0: 1 for pebble, 8 for scylla)")
	fs.DurationVar(&c.Writer.FlushTimeout, "writer.flush-timeout", c.Writer.FlushTimeout, "deadline of one store batch")
	fs.IntVar(&c.Writer.LookupConcurrency, "writer.lookup-concurrency", 0, "checkin-id look-ups a batch runs at once, for a store that looks ids up one by one (0: 1 for pebble, 16 for scylla)")
	fs.DurationVar(&c.Writer.LatencyTarget, "writer.latency-target", c.Writer.LatencyTarget, "the wait for the store (from a checkin's arrival at its writer to the store's answer) the writers keep checkins near when the store or node is overloaded, by refusing checkins beyond an adaptive bound with 503 (0: off, only writer.queue-size bounds them)")

	fs.DurationVar(&c.Grain.IdleTimeout, "grain.idle-timeout", c.Grain.IdleTimeout, "passivate a user grain after this long without requests")
	fs.DurationVar(&c.Grain.MissingTimeout, "grain.missing-timeout", c.Grain.MissingTimeout, "passivate the grain of a user that does not exist after this long")
	fs.IntVar(&c.Grain.RecentIDs, "grain.recent-ids", c.Grain.RecentIDs, "checkin ids each grain remembers for retries (older ones are looked up in the store)")
	fs.IntVar(&c.Grain.KnownIDs, "grain.known-ids", c.Grain.KnownIDs, "further checkin ids each grain keeps as 8-byte hashes (pebble store), so that new ids of users with no more checkins need no store look-up; 0: none")
	fs.DurationVar(&c.Grain.StoreTimeout, "grain.store-timeout", c.Grain.StoreTimeout, "deadline of a store call made by a grain: its reads, creating and deleting its user; also how long a grain handed over tries to pass the checkin writes it was completing to the user's new owner")
	fs.IntVar(&c.Grain.ViewSizeMB, "grain.view-size-mb", c.Grain.ViewSizeMB, "memory of the current locations that active grains publish for reads")
	fs.DurationVar(&c.Grain.DeleteRetry, "grain.delete-retry", c.Grain.DeleteRetry, "a checkin delete the store did not confirm is sent again by the user's grain after this long, then after twice the previous wait (at most 1m) until the store confirms it; each wait is drawn from its upper half")
	fs.DurationVar(&c.Grain.WriteRetry, "grain.write-retry", c.Grain.WriteRetry, "a checkin write that failed and may have stored part of the checkin is sent again by the user's grain after this long, then after twice the previous wait (at most 1m) until the store confirms it; each wait is drawn from its upper half")
	fs.IntVar(&c.CallRetries, "grain.call-retries", c.CallRetries, "attempts of a grain call that found no activation (all within the request deadline)")
	fs.IntVar(&c.Breaker.Timeouts, "grain.member-timeouts", c.Breaker.Timeouts, "calls to another member that time out in a row (with no answer between) before calls to it fail at once with 503 for grain.member-pause (0: never)")
	fs.DurationVar(&c.Breaker.Pause, "grain.member-pause", c.Breaker.Pause, "how long calls to a member that stopped answering fail at once; then one call probes it while the others still fail at once: its answer clears the member, its timeout stops calls again")

	fs.StringVar(&c.Cluster.Name, "cluster.name", c.Cluster.Name, "cluster name; nodes with other names never join")
	fs.StringVar(&c.Cluster.Addr, "cluster.addr", c.Cluster.Addr, "host:port of this node's actor endpoint (port 0 picks a free port)")
	fs.StringVar(&c.Cluster.AdvertisedAddr, "cluster.advertised-addr", c.Cluster.AdvertisedAddr, "host:port other nodes reach this node at (default: cluster.addr)")
	fs.StringVar(&c.Cluster.Provider, "cluster.provider", c.Cluster.Provider, "membership: standalone (one node) or etcd (nodes register in etcd; needs store=scylla)")
	fs.Var((*commaList)(&c.Cluster.Etcd.Endpoints), "cluster.etcd-endpoints", "comma-separated host:port of the etcd servers (cluster.provider=etcd)")
	fs.StringVar(&c.Cluster.Etcd.Prefix, "cluster.etcd-prefix", c.Cluster.Etcd.Prefix, "etcd key prefix under which members register")
	fs.DurationVar(&c.Cluster.Etcd.DialTimeout, "cluster.etcd-dial-timeout", c.Cluster.Etcd.DialTimeout, "timeout of connecting to etcd (a node that cannot reach it at start exits)")
	fs.DurationVar(&c.Cluster.Etcd.LeaseTTL, "cluster.etcd-lease-ttl", c.Cluster.Etcd.LeaseTTL, "how long a member's etcd record outlives its last renewal, whole seconds: the others take this long to see a node that died leave, and a node paused or cut off from etcd for longer is removed and exits to be started again")
	fs.DurationVar(&c.Cluster.EvictSilentAfter, "cluster.evict-silent-after", c.Cluster.EvictSilentAfter, "how long another member that this node stopped calling (grain.member-timeouts) must have answered none of its pings (one a second) before this node reports the member in etcd; a member that more than half of the members report is removed from the cluster, and the others take its users over (0: report none, remove none)")
	fs.BoolVar(&c.EtcdTLS, "cluster.etcd-tls", c.EtcdTLS, "connect to etcd over TLS (1.2 or newer), verifying its certificate; credentials come from "+envEtcdUsername+" and "+envEtcdPassword)
	fs.StringVar(&c.EtcdCAFile, "cluster.etcd-tls-ca-file", c.EtcdCAFile, "PEM certificate(s) of the authority that signed etcd's certificate (empty: the system's authorities)")
	fs.StringVar(&c.EtcdCertFile, "cluster.etcd-tls-cert-file", c.EtcdCertFile, "PEM client certificate, for an etcd that requires one (with cluster.etcd-tls-key-file)")
	fs.StringVar(&c.EtcdKeyFile, "cluster.etcd-tls-key-file", c.EtcdKeyFile, "PEM private key of cluster.etcd-tls-cert-file")
	fs.DurationVar(&c.Cluster.RequestTimeout, "cluster.request-timeout", c.Cluster.RequestTimeout, "timeout of the cluster's internal requests, among them asking the owner node to activate a grain (keep it below http.request-timeout)")
	fs.StringVar(&c.Cluster.LogLevel, "cluster.log-level", c.Cluster.LogLevel, "lowest level of the actor runtime's own logs")
	fs.IntVar(&c.Cluster.PIDCacheSize, "cluster.pid-cache-size", c.Cluster.PIDCacheSize, "most addresses of users' grains on other nodes this node keeps, about 200 bytes each, so that its next call for such a user goes straight there; past it the oldest share is dropped and those users' next calls ask the owner again")
	fs.StringVar(&c.PeerCertFile, "cluster.tls-cert-file", c.PeerCertFile, "PEM certificate (chain) this node shows other members: with cluster.tls-key-file and cluster.tls-ca-file the cluster port speaks mutual TLS 1.3 only, all three re-read on SIGHUP (empty: plain gRPC)")
	fs.StringVar(&c.PeerKeyFile, "cluster.tls-key-file", c.PeerKeyFile, "PEM private key of cluster.tls-cert-file")
	fs.StringVar(&c.PeerCAFile, "cluster.tls-ca-file", c.PeerCAFile, "PEM certificate(s) of the authority that signs every member's certificate; a member whose certificate it did not sign is refused")

	c.Scylla.RegisterFlags(fs)

	fs.StringVar(&c.LogLevel, "log.level", c.LogLevel, "lowest log level: debug, info, warn, error")
	c.Runtime.RegisterFlags(fs)
	fs.StringVar(&c.DebugAddr, "debug.addr", c.DebugAddr, "address of the debug server: pprof, POST /admin/backup and POST /admin/complete-checkins (empty: off); keep it on loopback")
	fs.StringVar(&c.BackupDir, "backup.dir", c.BackupDir, "where POST /admin/backup on the debug server writes checkpoints of the embedded store, each in a new directory (empty: backups off); on the data dir's file system, table files are hard-linked")
}

func (c config) validate() error {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	if c.Store != "pebble" && c.Store != "scylla" {
		return fmt.Errorf("store: unknown backend %q (known: pebble, scylla)", c.Store)
	}
	if c.DataDir == "" {
		return errors.New("data.dir must not be empty")
	}
	if c.PebbleCacheMB < 1 {
		return errors.New("pebble.cache-size-mb must be at least 1")
	}
	if c.PebbleMemTableMB < 1 || c.PebbleMemTableMB > 1024 {
		return errors.New("pebble.memtable-size-mb must be between 1 and 1024")
	}
	if c.PebbleStuckAfter < time.Second {
		return fmt.Errorf("pebble.stuck-after must be at least 1s (a disk that works may take hundreds of milliseconds for one sync), not %s", c.PebbleStuckAfter)
	}
	if err := c.Runtime.Validate(); err != nil {
		return err
	}
	if c.Cluster.Provider != "standalone" && c.Store != "scylla" {
		return fmt.Errorf("cluster.provider=%s needs store=scylla: the embedded store holds only what its own node wrote, and a user's grain moves between nodes", c.Cluster.Provider)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("http.tls-cert-file and http.tls-key-file go together: set both for HTTPS, neither for plain HTTP")
	}
	if set := btoi(c.PeerCertFile != "") + btoi(c.PeerKeyFile != "") + btoi(c.PeerCAFile != ""); set != 0 && set != 3 {
		return errors.New("cluster.tls-cert-file, cluster.tls-key-file and cluster.tls-ca-file go together: set all three for mutual TLS between members, none for plain gRPC")
	}
	if !c.EtcdTLS && (c.EtcdCAFile != "" || c.EtcdCertFile != "" || c.EtcdKeyFile != "") {
		return errors.New("cluster.etcd-tls-ca-file, cluster.etcd-tls-cert-file and cluster.etcd-tls-key-file need cluster.etcd-tls=true")
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return errors.New("cluster.etcd-tls-cert-file and cluster.etcd-tls-key-file go together")
	}
	if c.StoreLatencyTarget < 0 {
		return errors.New("http.store-latency-target must be 0 (off) or positive")
	}
	if c.DrainDelay < 0 {
		return errors.New("http.drain-delay must not be negative")
	}
	if c.BackupDir != "" && c.Store != "pebble" {
		return errors.New("backup.dir backs up the embedded store (store=pebble); back a Scylla cluster up with its own tools")
	}
	if c.BackupDir != "" && c.DebugAddr == "" {
		return errors.New("backup.dir needs debug.addr: backups are taken with POST /admin/backup on the debug server")
	}
	if c.CallRetries < 1 {
		return errors.New("grain.call-retries must be at least 1")
	}
	return errors.Join(c.HTTP.Validate(), c.Cluster.Validate(), c.Writer.Validate(), c.Grain.Validate(), c.Breaker.Validate(), c.Scylla.Validate())
}

// resolve fills the settings whose default depends on others.
func (c *config) resolve() {
	if c.Writer.Writers == 0 {
		c.Writer.Writers = 1 // pebble: one synced commit at a time makes the largest batches
		if c.Store == "scylla" {
			c.Writer.Writers = 4
		}
	}
	if c.Writer.LookupConcurrency == 0 {
		c.Writer.LookupConcurrency = 1 // local reads: a goroutine each would cost more than it saves
		if c.Store == "scylla" {
			c.Writer.LookupConcurrency = 16 // a round trip each: overlap them
		}
	}
	if c.Writer.MaxInflight == 0 {
		c.Writer.MaxInflight = 1 // pebble: one synced commit per writer; concurrent ones share a sync anyway
		if c.Store == "scylla" {
			c.Writer.MaxInflight = 8 // a round trip per batch: keep several in flight
		}
	}
}

// commaList is a comma-separated flag value; Set replaces the list.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Set(v string) error {
	*l = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
