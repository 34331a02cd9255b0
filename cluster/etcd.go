package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
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
type etcdMembers struct {
	etcd clientv3.Config
	dir  string // <prefix>/<cluster name>/, the records' common prefix
	ttl  time.Duration
	log  *zap.Logger

	client  *clientv3.Client
	cluster *pcluster.Cluster
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	lease   clientv3.LeaseID // the record's lease
	renewed atomic.Int64     // when etcd last renewed it (Unix nanoseconds)
	key     string           // this member's record's key
	record  etcdRecord       // this member's record
	silent  *silentReports   // members this node and the others cannot reach (evict.go)
	// pingTimeout: how long a ping of a member this node stopped calling
	// waits for its answer (evict.go)
	pingTimeout time.Duration
}

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
	members, rev, err := m.read(ctx)
	if err != nil {
		cancel()
		return errors.Join(fmt.Errorf("cluster: read the members from etcd: %w", err), m.client.Close())
	}
	m.publish(members)
	m.wg.Add(2)
	go m.keepAlive(ctx)
	go m.watch(ctx, members, rev)
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

// register puts this member's record at key under a lease of its own.
func (m *etcdMembers) register(ctx context.Context, key string, record []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	lease, err := m.client.Grant(ctx, int64(m.ttl/time.Second))
	if err != nil {
		return err
	}
	if _, err := m.client.Put(ctx, key, string(record), clientv3.WithLease(lease.ID)); err != nil {
		return err
	}
	m.lease = lease.ID
	m.renewed.Store(time.Now().UnixNano())
	return nil
}

// keepAlive renews the lease until ctx ends or etcd says it expired.
// While etcd does not answer, it keeps trying the same lease: an etcd that
// was stopped and started again still holds it (etcd extends every lease
// when it elects a leader), so the record stays and nobody notices. Once
// the lease expired, the record is gone and every member, this one
// included, saw this one leave; it cannot come back under its identity
// (Node.Evicted), so nothing is registered again.
func (m *etcdMembers) keepAlive(ctx context.Context) {
	defer m.wg.Done()
	for ctx.Err() == nil {
		renewals, err := m.client.KeepAlive(ctx, m.lease)
		if err == nil {
			for range renewals {
				m.renewed.Store(time.Now().UnixNano())
			}
		}
		if ctx.Err() != nil || !m.renewAgain(ctx) {
			return
		}
	}
}

// renewAgain renews the lease one request at a time, every retryEvery,
// until etcd answers (true) or says the lease expired, or ctx ends
// (false): etcd gives a lease its whole time again when it comes back, so
// the first renewal must not wait long.
func (m *etcdMembers) renewAgain(ctx context.Context) bool {
	since, warned := time.Now(), false
	for {
		once, cancel := context.WithTimeout(ctx, retryEvery)
		_, err := m.client.KeepAliveOnce(once, m.lease)
		cancel()
		switch {
		case err == nil:
			m.renewed.Store(time.Now().UnixNano())
			if warned {
				m.log.Info("etcd renews the membership lease again", zap.Duration("after", time.Since(since)))
			}
			return true
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			m.log.Warn("etcd membership lease expired: the cluster removed this node")
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
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.client.Get(ctx, m.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	members := make(map[string]etcdRecord, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m.add(members, kv.Key, kv.Value)
	}
	return members, resp.Header.Revision, nil
}

// watch follows the records after revision rev, starting from members as
// they stood at rev, and publishes the topology after every change, until
// ctx ends.
func (m *etcdMembers) watch(ctx context.Context, members map[string]etcdRecord, rev int64) {
	m.follow(ctx, m.dir, rev, func(events []*clientv3.Event) {
		for _, ev := range events {
			if ev.Type == clientv3.EventTypeDelete {
				delete(members, string(ev.Kv.Key))
			} else {
				m.add(members, ev.Kv.Key, ev.Kv.Value)
			}
		}
		m.publish(members)
	}, func(ctx context.Context) (int64, error) {
		fresh, rev, err := m.read(ctx)
		if err == nil {
			members = fresh
			m.publish(members)
		}
		return rev, err
	})
}

// watchReports follows the reports of silent members (silentReports)
// after revision rev, until ctx ends.
func (m *etcdMembers) watchReports(ctx context.Context, rev int64) {
	m.follow(ctx, m.silent.dir, rev, func(events []*clientv3.Event) {
		for _, ev := range events {
			m.silent.seen(string(ev.Kv.Key), ev.Type != clientv3.EventTypeDelete)
		}
		m.silent.poke()
	}, m.readReports)
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
// which returns the revision it read at, until that succeeds.
func (m *etcdMembers) follow(ctx context.Context, prefix string, rev int64, apply func([]*clientv3.Event), reload func(context.Context) (int64, error)) {
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
			var err error
			if rev, err = reload(ctx); err == nil {
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

// publish hands the members to protoactor as the topology, after telling
// the placement which of them are draining (protoactor's topology tells
// members apart by id only, so a member that starts to drain is no change
// to it).
func (m *etcdMembers) publish(members map[string]etcdRecord) {
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
	r := m.record
	r.Draining = true
	record, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(m.key), ">", 0)).
		Then(clientv3.OpPut(m.key, string(record), clientv3.WithLease(m.lease))).Commit()
	if err == nil && !resp.Succeeded {
		err = errors.New("the cluster removed this node's record")
	}
	return err
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
	_, err := m.client.Revoke(ctx, m.lease)
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
