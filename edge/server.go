package edge

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/admit"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the API description served at /openapi.yaml.
func OpenAPI() []byte { return openAPI }

// Grains is what the edge needs from the user grains.
type Grains interface {
	CreateUser(ctx context.Context, u persistence.User) (persistence.User, error)
	Checkin(ctx context.Context, c persistence.Checkin, timestampSet, clientID bool) (persistence.Checkin, bool, error)
	CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error)
	DeleteUser(ctx context.Context, id string) error
	DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error)
}

// Config of the HTTP edge.
type Config struct {
	Addr           string
	RequestTimeout time.Duration // deadline of one request's work (grain calls, store reads)
	BodyLimit      int           // bytes
	MaxInflight    int           // API (/v1) requests served at once; more get 503 at once
	// LatencyTarget is the time in the node (from the handler's start to
	// its answer) that /v1 requests are kept near when the node is
	// overloaded, by an adaptive bound on those in flight (admit.Bound,
	// between apiFloor and MaxInflight); the others get 503 at once. 0
	// (the default): MaxInflight only.
	LatencyTarget time.Duration
	MaxConns      int // connections served at once; more are answered 503 and closed
	// MaxConnsPerIP bounds the connections of one client address (0: no
	// bound); more are answered 429 and closed. Connections from
	// TrustedProxies are not bounded by it.
	MaxConnsPerIP int
	IdleTimeout   time.Duration // a connection with no request for this long (a new one before its first, a keep-alive one between two) is closed
	CacheSizeMB   int           // location and user cache
	CacheTTL      time.Duration
	AccessLog     bool
	ShutdownGrace time.Duration
	// RateLimit is the requests per second each client may send to /v1
	// (0: no limit), RateBurst how many it may send at once; a client is
	// its API key when the node has keys, else its IP address. RateClients
	// bounds the clients tracked at once.
	RateLimit   float64
	RateBurst   int
	RateClients int
	// RateScope is RateScopeNode (each node allows every client RateLimit
	// and RateBurst) or RateScopeCluster (each allows its share, both
	// divided by the cluster's members, Deps.Members).
	RateScope string
	// ProxyHeader names the header that carries the client's address when
	// the request comes from one of TrustedProxies (IPs or CIDRs), as a
	// load balancer in front of the node sets it; the address is then the
	// client in rate limits and access logs. Empty: the peer's address.
	ProxyHeader    string
	TrustedProxies []string
}

// DefaultConfig listens on :8080.
func DefaultConfig() Config {
	return Config{Addr: ":8080", RequestTimeout: 5 * time.Second, BodyLimit: 64 << 10, MaxInflight: 4096, MaxConns: 16384, IdleTimeout: time.Minute,
		CacheSizeMB: 64, CacheTTL: 10 * time.Minute, AccessLog: true, ShutdownGrace: 15 * time.Second, RateClients: 100_000, RateScope: RateScopeNode}
}

// The scopes of a rate limit (Config.RateScope).
const (
	RateScopeNode    = "node"
	RateScopeCluster = "cluster"
)

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	switch {
	case c.RequestTimeout <= 0:
		return errors.New("http.request-timeout must be positive")
	case c.BodyLimit < 1024:
		return errors.New("http.body-limit must be at least 1024")
	case c.MaxInflight < 1:
		return errors.New("http.max-inflight must be at least 1")
	case c.LatencyTarget < 0:
		return errors.New("http.latency-target must be 0 (off) or positive")
	case c.MaxConns < 1:
		return errors.New("http.max-conns must be at least 1")
	case c.MaxConnsPerIP < 0:
		return errors.New("http.max-conns-per-ip must be 0 (no bound) or at least 1")
	case c.IdleTimeout <= 0:
		return errors.New("http.idle-timeout must be positive")
	case c.CacheSizeMB < 1:
		return errors.New("cache.size-mb must be at least 1")
	case c.CacheTTL <= 0:
		return errors.New("cache.ttl must be positive")
	case c.ShutdownGrace <= 0:
		return errors.New("http.shutdown-grace must be positive")
	case c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0):
		return errors.New("http.rate-limit must be 0 (no limit) or a positive number of requests per second")
	case c.RateBurst < 0:
		return errors.New("http.rate-burst must not be negative")
	case c.RateClients < rateShards:
		return fmt.Errorf("http.rate-clients must be at least %d", rateShards)
	case c.RateScope != RateScopeNode && c.RateScope != RateScopeCluster:
		return fmt.Errorf("http.rate-scope must be %s or %s, not %q", RateScopeNode, RateScopeCluster, c.RateScope)
	case c.ProxyHeader != "" && len(c.TrustedProxies) == 0:
		return errors.New("http.proxy-header needs http.trusted-proxies: a header from anyone else could be forged")
	case c.ProxyHeader == "" && len(c.TrustedProxies) > 0:
		return errors.New("http.trusted-proxies needs http.proxy-header")
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return fmt.Errorf("http.trusted-proxies: %q is neither an IP address nor a CIDR range", p)
			}
		}
	}
	return nil
}

// Deps are the parts the edge talks to.
type Deps struct {
	Grains   Grains
	Store    persistence.Store
	Ready    func(context.Context) error // nil error: the node can serve
	Log      *zap.Logger
	Registry *prometheus.Registry
	// APIKeys: with any, every /v1 request must carry one (LoadAPIKeys);
	// nil or none: /v1 is open.
	APIKeys *APIKeys
	// Notify tells the other nodes that a user or location was updated,
	// so that they call Forget; nil on a node alone. The id is its own to
	// keep (a copy, not the request's buffer).
	Notify func(kind RecordKind, id string)
	// Members counts the cluster's members, this node included: a rate
	// limit of RateScopeCluster is shared among them. Nil: one.
	Members func() int
}

// RecordKind names what a change touched: a user or a location updated,
// or a user deleted.
type RecordKind int

// The record kinds.
const (
	KindUser RecordKind = iota + 1
	KindLocation
	KindUserDeleted
)

// Forget drops this node's cached copy of a user or location that another
// node updated.
func (s *Server) Forget(kind RecordKind, id string) { s.records.forget(kind, id) }

// Server is the HTTP edge of one node.
type Server struct {
	cfg         Config
	app         *fiber.App
	grains      Grains
	store       persistence.Store
	records     *records
	ready       func(context.Context) error
	log         *zap.Logger
	refusals    *zap.Logger // log, at most refusalLogsPerSecond lines a second
	m           *metrics
	ids         *requestIDs
	inflight    atomic.Int64
	api         *admit.Bound // /v1 requests in flight (apiInflight)
	apiInflight atomic.Int64
	draining    atomic.Bool
	closed      atomic.Bool // Shutdown began: no more late cache drops
	keys        *APIKeys
	notify      func(RecordKind, string)
	limiter     *rateLimiter // nil: no rate limit
	shares      func() int   // nodes the rate limit is shared among; nil: not shared
	now         func() time.Time
}

// New builds the app; Serve starts it.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rec, err := newRecords(d.Store, cfg.CacheSizeMB, cfg.CacheTTL, cfg.RequestTimeout)
	if err != nil {
		return nil, fmt.Errorf("edge: cache: %w", err)
	}
	s := &Server{cfg: cfg, grains: d.Grains, store: d.Store, records: rec, ready: d.Ready, log: d.Log, m: newMetrics(d.Registry), ids: newRequestIDs(), keys: d.APIKeys, notify: d.Notify, now: time.Now}
	s.api = admit.NewBound(cfg.LatencyTarget, apiFloor, int64(cfg.MaxInflight), func(n int64) { s.m.apiLimit.Set(float64(n)) })
	s.refusals = d.Log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, refusalLogsPerSecond, 0)
	}))
	if cfg.RateLimit > 0 {
		burst := cfg.RateBurst
		if burst == 0 {
			burst = max(1, int(math.Ceil(cfg.RateLimit)))
		}
		s.limiter = newRateLimiter(cfg.RateLimit, burst, cfg.RateClients)
		if cfg.RateScope == RateScopeCluster && d.Members != nil {
			s.shares = d.Members
		}
	}
	if n := d.APIKeys.Len(); n > 0 {
		s.log.Info("API keys required on /v1", zap.Int("keys", n))
	} else {
		s.log.Warn("no API keys configured: /v1 is open to every client that can reach it (set " + EnvAPIKeys + " or http.api-keys-file)")
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "checkin",
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           readTimeout(cfg),
		WriteTimeout:          cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:           cfg.IdleTimeout,
		ErrorHandler:          s.errorHandler,
		DisableStartupMessage: true,
		// The client's address from a trusted proxy's header (Ctx.IP):
		// only from the proxies named, and only a valid address.
		ProxyHeader:             cfg.ProxyHeader,
		EnableTrustedProxyCheck: cfg.ProxyHeader != "",
		TrustedProxies:          cfg.TrustedProxies,
		EnableIPValidation:      cfg.ProxyHeader != "",
		// Not Immutable: params, queries, headers, method and path point
		// into the request's buffers, valid only while it is served
		// (copying them all cost four allocations per request). What
		// outlives a request is copied where it is kept: a grain identity
		// when the grain is activated (actors), metric label sets on first
		// use (metrics.observe); caches copy their keys; JSON bodies decode
		// to fresh strings.
	})
	s.app.Use(s.ids.middleware)
	s.app.Use(s.observe) // outside recover, so a recovered panic is counted and logged as a 500
	s.app.Use(recover.New(recover.Config{EnableStackTrace: true, StackTraceHandler: s.logPanic}))
	s.routes(d.Registry)
	return s, nil
}

func (s *Server) routes(reg *prometheus.Registry) {
	a := s.app
	a.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	a.Get("/readyz", s.readyz)
	a.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	a.Get("/openapi.yaml", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "application/yaml")
		return c.Send(openAPI)
	})
	v1 := a.Group("/v1", noStore, s.authenticate)
	// The bound on requests in flight, the rate limit and the adaptive
	// bound run, in that order, as the first handlers of each API route,
	// not as middleware: a request they refuse is counted and logged
	// under its route; the operations endpoints above (probes, scrapes)
	// are never refused, least of all when the node is busiest; and a
	// request refused at capacity has not spent a token of the client's
	// rate limit.
	bounds := []fiber.Handler{s.limit}
	if s.limiter != nil {
		bounds = append(bounds, s.rateLimit)
	}
	if s.cfg.LatencyTarget > 0 {
		bounds = append(bounds, s.admit)
	}
	api := func(h fiber.Handler) []fiber.Handler { return append(slices.Clip(bounds), h) }
	v1.Post("/users", api(s.createUser)...)
	v1.Get("/users", api(s.listUsers)...)
	v1.Get("/users/:id", api(s.getUser)...)
	v1.Patch("/users/:id", api(s.updateUser)...)
	v1.Delete("/users/:id", api(s.deleteUser)...)
	v1.Post("/users/:id/checkins", api(s.checkin)...)
	v1.Get("/users/:id/checkins", api(s.listCheckins)...)
	v1.Get("/users/:id/checkins/:checkin_id", api(s.getCheckin)...)
	v1.Delete("/users/:id/checkins/:checkin_id", api(s.deleteCheckin)...)
	v1.Get("/users/:id/location", api(s.currentLocation)...)
	v1.Post("/locations", api(s.createLocation)...)
	v1.Get("/locations", api(s.listLocations)...)
	v1.Get("/locations/:id", api(s.getLocation)...)
	v1.Patch("/locations/:id", api(s.updateLocation)...)
	v1.Delete("/locations/:id", api(s.deleteLocation)...)
}

// noStore marks every /v1 answer, errors included, as not to be kept by
// any cache between client and node: users, locations and checkins change
// (PATCH, DELETE, new checkins), and a kept answer would be served stale.
func noStore(c *fiber.Ctx) error {
	c.Response().Header.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

// App exposes the Fiber app (tests drive it over a listener).
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts plain HTTP connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(s.firstRequests(s.limitConns(ln, nil)))
}

// ServeTLS accepts connections on ln and serves HTTPS on them with cfg
// until Shutdown. (Fiber does not see the TLS listener under the wrapper:
// only its startup message and listen hooks, unused here, would.)
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return s.app.Listener(s.firstRequests(tls.NewListener(s.limitConns(ln, cfg), cfg)))
}

// firstRequests times the first request of each connection from ln
// (firstRequests).
func (s *Server) firstRequests(ln net.Listener) net.Listener {
	return &firstRequests{Listener: ln, idle: s.cfg.IdleTimeout, read: readTimeout(s.cfg)}
}

// readTimeout is how long a request, once its first byte arrived, has to
// arrive whole.
func readTimeout(cfg Config) time.Duration { return cfg.RequestTimeout + 5*time.Second }

// limitConns bounds the connections served from ln (connLimit); tlsCfg is
// how they speak, nil for plain HTTP.
func (s *Server) limitConns(ln net.Listener, tlsCfg *tls.Config) net.Listener {
	pause := refusalPause
	if tlsCfg != nil {
		pause = tlsRefusalPause
	}
	l := &connLimit{Listener: ln, max: int64(s.cfg.MaxConns), tls: tlsCfg, pause: pause, refuser: make(chan struct{}, maxRefusing),
		log: s.refusals, gauge: s.m.conns, refused: s.m.connsRefused, refusedPerIP: s.m.connsRefusedPerIP}
	if s.cfg.MaxConnsPerIP > 0 {
		l.perIP = newPerIPConns(s.cfg.MaxConnsPerIP, pause, s.cfg.TrustedProxies)
	}
	return l
}

// Shutdown stops accepting connections and waits for requests in flight
// (at most ShutdownGrace).
func (s *Server) Shutdown() error {
	s.closed.Store(true)
	err := s.app.ShutdownWithTimeout(s.cfg.ShutdownGrace)
	return errors.Join(err, s.records.close())
}

// limit refuses API requests beyond MaxInflight at once, so overload is
// answered quickly instead of queueing without bound.
func (s *Server) limit(c *fiber.Ctx) error {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if n > int64(s.cfg.MaxInflight) {
		return errAtCapacity
	}
	return c.Next()
}

// apiFloor is the least the adaptive bound on /v1 requests in flight
// goes down to: enough to keep the node busy, so that it shows when it is
// faster again.
const apiFloor = 64

// errAtCapacity refuses a request beyond http.max-inflight or the adaptive
// bound.
var errAtCapacity = &apiError{status: fiber.StatusServiceUnavailable, code: "overloaded", msg: "the server is at capacity; retry shortly"}

// admit (used when LatencyTarget is set) refuses /v1 requests beyond the
// adaptive bound, so that an overloaded node answers the requests it
// takes in about the target and refuses the rest at once, before any
// work, instead of answering every one after its client gave up.
// Authentication and rate limits come first: their refusals take no
// place.
func (s *Server) admit(c *fiber.Ctx) error {
	n := s.apiInflight.Add(1)
	defer s.apiInflight.Add(-1)
	if !s.api.Admit(n) {
		return errAtCapacity
	}
	start := time.Now()
	err := c.Next()
	now := time.Now()
	s.api.Observe(now, now.Sub(start), 1)
	return err
}

func (s *Server) logPanic(c *fiber.Ctx, e any) {
	s.log.Error("panic serving request", zap.String("request_id", requestID(c)), zap.String("path", c.Path()), zap.Any("panic", e), zap.Stack("stack"))
}

// maxRequestIDLen bounds the X-Request-ID a client may set; a longer one
// is replaced by ours.
const maxRequestIDLen = 128

// requestIDs sets X-Request-ID on every response: the client's, else a new
// id, unique across restarts and nodes but by a chance of one in 2^32 (a
// random prefix per process and a counter, 25 characters). The id lives
// only in the response header, so a request costs no allocation for it;
// requestID reads it back for logs.
type requestIDs struct {
	prefix [9]byte // a random 32-bit prefix of this process, and '-'
	seq    atomic.Uint64
}

func newRequestIDs() *requestIDs {
	ids := &requestIDs{}
	var seed [4]byte
	_, _ = crand.Read(seed[:])
	hex.Encode(ids.prefix[:8], seed[:])
	ids.prefix[8] = '-'
	return ids
}

// set gives the response the request's own id, or a new one.
func (ids *requestIDs) set(c *fiber.Ctx) {
	h := &c.Response().Header
	if in := c.Request().Header.Peek(fiber.HeaderXRequestID); len(in) > 0 && len(in) <= maxRequestIDLen {
		h.SetBytesV(fiber.HeaderXRequestID, in)
		return
	}
	var b [25]byte
	n := copy(b[:], ids.prefix[:])
	v := ids.seq.Add(1)
	for i := len(b) - 1; i >= n; i-- {
		b[i] = "0123456789abcdef"[v&0xf]
		v >>= 4
	}
	h.SetBytesV(fiber.HeaderXRequestID, b[:])
}

func (ids *requestIDs) middleware(c *fiber.Ctx) error {
	ids.set(c)
	return c.Next()
}

// requestID is the request's id, as set on its response.
func requestID(c *fiber.Ctx) string {
	return string(c.Response().Header.Peek(fiber.HeaderXRequestID))
}

// ctx is the request's context with the request deadline.
func (s *Server) ctx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), s.cfg.RequestTimeout)
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.draining.Load() {
		return &apiError{status: fiber.StatusServiceUnavailable, code: "not_ready", msg: "the node is shutting down"}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		return &apiError{status: fiber.StatusServiceUnavailable, code: "not_ready", msg: err.Error()}
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// Drain makes the node announce that it goes away while it still serves:
// /readyz answers 503 not_ready and every answer asks the client to close
// its connection, so load balancers and keep-alive clients move to other
// nodes before Shutdown closes the listener.
func (s *Server) Drain() { s.draining.Store(true) }

// observe records metrics and the access log of every request.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if s.draining.Load() {
		c.Context().SetConnectionClose()
	}
	status := c.Response().StatusCode()
	if err != nil {
		if herr := s.app.ErrorHandler(c, err); herr != nil {
			c.Status(fiber.StatusInternalServerError)
		}
		status = c.Response().StatusCode()
	}
	took := time.Since(start)
	route := c.Route().Path
	s.m.observe(c.Method(), route, status, took)
	s.accessLog(c, c.Method(), route, c.Path(), status, took)
	return nil
}

// accessLog writes a request's access-log line, when access logs are on.
func (s *Server) accessLog(c *fiber.Ctx, method, route, path string, status int, took time.Duration) {
	if !s.cfg.AccessLog {
		return
	}
	s.log.Info("request",
		zap.String("request_id", requestID(c)),
		zap.String("client_ip", c.IP()),
		zap.String("method", method),
		zap.String("route", route),
		zap.String("path", path),
		zap.Int("status", status),
		zap.Duration("latency", took),
		zap.Int("bytes", len(c.Response().Body())))
}

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	rateLimited  prometheus.Counter
	conns        prometheus.Gauge
	connsRefused prometheus.Counter
	apiLimit     prometheus.Gauge
	// connsRefusedPerIP counts the connections refused by http.max-conns-per-ip
	connsRefusedPerIP prometheus.Counter

	mu       sync.RWMutex
	children map[metricKey]metricChildren // resolved label sets: the vecs' lookups cost on every request
}

type metricKey struct {
	method, route string
	status        int
}

type metricChildren struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_http_requests_total", Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "checkin_http_request_seconds", Help: "HTTP request latency by route, method and status.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}, []string{"route", "method", "status"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_http_rate_limited_total", Help: "Requests refused with 429 because their client was over http.rate-limit."}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkin_http_connections", Help: "HTTP connections open and served (at most http.max-conns)."}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_http_connections_refused_total", Help: "HTTP connections answered 503 and closed because http.max-conns were open."}),
		connsRefusedPerIP: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_http_connections_refused_per_ip_total", Help: "HTTP connections answered 429 and closed because their client address had http.max-conns-per-ip open."}),
		apiLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkin_http_admission_limit", Help: "/v1 requests the node serves at once: http.max-inflight, or fewer while they take longer than http.latency-target; more are refused with 503 overloaded."}),
		children: map[metricKey]metricChildren{},
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.rateLimited, m.conns, m.connsRefused, m.connsRefusedPerIP, m.apiLimit)
	}
	return m
}

func (m *metrics) observe(method, route string, status int, took time.Duration) {
	k := metricKey{method: method, route: route, status: status}
	m.mu.RLock()
	ch, ok := m.children[k]
	m.mu.RUnlock()
	if !ok {
		// kept as a map key and as labels (the route is the request's own
		// path when no route matched at all)
		method, route = strings.Clone(method), strings.Clone(route)
		k.method, k.route = method, route
		st := strconv.Itoa(status)
		ch = metricChildren{requests: m.requests.WithLabelValues(route, method, st), latency: m.latency.WithLabelValues(route, method, st)}
		m.mu.Lock()
		m.children[k] = ch
		m.mu.Unlock()
	}
	ch.requests.Inc()
	ch.latency.Observe(took.Seconds())
}
