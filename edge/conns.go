package edge

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// connLimit bounds the connections served at once (Config.MaxConns). Every
// connection costs a goroutine and buffers for as long as it stays open,
// idle keep-alive ones too, so without a bound a flood of connections
// would take the node's memory. A connection beyond the bound is answered
// with 503 overloaded (over TLS when the node serves TLS) and closed; the
// connections served are untouched.
type connLimit struct {
	net.Listener
	max     int64
	tls     *tls.Config   // nil: plain HTTP
	pause   time.Duration // after a refusal: refusalPause, or tlsRefusalPause
	open    atomic.Int64
	refuser chan struct{} // a token per refusal being answered
	log     *zap.Logger   // sampled
	gauge   prometheus.Gauge
	refused prometheus.Counter
}

// maxRefusing bounds the refusals answered at once; beyond it a connection
// is closed without an answer, so a flood of connections costs no more
// than that many goroutines.
const maxRefusing = 64

// refusalPause is how long Accept waits after a refusal before it accepts
// again. Clients that reconnect at once (no heed to Retry-After) would
// otherwise have the node spend its CPU on refusals, each about as costly
// as a request, instead of on the connections it serves: it answers at
// most about 1/refusalPause of them a second, and the rest wait in the
// kernel's accept queue. Over TLS a refusal costs a handshake too (about
// a millisecond of CPU with an RSA key), so there the pause is longer.
const (
	refusalPause    = time.Millisecond
	tlsRefusalPause = 10 * time.Millisecond
)

// refusalTimeout bounds the TLS handshake, the answer and the wait for the
// client to close of one refusal.
const refusalTimeout = time.Second

// refusalResponse is the whole answer to a refused connection.
var refusalResponse = func() []byte {
	body, err := json.Marshal(NewErrorBody("overloaded", "the server has as many connections open as it serves; retry shortly"))
	if err != nil {
		panic(err)
	}
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
}()

// Accept returns the next connection within the bound, answering those
// beyond it on the way.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			l.gauge.Inc()
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Inc()
		l.log.Warn("connection refused: the node serves as many as http.max-conns", zap.Int64("max_conns", l.max), zap.String("client_ip", remoteIP(c)))
		select {
		case l.refuser <- struct{}{}:
			go l.refuse(c)
		default:
			_ = c.Close()
		}
		time.Sleep(l.pause)
	}
}

// refuse answers c with refusalResponse and closes it once the client has
// read it (or after refusalTimeout): closing with the request unread would
// reset the connection, and the client might see the reset instead of the
// answer.
func (l *connLimit) refuse(c net.Conn) {
	defer func() { <-l.refuser }()
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	defer c.Close()
	if _, err := c.Write(refusalResponse); err != nil {
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
	l    *connLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.gauge.Dec()
	})
	return err
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}
