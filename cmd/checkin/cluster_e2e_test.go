package main

// End-to-end test of a multi-node cluster: real checkin processes on
// loopback that find each other through a real etcd and share a real CQL
// store. Needs CHECKIN_TEST_ETCD_ENDPOINTS and CHECKIN_TEST_CQL_HOSTS
// (.ci/etcd-up, .ci/cassandra-up); without them it is skipped, except in
// CI, where it fails.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/checkin/checkin/cmd/internal/testcert"
)

// needServers skips the test, with msg saying how to run it, unless ok;
// under CI=true, where every server a test needs is started, it fails.
func needServers(t *testing.T, ok bool, msg string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
}

// clusterFlags returns the flags that make nodes members of one new
// cluster over one new keyspace.
func clusterFlags(t *testing.T) []string {
	t.Helper()
	etcd, cql := os.Getenv("CHECKIN_TEST_ETCD_ENDPOINTS"), os.Getenv("CHECKIN_TEST_CQL_HOSTS")
	needServers(t, etcd != "" && cql != "", "multi-node tests need CHECKIN_TEST_ETCD_ENDPOINTS and CHECKIN_TEST_CQL_HOSTS: run .ci/etcd-up and .ci/cassandra-up, then "+
		"CHECKIN_TEST_ETCD_ENDPOINTS=127.0.0.1:2379 CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 make test")
	name := "t" + randHex(4)
	return []string{"--store=scylla", "--scylla.hosts=" + cql, "--scylla.keyspace=" + newKeyspace(t, cql),
		"--cluster.provider=etcd", "--cluster.etcd-endpoints=" + etcd, "--cluster.etcd-prefix=/checkin-test/" + name,
		"--cluster.name=" + name, "--http.request-timeout=3s"}
}

// startMember starts a node of the cluster. Its actor runtime logs errors
// when another member dies, which the test does on purpose.
func startMember(t *testing.T, flags []string) *proc {
	t.Helper()
	p := startProc(t, flags...)
	p.allowErrorsFrom = "protoactor"
	return p
}

// waitMembers waits until every node in ps sees want members, then checks
// each says it is ready.
func waitMembers(t *testing.T, want int, ps ...*proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range ps {
		for {
			got := p.metric(t, "checkin_cluster_members")
			if int(got) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %v cluster members, want %d", p.base, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r := p.do(t, "GET", "/readyz", nil); r.status != http.StatusOK {
			t.Errorf("%s: GET /readyz = %s with %d members, want 200", p.base, r, want)
		}
	}
}

// postUntilAcked posts c for user through the nodes in turn, retrying the
// same checkin (same id) after errors, until a node acknowledges it or the
// deadline passes. It returns the number of attempts, 0 if none succeeded.
func postUntilAcked(user string, c ck, deadline time.Time, nodes ...*proc) (attempts int, last string) {
	for i := 0; time.Now().Before(deadline); i++ {
		p := nodes[i%len(nodes)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := p.try(ctx, "POST", "/v1/users/"+user+"/checkins", c.body())
		cancel()
		attempts++
		if err == nil && (r.status == http.StatusCreated || r.status == http.StatusOK) {
			return attempts, ""
		}
		if err != nil {
			last = err.Error()
		} else {
			last = r.String()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, last
}

// TestCluster runs three nodes as one cluster: grains are spread over the
// nodes with one activation per user, any node answers for any user, a
// node that crashes or leaves loses no acknowledged checkin, and a node
// that joins takes its share.
func TestCluster(t *testing.T) {
	t.Parallel()
	flags := clusterFlags(t)
	a := startMember(t, flags) // creates the keyspace before the others start
	b, c := startMember(t, flags), startMember(t, flags)
	waitMembers(t, 3, a, b, c)
	nodes := []*proc{a, b, c}

	locs := map[string]apiLocation{}
	var locIDs []string
	for i := range 3 {
		l := nodes[i].mkLocation(t, "cl")
		locs[l.ID], locIDs = l, append(locIDs, l.ID)
	}
	const users = 24
	ids := make([]string, users)
	sent := map[string][]ck{} // acknowledged checkins per user
	now := ms(time.Now())
	for i := range ids {
		ids[i] = nodes[i%3].mkUser(t, "cl")
		// Out of timestamp order, each through another node: the newest
		// goes second.
		for j, age := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
			k := ck{uniqueID("cl"), locIDs[(i+j)%3], now.Add(-age - time.Duration(i)*time.Minute)}
			nodes[(i+j)%3].mkCheckin(t, ids[i], k)
			sent[ids[i]] = append(sent[ids[i]], k)
		}
	}
	checkAll := func(t *testing.T, ps ...*proc) {
		t.Helper()
		for _, u := range ids {
			cur := latest(sent[u])
			for _, p := range ps {
				p.checkCurrent(t, u, cur, locs[cur.Loc])
			}
		}
	}
	t.Run("any node answers for any user", func(t *testing.T) {
		checkAll(t, a, b, c)
		// Each node served some users itself and forwarded the others.
		for _, p := range nodes {
			local := p.metric(t, `checkin_grain_requests_total{served_by="local"}`) + p.metric(t, `checkin_grain_requests_total{served_by="view"}`)
			if remote := p.metric(t, `checkin_grain_requests_total{served_by="remote"}`); local == 0 || remote == 0 {
				t.Errorf("%s served %v grain requests itself and forwarded %v, want both", p.base, local, remote)
			}
		}
	})

	t.Run("one activation per user, spread over the nodes", func(t *testing.T) {
		total := 0.0
		for _, p := range nodes {
			n := p.metric(t, "checkin_grains_active")
			if n == 0 {
				t.Errorf("%s hosts no user grain: placement does not spread users", p.base)
			}
			total += n
		}
		if total != users {
			t.Errorf("%v user grains active over the cluster, want %d (one per user)", total, users)
		}
	})

	t.Run("an update through one node shows on every node", func(t *testing.T) {
		// Every node caches the location and the user first (for
		// cache.ttl, ten minutes): only the notice can make them drop it.
		l := locs[locIDs[0]]
		u := ids[0]
		for _, p := range nodes {
			decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK)
			decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+u, nil), http.StatusOK)
		}
		checkAll(t, a, b, c)
		sentBefore := b.metric(t, `checkin_record_notices_total{direction="sent"}`)
		l.Name, l.Lat = "renamed "+l.ID, -12.25
		if got := decodeOK[apiLocation](t, b.do(t, "PATCH", "/v1/locations/"+l.ID, map[string]any{"name": l.Name, "lat": l.Lat}), http.StatusOK); got != l {
			t.Fatalf("PATCH through %s answered %+v, want %+v", b.base, got, l)
		}
		locs[l.ID] = l
		user := decodeOK[apiUser](t, c.do(t, "PATCH", "/v1/users/"+u, `{"name":"renamed"}`), http.StatusOK)
		deadline := time.Now().Add(10 * time.Second)
		for _, p := range nodes {
			for {
				gotL := decodeOK[apiLocation](t, p.do(t, "GET", "/v1/locations/"+l.ID, nil), http.StatusOK)
				gotU := decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+u, nil), http.StatusOK)
				if gotL == l && gotU == user {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still serves location %+v and user %+v 10 s after the updates, want %+v and %+v", p.base, gotL, gotU, l, user)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		checkAll(t, a, b, c) // current-location answers embed the new location
		if got := b.metric(t, `checkin_record_notices_total{direction="sent"}`) - sentBefore; got != 2 {
			t.Errorf("%s sent %v notices for one update in a cluster of three, want 2", b.base, got)
		}
		if got := a.metric(t, `checkin_record_notices_total{direction="received"}`); got < 2 {
			t.Errorf("%s received %v notices, want at least 2 (one per update)", a.base, got)
		}
	})

	t.Run("a user deleted through one node is gone on every node", func(t *testing.T) {
		u := a.mkUser(t, "cldel")
		k := ck{uniqueID("cldel"), locIDs[1], ms(time.Now().Add(-time.Minute))}
		b.mkCheckin(t, u, k)
		for _, p := range nodes { // every node caches the user
			decodeOK[apiUser](t, p.do(t, "GET", "/v1/users/"+u, nil), http.StatusOK)
			p.checkCurrent(t, u, k, locs[k.Loc])
		}
		if r := c.do(t, "DELETE", "/v1/users/"+u, nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE through %s = %s, want 204", c.base, r)
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, p := range nodes {
			for {
				r := p.do(t, "GET", "/v1/users/"+u, nil)
				if r.status == http.StatusNotFound {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still serves the deleted user 10 s after the delete: %s", p.base, r)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// (Not the current location: asking it would activate a
			// grain, and a later subtest counts them.)
			wantError(t, p.do(t, "GET", "/v1/users/"+u+"/checkins", nil), http.StatusNotFound, "user_not_found")
		}
		// The deleting grain stopped: every node hosts as many grains as
		// there are users.
		deadline = time.Now().Add(10 * time.Second)
		for {
			total := 0.0
			for _, p := range nodes {
				total += p.metric(t, "checkin_grains_active")
			}
			if total == users {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v user grains active after the delete, want %d: the deleted user's grain did not stop", total, users)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a checkin deleted through any node moves the current location on every node", func(t *testing.T) {
		u := ids[0]
		var extra []ck
		for i := range nodes { // newer than every checkin sent so far
			extra = append(extra, ck{uniqueID("cldk"), locIDs[i], now.Add(time.Duration(i+1) * time.Minute)})
		}
		a.mkCheckins(t, u, extra)
		// Deleted newest first, each through another node (two of the
		// three are not the grain's), every node reading the current
		// location before and after (the grain's node from its view).
		for i := len(extra) - 1; i >= 0; i-- {
			for _, p := range nodes {
				p.checkCurrent(t, u, extra[i], locs[extra[i].Loc])
			}
			if r := nodes[i].do(t, "DELETE", "/v1/users/"+u+"/checkins/"+extra[i].ID, nil); r.status != http.StatusNoContent {
				t.Fatalf("DELETE through %s = %s, want 204", nodes[i].base, r)
			}
		}
		checkAll(t, a, b, c)
		for _, p := range nodes {
			wantCheckins(t, u, p.listAll(t, u, nil, 100, nil), query{}.expect(sent[u]))
		}
	})

	t.Run("a crashed node loses no acknowledged checkin", func(t *testing.T) {
		// Checkins keep coming through all three nodes, older than every
		// user's current one, while c is killed: every acknowledged one
		// must be stored; one that was not may or may not be.
		posted := newWriteLog()
		for _, u := range ids {
			for _, k := range sent[u] {
				posted.add(u, k, true)
			}
		}
		before := posted.acked.Load()
		quit := make(chan struct{})
		wait := posted.writeUntil(quit, 8, func(i int) (*proc, string, ck) {
			return nodes[i%3], ids[i%users], ck{uniqueID("clk"), locIDs[i%3], now.Add(-24*time.Hour - time.Duration(i)*time.Millisecond)}
		})
		for deadline := time.Now().Add(20 * time.Second); posted.acked.Load()-before < 200 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		killed := time.Now()
		c.kill(t)
		atKill := posted.acked.Load() - before
		time.Sleep(time.Second) // the load goes on through a and b
		close(quit)
		wait()
		if atKill < 200 {
			t.Fatalf("only %d checkins acknowledged under load before the crash", atKill)
		}
		t.Logf("under load: %d checkins acknowledged (%d before the kill), %d posts not", posted.acked.Load()-before, atKill, posted.attempts()-int(posted.acked.Load()))

		deadline := time.Now().Add(60 * time.Second)
		var mu sync.Mutex
		var wg sync.WaitGroup
		worst := 0
		for i, u := range ids {
			k := ck{uniqueID("cl"), locIDs[i%3], now.Add(time.Duration(i) * time.Second)} // the newest of this user
			wg.Go(func() {
				n, last := postUntilAcked(u, k, deadline, a, b)
				mu.Lock()
				defer mu.Unlock()
				if n == 0 {
					t.Errorf("checkin for %s never acknowledged after the crash; last answer: %s", u, last)
					return
				}
				posted.add(u, k, true)
				worst = max(worst, n)
			})
		}
		wg.Wait()
		t.Logf("every user took a newer checkin by %s after the kill (at most %d attempts after the load)", time.Since(killed).Round(time.Millisecond), worst)
		waitMembers(t, 2, a, b)
		stored := 0
		for i, u := range ids { // every acknowledged checkin, on either node
			// What later subtests must find: the unacknowledged ones that
			// were stored too.
			sent[u] = posted.check(t, u, []*proc{a, b}[i%2].listAll(t, u, nil, 100, nil))
			stored += len(sent[u])
		}
		checkAll(t, a, b)
		t.Logf("%d checkins stored over %d users", stored, users)
	})

	// writeWhile posts checkins through a with four clients while change
	// runs (and 300 ms before and after it), retrying each with the same id
	// until it is acknowledged; it records them in sent and returns how
	// many were acknowledged and how many attempts were refused first.
	writeWhile := func(t *testing.T, a *proc, change func()) (acked, refused int) {
		quit := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range 4 {
			wg.Go(func() {
				for i := w; ; i += 4 {
					select {
					case <-quit:
						return
					default:
					}
					u := ids[i%users]
					k := ck{uniqueID("cl"), locIDs[i%3], now.Add(-time.Duration(i+1) * time.Millisecond)} // older than the current one
					n, last := postUntilAcked(u, k, time.Now().Add(30*time.Second), a)
					mu.Lock()
					if n == 0 {
						t.Errorf("checkin for %s never acknowledged; last answer: %s", u, last)
					} else {
						sent[u] = append(sent[u], k)
						refused += n - 1
						acked++
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		change()
		time.Sleep(300 * time.Millisecond)
		close(quit)
		wg.Wait()
		return acked, refused
	}

	t.Run("a node that leaves hands its users over", func(t *testing.T) {
		// Checkins keep coming through a while b leaves. b drains first:
		// its grains answer what they hold, calls that reach them later
		// are sent on to a, and none is refused.
		acked, refused := writeWhile(t, a, func() { b.stop(t) }) // clean exit, no error logged
		t.Logf("%d checkins acknowledged through a while b left", acked)
		if refused > 0 {
			t.Errorf("%d attempts refused while b left (of %d checkins): a node that drains hands over without refusals", refused, acked)
		}
		waitMembers(t, 1, a)
		checkAll(t, a)
		for _, u := range ids {
			wantCheckins(t, u, a.listAll(t, u, nil, 100, nil), query{}.expect(sent[u]))
		}
		if n := a.metric(t, "checkin_grains_active"); n != users {
			t.Errorf("the last node hosts %v user grains after the others left, want %d", n, users)
		}
	})

	t.Run("a node that joins takes its share", func(t *testing.T) {
		// Checkins keep coming through a while d joins: a hands d's share
		// of the users over, and none is refused.
		var d *proc
		acked, refused := writeWhile(t, a, func() {
			d = startMember(t, flags)
			waitMembers(t, 2, a, d)
		})
		t.Logf("%d checkins acknowledged through a while d joined", acked)
		if refused > 0 {
			t.Errorf("%d attempts refused while d joined (of %d checkins): a hand-over refuses nothing", refused, acked)
		}
		checkAll(t, d, a)
		if n := d.metric(t, "checkin_grains_active"); n == 0 || n == users {
			t.Errorf("the new node hosts %v of %d user grains, want a share", n, users)
		}
		if n := a.metric(t, "checkin_grain_handovers_total"); n == 0 {
			t.Error("a handed no grain over to the node that joined")
		}
		for i, u := range ids { // writes through the new node, in both directions
			k := ck{uniqueID("cl"), locIDs[i%3], now.Add(time.Minute + time.Duration(i)*time.Second)}
			[]*proc{a, d}[i%2].mkCheckin(t, u, k)
			sent[u] = append(sent[u], k)
		}
		checkAll(t, a, d)
		for _, u := range ids {
			wantCheckins(t, u, d.listAll(t, u, nil, 100, nil), query{}.expect(sent[u]))
		}
	})
}

// TestClusterEvictedNode pauses a member for longer than its membership
// lease (3 s): the other member takes its users over, and the paused one,
// once it runs again, finds that the cluster removed it. protoactor would
// never let it back under its identity, so it stops with exit status 1 for
// its supervisor to start it again; started again, it joins and takes its
// share.
func TestClusterEvictedNode(t *testing.T) {
	t.Parallel()
	flags := clusterFlags(t)
	a := startMember(t, flags)
	b := startMember(t, flags)
	waitMembers(t, 2, a, b)
	l := a.mkLocation(t, "ev")
	now := ms(time.Now())
	users := make([]string, 12)
	sent := map[string]ck{}
	for i := range users {
		users[i] = a.mkUser(t, "ev")
		k := ck{uniqueID("ev"), l.ID, now.Add(-time.Hour)}
		b.mkCheckin(t, users[i], k) // activates each user on its owner, b for some
		sent[users[i]] = k
	}
	if n := b.metric(t, "checkin_grains_active"); n == 0 {
		t.Fatalf("b hosts no user grain before the pause")
	}

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for a.metric(t, "checkin_cluster_members") != 1 {
		if time.Since(paused) > 30*time.Second {
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("a still sees %v members 30 s into b's pause", a.metric(t, "checkin_cluster_members"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a saw b leave %s into its pause", time.Since(paused).Round(time.Millisecond))
	for _, u := range users { // a serves b's users now
		k := ck{uniqueID("ev"), l.ID, now}
		a.mkCheckin(t, u, k)
		sent[u] = k
	}
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	waitRemovedExit(t, b)
	waitMembers(t, 1, a)

	c := startMember(t, flags) // b started again: a new identity
	waitMembers(t, 2, a, c)
	for _, u := range users {
		a.checkCurrent(t, u, sent[u], l)
		c.checkCurrent(t, u, sent[u], l)
	}
	if n := c.metric(t, "checkin_grains_active"); n == 0 {
		t.Errorf("the restarted node hosts no user grain: it did not take its share")
	}
}

// TestClusterLeaseOutlivesAPause runs two members with a 20 s membership
// lease (cluster.etcd-lease-ttl) and pauses one for 5 s, longer than the
// default lease: it stays a member, keeps its users and serves on.
func TestClusterLeaseOutlivesAPause(t *testing.T) {
	t.Parallel()
	// Well over the pause: the lease must outlive, besides the 5 s, up to
	// a third of it and half a second since the last renewal before the
	// pause (the etcd client renews on a 500 ms tick once a third of the
	// lease is up), the test's last look at a's members running late, and
	// b's first renewal after it. 10 s left under half a second for that.
	flags := append(clusterFlags(t), "--cluster.etcd-lease-ttl=20s")
	a := startMember(t, flags)
	b := startMember(t, flags)
	waitMembers(t, 2, a, b)
	l := a.mkLocation(t, "lp")
	u := a.mkUser(t, "lp")
	now := ms(time.Now())
	a.mkCheckin(t, u, ck{uniqueID("lp"), l.ID, now.Add(-time.Minute)})

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if n := a.metric(t, "checkin_cluster_members"); n != 2 {
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("a sees %v members during b's pause, want 2: the lease did not outlive it", n)
		}
	}
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	k := ck{uniqueID("lp"), l.ID, now}
	b.mkCheckin(t, u, k)
	time.Sleep(time.Second) // an eviction would show by now
	waitMembers(t, 2, a, b)
	a.checkCurrent(t, u, k, l)
	b.checkCurrent(t, u, k, l)
}

// TestClusterFailsFastToASilentMember freezes a member (SIGSTOP) that
// stays in the membership (a lease longer than the test): requests through
// the other for users the frozen one holds time out (504) until
// grain.member-timeouts of them did, then fail at once with 503
// unavailable, while the other member's own users are served. After
// grain.member-pause one call goes to the frozen member as a probe while
// the others still fail at once, also those that must first ask it to
// activate their grains. Once the frozen member runs again and the
// pause has passed, its users are served through the other member again.
func TestClusterFailsFastToASilentMember(t *testing.T) {
	t.Parallel()
	// A request timeout short enough that calls to b time out quickly,
	// and long enough that none of the test's ordinary requests, each of
	// which must succeed, times out on a loaded machine (a user or a
	// location is created with a Paxos write on a CQL node that shares
	// the machine: 1 s was within reach of its slowest).
	flags := append(clusterFlags(t), "--cluster.etcd-lease-ttl=60s", "--http.request-timeout=2s",
		"--grain.member-timeouts=2", "--grain.member-pause=3s")
	a := startMember(t, flags)
	b := startMember(t, flags)
	waitMembers(t, 2, a, b)
	l := a.mkLocation(t, "sm")

	// Users created through a, sorted by who holds them: a grain call a
	// forwards to b counts as served_by="remote" on a.
	var ofA, ofB []string
	for len(ofA) < 1 || len(ofB) < 4 {
		before := a.metric(t, `checkin_grain_requests_total{served_by="remote"}`)
		u := a.mkUser(t, "sm")
		if a.metric(t, `checkin_grain_requests_total{served_by="remote"}`) > before {
			ofB = append(ofB, u)
		} else {
			ofA = append(ofA, u)
		}
		if len(ofA)+len(ofB) > 64 {
			t.Fatalf("64 users: %d held by a, %d by b; want both", len(ofA), len(ofB))
		}
	}
	checkin := func(user string) response {
		return a.do(t, "POST", "/v1/users/"+user+"/checkins", ck{uniqueID("sm"), l.ID, ms(time.Now().Add(-time.Minute))}.body())
	}

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	for i, u := range ofB[:2] {
		if r := checkin(u); r.status != http.StatusGatewayTimeout {
			t.Fatalf("checkin %d for a user b holds, b frozen: %s, want 504 (its call timed out)", i+1, r)
		}
	}
	r := checkin(ofB[2])
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"unavailable"`) || !strings.Contains(string(r.body), "stopped answering") {
		t.Fatalf("checkin after 2 timeouts to b: %s, want 503 unavailable at once (calls to b stopped)", r)
	}
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if got := a.metric(t, "checkin_grain_calls_failed_fast_total"); got < 1 {
		t.Errorf("checkin_grain_calls_failed_fast_total = %v, want at least 1", got)
	}
	if r := checkin(ofA[0]); r.status != http.StatusCreated {
		t.Errorf("checkin for a user a holds, b frozen: %s, want 201", r)
	}

	// The pause over, b still frozen: of four checkins at once one goes to
	// b as the probe, the others fail at once, whether a's cache knows the
	// user's grain (ofB[2:]) or b must be asked to activate it (ofB[:2],
	// forgotten when their calls timed out). The probe gets 504 if its
	// grain call timed out, 503 if the activation did (nothing was sent).
	time.Sleep(3500 * time.Millisecond)
	fastBefore := a.metric(t, "checkin_grain_calls_failed_fast_total")
	statuses := make([]int, 4)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = checkin(ofB[i%len(ofB)]).status
		}()
	}
	wg.Wait()
	slices.Sort(statuses)
	if statuses[0] != http.StatusServiceUnavailable || statuses[1] != http.StatusServiceUnavailable || statuses[2] != http.StatusServiceUnavailable ||
		(statuses[3] != http.StatusServiceUnavailable && statuses[3] != http.StatusGatewayTimeout) {
		t.Errorf("four checkins at once for users b holds, b frozen past the pause: %v, want three 503 and a 503 or 504 (the probe)", statuses)
	}
	if fast := a.metric(t, "checkin_grain_calls_failed_fast_total") - fastBefore; fast != 3 {
		t.Errorf("%v of the four checkins failed fast, want 3 (all but the probe)", fast)
	}

	resume()
	time.Sleep(3500 * time.Millisecond) // past grain.member-pause
	// b may take a while to answer again on a loaded machine, and each
	// probe it leaves unanswered stops calls to it for another pause:
	// time for several probes.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := checkin(ofB[3])
		if r.status == http.StatusCreated {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("checkin for a user b holds, b running again for 30 s: %s, want 201", r)
		}
	}
}

// TestClusterRemovesAMemberMostCannotReach runs three members, one of
// which the other two cannot reach while its record stays (a 60 s
// lease): frozen (SIGSTOP), as a member cut off from the others but not
// from etcd looks to them; running with a cluster.advertised-addr where
// nothing listens, so that calls to it are refused (the callers' remotes
// answer dead letters at once); or killed once the others have called
// its users' grains (a member that crashed, whose record outlives it by
// the lease). While only one other member calls it and stops calling it, it
// stays a member: one report of two needed. Once the third has stopped
// calling it too, the two remove it from the cluster
// (cluster.evict-silent-after), take its users over and serve them; a
// removed member that runs finds that the cluster removed it and exits
// with status 1; the reports of it go.
func TestClusterRemovesAMemberMostCannotReach(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"frozen", "unreachable address", "killed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			testRemoval(t, how)
		})
	}
}

// testRemoval is TestClusterRemovesAMemberMostCannotReach, the third
// member made unreachable as how says.
func testRemoval(t *testing.T, how string) {
	// The request timeout: see TestClusterFailsFastToASilentMember.
	flags := append(clusterFlags(t), "--cluster.etcd-lease-ttl=60s", "--http.request-timeout=2s",
		"--grain.member-timeouts=2", "--grain.member-pause=1s", "--cluster.evict-silent-after=2s")
	var name string
	for _, f := range flags {
		if v, ok := strings.CutPrefix(f, "--cluster.name="); ok {
			name = v
		}
	}
	reports := "/checkin-test/" + name + "/" + name + ".silent/"
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(os.Getenv("CHECKIN_TEST_ETCD_ENDPOINTS"), ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	reportKeys := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, reports, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range resp.Kvs {
			keys = append(keys, strings.TrimPrefix(string(kv.Key), reports))
		}
		return keys
	}

	var cFlags []string
	if how == "unreachable address" {
		// Port 1: outside the ephemeral range, so no process started by
		// this or another test gets it (a port that was free a moment ago
		// can be; another test's node then answered there).
		cFlags = []string{"--cluster.advertised-addr=127.0.0.1:1"}
	}
	a, b, c := startMember(t, flags), startMember(t, flags), startMember(t, append(slices.Clone(flags), cFlags...))
	waitMembers(t, 3, a, b, c)
	l := a.mkLocation(t, "rm")
	// Users c holds: created through c and activated there, not on a or b.
	// With an address the others cannot reach, c cannot create the
	// others' users (their answers do not reach it): those are left out.
	activations := func() [3]float64 {
		var n [3]float64
		for i, p := range []*proc{a, b, c} {
			n[i] = p.metric(t, "checkin_grain_activations_total")
		}
		return n
	}
	var ofC []string
	for tries := 0; len(ofC) < 2; tries++ {
		if tries == 64 {
			t.Fatalf("c holds %d of 64 users", len(ofC))
		}
		before := activations()
		u := uniqueID("rm")
		r := c.do(t, "POST", "/v1/users", map[string]any{"id": u, "name": "user " + u})
		if after := activations(); r.status == http.StatusCreated && after == [3]float64{before[0], before[1], before[2] + 1} {
			ofC = append(ofC, u)
		}
	}
	now := ms(time.Now())
	sent := map[string]ck{}
	for _, u := range ofC {
		k := ck{uniqueID("rm"), l.ID, now.Add(-time.Hour)}
		c.mkCheckin(t, u, k)
		sent[u] = k
	}

	if how != "unreachable address" {
		// a and b send c's users to c: they learn where the grains are,
		// and none of them activates one of its own.
		before := activations()
		for i, u := range ofC {
			for _, p := range []*proc{a, b} {
				k := ck{uniqueID("rm"), l.ID, now.Add(-time.Hour + time.Duration(i+1)*time.Minute)}
				p.mkCheckin(t, u, k)
			}
		}
		if after := activations(); after != before {
			t.Fatalf("grain activations on a, b, c went from %v to %v as a and b sent checkins for users c holds, want no new one", before, after)
		}
	}
	resume := func() {}
	switch how {
	case "killed":
		c.kill(t)
	case "frozen":
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); procState(c.cmd.Process.Pid) != "T"; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("c not stopped 5 s after SIGSTOP: process state %q", procState(c.cmd.Process.Pid))
			}
		}
		resumed := false
		resume = func() {
			if !resumed {
				resumed = true
				if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
	}
	checkin := func(p *proc, u string) int {
		return p.do(t, "POST", "/v1/users/"+u+"/checkins", ck{uniqueID("rm"), l.ID, ms(time.Now().Add(-time.Minute))}.body()).status
	}

	// The reports of c (c may report the others too: with an address they
	// cannot reach, their answers do not reach it).
	id := func(p *proc) string {
		for _, l := range p.log.lines() {
			if l.Msg == "cluster member started" {
				return name + "@" + l.MemberID
			}
		}
		t.Fatalf("%s did not log its member id", p.base)
		return ""
	}
	ofCReports := func() []string {
		var keys []string
		for _, k := range reportKeys() {
			if strings.HasPrefix(k, id(c)+"/") {
				keys = append(keys, k)
			}
		}
		return keys
	}

	// Only a calls c: a reports it, and one report of two needed is not
	// enough. (Two calls time out, then c answers no ping for
	// cluster.evict-silent-after: the steps of the removal below, given as
	// long.)
	for deadline := time.Now().Add(30 * time.Second); len(ofCReports()) == 0; {
		before := servedBy(t, a, b)
		if st := checkin(a, ofC[0]); st != http.StatusGatewayTimeout && st != http.StatusServiceUnavailable {
			t.Fatalf("checkin through a for a user c holds, c unreachable: %d, want 504 or 503 (a and b %s before it, %s after; c's process state %q)",
				st, before, servedBy(t, a, b), procState(c.cmd.Process.Pid))
		}
		if time.Now().After(deadline) {
			t.Fatalf("a did not report c within 30 s of calling it")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // a removal would show by now
	if keys, want := ofCReports(), id(c)+"/"+id(a); len(keys) != 1 || keys[0] != want {
		t.Errorf("reports of c in etcd with only a calling c: %q, want [%q] (by a)", keys, want)
	}
	for _, p := range []*proc{a, b} {
		if n := p.metric(t, "checkin_cluster_members"); n != 3 {
			t.Fatalf("%s sees %v members with c reported by a alone, want 3", p.base, n)
		}
	}

	// b calls c too: with two reports of three members, c is removed.
	began := time.Now()
	for a.metric(t, "checkin_cluster_members") != 2 || b.metric(t, "checkin_cluster_members") != 2 {
		checkin(b, ofC[1])
		checkin(a, ofC[0])
		if time.Since(began) > 30*time.Second {
			t.Fatalf("a and b still see %v and %v members 30 s after b began calling c", a.metric(t, "checkin_cluster_members"), b.metric(t, "checkin_cluster_members"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("c removed %s after b began calling it", time.Since(began).Round(time.Millisecond))
	// The member that removed c counts and logs it once etcd answered its
	// delete, which both may have seen through their watches before: the
	// test can see two members before the count and the line are there.
	// It waits for the line, which comes after the count.
	const removedMsg = "removed a member most of the cluster cannot reach: the others take its users over"
	for deadline := time.Now().Add(10 * time.Second); !a.log.has(removedMsg) && !b.log.has(removedMsg); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("neither a nor b logged the removal within 10 s of seeing it")
			break
		}
	}
	if n := a.metric(t, "checkin_cluster_members_removed_total") + b.metric(t, "checkin_cluster_members_removed_total"); n != 1 {
		t.Errorf("a and b removed %v members between them, want 1", n)
	}
	for _, p := range []*proc{a, b} { // c answered nothing: no dead letter counts as an answer
		if p.log.has("a member answers this node's calls again") {
			t.Errorf("%s logged that c answers its calls again", p.base)
		}
	}
	for i, u := range ofC { // a and b serve c's users now
		k := ck{uniqueID("rm"), l.ID, now}
		if n, last := postUntilAcked(u, k, time.Now().Add(10*time.Second), []*proc{a, b}[i%2]); n == 0 {
			t.Fatalf("checkin for %s, c removed: not acknowledged within 10 s: %s", u, last)
		}
		sent[u] = k
	}

	resume()
	if how == "killed" {
		waitNoReports(t, reportKeys)
		checkCurrents(t, ofC, sent, l, a, b)
		return
	}
	waitRemovedExit(t, c)
	waitNoReports(t, reportKeys)
	checkCurrents(t, ofC, sent, l, a, b)
}

// procState returns the state letter Linux gives process pid (T: stopped),
// or why it cannot be read.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err.Error()
	}
	// pid (comm) state ...: comm may hold spaces and parentheses
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return string(b[i+2])
	}
	return "unreadable: " + string(b)
}

// servedBy reports the grain calls each of ps made, by where they were
// served, and the grains each activated: where a call went.
func servedBy(t *testing.T, ps ...*proc) string {
	t.Helper()
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s: local %v, remote %v, activations %v", p.base,
			p.metric(t, `checkin_grain_requests_total{served_by="local"}`), p.metric(t, `checkin_grain_requests_total{served_by="remote"}`),
			p.metric(t, "checkin_grain_activations_total")))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// waitRemovedExit waits for p, which the cluster removed and which runs,
// to exit by itself: with status 1, having logged why and shut down
// cleanly.
func waitRemovedExit(t *testing.T, p *proc) {
	t.Helper()
	p.stopped = true // it stops by itself; the cleanup must not expect exit status 0
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within 30 s of its removal (and of running again); killed", p.base)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("%s exited with status %d after the cluster removed it, want 1", p.base, code)
	}
	if !p.log.has("the cluster removed this node: stopping with exit status 1 so that its supervisor starts it again") || !p.log.has("shutdown complete") {
		t.Errorf("%s did not log that the cluster removed it and then shut down cleanly", p.base)
	}
}

// waitNoReports waits until the reports of the removed member are gone.
func waitNoReports(t *testing.T, reportKeys func() []string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(reportKeys()) != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("reports of the removed member left in etcd 10 s after it left: %q", reportKeys())
			return
		}
	}
}

// checkCurrents checks each user's current location on every node.
func checkCurrents(t *testing.T, users []string, sent map[string]ck, l apiLocation, nodes ...*proc) {
	t.Helper()
	for _, u := range users {
		for _, p := range nodes {
			p.checkCurrent(t, u, sent[u], l)
		}
	}
}

// ownEtcdCluster starts an etcd of the test's own (a test that stops or
// freezes it must not share it) and returns it with the flags of members
// of one new cluster registered there, over one new keyspace.
func ownEtcdCluster(t *testing.T) (*testEtcd, []string) {
	t.Helper()
	cql := os.Getenv("CHECKIN_TEST_CQL_HOSTS")
	etcd := newTestEtcd(t, "http", "this test starts an etcd of its own")
	etcd.start(t)
	etcd.waitHealthy(t)
	return etcd, []string{"--store=scylla", "--scylla.hosts=" + cql, "--scylla.keyspace=" + newKeyspace(t, cql),
		"--cluster.provider=etcd", "--cluster.etcd-endpoints=" + etcd.addr, "--cluster.name=t" + randHex(4), "--http.request-timeout=3s"}
}

// TestClusterSurvivesAnEtcdRestart stops the cluster's etcd for twice the
// membership lease and starts it again on the same data: the members serve
// on meanwhile, and afterwards both are still members (each renewed its
// lease, which etcd kept), ready, and reach each other; none exits.
func TestClusterSurvivesAnEtcdRestart(t *testing.T) {
	t.Parallel()
	etcd, flags := ownEtcdCluster(t)
	a := startMember(t, flags)
	b := startMember(t, flags)
	waitMembers(t, 2, a, b)

	etcd.stop(t)
	crossCheckins(t, a, b, "er", 4) // etcd is down: the members serve with the topology they have
	time.Sleep(6 * time.Second)     // twice the lease
	if age := a.metric(t, "checkin_cluster_lease_age_seconds"); age < 3 {
		t.Errorf("checkin_cluster_lease_age_seconds = %v with etcd down for 6 s, want more than the lease (3 s)", age)
	}
	etcd.start(t)
	etcd.waitHealthy(t)
	time.Sleep(6 * time.Second) // a lease not renewed would run out by now, and the members would see it
	if age := a.metric(t, "checkin_cluster_lease_age_seconds"); age >= 3 {
		t.Errorf("checkin_cluster_lease_age_seconds = %v 6 s after etcd came back, want the lease renewed", age)
	}
	for _, p := range []*proc{a, b} {
		select {
		case <-p.done:
			t.Fatalf("%s exited after etcd came back", p.base)
		default:
		}
	}
	waitMembers(t, 2, a, b)
	crossCheckins(t, a, b, "er", 4)
}

// TestClusterSurvivesAnEtcdStall: an etcd that stops answering for longer
// than the lease while it runs (frozen with SIGSTOP for twice the lease)
// expires every member's lease when it resumes, and deletes every record.
// The members tell that from a member that was removed: every record went
// at once, their own among them, while none of them could renew. So they
// register again under the same identities, keep each other, and serve
// on: none exits, and a member that joins afterwards finds their records.
// A member killed during the stall does not register again, and leaves
// once the others' grace (twice the lease) is over.
func TestClusterSurvivesAnEtcdStall(t *testing.T) {
	t.Parallel()
	etcd, flags := ownEtcdCluster(t)
	a := startMember(t, flags)
	b := startMember(t, flags)
	c := startMember(t, flags)
	waitMembers(t, 3, a, b, c)
	crossCheckins(t, a, b, "es", 4)

	if err := etcd.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.kill(t)
	time.Sleep(6 * time.Second) // twice the lease
	if err := etcd.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	etcd.waitHealthy(t)
	// The leases ran out when etcd resumed (or the test proves nothing):
	// each member registers again within a few seconds; a member that took
	// itself for removed would exit instead.
	const again = "etcd lost every member's lease at once: this node registered again under the same identity"
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range []*proc{a, b} {
		for !p.log.has(again) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if !p.log.has(again) {
			t.Errorf("%s did not register again: etcd kept the leases through the stall, or the member exited", p.base)
		}
	}
	time.Sleep(2 * time.Second) // a member that took itself for removed exits within a second
	for _, p := range []*proc{a, b} {
		select {
		case <-p.done:
			t.Fatalf("%s exited after etcd resumed", p.base)
		default:
		}
		if age := p.metric(t, "checkin_cluster_lease_age_seconds"); age >= 3 {
			t.Errorf("%s: checkin_cluster_lease_age_seconds = %v after it registered again, want a lease renewed", p.base, age)
		}
	}
	waitMembers(t, 2, a, b) // c, after the grace
	crossCheckins(t, a, b, "es", 4)
	d := startMember(t, flags)
	waitMembers(t, 3, a, b, d)
}

// TestClusterTLS runs two members whose cluster port speaks mutual TLS:
// grain calls cross between them, the port refuses a peer without a
// certificate of the cluster's authority and plain gRPC, and SIGHUP swaps
// in a renewed certificate.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "cluster-ca")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := testcert.NewCA(dir, "rogue-ca")
	if err != nil {
		t.Fatal(err)
	}
	flags := clusterFlags(t)
	member := func(name string) (*proc, string) {
		cert, key, err := ca.Issue(dir, name, 2)
		if err != nil {
			t.Fatal(err)
		}
		return startMember(t, append(slices.Clone(flags), "--cluster.tls-cert-file="+cert, "--cluster.tls-key-file="+key, "--cluster.tls-ca-file="+ca.File)), cert
	}
	a, _ := member("node-a")
	b, _ := member("node-b")
	waitMembers(t, 2, a, b)

	t.Run("grain calls cross between the members", func(t *testing.T) {
		// Users are owned by the hash of their id: a round of 8 all owned
		// by one member (1 in 128) forwards nothing one way, so rounds go
		// on until both members forwarded, at most 4.
		forwarded := func(p *proc) bool {
			return p.metric(t, `checkin_grain_requests_total{served_by="remote"}`) > 0
		}
		for range 4 {
			crossCheckins(t, a, b, "tls", 8)
			if forwarded(a) && forwarded(b) {
				break
			}
		}
		for _, p := range []*proc{a, b} {
			if !forwarded(p) {
				t.Errorf("%s forwarded no grain request to the other member", p.base)
			}
		}
	})

	addr := clusterAddr(t, a)
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	// speak dials a's cluster port as a member would (with cert, if not
	// nil) and returns the serial of a's certificate, or the error of the
	// handshake or of reading the server's first HTTP/2 frame.
	speak := func(cert *tls.Certificate) (int64, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 refuses a client certificate after the client's side of
		// the handshake is done: the refusal arrives on the first read.
		if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
			return 0, err
		}
		frame := make([]byte, 9)
		if _, err := conn.Read(frame); err != nil {
			return 0, err
		}
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	// issue returns a new certificate of authority, as a peer shows it.
	issue := func(authority *testcert.CA, name string, serial int64) *tls.Certificate {
		certFile, keyFile, err := authority.Issue(dir, name, serial)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}

	t.Run("the port refuses peers the authority did not sign", func(t *testing.T) {
		good := issue(ca, "peer-ok", 7)
		if serial, err := speak(good); err != nil || serial != 2 {
			t.Fatalf("a peer with a certificate of the cluster's authority: serial %d, err %v; want a's certificate (2) and an HTTP/2 answer", serial, err)
		}
		if _, err := speak(nil); err == nil {
			t.Error("a peer without a certificate was answered")
		}
		if _, err := speak(issue(rogue, "peer-rogue", 8)); err == nil {
			t.Error("a peer with a certificate of another authority was answered")
		}
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
		frame := make([]byte, 9)
		if n, _ := conn.Read(frame); n == 9 && frame[3] == 0x4 {
			t.Error("plain gRPC (HTTP/2 without TLS) was answered with a SETTINGS frame")
		}
	})

	t.Run("SIGHUP swaps in a renewed certificate", func(t *testing.T) {
		if _, _, err := ca.Issue(dir, "node-a", 3); err != nil {
			t.Fatal(err)
		}
		a.hup(t, "cluster TLS certificate and authority reloaded")
		good := issue(ca, "peer-ok2", 9)
		if serial, err := speak(good); err != nil || serial != 3 {
			t.Errorf("after SIGHUP a new connection got serial %d (err %v), want the renewed 3", serial, err)
		}
		a.wantCertExpiry(t, "cluster", filepath.Join(dir, "node-a.pem"))
		// Members still reach each other (a new user's grain may live on
		// either).
		l := b.mkLocation(t, "tls")
		u := a.mkUser(t, "tls")
		k := ck{uniqueID("tls"), l.ID, ms(time.Now())}
		b.mkCheckin(t, u, k)
		a.checkCurrent(t, u, k, l)
	})
}

// crossCheckins makes n users, alternately through a and b, checks each in
// through the other member and reads the current location through both:
// each user's grain is reached from both sides.
func crossCheckins(t *testing.T, a, b *proc, prefix string, n int) {
	t.Helper()
	l := a.mkLocation(t, prefix)
	for i := range n {
		u := []*proc{a, b}[i%2].mkUser(t, prefix)
		k := ck{uniqueID(prefix), l.ID, ms(time.Now().Add(-time.Minute))}
		[]*proc{b, a}[i%2].mkCheckin(t, u, k)
		a.checkCurrent(t, u, k, l)
		b.checkCurrent(t, u, k, l)
	}
}

// clusterAddr returns the cluster endpoint p announced at start.
func clusterAddr(t *testing.T, p *proc) string {
	t.Helper()
	for _, l := range p.log.lines() {
		if l.Msg == "cluster member started" && l.Address != "" {
			return l.Address
		}
	}
	t.Fatalf("%s logged no cluster address", p.base)
	return ""
}

// TestScyllaTLS runs a node whose store connects to the CQL node over TLS
// (.ci/cassandra-up serves TLS and plain text on one port, and writes its
// certificate for CHECKIN_TEST_CQL_TLS_CA_FILE): it serves as over plain
// text, and a node that does not trust the certificate refuses to start.
func TestScyllaTLS(t *testing.T) {
	t.Parallel()
	hosts, ca := os.Getenv("CHECKIN_TEST_CQL_HOSTS"), os.Getenv("CHECKIN_TEST_CQL_TLS_CA_FILE")
	needServers(t, hosts != "" && ca != "", "TLS to the store needs CHECKIN_TEST_CQL_HOSTS and CHECKIN_TEST_CQL_TLS_CA_FILE: run .ci/cassandra-up, then "+
		"CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 CHECKIN_TEST_CQL_TLS_CA_FILE=$PWD/.cache/cassandra/run/tls/node.pem make test")
	flags := []string{"--store=scylla", "--scylla.hosts=" + hosts, "--scylla.keyspace=" + newKeyspace(t, hosts), "--scylla.tls=true"}
	p := startProc(t, append(slices.Clone(flags), "--scylla.tls-ca-file="+ca)...)
	if !strings.Contains(p.log.String(), `"msg":"scylla store open"`) || !slices.ContainsFunc(strings.Split(p.log.String(), "\n"), func(l string) bool {
		return strings.Contains(l, `"msg":"scylla store open"`) && strings.Contains(l, `"tls":true`)
	}) {
		t.Error(`no "scylla store open" line with "tls":true`)
	}
	user, l := p.mkUser(t, "stls"), p.mkLocation(t, "stls")
	k := ck{uniqueID("stls"), l.ID, ms(time.Now().Add(-time.Minute))}
	p.mkCheckin(t, user, k)
	p.checkCurrent(t, user, k, l)
	wantCheckins(t, user, p.listAll(t, user, nil, 10, nil), query{}.expect([]ck{k}))

	out, code := runBinary(t, nil, append([]string{"--http.addr=127.0.0.1:0", "--cluster.addr=127.0.0.1:0", "--scylla.connect-timeout=5s"}, flags...)...)
	if code == 0 {
		t.Fatal("a node that does not trust the CQL node's certificate (no scylla.tls-ca-file) started")
	}
	if !strings.Contains(out, "certificate") {
		t.Errorf("its error does not name the certificate:\n%s", out)
	}
}

// TestEtcdTLS runs two members that register in an etcd that serves TLS
// only, requires client certificates and has authentication on: they find
// each other and serve; a member without the password, the client
// certificate or the authority refuses to start.
func TestEtcdTLS(t *testing.T) {
	t.Parallel()
	cql := os.Getenv("CHECKIN_TEST_CQL_HOSTS")
	etcd := newTestEtcd(t, "https", "etcd over TLS")
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.Issue(dir, "etcd-server", 2)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca.Issue(dir, "etcd-client", 3)
	if err != nil {
		t.Fatal(err)
	}
	etcd.args = []string{"--cert-file=" + srvCert, "--key-file=" + srvKey, "--trusted-ca-file=" + ca.File, "--client-cert-auth"}
	etcd.start(t)
	addr := etcd.addr

	// Set up authentication as an operator would: a root user, and a user
	// for checkin that may read and write its prefix only.
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	admin, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := cli.Get(ctx, "/ping"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("etcd over TLS never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const prefix = "/checkin-tls"
	steps := []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "checkin"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "checkin", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "checkin", "checkin-password"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "checkin", "checkin"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth setup step %d: %v", i+1, err)
		}
	}

	tlsFlags := []string{"--cluster.etcd-tls=true", "--cluster.etcd-tls-ca-file=" + ca.File,
		"--cluster.etcd-tls-cert-file=" + cliCert, "--cluster.etcd-tls-key-file=" + cliKey}
	base := []string{"--store=scylla", "--scylla.hosts=" + cql, "--scylla.keyspace=" + newKeyspace(t, cql),
		"--cluster.provider=etcd", "--cluster.etcd-endpoints=" + addr, "--cluster.etcd-prefix=" + prefix,
		"--cluster.name=t" + randHex(4), "--http.request-timeout=3s", "--cluster.etcd-dial-timeout=5s"}
	creds := []string{"CHECKIN_CLUSTER_ETCD_USERNAME=checkin", "CHECKIN_CLUSTER_ETCD_PASSWORD=checkin-password"}
	flags := append(slices.Clone(base), tlsFlags...)
	a := startProcEnv(t, creds, flags...)
	a.allowErrorsFrom = "protoactor"
	b := startProcEnv(t, creds, flags...)
	b.allowErrorsFrom = "protoactor"
	waitMembers(t, 2, a, b)
	crossCheckins(t, a, b, "etls", 6)

	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
	}{
		{"a wrong password", []string{"CHECKIN_CLUSTER_ETCD_USERNAME=checkin", "CHECKIN_CLUSTER_ETCD_PASSWORD=guess"}, tlsFlags},
		{"no client certificate", creds, tlsFlags[:2]},
		{"no authority", creds, append([]string{tlsFlags[0]}, tlsFlags[2:]...)},
		{"no TLS", creds, nil},
	} {
		args := append(append(append([]string{"--http.addr=127.0.0.1:0", "--cluster.addr=127.0.0.1:0"}, base...), tc.flags...), "--cluster.etcd-dial-timeout=2s")
		out, code := runBinary(t, tc.env, args...)
		if code == 0 {
			t.Errorf("%s: the member started", tc.name)
		}
		if !strings.Contains(out, "etcd") || strings.Contains(out, "checkin-password") {
			t.Errorf("%s: want an error that names etcd and no password:\n%s", tc.name, out)
		}
	}
}

// testEtcd is an etcd of a test's own, on loopback, serving clients over
// scheme (http or https: then args must name its certificate).
type testEtcd struct {
	bin, dir     string
	scheme, addr string
	peer         string
	args         []string // more flags
	cmd          *exec.Cmd
	log          bytes.Buffer
}

// newTestEtcd prepares an etcd for t, which it kills at the end (and shows
// its log if t failed); what names the test's reason in the skip message.
func newTestEtcd(t *testing.T, scheme, what string) *testEtcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	needServers(t, os.Getenv("CHECKIN_TEST_CQL_HOSTS") != "" && err == nil,
		what+" needs the etcd binary (apt-get install etcd-server) and CHECKIN_TEST_CQL_HOSTS (.ci/cassandra-up)")
	e := &testEtcd{bin: bin, dir: t.TempDir(), scheme: scheme, addr: "127.0.0.1:" + freePort(t), peer: "http://127.0.0.1:" + freePort(t)}
	t.Cleanup(func() {
		if e.cmd != nil {
			_ = e.cmd.Process.Kill()
			_ = e.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("etcd log:\n%s", e.log.String())
		}
	})
	return e
}

// start starts etcd on its data dir (again, after stop) without waiting
// for it to answer.
func (e *testEtcd) start(t *testing.T) {
	t.Helper()
	e.cmd = exec.Command(e.bin, append([]string{"--name=t", "--data-dir=" + filepath.Join(e.dir, "data"),
		"--listen-client-urls=" + e.scheme + "://" + e.addr, "--advertise-client-urls=" + e.scheme + "://" + e.addr,
		"--listen-peer-urls=" + e.peer, "--initial-advertise-peer-urls=" + e.peer, "--initial-cluster=t=" + e.peer}, e.args...)...)
	e.cmd.Stdout, e.cmd.Stderr = &e.log, &e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy waits until a plain-HTTP etcd says it is healthy.
func (e *testEtcd) waitHealthy(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, err := http.Get("http://" + e.addr + "/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer within 60 s")
		}
	}
}

// stop stops etcd (SIGTERM) and waits for it to exit.
func (e *testEtcd) stop(t *testing.T) {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = e.cmd.Wait()
	e.cmd = nil
}

// freePort returns a loopback port that was free a moment ago and that
// no other call in this run returned, for a server a test starts (and
// may start again there after stopping it). It is drawn below the
// kernel's ephemeral range: a port the kernel picked for a listener on
// port 0 could be given again, between the check and the server's start
// or while the server is stopped, to any listener on port 0 or outgoing
// connection of this or another test (the nodes' connections to etcd and
// the CQL node among them), and the server could not start there.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	const low = 10000 // above the servers .ci/run starts (etcd 2379, CQL 9042, …)
	high := ephemeralStart()
	for range 1000 {
		port := low + rand.IntN(high-low)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		portsGiven[port] = true
		return strconv.Itoa(port)
	}
	t.Fatalf("no free loopback port between %d and %d", low, high)
	return ""
}

// The ports freePort returned.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralStart returns the first port of the kernel's ephemeral range,
// Linux's default 32768 when it cannot be read or leaves too little
// below it.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n >= 20000 {
			return n
		}
	}
	return 32768
}
