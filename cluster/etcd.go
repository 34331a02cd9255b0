package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdMembers is the etcd membership provider. Each member keeps a record
// under <prefix>/<cluster name>/ alive with a lease of its own (Config's
// Etcd.LeaseTTL), and every member watches the records there and hands
// what it sees to protoactor as the cluster topology. A member that stops
// cleanly first marks its record draining (Node.drain), then revokes its
// lease; one that dies, or is paused or cut off from
// etcd for longer than the lease, drops out when the lease expires.
//
// The records are those protoactor's own etcd provider writes (same keys,
// same JSON fields). Unlike that provider, the lease is configurable, a member renews the same lease
// through an etcd outage instead of taking a new one (so no member seems
// to leave when etcd comes back), and the watch starts at the revision of
// the first read, so no change between the two is missed.
//
// An etcd that stops answering while it runs (frozen, starved of CPU or
// disk) for longer than the lease expires every lease when it resumes,
// and deletes every record. Taken as they come, those deletes would
// remove every member from every other's topology for good (protoactor
// never lets a member that left back in under the same identity), and
// every node would restart at once. So a delete that arrives while this
// member's own lease is overdue (etcd has not renewed it for longer than
// the lease: etcd was not answering this member either) is held: the
// member stays in the published topology until it is clear what
// happened (settle). If this member's own record went too, and with it
// every record it knew, etcd lost every lease at once: this member
// registers again under the same identity and a new lease, and gives the
// others stallGrace to do the same before their deletes are applied. If
// some other record stayed, the cluster removed this member alone (it was
// paused, or cut off from etcd): the held deletes are applied, this member
// with them (Node.Evicted). If this member's lease is renewed again, the
// others' leases ran out while its own did not: their deletes are
// applied.
type etcdMembers struct {
	etcd clientv3.Config
	dir  string // <prefix>/<cluster name>/, the records' common prefix
	ttl  time.Duration
	log  *zap.Logger

	client  *clientv3.Client
	cluster *pcluster.Cluster
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	lease   atomic.Int64 // the record's lease (a clientv3.LeaseID)
	renewed atomic.Int64 // when etcd last renewed it (Unix nanoseconds)
	key     string       // this member's record's key
	record  etcdRecord   // this member's record
	// addrDir holds a key per member address, without a lease: the id of
	// the member last started there, deleted when it stops cleanly
	// (claimAddress, releaseAddress)
	addrDir string
	// undrained is called at start when the member last at this address
	// did not stop cleanly (nil: nobody is told)
	undrained func()
	silent    *silentReports // members this node and the others cannot reach (evict.go)
	// blocked reports whether protoactor removed the member id for good
	// (it left); nil: none is
	blocked func(id string) bool
	// pingTimeout: how long a ping of a member this node stopped calling
	// waits for its answer (evict.go)
	pingTimeout time.Duration

	mu      sync.Mutex            // the watch's state below, shared with settle
	members map[string]etcdRecord // by key: what is published, held records included
	held    map[string]bool       // keys deleted while this member's lease was overdue, still published
	lost    map[string]bool       // every key deleted while the lease was overdue (held, or put again since)
	ownLost time.Time             // when this member's own record was seen deleted while overdue
	stalled time.Time             // when this member registered again after etcd lost every lease
	// registering: an attempt to register again is under way (registerAgain)
	registering bool

	// stray: leases granted for a record whose Put failed, which etcd may
	// have applied all the same (revoked by Shutdown). Written by the one
	// registration at a time; read after every goroutine ended.
	stray []clientv3.LeaseID
}

// After etcd lost every lease at once, settleWait is how long a member
// waits after its own record's delete for the others' deletes to arrive
// (etcd revokes the expired leases one after the other), and stallGrace
// how long it keeps the others, in multiples of the lease, while they
// register again.
const (
	settleWait = time.Second
	stallGrace = 2
)

// etcdRecord is a member's record: the fields protoactor's etcd provider
// writes and reads.
type etcdRecord struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Host    string   `json:"host"`
	Address string   `json:"address"`
	Port    int      `json:"port"`
	Kinds   []string `json:"kinds"`
	Alive   bool     `json:"alive"`
	// Draining: the member is leaving (Node.Stop); it stays a member, so
	// that calls it holds are answered, but owns no grains any more. A
	// field protoactor's provider does not know, and ignores.
	Draining bool `json:"draining,omitempty"`
}

func (r etcdRecord) member() *pcluster.Member {
	host := r.Host
	if host == "" {
		host = r.Address
	}
	kinds := r.Kinds
	if kinds == nil {
		kinds = []string{}
	}
	return &pcluster.Member{Id: r.ID, Host: host, Port: int32(r.Port), Kinds: kinds}
}

// errNoClients: nodes are members; nothing here starts a client-only node.
var errNoClients = errors.New("cluster: etcd membership has no clients")

// retryEvery paces the attempts to reach etcd again.
const retryEvery = 500 * time.Millisecond

func (m *etcdMembers) StartClient(*pcluster.Cluster) error { return errNoClients }

// StartMember registers this member, publishes the members registered so
// far (itself included) and keeps watching and renewing in the background.
func (m *etcdMembers) StartMember(c *pcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	m.cluster = c
	m.blocked = c.Remote.BlockList().IsBlocked
	id := c.Config.Name + "@" + c.ActorSystem.ID
	m.key = m.dir + id
	m.record = etcdRecord{ID: id, Name: id, Host: host, Address: host, Port: port, Kinds: c.GetClusterKinds(), Alive: true}
	record, err := json.Marshal(m.record)
	if err != nil {
		return err
	}
	// The client is made only now, after protoactor started the remote
	// endpoint: that sets gRPC's global logger, which races with the
	// logging of any gRPC connection open at the time.
	if m.client, err = clientv3.New(m.etcd); err != nil {
		return fmt.Errorf("cluster: etcd client for %s: %w", strings.Join(m.etcd.Endpoints, ","), err)
	}
	check, done := context.WithTimeout(context.Background(), m.etcd.DialTimeout)
	_, err = m.client.Get(check, m.dir, clientv3.WithCountOnly())
	done()
	if err != nil {
		return errors.Join(fmt.Errorf("cluster: etcd at %s does not answer: %w", strings.Join(m.etcd.Endpoints, ","), err), m.client.Close())
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if err := m.register(ctx, m.key, record); err != nil {
		cancel()
		return errors.Join(fmt.Errorf("cluster: register in etcd: %w", err), m.client.Close())
	}
	if err := m.claimAddress(ctx); err != nil {
		cancel()
		return errors.Join(fmt.Errorf("cluster: claim this member's address in etcd: %w", err), m.client.Close())
	}
	members, rev, err := m.read(ctx)
	if err != nil {
		cancel()
		return errors.Join(fmt.Errorf("cluster: read the members from etcd: %w", err), m.client.Close())
	}
	m.mu.Lock()
	m.members, m.held, m.lost = members, map[string]bool{}, map[string]bool{}
	m.publish()
	m.mu.Unlock()
	m.wg.Add(3)
	go m.keepAlive(ctx, clientv3.LeaseID(m.lease.Load()))
	go m.watch(ctx, rev)
	go m.settleLoop(ctx)
	if m.silent.after > 0 {
		rev, err := m.readReports(ctx)
		if err != nil {
			cancel()
			m.wg.Wait()
			return errors.Join(fmt.Errorf("cluster: read the reports of silent members from etcd: %w", err), m.client.Close())
		}
		m.wg.Add(2)
		go m.watchReports(ctx, rev)
		go m.report(ctx)
	}
	return nil
}

// register puts this member's record at key under a new lease of its own
// and makes that lease the one renewed.
func (m *etcdMembers) register(ctx context.Context, key string, record []byte) error {
	lease, err := m.grantAndPut(ctx, key, record)
	if err != nil {
		return err
	}
	m.lease.Store(int64(lease))
	m.renewed.Store(time.Now().UnixNano())
	return nil
}

// grantAndPut puts record at key under a new lease and returns the lease.
// A lease granted for a Put that failed is kept for Shutdown to revoke:
// etcd may have applied the Put all the same, and then holds the record
// under it until it expires.
func (m *etcdMembers) grantAndPut(ctx context.Context, key string, record []byte) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	lease, err := m.client.Grant(ctx, int64(m.ttl/time.Second))
	if err != nil {
		return 0, err
	}
	if _, err := m.client.Put(ctx, key, string(record), clientv3.WithLease(lease.ID)); err != nil {
		m.stray = append(m.stray, lease.ID)
		return 0, err
	}
	return lease.ID, nil
}

// addrKey is the key of this member's address under addrDir.
func (m *etcdMembers) addrKey() string {
	return m.addrDir + net.JoinHostPort(m.record.Host, strconv.Itoa(m.record.Port))
}

// claimAddress writes this member's id at its address's key. An id there
// already is of the member last started at the address, which did not
// stop cleanly (it died, was removed, or failed to drain): this member,
// in its place on the ring, owns its users, and undrained is called so
// that their grains look for checkins it left in part.
func (m *etcdMembers) claimAddress(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.client.Put(ctx, m.addrKey(), m.record.ID, clientv3.WithPrevKV())
	if err != nil {
		return err
	}
	if prev := resp.PrevKv; prev != nil && string(prev.Value) != m.record.ID {
		m.log.Warn("the member last started at this address did not stop cleanly: the users it held are checked for checkins it left in part",
			zap.String("address", m.addrKey()[len(m.addrDir):]), zap.ByteString("member", prev.Value))
		if m.undrained != nil {
			m.undrained()
		}
	}
	return nil
}

// releaseAddress deletes this member's address key, if it still names
// this member: it stopped cleanly, and leaves nothing to complete.
func (m *etcdMembers) releaseAddress() error {
	if m.client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.ttl)
	defer cancel()
	key := m.addrKey()
	_, err := m.client.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", m.record.ID)).Then(clientv3.OpDelete(key)).Commit()
	return err
}

// leaseID returns the record's lease.
func (m *etcdMembers) leaseID() clientv3.LeaseID { return clientv3.LeaseID(m.lease.Load()) }

// overdue reports whether etcd has not renewed the lease for longer than
// the lease: by now etcd has expired it, or is not answering.
func (m *etcdMembers) overdue() bool { return m.leaseAge() > m.ttl }

// keepAlive renews lease until ctx ends or etcd says it expired.
// While etcd does not answer, it keeps trying the same lease: an etcd that
// was stopped and started again still holds it (etcd extends every lease
// when it elects a leader), so the record stays and nobody notices. Once
// the lease expired, the record is gone: whether the cluster removed this
// member, or etcd lost every lease at once and this member registers
// again under a new lease, is settle's to find out.
func (m *etcdMembers) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	defer m.wg.Done()
	for ctx.Err() == nil {
		renewals, err := m.client.KeepAlive(ctx, lease)
		if err == nil {
			for range renewals {
				m.renewed.Store(time.Now().UnixNano())
			}
		}
		if ctx.Err() != nil || !m.renewAgain(ctx, lease) {
			return
		}
	}
}

// renewAgain renews the lease one request at a time, every retryEvery,
// until etcd answers (true) or says the lease expired, or ctx ends
// (false): etcd gives a lease its whole time again when it comes back, so
// the first renewal must not wait long.
func (m *etcdMembers) renewAgain(ctx context.Context, lease clientv3.LeaseID) bool {
	since, warned := time.Now(), false
	for {
		once, cancel := context.WithTimeout(ctx, retryEvery)
		_, err := m.client.KeepAliveOnce(once, lease)
		cancel()
		switch {
		case err == nil:
			m.renewed.Store(time.Now().UnixNano())
			if warned {
				m.log.Info("etcd renews the membership lease again", zap.Duration("after", time.Since(since)))
			}
			return true
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			m.log.Warn("etcd membership lease expired", zap.Int64("lease", int64(lease)))
			return false
		case ctx.Err() != nil:
			return false
		}
		if !warned {
			warned = true
			m.log.Warn("etcd does not renew the membership lease; retrying until it does", zap.Error(err), zap.Duration("every", retryEvery))
		}
		sleep(ctx, retryEvery)
	}
}

// leaseAge is the time since etcd last renewed the lease.
func (m *etcdMembers) leaseAge() time.Duration {
	return time.Duration(time.Now().UnixNano() - m.renewed.Load())
}

// read returns every record, by key, and the revision they were read at.
func (m *etcdMembers) read(ctx context.Context) (map[string]etcdRecord, int64, error) {
	kvs, rev, err := m.readKVs(ctx)
	if err != nil {
		return nil, 0, err
	}
	members := make(map[string]etcdRecord, len(kvs))
	for _, kv := range kvs {
		m.add(members, kv.Key, kv.Value)
	}
	return members, rev, nil
}

// readKVs returns every record as etcd keeps it and the revision they
// were read at.
func (m *etcdMembers) readKVs(ctx context.Context) ([]*mvccpb.KeyValue, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.client.Get(ctx, m.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	return resp.Kvs, resp.Header.Revision, nil
}

// watch follows the records after revision rev, starting from m.members
// as they stood at rev, and publishes the topology after every change,
// until ctx ends.
func (m *etcdMembers) watch(ctx context.Context, rev int64) {
	m.follow(ctx, m.dir, rev, func(events []*clientv3.Event) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, ev := range events {
			if ev.Type == clientv3.EventTypeDelete {
				m.deleted(string(ev.Kv.Key))
			} else {
				m.put(ctx, ev.Kv)
			}
		}
		m.settle(ctx)
		m.publish()
	}, func(ctx context.Context, since int64) (int64, error) {
		fresh, rev, err := m.readKVs(ctx)
		if err == nil {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.reloaded(ctx, fresh, since)
			m.settle(ctx)
			m.publish()
		}
		return rev, err
	})
}

// reloaded applies the records read afresh, after the watch lost its
// place (a compaction) at revision since, as the events it missed would
// have: a record gone since is deleted, unless its delete is held already
// (it waits for settle: applied now, in the grace after an etcd stall, it
// would drop a member that is registering again); a record known before
// and created after since was deleted and written again meanwhile (a
// member that registered again after an etcd stall), so its delete counts
// as lost before it is put; and every record is put, ghosts deleted (put).
// m.mu is held.
func (m *etcdMembers) reloaded(ctx context.Context, fresh []*mvccpb.KeyValue, since int64) {
	read := make(map[string]bool, len(fresh))
	for _, kv := range fresh {
		read[string(kv.Key)] = true
	}
	for key := range m.members {
		if !read[key] && !m.held[key] {
			m.deleted(key)
		}
	}
	for _, kv := range fresh {
		key := string(kv.Key)
		if _, known := m.members[key]; known && key != m.key && kv.CreateRevision > since {
			m.deleted(key)
		}
		m.put(ctx, kv)
	}
}

// put applies a record written, or deletes it again when it is a ghost:
// the record of a member this member saw leave, written again under the
// same identity (it registered again after an etcd stall in which this
// member applied its delete). protoactor never takes a member back once
// it left, so such a member would serve, unseen, users the others place
// elsewhere; once its record is gone it finds itself removed and exits,
// to start again under a new identity. The delete holds only while the
// record is the one seen, so every member may try it. m.mu is held.
func (m *etcdMembers) put(ctx context.Context, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	var r etcdRecord
	if key == m.key || m.blocked == nil || json.Unmarshal(kv.Value, &r) != nil || !m.blocked(r.ID) {
		m.add(m.members, kv.Key, kv.Value)
		delete(m.held, key)
		return
	}
	delete(m.members, key)
	delete(m.held, key)
	m.log.Warn("a member this node saw leave registered again under the same identity: its record is deleted, so that it starts again under a new one",
		zap.String("key", key))
	rev := kv.ModRevision
	m.wg.Add(1)
	go func() { // not under m.mu
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(ctx, m.ttl)
		defer cancel()
		if _, err := m.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit(); err != nil {
			m.log.Warn("could not delete the record of a member that registered again after it left", zap.String("key", key), zap.Error(err))
		}
	}()
}

// deleted applies the delete of the record at key, or holds it while
// this member's lease is overdue. m.mu is held.
func (m *etcdMembers) deleted(key string) {
	if !m.overdue() {
		delete(m.members, key)
		delete(m.held, key)
		return
	}
	m.lost[key] = true
	if _, ok := m.members[key]; ok {
		m.held[key] = true
	}
	if key == m.key && m.ownLost.IsZero() {
		m.ownLost = time.Now()
	}
}

// settleLoop settles held deletes every retryEvery until ctx ends: they
// wait on time passing as well as on events.
func (m *etcdMembers) settleLoop(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTicker(retryEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.mu.Lock()
		if m.settle(ctx) {
			m.publish()
		}
		m.mu.Unlock()
	}
}

// settle decides about the held deletes (see etcdMembers) and reports
// whether m.members changed. m.mu is held.
func (m *etcdMembers) settle(ctx context.Context) bool {
	now := time.Now()
	switch {
	case !m.ownLost.IsZero():
		if now.Sub(m.ownLost) < settleWait || m.registering {
			// The other deletes of a lost etcd may still be on their way,
			// or this member decided already and is registering again.
			return false
		}
		for key := range m.members {
			// A record still held is gone too: one deleted in an earlier
			// stall, whose grace has not ended.
			if !m.lost[key] && !m.held[key] {
				// Another record stayed: the cluster removed this member
				// alone. The held deletes apply, this member's own too.
				m.stalled = time.Time{}
				return m.applyHeld()
			}
		}
		m.registerAgain(ctx)
		return false
	case !m.stalled.IsZero():
		// This member registered again after etcd lost every lease: the
		// others that have not done so within the grace are gone.
		if now.Sub(m.stalled) < stallGrace*m.ttl {
			return false
		}
		for key := range m.held {
			m.log.Warn("a member did not register again after etcd lost every lease: it left", zap.String("key", key))
		}
		m.stalled = time.Time{}
		return m.applyHeld()
	case len(m.held) == 0:
		if len(m.lost) > 0 && !m.overdue() {
			clear(m.lost)
		}
		return false
	case !m.overdue():
		// This member's lease is renewed again: the held deletes were the
		// others' leases running out.
		return m.applyHeld()
	}
	return false
}

// applyHeld applies the held deletes and reports whether there were any.
// m.mu is held.
func (m *etcdMembers) applyHeld() bool {
	n := len(m.held)
	for key := range m.held {
		delete(m.members, key)
	}
	clear(m.held)
	clear(m.lost)
	m.ownLost = time.Time{}
	return n > 0
}

// registerAgain starts putting this member's record again under a new
// lease, after etcd lost every lease at once, unless an attempt is under
// way. The attempt runs without m.mu (it waits on etcd for up to a lease),
// so the watch goes on applying and publishing; settle decides nothing
// while it runs. When etcd does not answer, the next settle tries again.
// m.mu is held.
func (m *etcdMembers) registerAgain(ctx context.Context) {
	if m.registering {
		return
	}
	record, err := json.Marshal(m.record) // a drain from now on writes it again, draining
	if err != nil {
		m.log.Error("cannot encode this member's record", zap.Error(err))
		return
	}
	m.registering = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		lease, err := m.grantAndPut(ctx, m.key, record)
		m.mu.Lock()
		defer m.mu.Unlock()
		m.registering = false
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("registering again in etcd failed; retrying", zap.Error(err), zap.Duration("every", retryEvery))
			}
			return
		}
		m.lease.Store(int64(lease))
		m.renewed.Store(time.Now().UnixNano())
		// etcd stopped answering for longer than the lease; the other
		// members are kept for the grace while they register again too.
		m.log.Warn("etcd lost every member's lease at once: this node registered again under the same identity",
			zap.Int("members", len(m.members)), zap.Duration("grace", stallGrace*m.ttl))
		// A later stall is judged on its own deletes.
		m.stalled, m.ownLost = time.Now(), time.Time{}
		clear(m.lost)
		delete(m.held, m.key)
		if ctx.Err() == nil {
			m.wg.Add(1)
			go m.keepAlive(ctx, lease)
		}
	}()
}

// watchReports follows the reports of silent members (silentReports)
// after revision rev, until ctx ends.
func (m *etcdMembers) watchReports(ctx context.Context, rev int64) {
	m.follow(ctx, m.silent.dir, rev, func(events []*clientv3.Event) {
		for _, ev := range events {
			m.silent.seen(string(ev.Kv.Key), ev.Type != clientv3.EventTypeDelete)
		}
		m.silent.poke()
	}, func(ctx context.Context, _ int64) (int64, error) { return m.readReports(ctx) })
}

// readReports reads every report of a silent member and returns the
// revision it read them at.
func (m *etcdMembers) readReports(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.client.Get(ctx, m.silent.dir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	m.silent.reset()
	for _, kv := range resp.Kvs {
		m.silent.seen(string(kv.Key), true)
	}
	m.silent.poke()
	return resp.Header.Revision, nil
}

// follow watches the keys under prefix after revision rev and hands each
// batch of changes to apply, until ctx ends. When the watch breaks (etcd
// compacted the revisions it needs) it reads every key again with reload,
// which is told the last revision applied and returns the revision it read
// at, until that succeeds.
func (m *etcdMembers) follow(ctx context.Context, prefix string, rev int64, apply func([]*clientv3.Event), reload func(ctx context.Context, since int64) (int64, error)) {
	defer m.wg.Done()
	for ctx.Err() == nil {
		wctx, stop := context.WithCancel(ctx) // ends the watch when it breaks
		for resp := range m.client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				m.log.Warn("etcd watch broke; reading the keys again", zap.String("prefix", prefix), zap.Error(err))
				break
			}
			apply(resp.Events)
			rev = resp.Header.Revision
		}
		stop()
		for ctx.Err() == nil {
			read, err := reload(ctx, rev)
			if err == nil {
				rev = read
				break
			}
			if ctx.Err() == nil {
				m.log.Warn("reading the etcd keys failed; retrying", zap.String("prefix", prefix), zap.Error(err), zap.Duration("after", retryEvery))
				sleep(ctx, retryEvery)
			}
		}
	}
}

// add decodes one record into members; a record it cannot read is logged
// and left out.
func (m *etcdMembers) add(members map[string]etcdRecord, key, value []byte) {
	var r etcdRecord
	if err := json.Unmarshal(value, &r); err != nil || r.ID == "" {
		m.log.Warn("unreadable member record in etcd; ignored", zap.ByteString("key", key), zap.Error(err))
		return
	}
	members[string(key)] = r
}

// publish hands m.members to protoactor as the topology, after telling
// the placement which of them are draining (protoactor's topology tells
// members apart by id only, so a member that starts to drain is no change
// to it). m.mu is held.
func (m *etcdMembers) publish() {
	members := m.members
	list := make(pcluster.Members, 0, len(members))
	d := &Draining{}
	for _, r := range members {
		mb := r.member()
		list = append(list, mb)
		if r.Draining {
			d.Addresses = append(d.Addresses, mb.Address())
		} else {
			d.Serving = append(d.Serving, mb.Address())
		}
	}
	m.silent.members(members)
	m.silent.poke()
	m.cluster.ActorSystem.EventStream.Publish(d)
	m.cluster.MemberList.UpdateClusterTopology(list)
}

// drain marks this member's record draining (same lease): every member,
// this one included, sees it own no grains any more. A record the others
// deleted (evict.go) is not written again: that member was removed.
func (m *etcdMembers) drain(ctx context.Context) error {
	m.mu.Lock()
	m.record.Draining = true // a record written again after etcd lost every lease drains too
	r := m.record
	m.mu.Unlock()
	record, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	for {
		lease := m.leaseID()
		resp, err := m.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(m.key), ">", 0)).
			Then(clientv3.OpPut(m.key, string(record), clientv3.WithLease(lease))).Commit()
		switch {
		case err == nil && resp.Succeeded:
			return nil
		case err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound):
			return err
		}
		// The record or its lease is gone. After an etcd stall that lost
		// every lease this member registers again, draining (m.record):
		// wait for that rather than leave without handing over.
		m.mu.Lock()
		registering := !m.ownLost.IsZero()
		m.mu.Unlock()
		switch {
		case m.leaseID() != lease: // registered again meanwhile: once more
		case !registering:
			return errors.Join(errors.New("the cluster removed this node's record"), err)
		default:
			if sleep(ctx, retryEvery); ctx.Err() != nil {
				return fmt.Errorf("this node's record was not written again after etcd lost every lease: %w", ctx.Err())
			}
		}
	}
}

// Shutdown stops watching and renewing and revokes the lease, which
// removes the record: the others see this member leave at once.
func (m *etcdMembers) Shutdown(bool) error {
	if m.client == nil { // never started
		return nil
	}
	m.cancel()
	m.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), m.ttl)
	defer cancel()
	_, err := m.client.Revoke(ctx, m.leaseID())
	for _, lease := range m.stray {
		if _, err := m.client.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			m.log.Warn("could not revoke a lease granted for a registration that failed", zap.Int64("lease", int64(lease)), zap.Error(err))
		}
	}
	return errors.Join(err, m.client.Close())
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
