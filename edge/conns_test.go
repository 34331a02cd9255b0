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
			var eb ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || res.StatusCode != http.StatusServiceUnavailable || eb.Error.Code != "overloaded" {
				t.Fatalf("connection 3 of 2: %d %s, want 503 with code overloaded", res.StatusCode, body)
			}
			if res.Header.Get("Retry-After") != "1" || res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("refusal headers %v, want Retry-After: 1 and Content-Type: application/json", res.Header)
			}
			if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("after the refusal the connection gave %v, want it closed (EOF)", err)
			}
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
	if _, _, err := getReadyz(c, r); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(ts.m.conns); got != 1 {
		t.Errorf("checkin_http_connections = %v with one connection open, want 1", got)
	}
	start := time.Now()
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
	if took := time.Since(start); took < n*refusalPause {
		t.Errorf("%d refusals took %s, less than %d pauses of %s: refusals are not paced", n, took, n, refusalPause)
	}
}

// getReadyz sends GET /readyz on c (within 5 s) and reads the answer, r
// reading c.
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
