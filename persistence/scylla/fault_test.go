package scylla

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/checkin/checkin/persistence"
)

// faultProxy is a TCP proxy between the driver and the real node that can
// cut the network (close every connection and refuse new ones, as a stopped
// node does) or black-hole it (connections stay open, nothing flows, as with
// a partition or a frozen node).
type faultProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    proxyMode
	conns   map[net.Conn]struct{}
	clients map[net.Conn]struct{} // the driver's side of each connection
	flow    chan struct{}         // closed while traffic flows; replaced when black-holed
	held    atomic.Int64          // chunks from the driver the black hole has held
	wg      sync.WaitGroup
}

type proxyMode int

const (
	proxyUp proxyMode = iota
	proxyDown
	proxyBlackhole
)

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, clients: map[net.Conn]struct{}{}, flow: make(chan struct{})}
	close(p.flow)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode == proxyDown {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.clients[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *faultProxy) serve(client net.Conn) {
	defer p.wg.Done()
	p.waitFlow()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.drop(client)
		return
	}
	if !p.track(server) {
		server.Close()
		p.drop(client)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, true) }()
	go func() { defer wg.Done(); p.pipe(client, server, false) }()
	wg.Wait()
	p.drop(client)
	p.drop(server)
}

// pipe copies src to dst, holding each chunk while the proxy black-holes;
// fromDriver: src is the driver's side (its held chunks are counted).
func (p *faultProxy) pipe(dst, src net.Conn, fromDriver bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromDriver && p.blackholed() {
				p.held.Add(1)
			}
			p.waitFlow()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// Either side ending ends both.
	dst.Close()
	src.Close()
}

func (p *faultProxy) blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode == proxyBlackhole
}

func (p *faultProxy) waitFlow() {
	p.mu.Lock()
	flow := p.flow
	p.mu.Unlock()
	<-flow
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == proxyDown {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.clients, c)
	p.mu.Unlock()
}

// inject sends frame to the driver on every connection, as if the node had
// sent it. Only safe while nothing else flows to the driver (black-holed,
// with no answer under way), so that it cannot land inside another frame.
func (p *faultProxy) inject(t *testing.T, frame []byte) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.clients {
		if _, err := c.Write(frame); err != nil {
			t.Logf("inject: %v", err)
		}
	}
}

// set switches the mode; going down closes every connection.
func (p *faultProxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case m == proxyBlackhole && p.mode != proxyBlackhole:
		p.flow = make(chan struct{})
	case m != proxyBlackhole && p.mode == proxyBlackhole:
		close(p.flow)
	}
	p.mode = m
	if m == proxyDown {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.set(proxyDown)
	p.wg.Wait()
}

// throughProxy makes the driver reach every node through p: the contact
// point is the proxy, and the addresses the node announces (its own
// rpc_address) are translated to the proxy too.
func throughProxy(cfg Config, p *faultProxy) Config {
	a := p.addr()
	cfg.Hosts = []string{net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))}
	cfg.translator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) { return a.IP, a.Port })
	cfg.ReconnectInterval = 250 * time.Millisecond
	cfg.ConnectTimeout = 2 * time.Second
	cfg.Retries = 2
	return cfg
}

// writeUntilStored writes c again and again, as a client retrying with the
// same checkin would, until the store acknowledges it, failing the test
// after within.
func writeUntilStored(t *testing.T, s *Store, c persistence.Checkin, within time.Duration) {
	t.Helper()
	for start := time.Now(); ; {
		wctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := s.WriteCheckins(wctx, []persistence.Checkin{c})
		cancel()
		if err == nil {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("the store did not recover within %v: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// overloadedOnStreamZero is what Cassandra sends a protocol v4 client for
// a request that waited in its queue longer than native_transport_timeout:
// an Overloaded error on stream 0 instead of the request's stream.
func overloadedOnStreamZero() []byte {
	msg := "Query timed out before it could start"
	body := binary.BigEndian.AppendUint32(nil, uint32(gocql.ErrCodeOverloaded))
	body = binary.BigEndian.AppendUint16(body, uint16(len(msg)))
	body = append(body, msg...)
	frame := []byte{0x84, 0x00, 0x00, 0x00, 0x00} // response v4, no flags, stream 0, ERROR
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(body)))
	return append(frame, body...)
}

// TestOverloadedOnStreamZero: the driver takes Cassandra's answer to a
// request that timed out in the node's queue (Overloaded, on stream 0) for a
// protocol error, closes the connection and fails every request in flight
// on it. Such a write is unavailable and retried, as any lost connection:
// it was once a permanent failure (answered 500).
func TestOverloadedOnStreamZero(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	p := newFaultProxy(t, cfg.Hosts[0])
	cfg = throughProxy(cfg, p)
	s := open(t, cfg)
	ctx := t.Context()
	// A first write prepares the statements, so that the next one is sent
	// at once.
	if err := s.WriteCheckins(ctx, []persistence.Checkin{{ID: "c0", UserID: "u1", LocationID: "l1", Timestamp: day0}}); err != nil {
		t.Fatal(err)
	}
	c := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: day0.Add(time.Minute)}
	// The answer must come while the write is on its way: injected before
	// the driver sent it, it would close the connections first and the
	// write would find none (not applied, and the test would fail for a
	// slow start). So the store tells when it sends the write's first
	// request (its fault hook, just before the driver), and the test
	// waits until the proxy holds a chunk of the driver's after that.
	var heldBefore int64
	sending := make(chan struct{})
	var once sync.Once
	s.fault = func(table string) error {
		if table == "checkins_by_user" {
			once.Do(func() { heldBefore = p.held.Load(); close(sending) })
		}
		return nil
	}
	p.set(proxyBlackhole) // the write is sent, and held on its way to the node
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		done <- s.WriteCheckins(wctx, []persistence.Checkin{c})
	}()
	select {
	case <-sending:
	case err := <-done:
		t.Fatalf("the write returned before it sent checkins_by_user's row: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the write did not send checkins_by_user's row within 20 s")
	}
	for deadline := time.Now().Add(20 * time.Second); p.held.Load() <= heldBefore; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy holds no request of the write 20 s after the store sent it")
		}
	}
	p.inject(t, overloadedOnStreamZero())
	// A moment for the driver to fail the write and close its connections
	// before the network comes back. Should it take longer, the held write
	// reaches the node and its answer comes after the injected one, which
	// fails it all the same: the outcome checked below does not depend on it.
	time.Sleep(100 * time.Millisecond)
	p.set(proxyUp)
	err := <-done
	t.Logf("write: %v", err)
	if err != nil && !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("write failed by the overloaded answer: %v; want it retried, or ErrUnavailable", err)
	}
	if errors.Is(err, persistence.ErrNotApplied) {
		t.Fatalf("write marked not applied: %v; the failed request may have been applied", err)
	}
	// Stored once the store could retry (or by a retry of the caller's).
	writeUntilStored(t, s, c, 30*time.Second)
	if got, err := s.GetCheckin(ctx, "u1", "c1"); err != nil || got != c {
		t.Fatalf("by id: %+v, %v; want %+v", got, err, c)
	}
}

// TestNodeFailure: with the network to the node cut, or black-holed, writes
// and reads fail with ErrUnavailable within their deadline (nothing hangs),
// and once the network is back the same store works again by itself.
func TestNodeFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	p := newFaultProxy(t, cfg.Hosts[0])
	cfg = throughProxy(cfg, p)
	cfg.Timeout = 2 * time.Second
	s := open(t, cfg)
	ctx := t.Context()
	seq := 0
	next := func() persistence.Checkin {
		seq++
		return persistence.Checkin{ID: fmt.Sprintf("c%03d", seq), UserID: "u1", LocationID: "l1", Timestamp: day0.Add(time.Duration(seq) * time.Minute)}
	}
	var written []persistence.Checkin
	writeOK := func() {
		t.Helper()
		c := next()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := s.WriteCheckins(wctx, []persistence.Checkin{c}); err != nil {
			t.Fatalf("write with the node reachable: %v", err)
		}
		written = append(written, c)
	}
	// failing runs call with a deadline and checks it fails with
	// ErrUnavailable no later than the deadline plus 2 s of slack for a
	// loaded machine's scheduling. A call that ignored its deadline would
	// wait out the driver's 2 s timeout on each of its 3 attempts.
	failing := func(what string, deadline time.Duration, call func(context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		start := time.Now()
		err := call(cctx)
		took := time.Since(start)
		if !errors.Is(err, persistence.ErrUnavailable) {
			t.Fatalf("%s: err = %v, want ErrUnavailable", what, err)
		}
		if took > deadline+2*time.Second {
			t.Fatalf("%s took %v, deadline %v", what, took, deadline)
		}
		t.Logf("%s failed after %v: %v", what, took.Round(time.Millisecond), err)
	}
	// recovers waits for a write to succeed again, as a client retrying
	// with the same checkin would.
	recovers := func() {
		t.Helper()
		c := next()
		start := time.Now()
		writeUntilStored(t, s, c, 60*time.Second)
		written = append(written, c)
		t.Logf("recovered %v after the network came back", time.Since(start).Round(time.Millisecond))
	}

	writeOK()
	for _, fault := range []struct {
		name string
		mode proxyMode
	}{{"node stopped", proxyDown}, {"network black-holed", proxyBlackhole}} {
		t.Run(fault.name, func(t *testing.T) {
			p.set(fault.mode)
			for i := range 3 {
				failing(fmt.Sprintf("write %d", i), 1500*time.Millisecond, func(ctx context.Context) error {
					return s.WriteCheckins(ctx, []persistence.Checkin{next(), next()})
				})
			}
			failing("read", time.Second, func(ctx context.Context) error {
				_, err := s.GetCheckin(ctx, "u1", written[0].ID)
				return err
			})
			failing("range read", time.Second, func(ctx context.Context) error {
				_, err := s.ListCheckins(ctx, persistence.Query{UserID: "u1", From: day0, To: day0.AddDate(0, 0, 1), Limit: 10})
				return err
			})
			failing("ping", time.Second, s.Ping)
			p.set(proxyUp)
			recovers()
			writeOK()
		})
	}

	page, err := s.ListCheckins(ctx, persistence.Query{UserID: "u1", From: day0, To: day0.AddDate(0, 0, 1), Limit: 1000, Order: persistence.OldestFirst})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range page.Checkins {
		got[c.ID] = true
	}
	for _, c := range written {
		if !got[c.ID] {
			t.Fatalf("acknowledged checkin %s missing after recovery", c.ID)
		}
	}
	cur, err := s.CurrentLocation(ctx, "u1")
	if err != nil || cur.ID < written[len(written)-1].ID {
		t.Fatalf("current location after recovery = %+v, %v; want at least %s", cur, err, written[len(written)-1].ID)
	}
}

// failTable is a store fault that refuses every request to one table, as
// a node that refuses them would (through the store's own retries).
func failTable(failing string) func(table string) error {
	return func(table string) error {
		if table == failing {
			return gocql.ErrNoConnections
		}
		return nil
	}
}

// openWithUser opens a store on cfg and creates user in it.
func openWithUser(t *testing.T, cfg Config, user string) *Store {
	t.Helper()
	s := open(t, cfg)
	if err := s.CreateUser(t.Context(), persistence.User{ID: user, Name: "n", CreatedAt: day0}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDeleteUserAfterFailedWrite: a checkin write that fails at any one
// table leaves nothing that DeleteUser cannot find. The store fails the
// table's requests on purpose (as a node that refuses them would, through
// the store's own retries), the write answers ErrUnavailable, the client
// never retries it, and after DeleteUser no row of the user is left in any
// table: every row written is listed by an index written before it.
func TestDeleteUserAfterFailedWrite(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	tables := []string{"buckets_by_user", "checkins_by_user", "checkins_by_user_location", "buckets_by_user_location", "checkin_by_id"}
	for _, failing := range tables {
		t.Run(failing, func(t *testing.T) {
			user := "u-" + failing
			s := openWithUser(t, cfg, user)
			ctx := t.Context()
			first := persistence.Checkin{ID: "c1", UserID: user, LocationID: "l1", Timestamp: day0.Add(time.Hour)}
			write(t, s, first)
			// A new day and a new location: the write needs every table,
			// index rows included.
			lost := persistence.Checkin{ID: "c2", UserID: user, LocationID: "l2", Timestamp: day0.Add(26 * time.Hour)}
			s.fault = failTable(failing)
			err := s.WriteCheckins(ctx, []persistence.Checkin{lost})
			s.fault = nil
			if !errors.Is(err, persistence.ErrUnavailable) {
				t.Fatalf("write with %s failing: %v, want ErrUnavailable", failing, err)
			}
			// Refused before any checkin row was sent: not applied. Once
			// checkins_by_user has the row, the write is partial.
			wantNotApplied := failing == "buckets_by_user" || failing == "checkins_by_user"
			if got := errors.Is(err, persistence.ErrNotApplied); got != wantNotApplied {
				t.Fatalf("write with %s failing: ErrNotApplied %v, want %v (err %v)", failing, got, wantNotApplied, err)
			}
			if err := s.DeleteUser(ctx, user); err != nil {
				t.Fatalf("DeleteUser: %v", err)
			}
			count := func(cql string, args ...any) int { return countRows(t, s, cql, args...) }
			var left []string
			for _, c := range []persistence.Checkin{first, lost} {
				b := persistence.BucketOf(c.Timestamp)
				for _, q := range []struct {
					table string
					n     int
				}{
					{"checkins_by_user", count(`SELECT COUNT(*) FROM checkins_by_user WHERE user_id = ? AND bucket = ?`, user, b)},
					{"checkins_by_user_location", count(`SELECT COUNT(*) FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ?`, user, c.LocationID, b)},
					{"buckets_by_user_location", count(`SELECT COUNT(*) FROM buckets_by_user_location WHERE user_id = ? AND location_id = ?`, user, c.LocationID)},
					{"checkin_by_id", count(`SELECT COUNT(*) FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`, user, c.ID)},
				} {
					if q.n > 0 {
						left = append(left, fmt.Sprintf("%s: %d row(s) of %s", q.table, q.n, c.ID))
					}
				}
			}
			if n := count(`SELECT COUNT(*) FROM buckets_by_user WHERE user_id = ?`, user); n > 0 {
				left = append(left, fmt.Sprintf("buckets_by_user: %d row(s)", n))
			}
			if len(left) > 0 {
				t.Fatalf("after DeleteUser, rows of the user are left: %v", left)
			}
		})
	}
}

// TestDeleteUserGoesOnWhereItStopped: a user delete that fails part way
// (here the by-user partitions of the second round of buckets are refused)
// has finished its first round for good, leaves every row of the rest
// reachable, and a retry deletes the rest: a user with more checkins than
// one call deletes in its deadline is deleted by retries.
func TestDeleteUserGoesOnWhereItStopped(t *testing.T) {
	t.Parallel()
	const user, days = "u-rounds", deleteRound + 4
	s := openWithUser(t, testConfig(t), user)
	ctx := t.Context()
	var cs []persistence.Checkin
	for d := range days {
		c := persistence.Checkin{ID: fmt.Sprintf("c%02d", d), UserID: user, LocationID: fmt.Sprintf("l%d", d%2), Timestamp: day0.Add(time.Duration(d)*24*time.Hour + time.Hour)}
		write(t, s, c)
		cs = append(cs, c)
	}
	var byUser atomic.Int32
	s.fault = func(table string) error {
		if table == "checkins_by_user" && byUser.Add(1) > deleteRound {
			return gocql.ErrNoConnections
		}
		return nil
	}
	if err := s.DeleteUser(ctx, user); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("DeleteUser with the second round refused: %v, want ErrUnavailable", err)
	}
	s.fault = nil
	count := func(cql string, args ...any) int { return countRows(t, s, cql, args...) }
	if n := count(`SELECT COUNT(*) FROM buckets_by_user WHERE user_id = ?`, user); n != days-deleteRound {
		t.Errorf("%d buckets indexed after the failed delete, want %d: the first round's are gone for good", n, days-deleteRound)
	}
	gone, kept := 0, 0
	for _, c := range cs {
		b := persistence.BucketOf(c.Timestamp)
		if count(`SELECT COUNT(*) FROM buckets_by_user WHERE user_id = ? AND bucket = ?`, user, b) == 0 {
			gone++
			for _, q := range []struct {
				table string
				n     int
			}{
				{"checkins_by_user", count(`SELECT COUNT(*) FROM checkins_by_user WHERE user_id = ? AND bucket = ?`, user, b)},
				{"checkins_by_user_location", count(`SELECT COUNT(*) FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ?`, user, c.LocationID, b)},
				{"buckets_by_user_location", count(`SELECT COUNT(*) FROM buckets_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ?`, user, c.LocationID, b)},
				{"checkin_by_id", count(`SELECT COUNT(*) FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`, user, c.ID)},
			} {
				if q.n > 0 {
					t.Errorf("%s: %d row(s) of %s, whose bucket is no longer indexed", q.table, q.n, c.ID)
				}
			}
			continue
		}
		kept++
		if n := count(`SELECT COUNT(*) FROM checkins_by_user WHERE user_id = ? AND bucket = ?`, user, b); n != 1 {
			t.Errorf("checkins_by_user: %d row(s) of %s, whose bucket is still indexed, want 1 (a retry finds the rest through it)", n, c.ID)
		}
	}
	if gone != deleteRound || kept != days-deleteRound {
		t.Errorf("%d checkins deleted and %d kept by the failed call, want %d and %d", gone, kept, deleteRound, days-deleteRound)
	}
	if _, err := s.GetUser(ctx, user); err != nil {
		t.Errorf("the user after the failed delete: %v, want it still there", err)
	}
	if err := s.DeleteUser(ctx, user); err != nil {
		t.Fatalf("DeleteUser again: %v", err)
	}
	for _, q := range []string{"checkins_by_user", "checkins_by_user_location", "buckets_by_user_location", "checkin_by_id", "buckets_by_user"} {
		if n := count(`SELECT COUNT(*) FROM `+q+` WHERE user_id = ? ALLOW FILTERING`, user); n > 0 {
			t.Errorf("%s: %d row(s) of the user left after the retry", q, n)
		}
	}
	if _, err := s.GetUser(ctx, user); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("the user after the retry: %v, want not found", err)
	}
}

// TestDeleteCheckinAfterFailedDelete: a checkin delete that fails at any
// one table leaves what a second delete needs (the grain sends it again
// until the store confirms it): the second one answers the checkin and no
// row of it is left, while the user's other checkin stays.
func TestDeleteCheckinAfterFailedDelete(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	for _, failing := range []string{"checkins_by_user", "checkins_by_user_location", "checkin_by_id"} {
		t.Run(failing, func(t *testing.T) {
			user := "d-" + failing
			s := openWithUser(t, cfg, user)
			ctx := t.Context()
			kept := persistence.Checkin{ID: "c1", UserID: user, LocationID: "l1", Timestamp: day0.Add(time.Hour)}
			gone := persistence.Checkin{ID: "c2", UserID: user, LocationID: "l1", Timestamp: day0.Add(2 * time.Hour)}
			write(t, s, kept, gone)
			s.fault = failTable(failing)
			_, err := s.DeleteCheckin(ctx, user, gone.ID)
			s.fault = nil
			if !errors.Is(err, persistence.ErrUnavailable) {
				t.Fatalf("delete with %s failing: %v, want ErrUnavailable", failing, err)
			}
			got, err := s.DeleteCheckin(ctx, user, gone.ID)
			if err != nil || got != gone {
				t.Fatalf("the second delete: %+v, %v; want %+v", got, err, gone)
			}
			b := persistence.BucketOf(gone.Timestamp)
			for table, n := range map[string]int{
				"checkins_by_user":          countRows(t, s, `SELECT COUNT(*) FROM checkins_by_user WHERE user_id = ? AND bucket = ? AND ts = ? AND checkin_id = ?`, user, b, gone.Timestamp.UnixMilli(), gone.ID),
				"checkins_by_user_location": countRows(t, s, `SELECT COUNT(*) FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ? AND ts = ? AND checkin_id = ?`, user, gone.LocationID, b, gone.Timestamp.UnixMilli(), gone.ID),
				"checkin_by_id":             countRows(t, s, `SELECT COUNT(*) FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`, user, gone.ID),
			} {
				if n != 0 {
					t.Errorf("after the second delete %s still has %d row(s) of the checkin", table, n)
				}
			}
			if cur, err := s.CurrentLocation(ctx, user); err != nil || cur != kept {
				t.Fatalf("current location %+v, %v; want %+v", cur, err, kept)
			}
		})
	}
}

// TestWriteOutcome: a failed write says whether it may have changed what
// reads see. A write whose checkin rows a node may have applied (a write
// timeout at checkins_by_user) is not marked ErrNotApplied, and is listed
// though not found by id; writing the same batch again completes it. A
// write refused before any checkin row was sent is marked, and nothing of
// it is listed or found.
func TestWriteOutcome(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	timeout := &gocql.RequestErrWriteTimeout{WriteType: "UNLOGGED_BATCH", Consistency: gocql.LocalQuorum, Received: 0, BlockFor: 1}
	timeout.Code, timeout.Message = gocql.ErrCodeWriteTimeout, "Operation timed out - received only 0 responses."
	for _, tc := range []struct {
		name       string
		fault      error
		notApplied bool
	}{
		{"refused", gocql.ErrNoConnections, true},
		{"timed out", timeout, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "o-" + strings.ReplaceAll(tc.name, " ", "-")
			s := openWithUser(t, cfg, user)
			ctx := t.Context()
			c := persistence.Checkin{ID: "c1", UserID: user, LocationID: "l1", Timestamp: day0.Add(time.Hour)}
			s.retries = 0 // one attempt: the fault decides the outcome
			s.fault = func(table string) error {
				if table == "checkins_by_user" {
					if tc.notApplied {
						return tc.fault
					}
					// A write timeout after the node applied the row.
					if err := s.s.Query(cqlInsertByUser, c.UserID, persistence.BucketOf(c.Timestamp), c.Timestamp, c.ID, c.LocationID).WithContext(ctx).Exec(); err != nil {
						return err
					}
					return tc.fault
				}
				return nil
			}
			err := s.WriteCheckins(ctx, []persistence.Checkin{c})
			s.fault = nil
			if !errors.Is(err, persistence.ErrUnavailable) || errors.Is(err, persistence.ErrNotApplied) != tc.notApplied {
				t.Fatalf("err = %v; want ErrUnavailable, ErrNotApplied %v", err, tc.notApplied)
			}
			page, err := s.ListCheckins(ctx, persistence.Query{UserID: user, From: day0, To: day0.AddDate(0, 0, 1), Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if listed := len(page.Checkins) == 1; listed == tc.notApplied {
				t.Fatalf("listed %v after the failed write; want %v", page.Checkins, !tc.notApplied)
			}
			if _, err := s.GetCheckin(ctx, user, c.ID); !errors.Is(err, persistence.ErrNotFound) {
				t.Fatalf("by id after the failed write: %v, want not found", err)
			}
			write(t, s, c)
			if got, err := s.GetCheckin(ctx, user, c.ID); err != nil || got != c {
				t.Fatalf("by id after writing again: %+v, %v; want %+v", got, err, c)
			}
		})
	}
}
