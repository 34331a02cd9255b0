package edge

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A node serves at most http.max-conns connections: one more is answered
// 503 overloaded (over TLS on an HTTPS node) and closed, the open ones go
// on, and once one of them closes a new connection is served again.
func TestMaxConns(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain HTTP", false}, {"HTTPS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, nil, func(c *Config) { c.MaxConns = 2 })
			var addr string
			dial := func() net.Conn {
				t.Helper()
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				return c
			}
			if tc.tls {
				// httptest's certificate names 127.0.0.1; its client trusts it.
				hs := httptest.NewTLSServer(http.NotFoundHandler())
				serverCfg := hs.TLS.Clone()
				clientCfg := hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				hs.Close()
				addr = ts.serveWith(t, func(ln net.Listener) error { return ts.ServeTLS(ln, serverCfg) })
				dial = func() net.Conn {
					t.Helper()
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientCfg)
					if err != nil {
						t.Fatalf("TLS dial: %v", err)
					}
					return c
				}
			} else {
				addr = ts.serveWith(t, ts.Serve)
			}
			get := func(c net.Conn, r *bufio.Reader) (*http.Response, []byte) {
				t.Helper()
				res, body, err := getReadyz(c, r)
				if err != nil {
					t.Fatal(err)
				}
				return res, body
			}

			open := make([]net.Conn, 2)
			readers := make([]*bufio.Reader, 2)
			for i := range open {
				open[i] = dial()
				defer open[i].Close()
				readers[i] = bufio.NewReader(open[i])
				if res, body := get(open[i], readers[i]); res.StatusCode != http.StatusOK {
					t.Fatalf("connection %d of 2: %d %s, want 200", i+1, res.StatusCode, body)
				}
			}

			extra := dial()
			defer extra.Close()
			r := bufio.NewReader(extra)
			res, body := get(extra, r)
			checkRefusal(t, "connection 3 of 2", res, body, r, http.StatusServiceUnavailable, "overloaded")
			if got := testutil.ToFloat64(ts.m.connsRefused); got != 1 {
				t.Errorf("checkin_http_connections_refused_total = %v, want 1", got)
			}
			if got := testutil.ToFloat64(ts.m.conns); got != 2 {
				t.Errorf("checkin_http_connections = %v, want 2", got)
			}

			// The connections served go on.
			for i := range open {
				if res, body := get(open[i], readers[i]); res.StatusCode != http.StatusOK {
					t.Fatalf("connection %d again: %d %s, want 200", i+1, res.StatusCode, body)
				}
			}

			// Once one closes, a new one is served (the server notices the
			// close a moment later).
			_ = open[0].Close()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				c := dial()
				res, body := get(c, bufio.NewReader(c))
				_ = c.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("5 s after a connection closed a new one still gets %d %s, want 200", res.StatusCode, body)
				}
			}
		})
	}
}

// With http.max-conns-per-ip, a client address serves at most that many
// connections: one more is answered 429 too_many_connections and closed,
// other addresses are served, and once one of the client's connections
// closes it is served again. Connections from a trusted proxy are not
// bounded (a load balancer's carry many clients).
func TestMaxConnsPerIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		bounded bool // whether 127.0.0.1 is bounded
	}{
		{"every address", nil, true},
		{"a trusted proxy is not bounded", []string{"127.0.0.1/32"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, nil, func(c *Config) {
				c.MaxConnsPerIP = 2
				if tc.trusted != nil {
					c.ProxyHeader, c.TrustedProxies = "X-Real-IP", tc.trusted
				}
			})
			addr := ts.serveWith(t, ts.Serve)
			dialFrom := func(ip string) net.Conn {
				t.Helper()
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("dial from %s: %v", ip, err)
				}
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			get := func(c net.Conn) (*http.Response, []byte) {
				t.Helper()
				res, body, err := getReadyz(c, bufio.NewReader(c))
				if err != nil {
					t.Fatal(err)
				}
				return res, body
			}
			wantServed := func(c net.Conn, what string) {
				t.Helper()
				if res, body := get(c); res.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s, want 200", what, res.StatusCode, body)
				}
			}

			first := dialFrom("127.0.0.1")
			wantServed(first, "connection 1 of 2 from 127.0.0.1")
			wantServed(dialFrom("127.0.0.1"), "connection 2 of 2 from 127.0.0.1")
			third := dialFrom("127.0.0.1")
			if !tc.bounded {
				wantServed(third, "connection 3 from the trusted proxy")
				wantServed(dialFrom("127.0.0.2"), "connection 1 of 2 from 127.0.0.2")
				wantServed(dialFrom("127.0.0.2"), "connection 2 of 2 from 127.0.0.2")
				if res, body := get(dialFrom("127.0.0.2")); res.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("connection 3 of 2 from 127.0.0.2 (not trusted): %d %s, want 429", res.StatusCode, body)
				}
				return
			}
			r := bufio.NewReader(third)
			res, body, err := getReadyz(third, r)
			if err != nil {
				t.Fatal(err)
			}
			checkRefusal(t, "connection 3 of 2 from 127.0.0.1", res, body, r, http.StatusTooManyRequests, "too_many_connections")

			// A burst of more: none is served; those within a refusal
			// pause of the last answered one are closed without a word.
			const burst = 20
			for i := range burst {
				c := dialFrom("127.0.0.1")
				if res, body, err := getReadyz(c, bufio.NewReader(c)); err == nil && res.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("connection %d of 2 from 127.0.0.1: %d %s, want 429 or the connection closed", i+4, res.StatusCode, body)
				}
				_ = c.Close()
			}
			if got := testutil.ToFloat64(ts.m.connsRefusedPerIP); got != 1+burst {
				t.Errorf("checkin_http_connections_refused_per_ip_total = %v, want %d", got, 1+burst)
			}
			if got := testutil.ToFloat64(ts.m.connsRefused); got != 0 {
				t.Errorf("checkin_http_connections_refused_total = %v, want 0 (the node is not full)", got)
			}

			// Another address has places of its own.
			wantServed(dialFrom("127.0.0.2"), "connection 1 of 2 from 127.0.0.2")

			// Once one of the client's connections closes, a new one is
			// served (the server notices the close a moment later; until
			// then a new one is refused, with or without an answer).
			_ = first.Close()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				c := dialFrom("127.0.0.1")
				res, body, err := getReadyz(c, bufio.NewReader(c))
				_ = c.Close()
				if err == nil && res.StatusCode == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("5 s after a connection closed a new one from 127.0.0.1 still gets %v %s (%v), want 200", res, body, err)
				}
			}
		})
	}
}

// A keep-alive connection with no request for http.idle-timeout is closed,
// which gives its place under http.max-conns back.
func TestIdleConnectionsAreClosed(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	addr := ts.serveWith(t, ts.Serve)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	// Timed from before the request: the server's idle clock starts once
	// it has answered, so after this. Timed from the answer's arrival, a
	// test held up by a loaded machine between the answer and the start of
	// its clock would see the close come early.
	start := time.Now()
	if _, _, err := getReadyz(c, r); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(ts.m.conns); got != 1 {
		t.Errorf("checkin_http_connections = %v with one connection open, want 1", got)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection gave %v, want it closed by the server (EOF)", err)
	}
	if idle := time.Since(start); idle < 150*time.Millisecond {
		t.Errorf("the idle connection was closed after %s, before http.idle-timeout (200ms)", idle)
	}
	for deadline := time.Now().Add(2 * time.Second); testutil.ToFloat64(ts.m.conns) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("checkin_http_connections = %v after the idle connection closed, want 0", testutil.ToFloat64(ts.m.conns))
		}
	}
}

// A new connection waits for its first request as long as a keep-alive
// one waits for its next (http.idle-timeout), and is closed without an
// answer if none comes; that request, once begun, has the read timeout
// (http.request-timeout + 5 s) to arrive whole. The HTTP server timed the
// first request from when the connection opened and then answered 408: a
// client that opened a connection ahead of need (a pool) and sent on it
// after the read timeout found it closed, or took the 408 for its answer.
// Over TLS the handshake does not begin the request.
func TestFirstRequestOfAConnection(t *testing.T) {
	serve := func(t *testing.T, idle time.Duration, overTLS bool) (net.Conn, time.Duration) {
		ts := newTestServer(t, nil, func(c *Config) { c.RequestTimeout, c.IdleTimeout = 100*time.Millisecond, idle })
		var c net.Conn
		var err error
		if overTLS {
			// httptest's certificate names 127.0.0.1; its client trusts it.
			hs := httptest.NewTLSServer(http.NotFoundHandler())
			serverCfg := hs.TLS.Clone()
			clientCfg := hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			hs.Close()
			addr := ts.serveWith(t, func(ln net.Listener) error { return ts.ServeTLS(ln, serverCfg) })
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientCfg) // handshake done
		} else {
			c, err = net.DialTimeout("tcp", ts.serveWith(t, ts.Serve), 5*time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, readTimeout(ts.cfg)
	}
	for _, overTLS := range []bool{false, true} {
		name := map[bool]string{false: "plain HTTP", true: "HTTPS"}[overTLS]
		t.Run(name+": sent after the read timeout, within the idle timeout", func(t *testing.T) {
			t.Parallel()
			c, read := serve(t, time.Minute, overTLS)
			time.Sleep(read + 500*time.Millisecond)
			if res, body, err := getReadyz(c, bufio.NewReader(c)); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("first request %s after the connection opened: %v %s (%v), want 200", read+500*time.Millisecond, res, body, err)
			}
		})
		t.Run(name+": nothing sent for the idle timeout", func(t *testing.T) {
			t.Parallel()
			const idle = 300 * time.Millisecond
			start := time.Now()
			c, _ := serve(t, idle, overTLS)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if got, err := io.ReadAll(c); err != nil || len(got) > 0 {
				t.Fatalf("a connection that sent nothing: %q (%v), want it closed by the server with no answer", got, err)
			}
			if waited := time.Since(start); waited < idle-50*time.Millisecond {
				t.Errorf("a connection that sent nothing was closed after %s, before http.idle-timeout (%s)", waited, idle)
			}
		})
	}
	t.Run("HTTPS: a handshake that never begins", func(t *testing.T) {
		t.Parallel()
		// The handshake has the read timeout, not the minute a first
		// request may wait.
		ts := newTestServer(t, nil, func(c *Config) { c.RequestTimeout, c.IdleTimeout = 100*time.Millisecond, time.Minute })
		hs := httptest.NewTLSServer(http.NotFoundHandler())
		serverCfg := hs.TLS.Clone()
		hs.Close()
		c, err := net.DialTimeout("tcp", ts.serveWith(t, func(ln net.Listener) error { return ts.ServeTLS(ln, serverCfg) }), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		read := readTimeout(ts.cfg)
		_ = c.SetReadDeadline(time.Now().Add(3 * read))
		if got, err := io.ReadAll(c); err != nil {
			t.Fatalf("a connection that never began its TLS handshake: %q (%v), want it closed by the server within %s", got, err, read)
		}
	})
	t.Run("a request begun and never finished", func(t *testing.T) {
		t.Parallel()
		c, read := serve(t, time.Minute, false)
		time.Sleep(read / 2) // counts for nothing: the request has not begun
		begun := time.Now()
		if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * read))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case err == nil && res.StatusCode != http.StatusRequestTimeout:
			t.Fatalf("an unfinished request: %d, want 408 or the connection closed", res.StatusCode)
		case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("an unfinished request: %v, want 408 or the connection closed within %s", err, read)
		}
		if waited := time.Since(begun); waited < read-500*time.Millisecond {
			t.Errorf("an unfinished request was cut off %s after its first byte, before the read timeout (%s)", waited, read)
		}
	})
}

// Refusals are paced (refusalPause apart), so clients that reconnect at
// once cannot turn the node's CPU into refusals; each still gets its 503.
func TestRefusalsArePaced(t *testing.T) {
	ts := newTestServer(t, nil, func(c *Config) { c.MaxConns = 1 })
	addr := ts.serveWith(t, ts.Serve)
	held, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if res, _, err := getReadyz(held, bufio.NewReader(held)); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the one connection served: %v %v, want 200", res, err)
	}

	const n = 40
	start := time.Now()
	statuses := make(chan int, n)
	for range n {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				statuses <- 0
				return
			}
			defer c.Close()
			res, _, err := getReadyz(c, bufio.NewReader(c))
			if err != nil {
				statuses <- -1
				return
			}
			statuses <- res.StatusCode
		}()
	}
	for range n {
		if st := <-statuses; st != http.StatusServiceUnavailable {
			t.Errorf("a connection beyond the limit got %d, want 503 (0: no connection, -1: no answer)", st)
		}
	}
	// The last answer may arrive during the pause after its own refusal:
	// n-1 pauses at least.
	if took := time.Since(start); took < (n-1)*refusalPause {
		t.Errorf("%d refusals took %s, less than %d pauses of %s: refusals are not paced", n, took, n-1, refusalPause)
	}
}

// getReadyz sends GET /readyz on c (within 5 s) and reads the answer, r
// reading c.
// checkRefusal checks the answer to a refused connection: status and code,
// Retry-After: 1, a JSON body, and the connection closed after it (r
// reads the rest of it).
func checkRefusal(t *testing.T, what string, res *http.Response, body []byte, r *bufio.Reader, status int, code string) {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || res.StatusCode != status || eb.Error.Code != code {
		t.Fatalf("%s: %d %s, want %d with code %s", what, res.StatusCode, body, status, code)
	}
	if res.Header.Get("Retry-After") != "1" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("refusal headers %v, want Retry-After: 1 and Content-Type: application/json", res.Header)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the refusal the connection gave %v, want it closed (EOF)", err)
	}
}

func getReadyz(c net.Conn, r *bufio.Reader) (*http.Response, []byte, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: checkin\r\n\r\n"); err != nil {
		return nil, nil, fmt.Errorf("write request: %w", err)
	}
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	return res, body, nil
}
