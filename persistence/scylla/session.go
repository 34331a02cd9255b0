package scylla

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap"
)

// ddlTimeout bounds one schema statement: schema changes wait for the
// cluster to agree and are much slower than data requests (seconds each on
// a busy node). Applying the schema is bounded by it per statement, not by
// the connection's timeouts.
const ddlTimeout = time.Minute

// setupTimeout bounds the setup of one session: connecting to the hosts
// and the driver's first requests (the cluster's hosts and schema).
func setupTimeout(cfg Config) time.Duration { return cfg.ConnectTimeout + cfg.Timeout }

// newCluster returns the driver configuration of cfg, bound to keyspace
// (empty: none). requestTimeout overrides cfg.Timeout when positive.
func newCluster(cfg Config, keyspace string, requestTimeout time.Duration, log *zap.Logger) (*gocql.ClusterConfig, error) {
	writeCL, err := parseConsistency(cfg.Consistency)
	if err != nil {
		return nil, err
	}
	c := gocql.NewCluster(cfg.Hosts...)
	c.Keyspace = keyspace
	c.ProtoVersion = cfg.ProtoVersion
	c.Consistency = writeCL
	c.SerialConsistency = gocql.LocalSerial
	c.Timeout = cfg.Timeout
	if requestTimeout > 0 {
		c.Timeout = requestTimeout
	}
	c.WriteTimeout = c.Timeout
	c.ConnectTimeout = cfg.ConnectTimeout
	c.NumConns = cfg.NumConns
	c.ReconnectInterval = cfg.ReconnectInterval
	if cfg.ProtoVersion < 5 {
		c.Compressor = gocql.SnappyCompressor{}
	}
	// Token-aware routing sends each statement to a replica of its
	// partition (and, on Scylla, to the shard that owns it); the fallback
	// orders the other hosts, restricted to the local DC when one is set.
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	c.RetryPolicy = idempotentRetry{retries: cfg.Retries}
	c.ApplicationInfo = gocql.NewStaticApplicationInfo("checkin", "", "")
	c.Logger = driverLogger{log.Named("gocql")}
	if cfg.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: string(cfg.Password)}
	}
	if cfg.translator != nil {
		c.AddressTranslator = cfg.translator
	}
	if cfg.TLS {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		// The driver sets each connection's server name to the node's
		// address, so the certificate must name it.
		c.SslOpts = &gocql.SslOptions{Config: tc, EnableHostVerification: true}
	}
	return c, nil
}

// tlsConfig is the client side of TLS to the nodes.
func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("scylla.tls-ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("scylla.tls-ca-file: %s holds no PEM certificate", cfg.TLSCAFile)
		}
	}
	if cfg.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("scylla.tls-cert-file / scylla.tls-key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// connect opens a session, giving up when ctx ends or after setupTimeout
// of cfg, whichever comes first. The driver's session setup takes no
// context; when connect gives up first, the session it still makes is
// closed in the background (setup is bounded by the connect timeout).
func connect(ctx context.Context, cfg Config, keyspace string, requestTimeout time.Duration, log *zap.Logger) (*gocql.Session, error) {
	c, err := newCluster(cfg, keyspace, requestTimeout, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout(cfg))
	defer cancel()
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, storeErr(fmt.Sprintf("connect to %v", cfg.Hosts), r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, storeErr(fmt.Sprintf("connect to %v", cfg.Hosts), ctx.Err())
	}
}

// idempotentRetry retries a failed statement on the next host of its query
// plan, at once and at most retries times, when the statement is marked
// idempotent, the error is transient (see classify) and the statement's
// context is still live. Other statements - lightweight transactions above
// all, where a retry could report the caller's own insert as a conflict - fail
// on the first error.
type idempotentRetry struct{ retries int }

var _ gocql.RetryPolicy = idempotentRetry{}

func (r idempotentRetry) Attempt(q gocql.RetryableQuery) bool {
	if ctx := q.Context(); q.Attempts() > r.retries || (ctx != nil && ctx.Err() != nil) {
		return false
	}
	i, ok := q.(interface{ IsIdempotent() bool })
	return ok && i.IsIdempotent()
}

func (r idempotentRetry) GetRetryType(err error) gocql.RetryType {
	if classify(err).transient {
		return gocql.RetryNextHost
	}
	return gocql.Rethrow
}

// noRetry leaves retries to the caller: checkin writes retry whole batches
// with backoff within their deadline (see Store.execWithRetry).
var noRetry gocql.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
