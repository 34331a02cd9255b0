package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestEtcdMembership runs a member in this process on a real etcd
// (CHECKIN_TEST_ETCD_ENDPOINTS): it registers its record under a lease of
// the configured time, is ready, and etcd keeps renewing the lease
// (LeaseAge); when it stops, the lease is revoked,
// so its record goes at once (not when the lease would run out), and its
// renewing and watching goroutines end. It runs in a process of its own:
// a member that starts sets gRPC's global logger, which races with the
// gRPC connections of any member started before in the same process (as
// the other tests here do). Members joining, leaving, dying and outliving
// pauses and etcd restarts are tested with real processes (cmd/checkin
// TestCluster*).
func TestEtcdMembership(t *testing.T) {
	endpoint := needEtcd(t, "etcd membership")
	if os.Getenv(membershipChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEtcdMembership$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), membershipChild+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the test's own process: %v\n%s", err, out)
		}
		return
	}
	cfg := DefaultConfig()
	cfg.Provider = "etcd"
	cfg.Name = "member-test"
	cfg.Etcd.Endpoints = []string{endpoint}
	cfg.Etcd.Prefix = "/checkin-test/membership-" + time.Now().Format("150405.000000000")
	cfg.Etcd.LeaseTTL = 7 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := cfg.Etcd.Prefix + "/" + cfg.Name + "/"
	log := zap.NewNop()
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	n, err := Start(NewSystem(cfg, log), cfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			n.Stop()
		}
	})
	if n.Members() != 1 || !n.Ready() {
		t.Fatalf("the member sees %d members, ready %v; want itself, ready", n.Members(), n.Ready())
	}
	// etcd renews a 7 s lease every 7/3 s: two renewals after the start
	// show that it keeps renewing. They are waited for, not slept for and
	// then timed: the client sends each on a 500 ms tick once a third of
	// the lease is up, and etcd answers when it gets to run, so on a
	// loaded machine a lease can go more than 3 s between renewals.
	renewed, deadline := n.etcd.renewed.Load(), time.Now().Add(30*time.Second)
	for renewals := 0; renewals < 2; time.Sleep(20 * time.Millisecond) {
		if r := n.etcd.renewed.Load(); r != renewed {
			renewed, renewals = r, renewals+1
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd renewed the 7 s lease %d times in the 30 s after the start, want it renewed every 7/3 s", renewals)
		}
	}
	if age := n.LeaseAge(); age < 0 || age >= cfg.Etcd.LeaseTTL {
		t.Errorf("right after a renewal the lease was last renewed %s ago, want less than the lease", age)
	}

	// The test's client is made only now (see etcdMembers.StartMember).
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d records under %s, want the member's one", len(resp.Kvs), dir)
	}
	kv := resp.Kvs[0]
	var r etcdRecord
	if err := json.Unmarshal(kv.Value, &r); err != nil || string(kv.Key) != dir+r.ID || r.Port == 0 || !slices.Contains(r.Kinds, "Probe") {
		t.Errorf("record %s = %s: want the member's JSON, with its port and kinds, under its id", kv.Key, kv.Value)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 7 {
		t.Errorf("the record is under a lease of %d s, want 7 (cluster.etcd-lease-ttl)", ttl.GrantedTTL)
	}

	stopped = true
	n.Stop()
	if resp, err := cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("%v records left right after the member stopped (err %v), want 0: its lease is revoked", resp.Count, err)
	}
	for _, fn := range []string{"(*etcdMembers).keepAlive", "(*etcdMembers).watch"} {
		if n := goroutinesIn(fn); n != 0 {
			t.Errorf("%d goroutines in %s after the member stopped", n, fn)
		}
	}
}

// membershipChild is set in the environment of TestEtcdMembership's own
// process.
const membershipChild = "CHECKIN_TEST_MEMBERSHIP_PROCESS"

// goroutinesIn counts the goroutines with fn on their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestSettleAfterOwnDelete: one second after this member saw its own
// record deleted while its lease was overdue, it registers again if every
// record it knew went too, and takes itself for removed alone (the held
// deletes apply, its own too) if another stayed. A record still held from
// an earlier stall whose grace has not ended (its member died during that
// stall) went too: a second stall within the grace must not make every
// member exit. The etcd here does not answer, so registering again fails
// and is retried; the decision is what the test checks.
func TestSettleAfterOwnDelete(t *testing.T) {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 100 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tests := []struct {
		name          string
		held, lost    []string // besides this member, held and lost in every case
		stalled       bool     // this member registered again after an earlier stall
		wantRemoved   bool
		wantPublished []string
	}{
		{"every record went", []string{"a", "b"}, []string{"a", "b"}, false, false, []string{"self", "a", "b"}},
		{"another record stayed", []string{"a"}, []string{"a"}, false, true, []string{"b"}},
		{"a record still held from the first stall went too", []string{"a", "b"}, []string{"a"}, true, false, []string{"self", "a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &etcdMembers{ttl: 500 * time.Millisecond, log: zap.NewNop(), client: client, key: "/p/c/self",
				members: testRecords("self", "a", "b"), held: map[string]bool{"/p/c/self": true}, lost: map[string]bool{"/p/c/self": true},
				ownLost: time.Now().Add(-2 * settleWait)}
			for _, id := range tt.held {
				m.held["/p/c/"+id] = true
			}
			for _, id := range tt.lost {
				m.lost["/p/c/"+id] = true
			}
			if tt.stalled {
				m.stalled = time.Now().Add(-time.Second)
			}
			m.mu.Lock()
			changed := m.settle(context.Background())
			m.mu.Unlock()
			m.wg.Wait() // the attempt to register again, if any, fails
			if changed != tt.wantRemoved {
				t.Errorf("settle reported a change %v, want %v", changed, tt.wantRemoved)
			}
			var got []string
			for key := range m.members {
				got = append(got, strings.TrimPrefix(key, "/p/c/"))
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.wantPublished))
			if !slices.Equal(got, want) {
				t.Errorf("published %v after settling, want %v", got, want)
			}
			if !tt.wantRemoved && m.ownLost.IsZero() {
				t.Errorf("registering again failed, yet the member stopped trying")
			}
		})
	}
}

// TestRegisterAgainLeavesTheLock: registering again after etcd lost every
// lease waits on etcd for up to a lease; it must not hold the membership
// lock meanwhile (the watch could neither apply nor publish a change), and
// while it is under way settle decides nothing more: a member joining
// then is no record that "stayed", which would take this member for
// removed alone. The etcd here accepts connections and never answers.
func TestRegisterAgainLeavesTheLock(t *testing.T) {
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		var conns []net.Conn // held open, never answered
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{hole.Addr().String()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	m := &etcdMembers{ttl: time.Minute, log: zap.NewNop(), client: client, key: "/p/c/self",
		members: testRecords("self", "a", "b"),
		held:    map[string]bool{"/p/c/self": true, "/p/c/a": true, "/p/c/b": true},
		lost:    map[string]bool{"/p/c/self": true, "/p/c/a": true, "/p/c/b": true},
		ownLost: time.Now().Add(-2 * settleWait)}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); m.wg.Wait() }()
	settled := make(chan struct{})
	go func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.settle(ctx) // every record went: register again
		close(settled)
	}()
	select {
	case <-settled:
	case <-time.After(20 * time.Second):
		t.Fatal("settle still waits on an etcd that does not answer, holding the membership lock")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := goroutinesIn("(*etcdMembers).registerAgain.func1"); n != 1 {
		t.Fatalf("%d registrations under way, want 1", n)
	}
	m.add(m.members, []byte("/p/c/c"), []byte(`{"id":"c","host":"127.0.0.1","port":7009}`)) // a member joins
	if m.settle(ctx) {
		t.Errorf("settle changed the members while this member registers again")
	}
	if _, ok := m.members[m.key]; !ok || m.ownLost.IsZero() {
		t.Errorf("this member was taken for removed while it registers again (published %v)", slices.Sorted(maps.Keys(m.members)))
	}
	if n := goroutinesIn("(*etcdMembers).registerAgain.func1"); n != 1 {
		t.Errorf("%d registrations under way after settling again, want 1", n)
	}
}

// TestAddressClaim: a member that starts at an address whose last member
// did not stop cleanly (its key names another member) is told (undrained),
// and one whose predecessor released the address, or that is the first
// there, is not; a release leaves a key that names another member alone.
func TestAddressClaim(t *testing.T) {
	client, ctx, dir := testEtcd(t, "the address claim test", "claim")
	member := func(id string) (*etcdMembers, *int) {
		told := new(int)
		return &etcdMembers{client: client, addrDir: dir, ttl: 5 * time.Second, log: zap.NewNop(),
			record: etcdRecord{ID: id, Host: "127.0.0.1", Port: 7000}, undrained: func() { *told++ }}, told
	}
	first, told := member("first")
	if err := first.claimAddress(ctx); err != nil || *told != 0 {
		t.Fatalf("the first member at the address: %v, told %d times, want none", err, *told)
	}
	crashed, told := member("second") // first died; second starts in its place
	if err := crashed.claimAddress(ctx); err != nil || *told != 1 {
		t.Fatalf("a member in the place of one that died: %v, told %d times, want once", err, *told)
	}
	if err := first.releaseAddress(); err != nil { // late: the key names second now
		t.Fatal(err)
	}
	if resp, err := client.Get(ctx, first.addrKey()); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "second" {
		t.Fatalf("after a release by a member the key no longer names: %v %v, want it naming second", resp, err)
	}
	if err := crashed.releaseAddress(); err != nil { // second stops cleanly
		t.Fatal(err)
	}
	third, told := member("third")
	if err := third.claimAddress(ctx); err != nil || *told != 0 {
		t.Fatalf("a member in the place of one that stopped cleanly: %v, told %d times, want none", err, *told)
	}
}

// TestGhostRecordDeleted: a record written for a member id protoactor
// blocked (the member left, then registered again under the same identity
// after an etcd stall this member had taken for its leaving) is not
// published and is deleted from etcd, so that its member finds itself
// removed and starts again; a record of another member is published and
// kept, and a ghost's record written again since it was seen is not
// deleted on the strength of the older one.
func TestGhostRecordDeleted(t *testing.T) {
	client, ctx, dir := testEtcd(t, "the ghost record test", "ghost")
	put := func(id string) *clientv3.GetResponse {
		t.Helper()
		rec, err := json.Marshal(etcdRecord{ID: id, Host: "127.0.0.1", Port: 7000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Put(ctx, dir+id, string(rec)); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Get(ctx, dir+id)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v %v", id, resp, err)
		}
		return resp
	}
	ghost, alive, stale := put("ghost"), put("alive"), put("rewritten")
	put("rewritten") // written again since stale was seen
	m := &etcdMembers{client: client, dir: dir, ttl: 5 * time.Second, log: zap.NewNop(), key: dir + "self",
		members: map[string]etcdRecord{}, held: map[string]bool{},
		blocked: func(id string) bool { return id == "ghost" || id == "rewritten" }}
	m.mu.Lock()
	for _, resp := range []*clientv3.GetResponse{ghost, alive, stale} {
		m.put(ctx, resp.Kvs[0])
	}
	m.mu.Unlock()
	m.wg.Wait()
	if got := slices.Sorted(maps.Keys(m.members)); !slices.Equal(got, []string{dir + "alive"}) {
		t.Errorf("published %v, want only %salive", got, dir)
	}
	for id, want := range map[string]int64{"ghost": 0, "alive": 1, "rewritten": 1} {
		resp, err := client.Get(ctx, dir+id, clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != want {
			t.Errorf("%s: %d records in etcd, want %d", id, resp.Count, want)
		}
	}
}

// needEtcd returns the etcd of CHECKIN_TEST_ETCD_ENDPOINTS; without one
// the test (what) fails on CI and is skipped, loudly, elsewhere.
func needEtcd(t *testing.T, what string) string {
	t.Helper()
	endpoint := os.Getenv("CHECKIN_TEST_ETCD_ENDPOINTS")
	if endpoint == "" {
		msg := what + " needs a real etcd: run .ci/etcd-up, then CHECKIN_TEST_ETCD_ENDPOINTS=127.0.0.1:2379 go test ./cluster/"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	return endpoint
}

// TestReloadKeepsHeldDeletes: records read afresh after the watch lost its
// place apply as events would (a record gone is deleted, one written is
// published), except that a delete already held stays held for settle to
// decide: in the grace after an etcd stall the lease is renewed again, and
// applying it then would drop, for good, a member still registering again.
func TestReloadKeepsHeldDeletes(t *testing.T) {
	// A lease of a minute: renewed just now, it stays not overdue however
	// long the machine takes to get from here to the reload.
	m := &etcdMembers{ttl: time.Minute, log: zap.NewNop(), key: "/p/c/self",
		members: testRecords("self", "held", "gone"), held: map[string]bool{"/p/c/held": true}, lost: map[string]bool{},
		stalled: time.Now()}
	m.renewed.Store(time.Now().UnixNano()) // not overdue: a delete seen now applies at once
	m.reloaded(context.Background(), testKVs(10, "self", "new"), 10)
	if got := slices.Sorted(maps.Keys(m.members)); !slices.Equal(got, []string{"/p/c/held", "/p/c/new", "/p/c/self"}) {
		t.Errorf("published %v after the reload, want held, new and self", got)
	}
	if !m.held["/p/c/held"] {
		t.Errorf("the held delete was dropped by the reload, want it left to settle")
	}
}

// TestReloadAfterAStallItMissed: the watch lost its place (a compaction)
// across an etcd stall that lost every lease, so the deletes and the new
// records of the members that registered again reach this member only
// as a fresh read. A record known before and created since was deleted
// and written again: it counts among the lost, so this member (whose own
// record is gone) registers again too instead of taking itself for
// removed alone; and a ghost's record (a member id the actor runtime
// blocked) is not published, as when the watch sees it written.
func TestReloadAfterAStallItMissed(t *testing.T) {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 100 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	m := &etcdMembers{ttl: time.Second, log: zap.NewNop(), client: client, key: "/p/c/self",
		members: testRecords("self", "a", "b"), held: map[string]bool{}, lost: map[string]bool{},
		blocked: func(id string) bool { return id == "ghost" }}
	m.renewed.Store(time.Now().Add(-10 * time.Second).UnixNano()) // overdue: etcd stalled
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); m.wg.Wait() }()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloaded(ctx, append(testKVs(150, "a"), testKVs(160, "ghost")...), 100) // self and b gone
	if got := slices.Sorted(maps.Keys(m.members)); !slices.Equal(got, []string{"/p/c/a", "/p/c/b", "/p/c/self"}) {
		t.Errorf("published %v after the reload, want a, b (held) and self (held); not the ghost", got)
	}
	if m.ownLost.IsZero() {
		t.Fatal("this member's own record is gone in the reload, yet it was not seen lost")
	}
	m.ownLost = m.ownLost.Add(-2 * settleWait)
	if m.settle(ctx) {
		t.Errorf("settle changed the members, want every held one kept while this member registers again")
	}
	if _, ok := m.members[m.key]; !ok || m.ownLost.IsZero() {
		t.Errorf("this member took itself for removed alone (published %v): a's record, written again, counted as one that stayed", slices.Sorted(maps.Keys(m.members)))
	}
}

// testKVs returns records of ids as etcd keeps them, created at revision
// created.
func testKVs(created int64, ids ...string) []*mvccpb.KeyValue {
	var kvs []*mvccpb.KeyValue
	for key, r := range testRecords(ids...) {
		v, err := json.Marshal(r)
		if err != nil {
			panic(err)
		}
		kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(key), Value: v, CreateRevision: created, ModRevision: created})
	}
	return kvs
}

// TestDrainWaitsForRegistrationAfterStall: a drain that finds the member's
// record gone while the member is about to register again after etcd lost
// every lease waits for the registration, which writes the record again
// draining, instead of failing (the node would leave without handing its
// grains over); with no registration pending it fails at once.
func TestDrainWaitsForRegistrationAfterStall(t *testing.T) {
	client, ctx, dir := testEtcd(t, "the drain test", "drain")
	// The lease bounds the drain too (m.drain waits for the registration
	// for up to a lease): one long enough for the registration below (a
	// second's sleep, then a grant and a put, each an etcd write that
	// waits for the disk) on a machine whose disk is busy.
	m := &etcdMembers{client: client, dir: dir, ttl: 10 * time.Second, log: zap.NewNop(), key: dir + "self",
		record:  etcdRecord{ID: "self", Host: "127.0.0.1", Port: 7000, Alive: true},
		members: map[string]etcdRecord{}, held: map[string]bool{}, lost: map[string]bool{}}
	if err := m.drain(ctx); err == nil {
		t.Fatal("drained with no record and no registration pending, want an error")
	}
	m.mu.Lock()
	m.ownLost = time.Now() // the member's own delete seen while its lease was overdue
	m.mu.Unlock()
	renew, stop := context.WithCancel(ctx)
	defer func() { stop(); m.wg.Wait() }()
	go func() {
		time.Sleep(time.Second)
		m.mu.Lock()
		defer m.mu.Unlock()
		m.registerAgain(renew)
	}()
	if err := m.drain(ctx); err != nil {
		t.Fatalf("drain while registering again: %v, want it to wait and succeed", err)
	}
	resp, err := client.Get(ctx, m.key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the record after the drain: %v %v", resp, err)
	}
	var got etcdRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil || !got.Draining {
		t.Errorf("the record after the drain: %s (%v), want it draining", resp.Kvs[0].Value, err)
	}
}

// testEtcd returns a client of the test's etcd (needEtcd; what names the
// test), a context for its calls and a key directory of its own (name and
// the time), all cleaned up when the test ends.
func testEtcd(t *testing.T, what, name string) (*clientv3.Client, context.Context, string) {
	t.Helper()
	endpoint := needEtcd(t, what)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	dir := "/checkin-test/" + name + "-" + time.Now().Format("150405.000000000") + "/c/"
	t.Cleanup(func() {
		cancel()
		_, _ = client.Delete(context.Background(), dir, clientv3.WithPrefix())
		_ = client.Close()
	})
	return client, ctx, dir
}
