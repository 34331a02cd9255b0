package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// client sends requests to the targets in turn. It uses fasthttp's
// HostClient: one pool of keep-alive connections per target, sized to the
// concurrency, no automatic retries (a retry would hide an error; callers
// retry where they count it). With eject set, a target that refused or
// dropped a connection, or did not answer within the timeout, is skipped
// for that long. With health set, each target's /readyz is asked that
// often, and a target that does not answer 200 is skipped until it does.
type client struct {
	targets []*target
	next    atomic.Uint64
	timeout time.Duration
	auth    []byte        // Authorization header value; nil: none
	eject   time.Duration // 0: never skip a target after an error
	skips   bool          // targets can be skipped (eject or health checks)
	stop    chan struct{} // ends the health checks
	checks  sync.WaitGroup
}

type target struct {
	base      string // as given, for reports
	prefix    string // path prefix of the base URL, without the trailing slash
	hc        *fasthttp.HostClient
	downUntil atomic.Int64 // unix nanoseconds: skipped until then (eject)
	ejections atomic.Int64
	unready   atomic.Bool  // its last health check did not answer 200
	unreadies atomic.Int64 // times a health check found it not ready
}

// skipped reports whether requests avoid t at now (unix nanoseconds).
func (t *target) skipped(now int64) bool {
	return t.downUntil.Load() > now || t.unready.Load()
}

// clientOpts are the client's optional settings.
type clientOpts struct {
	apiKey string        // sent as a bearer token with every request; "": none
	tls    *tls.Config   // for https targets; nil: Go's defaults
	eject  time.Duration // skip a target this long after a connection error or a timeout on it; 0: never
	health time.Duration // ask each target's /readyz this often, skip it while not 200; 0: never
	source []net.IP      // local addresses new connections come from, in turn; nil: the system's choice
}

// newClient makes a client of the targets at bases.
func newClient(bases []*url.URL, conns int, timeout time.Duration, o clientOpts) *client {
	c := &client{timeout: timeout, stop: make(chan struct{})}
	if len(bases) > 1 { // with one target there is nowhere else to go
		c.eject = o.eject
		c.skips = o.eject > 0 || o.health > 0
	}
	if o.apiKey != "" {
		c.auth = []byte("Bearer " + o.apiKey)
	}
	dial := sourceDialer(timeout, o.source)
	for _, u := range bases {
		addr := u.Host
		if u.Port() == "" {
			if u.Scheme == "https" {
				addr += ":443"
			} else {
				addr += ":80"
			}
		}
		c.targets = append(c.targets, &target{
			base:   u.String(),
			prefix: strings.TrimSuffix(u.EscapedPath(), "/"),
			hc: &fasthttp.HostClient{
				Addr:                          addr,
				Dial:                          dial,
				IsTLS:                         u.Scheme == "https",
				TLSConfig:                     o.tls,
				MaxConns:                      conns,
				MaxConnWaitTimeout:            timeout,
				MaxIdleConnDuration:           10 * time.Second,
				ReadTimeout:                   timeout,
				WriteTimeout:                  timeout,
				MaxIdemponentCallAttempts:     1,
				NoDefaultUserAgentHeader:      true,
				DisableHeaderNamesNormalizing: true,
				DisablePathNormalizing:        true,
			},
		})
	}
	if c.skips && o.health > 0 {
		for _, t := range c.targets {
			c.checks.Add(1)
			go c.checkHealth(t, o.health)
		}
	}
	return c
}

// checkHealth asks t's /readyz every interval until the client closes, as
// a load balancer's health check does: a target that does not answer 200
// within the interval (or the request timeout, if shorter) gets no
// requests until it does. A node that drains before it stops
// (http.drain-delay) answers 503 there while it still serves.
func (c *client) checkHealth(t *target, interval time.Duration) {
	defer c.checks.Done()
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	path := []byte("/readyz")
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		c.prepare(t, req, resp, fasthttp.MethodGet, path, nil)
		err := t.hc.DoTimeout(req, resp, min(interval, c.timeout))
		ready := err == nil && resp.StatusCode() == fasthttp.StatusOK
		if !ready && !t.unready.Swap(true) {
			t.unreadies.Add(1)
		} else if ready {
			t.unready.Store(false)
		}
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
	}
}

// sourceDialer dials TCP from the addresses of source in turn, one per
// new connection (from the system's choice when source is empty).
func sourceDialer(timeout time.Duration, source []net.IP) func(addr string) (net.Conn, error) {
	if len(source) == 0 {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		return func(addr string) (net.Conn, error) { return d.Dial("tcp", addr) }
	}
	dialers := make([]*net.Dialer, len(source))
	for i, ip := range source {
		dialers[i] = &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	}
	var next atomic.Uint64
	return func(addr string) (net.Conn, error) {
		return dialers[(next.Add(1)-1)%uint64(len(dialers))].Dial("tcp", addr)
	}
}

// nextIndex returns the index of the next target, round-robin over the
// targets not skipped (over all of them when every one is).
func (c *client) nextIndex() int {
	n := uint64(len(c.targets))
	if n == 1 {
		return 0
	}
	i := int((c.next.Add(1) - 1) % n)
	if !c.skips {
		return i
	}
	now := time.Now().UnixNano()
	for range n {
		if !c.targets[i].skipped(now) {
			return i
		}
		i = int((c.next.Add(1) - 1) % n)
	}
	return i
}

// doAt sends one request to target i (modulo the number of targets), or
// the first after it that is not skipped: method to path (which starts with
// '/'), with body as JSON when it is not nil; the answer is left in resp. A
// caller that retries with i+1 tries every target in turn.
func (c *client) doAt(i int, req *fasthttp.Request, resp *fasthttp.Response, method string, path, body []byte) error {
	n := len(c.targets)
	t := c.targets[i%n]
	if c.skips {
		now := time.Now().UnixNano()
		for k := range n {
			if u := c.targets[(i+k)%n]; !u.skipped(now) {
				t = u
				break
			}
		}
	}
	err := c.doOn(t, req, resp, method, path, body)
	switch {
	case c.eject == 0:
	case err == nil:
		// An answer: the target is reachable again (all targets were
		// ejected, so it was asked anyway); it need not wait out the rest.
		if t.downUntil.Load() != 0 {
			t.downUntil.Store(0)
		}
	case transportKind(err) == kindConnection, transportKind(err) == kindTimeout:
		// Refused, dropped, or no answer in time (a node that hangs: its
		// kernel still accepts connections): skip it for a while, as a
		// load balancer's outlier detection would.
		now := time.Now().UnixNano()
		if t.downUntil.Swap(now+int64(c.eject)) <= now {
			t.ejections.Add(1)
		}
	}
	return err
}

func (c *client) doOn(t *target, req *fasthttp.Request, resp *fasthttp.Response, method string, path, body []byte) error {
	c.prepare(t, req, resp, method, path, body)
	return t.hc.DoTimeout(req, resp, c.timeout)
}

// prepare makes req the request to t: method to path (under t's prefix),
// with body as JSON when it is not nil; resp is reset for the answer.
func (c *client) prepare(t *target, req *fasthttp.Request, resp *fasthttp.Response, method string, path, body []byte) {
	req.Reset()
	resp.Reset()
	req.Header.SetMethod(method)
	if t.prefix != "" {
		uri := make([]byte, 0, len(t.prefix)+len(path))
		req.SetRequestURIBytes(append(append(uri, t.prefix...), path...))
	} else {
		req.SetRequestURIBytes(path)
	}
	if t.hc.IsTLS {
		req.URI().SetScheme("https") // a bare path means http to the HostClient
	}
	// The Host header is written from the URI's host (one set on the
	// header alone is dropped when the URI has none).
	req.URI().SetHost(t.hc.Addr)
	if c.auth != nil {
		req.Header.SetBytesV(fasthttp.HeaderAuthorization, c.auth)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
}

// close drops the idle connections of every target.
// close ends the health checks and closes idle connections. It is called
// once.
func (c *client) close() {
	close(c.stop)
	c.checks.Wait()
	c.closeIdle()
}

// closeIdle closes the idle connections to every target.
func (c *client) closeIdle() {
	for _, t := range c.targets {
		t.hc.CloseIdleConnections()
	}
}

// Error kinds of requests that got no HTTP answer.
const (
	kindTimeout    = "timeout"
	kindConnection = "connection"
	kindExpired    = "expired" // open model: queued longer than --timeout, not sent
)

// transportKind sorts an error of a request without an answer.
func transportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrNoFreeConns), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	}
	return kindConnection
}

// statusKind names an HTTP error answer by its status and the code in the
// API's error body ("503:overloaded"); a body of another shape gives the
// status alone.
func statusKind(status int, body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	s := strconv.Itoa(status)
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" && validID(e.Error.Code) {
		return s + ":" + e.Error.Code
	}
	return s
}

// tlsConfig trusts the certificates of the PEM file caFile ("": nil, Go's
// defaults with the system's roots).
func tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.ca-file %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}
