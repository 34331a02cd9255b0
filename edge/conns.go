package edge

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// connLimit bounds the connections served at once (Config.MaxConns), and
// optionally those of each client address (Config.MaxConnsPerIP). Every
// connection costs a goroutine and buffers for as long as it stays open,
// idle keep-alive ones too, so without a bound a flood of connections
// would take the node's memory. A connection beyond the bound is answered
// with 503 overloaded (over TLS when the node serves TLS) and closed; one
// beyond its client's bound with 429 too_many_connections (or closed
// without an answer, see refusalPause), so that one client cannot take
// every place. The connections served are untouched.
type connLimit struct {
	net.Listener
	max          int64
	perIP        *perIPConns   // nil: no bound per client address
	tls          *tls.Config   // nil: plain HTTP
	pause        time.Duration // after a refusal: refusalPause, or tlsRefusalPause
	open         atomic.Int64
	refuser      chan struct{} // a token per refusal being answered
	log          *zap.Logger   // sampled
	gauge        prometheus.Gauge
	refused      prometheus.Counter
	refusedPerIP prometheus.Counter
}

// perIPConns counts the open connections of each client address.
type perIPConns struct {
	max    int
	pause  time.Duration  // at least this long between two answered refusals of one address
	exempt []netip.Prefix // trusted proxies: a load balancer's connections carry many clients
	mu     sync.Mutex
	open   map[netip.Addr]ipConns // addresses with a connection open
}

type ipConns struct {
	n        int       // connections open
	answered time.Time // when a refusal of the address was last answered
}

// newPerIPConns bounds each address to max connections but those in
// trusted (IPs or CIDR ranges, as Config.Validate accepts them).
func newPerIPConns(max int, pause time.Duration, trusted []string) *perIPConns {
	p := &perIPConns{max: max, pause: pause, open: map[netip.Addr]ipConns{}}
	for _, t := range trusted {
		if pre, err := netip.ParsePrefix(t); err == nil {
			p.exempt = append(p.exempt, pre.Masked())
		} else if a, err := netip.ParseAddr(t); err == nil {
			a = a.Unmap()
			p.exempt = append(p.exempt, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return p
}

// claim counts a connection of addr at now and reports whether it is
// within the bound; counted says whether release must be called for it
// (exempt addresses are not counted), answer whether a refusal is to be
// answered (at most one per pause for each address; the rest are closed
// without a word, which costs next to nothing).
func (p *perIPConns) claim(addr netip.Addr, now time.Time) (ok, counted, answer bool) {
	for _, pre := range p.exempt {
		if pre.Contains(addr) {
			return true, false, false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.open[addr]
	if c.n >= p.max {
		if answer = now.Sub(c.answered) >= p.pause; answer {
			c.answered = now
			p.open[addr] = c
		}
		return false, false, answer
	}
	c.n++
	p.open[addr] = c
	return true, true, false
}

func (p *perIPConns) release(addr netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.open[addr]
	if c.n--; c.n <= 0 {
		delete(p.open, addr)
		return
	}
	p.open[addr] = c
}

// maxRefusing bounds the refusals answered at once; beyond it a connection
// is closed without an answer, so a flood of connections costs no more
// than that many goroutines.
const maxRefusing = 64

// refusalPause is how long Accept waits after a refusal for http.max-conns
// before it accepts again. Clients that reconnect at once (no heed to
// Retry-After) would otherwise have the node spend its CPU on refusals,
// each about as costly as a request, instead of on the connections it
// serves: it answers at most about 1/refusalPause of them a second, and
// the rest wait in the kernel's accept queue. Over TLS a refusal costs a
// handshake too (about a millisecond of CPU with an RSA key), so there the
// pause is longer. Refusals for http.max-conns-per-ip do not pause
// accepting (one client must not hold back the others); each address gets
// at most one answered refusal per pause, and its other connections in
// that time are closed at once.
const (
	refusalPause    = time.Millisecond
	tlsRefusalPause = 10 * time.Millisecond
)

// refusalTimeout bounds the TLS handshake, the answer and the wait for the
// client to close of one refusal.
const refusalTimeout = time.Second

// The whole answers to refused connections: the node is full, or the
// client has its share.
var (
	refusalResponse      = closingResponse("503 Service Unavailable", "overloaded", "the server has as many connections open as it serves; retry shortly")
	perIPRefusalResponse = closingResponse("429 Too Many Requests", "too_many_connections", "this client address has as many connections open as the server serves one address; reuse them, or retry once one is closed")
)

func closingResponse(status, code, msg string) []byte {
	body, err := json.Marshal(NewErrorBody(code, msg))
	if err != nil {
		panic(err)
	}
	return []byte("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
}

// Accept returns the next connection within the bounds, answering those
// beyond them on the way.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Inc()
			l.log.Warn("connection refused: the node serves as many as http.max-conns", zap.Int64("max_conns", l.max), zap.String("client_ip", remoteIP(c)))
			l.answerOrClose(c, refusalResponse)
			time.Sleep(l.pause) // see refusalPause
			continue
		}
		lc := &limitedConn{Conn: c, l: l}
		if l.perIP != nil {
			lc.addr = remoteAddr(c)
			ok, counted, answer := l.perIP.claim(lc.addr, time.Now())
			if !ok {
				// Accepting goes on at once: one client's refusals must not
				// hold back the others' connections.
				l.open.Add(-1)
				l.refusedPerIP.Inc()
				l.log.Warn("connection refused: its client address has http.max-conns-per-ip open", zap.Int("max_conns_per_ip", l.perIP.max), zap.String("client_ip", lc.addr.String()))
				if answer {
					l.answerOrClose(c, perIPRefusalResponse)
				} else {
					_ = c.Close()
				}
				continue
			}
			lc.perIP = counted
		}
		l.gauge.Inc()
		return lc, nil
	}
}

// answerOrClose has c answered with response by a goroutine of its own,
// or, with maxRefusing answers under way, closes it at once.
func (l *connLimit) answerOrClose(c net.Conn, response []byte) {
	select {
	case l.refuser <- struct{}{}:
		go l.answer(c, response)
	default:
		_ = c.Close()
	}
}

// answer writes response to c and closes it once the client has read it
// (or after refusalTimeout): closing with the request unread would reset
// the connection, and the client might see the reset instead of the
// answer.
func (l *connLimit) answer(c net.Conn, response []byte) {
	defer func() { <-l.refuser }()
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	defer c.Close()
	if _, err := c.Write(response); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// limitedConn gives its place back when closed (once, however often it is
// closed).
type limitedConn struct {
	net.Conn
	l     *connLimit
	addr  netip.Addr // the client's address, when connections are bounded per address
	perIP bool       // counted in l.perIP
	once  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.gauge.Dec()
		if c.perIP {
			c.l.perIP.release(c.addr)
		}
	})
	return err
}

// firstRequests times each connection's first request as the HTTP server
// times every later one: the connection waits for its first byte up to
// http.idle-timeout, as a keep-alive connection waits between requests,
// and is closed without an answer if none comes; the request, once begun,
// has the read timeout to arrive whole. The HTTP server times the first
// request from when the connection opened and answers 408 to a connection
// that sent nothing in time, so a client that opened connections ahead of
// need (a load balancer's or an HTTP client's pool) and sent on one a
// little later than the read timeout found it closed, or took that 408 for
// the answer to its request. Over TLS it wraps the TLS connection: the
// first byte is the request's, not the handshake's, and the handshake has
// the read timeout.
type firstRequests struct {
	net.Listener
	idle, read time.Duration // Config.IdleTimeout; the HTTP server's read timeout
}

func (l *firstRequests) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &firstRequestConn{Conn: c, l: l, wait: true}
	if tc, ok := c.(*tls.Conn); ok {
		return firstRequestTLSConn{fc, tc}, nil
	}
	return fc, nil
}

// firstRequestTLSConn is a firstRequestConn over TLS, which the HTTP
// server still sees as a TLS connection.
type firstRequestTLSConn struct {
	*firstRequestConn
	tls *tls.Conn
}

// Handshake has the read timeout, not the wait for a first request: the
// HTTP server sets the read deadline (through the wrapper) just before.
func (c firstRequestTLSConn) Handshake() error {
	if c.l.read > 0 {
		_ = c.tls.SetReadDeadline(time.Now().Add(c.l.read))
	}
	return c.tls.Handshake()
}

func (c firstRequestTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// firstRequestConn is a connection of firstRequests. fasthttp reads it
// and sets its read deadlines from one goroutine.
type firstRequestConn struct {
	net.Conn
	l *firstRequests
	// wait: no byte of a request read yet. A read deadline the server
	// sets then (the read timeout from now, before the TLS handshake and
	// again before the request) is l.idle from now instead; the first
	// byte sets l.read.
	wait bool
}

func (c *firstRequestConn) SetReadDeadline(t time.Time) error {
	if c.wait && c.l.idle > 0 {
		if now := time.Now(); t.After(now) {
			t = now.Add(c.l.idle)
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *firstRequestConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.wait {
		switch {
		case n > 0:
			c.wait = false
			if c.l.read > 0 {
				_ = c.Conn.SetReadDeadline(time.Now().Add(c.l.read))
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, io.EOF // no request for l.idle: closed without an answer
		}
	}
	return n, err
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// remoteAddr is the client's IP address of c (IPv4 addresses mapped into
// IPv6 unmapped, so one client is one key); the zero Addr for a
// connection that is not TCP.
func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
