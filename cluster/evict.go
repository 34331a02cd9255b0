package cluster

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Members most of the cluster cannot reach are removed by the others.
//
// A member that is frozen, or cut off from the other nodes but not from
// etcd, keeps renewing its lease, so it stays a member: its users stay its
// own, and their requests that reach other nodes fail (the callers'
// breakers, actors.BreakerConfig). Each node pings every second the
// members it has stopped calling (Node.Silent, until Node.Answers): a
// Touch to the member's placement actor, which answers at once, whatever
// its grains wait for. A member whose calls time out because its grains
// wait for a slow store answers the ping, and is not reported; one that
// has answered no ping for Config.EvictSilentAfter is: a key
// <prefix>/<cluster name>.silent/<member id>/<reporter id>, under the
// reporter's own lease, so that its reports go when it does, deleted when
// the member answers a ping or a call again, or leaves. Once more than
// half of the members, the silent one counted, report it, the others
// delete its record: every member sees it leave and takes its share of its
// users, and the member itself, when it sees that, stops like one whose
// lease ran out (Node.Evicted). Two members never remove each other: each
// has one reporter at most of two. A node that is cut off from most of the
// others is the one removed, not they: each of them has its one report.

// silentReports is the state of the reports: this node's and everyone's.
type silentReports struct {
	after time.Duration // how long a member answers no ping before this node reports it (0: never)
	dir   string        // <prefix>/<cluster name>.silent/
	wake  chan struct{} // the reporter has something to do

	mu       sync.Mutex
	suspects map[string]bool            // member address → this node stopped calling it: pinged
	since    map[string]time.Time       // member address → its first ping without answer since it last answered
	ids      map[string]string          // member address → member id, of the current members
	records  map[string]string          // member id → its record's key
	reports  map[string]map[string]bool // silent member id → ids of the members that report it
	// mine: member id → key of this node's report of it, as written, or
	// as seen in etcd (a Put that failed may have been applied)
	mine    map[string]string
	removed map[string]bool // member ids this node deleted the record of
	count   int             // records this node deleted
}

func newSilentReports(dir string, after time.Duration) *silentReports {
	return &silentReports{after: after, dir: dir, wake: make(chan struct{}, 1),
		suspects: map[string]bool{}, since: map[string]time.Time{}, ids: map[string]string{}, records: map[string]string{},
		reports: map[string]map[string]bool{}, mine: map[string]string{}, removed: map[string]bool{}}
}

// silent notes that this node has stopped calling the member at addr: it
// pings it from now on. It never blocks: callers hold their breaker's
// lock.
func (r *silentReports) silent(addr string) {
	if r.after <= 0 {
		return
	}
	r.mu.Lock()
	r.suspects[addr] = true
	r.mu.Unlock()
}

// answers notes that the member at addr answers this node's calls again
// (or that its breaker forgot it).
func (r *silentReports) answers(addr string) {
	if r.after <= 0 {
		return
	}
	r.mu.Lock()
	_, ok := r.suspects[addr]
	delete(r.suspects, addr)
	delete(r.since, addr)
	r.mu.Unlock()
	if ok {
		r.poke()
	}
}

// toPing returns the addresses of the members to ping: those this node
// stopped calling.
func (r *silentReports) toPing() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for addr := range r.suspects {
		if _, member := r.ids[addr]; member {
			out = append(out, addr)
		}
	}
	return out
}

// pinged notes the outcome of a ping of the member at addr sent at now.
func (r *silentReports) pinged(addr string, answered bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch _, since := r.since[addr]; {
	case !r.suspects[addr]: // it answered a call meanwhile
	case answered:
		delete(r.since, addr)
	case !since:
		r.since[addr] = now
	}
}

func (r *silentReports) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// members takes the current members' records by key.
func (r *silentReports) members(records map[string]etcdRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.ids)
	clear(r.records)
	for key, rec := range records {
		r.ids[rec.member().Address()] = rec.ID
		r.records[rec.ID] = key
	}
	for id := range r.removed {
		if _, ok := r.records[id]; !ok {
			delete(r.removed, id) // gone: a record written again would be new
		}
	}
}

// wanted returns the member ids this node should report now and the keys
// of its reports that should go: it reports a current member that has
// answered none of its pings for r.after or longer.
func (r *silentReports) wanted(self string, now time.Time) (put, drop map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	put, drop = map[string]string{}, map[string]string{}
	reportKey := func(id string) string { return r.dir + id + "/" + self }
	// This node's reports in etcd are its own, written or not: a Put
	// that timed out after etcd applied it, or one a fresh read still
	// finds (reset), goes when it is no longer wanted.
	for id, by := range r.reports {
		if _, ok := r.mine[id]; by[self] && !ok {
			r.mine[id] = reportKey(id)
		}
	}
	want := map[string]bool{}
	for addr, since := range r.since {
		if id, ok := r.ids[addr]; ok && now.Sub(since) >= r.after {
			want[id] = true
			if _, done := r.mine[id]; !done {
				put[id] = reportKey(id)
			}
		}
	}
	for id, key := range r.mine {
		if !want[id] {
			drop[id] = key
		}
	}
	// Addresses that are no member any more: nothing left to report.
	for addr := range r.suspects {
		if _, ok := r.ids[addr]; !ok {
			delete(r.suspects, addr)
			delete(r.since, addr)
		}
	}
	return put, drop
}

// wrote records that this node's report of id is in etcd under key ("":
// it is gone).
func (r *silentReports) wrote(id, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if key == "" {
		// Gone from the reports seen too, before etcd's event comes: wanted
		// would take it for this node's still.
		if old, ok := r.mine[id]; ok {
			_, reporter, _ := strings.Cut(strings.TrimPrefix(old, r.dir), "/")
			r.unseen(id, reporter)
		}
		delete(r.mine, id)
	} else {
		r.mine[id] = key
	}
}

// unseen forgets reporter's report of silent. r.mu is held.
func (r *silentReports) unseen(silent, reporter string) {
	if by := r.reports[silent]; by != nil {
		delete(by, reporter)
		if len(by) == 0 {
			delete(r.reports, silent)
		}
	}
}

// seen applies a report key written (put) or deleted in etcd.
func (r *silentReports) seen(key string, put bool) {
	silent, reporter, ok := strings.Cut(strings.TrimPrefix(key, r.dir), "/")
	if !ok || silent == "" || reporter == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	by := r.reports[silent]
	if put {
		if by == nil {
			by = map[string]bool{}
			r.reports[silent] = by
		}
		by[reporter] = true
		return
	}
	r.unseen(silent, reporter)
	if r.mine[silent] == key {
		// This node's report went without it dropping it (its lease
		// ran out, as in an etcd stall): written again while wanted.
		delete(r.mine, silent)
	}
}

// reset forgets every report seen, before they are all read again, and
// which of them are this node's: one that went meanwhile unseen (the
// watch broke) is written again while wanted, and one the read still
// finds is taken for written again (wanted).
func (r *silentReports) reset() {
	r.mu.Lock()
	clear(r.reports)
	clear(r.mine)
	r.mu.Unlock()
}

// removedCount returns how many member records this node deleted.
func (r *silentReports) removedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// verdict is a member to remove: its id, its record's key, how many
// members report it and how many members there are.
type verdict struct {
	id, key            string
	reporters, members int
}

// judge returns the members that more than half of the members, each
// counted once and the member itself among them, report silent; not
// self, and not one this node removed already.
func (r *silentReports) judge(self string) []verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []verdict
	for id, by := range r.reports {
		key, member := r.records[id]
		if !member || id == self || r.removed[id] {
			continue
		}
		n := 0
		for reporter := range by {
			if _, ok := r.records[reporter]; ok && reporter != id {
				n++
			}
		}
		if 2*n > len(r.records) {
			out = append(out, verdict{id: id, key: key, reporters: n, members: len(r.records)})
		}
	}
	return out
}

// report pings the members this node stopped calling every second and
// keeps this node's reports in etcd in step with their answers, until ctx
// ends: after every round of pings (a failed write is retried then) and
// every change.
func (m *etcdMembers) report(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.silent.wake:
		case <-tick.C:
			m.pingSilent()
		}
		put, drop := m.silent.wanted(m.record.ID, time.Now())
		var err error
		for id, key := range put {
			if err = m.etcdOp(ctx, func(c context.Context) error {
				_, err := m.client.Put(c, key, "", clientv3.WithLease(m.leaseID()))
				return err
			}); err != nil {
				break
			}
			m.silent.wrote(id, key)
			m.log.Warn("this node reports a member it cannot reach to the cluster", zap.String("member_id", id), zap.Duration("silent_for_at_least", m.silent.after))
		}
		for id, key := range drop {
			if err != nil {
				break
			}
			if err = m.etcdOp(ctx, func(c context.Context) error {
				_, err := m.client.Delete(c, key)
				return err
			}); err == nil {
				m.silent.wrote(id, "")
				m.log.Info("this node no longer reports a member: it answers again, or left", zap.String("member_id", id))
			}
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			m.log.Warn("could not write this node's reports of members it cannot reach to etcd; retrying", zap.Error(err))
		case err == nil:
			failing = false
		}
		m.removeSilent(ctx)
	}
}

// pingSilent pings each member this node stopped calling, at once, and
// waits for the answers (a ping waits no longer than pingTimeout): a
// Touch to its placement actor, which answers without waiting for
// anything. A dead letter is no answer: this node's remote answers one
// itself for an address it cannot connect to.
func (m *etcdMembers) pingSilent() {
	var wg sync.WaitGroup
	for _, addr := range m.silent.toPing() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			_, err := m.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(addr, activatorName), &actor.Touch{}, m.pingTimeout).Result()
			m.silent.pinged(addr, err == nil, now)
		}()
	}
	wg.Wait()
}

// removeSilent deletes the records of the members most of the cluster
// reports silent (judge).
func (m *etcdMembers) removeSilent(ctx context.Context) {
	for _, v := range m.silent.judge(m.record.ID) {
		var deleted int64
		err := m.etcdOp(ctx, func(c context.Context) error {
			resp, err := m.client.Delete(c, v.key)
			if err == nil {
				deleted = resp.Deleted
			}
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("could not remove a member most of the cluster cannot reach; trying again at the next change", zap.String("member_id", v.id), zap.Error(err))
			}
			continue
		}
		m.silent.mu.Lock()
		m.silent.removed[v.id] = true
		if deleted > 0 {
			m.silent.count++
		}
		m.silent.mu.Unlock()
		if deleted > 0 { // else another member removed it first
			m.log.Warn("removed a member most of the cluster cannot reach: the others take its users over",
				zap.String("member_id", v.id), zap.Int("reported_by", v.reporters), zap.Int("members", v.members))
		}
	}
}

// etcdOp runs op with a deadline of one lease.
func (m *etcdMembers) etcdOp(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	return op(ctx)
}
