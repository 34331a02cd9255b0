package scylla

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"

	"github.com/checkin/checkin/persistence"
)

const (
	cqlInsertByUser               = `INSERT INTO checkins_by_user (user_id, bucket, ts, checkin_id, location_id) VALUES (?, ?, ?, ?, ?)`
	cqlInsertByUserLocation       = `INSERT INTO checkins_by_user_location (user_id, location_id, bucket, ts, checkin_id) VALUES (?, ?, ?, ?, ?)`
	cqlInsertBucketByUser         = `INSERT INTO buckets_by_user (user_id, bucket) VALUES (?, ?)`
	cqlInsertBucketByUserLocation = `INSERT INTO buckets_by_user_location (user_id, location_id, bucket) VALUES (?, ?, ?)`
	cqlInsertCheckinByID          = `INSERT INTO checkin_by_id (user_id, checkin_id, ts, location_id) VALUES (?, ?, ?, ?)`
)

// maxRowsPerBatch splits the rows of one partition into batches small enough
// to stay near the servers' batch size warning (5 KiB by default) and far
// from the failure threshold (50 KiB).
const maxRowsPerBatch = 50

// Write retries back off exponentially from writeBackoffMin up to
// writeBackoffMax, with jitter, and never sleep past the caller's deadline.
const (
	writeBackoffMin = 20 * time.Millisecond
	writeBackoffMax = time.Second
)

// stmt is one CQL statement with its arguments.
type stmt struct {
	cql  string
	args []any
}

// unit is one request: a single statement or an unlogged batch whose
// statements all write one partition of one table.
type unit struct {
	table string
	stmts []stmt
	// indexKeys are bucket-index rows this unit writes; they are remembered
	// once it succeeds.
	indexKeys []string
}

// partition names one partition of one table.
type partition struct {
	table  string
	user   string
	loc    string
	bucket int64
	id     string
}

// WriteCheckins durably writes a batch of checkins (any users, in any order)
// to every table that serves reads. It returns nil only when every write was
// acknowledged at the configured write consistency.
//
// The rows are grouped by partition into single-partition unlogged batches
// (at most maxRowsPerBatch rows each; never a batch across partitions), which
// run concurrently, bounded by Config.MaxInflight for the whole store. Each
// fails over and retries transient errors with backoff within ctx's deadline
// (at most Config.Retries times). The tables are written in phases, each
// only when every write of the phases before it succeeded, so that every
// row is listed by rows written before it (the order DeleteUser walks), and
// GetCheckin finds a checkin only once every other table has it:
//
//  1. buckets_by_user, the user's days (only rows not known written);
//  2. checkins_by_user, which lists each checkin's id and location (the
//     current location is read from it: no row of its own);
//  3. checkins_by_user_location and buckets_by_user_location;
//  4. checkin_by_id.
//
// An error wraps persistence.ErrUnavailable for transient failures; part of
// the batch may have been written. Every write is an idempotent upsert keyed
// by (user, checkin id), so the caller retries the same batch to complete it.
// An error that wraps persistence.ErrNotApplied wrote no checkin row: it
// came before or in phase 2, and no request of phase 2 was sent that a
// node may have applied (phase 1's day rows alone change no read).
func (s *Store) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	if len(batch) == 0 {
		return nil
	}
	if err := persistence.CheckBatch(batch); err != nil {
		return persistence.NotApplied(err)
	}
	if err := s.enter(); err != nil {
		return persistence.NotApplied(err)
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return persistence.NotApplied(storeErr("write checkins", err))
	}
	phases := s.plan(batch)
	if failed, sent, err := s.runPhasesAt(ctx, phases[:]...); err != nil {
		if listing := phaseOf("checkins_by_user"); failed < listing || (failed == listing && !sent) {
			return persistence.NotApplied(err)
		}
		return err
	}
	return nil
}

// runPhases runs each phase's units (see run) only when every phase before
// it succeeded; empty phases cost nothing.
func (s *Store) runPhases(ctx context.Context, phases ...[]unit) error {
	_, _, err := s.runPhasesAt(ctx, phases...)
	return err
}

// runPhasesAt is runPhases that also says, on failure, which phase failed
// and whether a request of it may have been applied (see run).
func (s *Store) runPhasesAt(ctx context.Context, phases ...[]unit) (failed int, sent bool, err error) {
	for i, phase := range phases {
		if len(phase) == 0 {
			continue
		}
		if sent, err := s.run(ctx, phase); err != nil {
			return i, sent, err
		}
	}
	return 0, false, nil
}

// writePhases is how many phases a checkin write has (see WriteCheckins).
const writePhases = 4

// phaseOf returns the write phase of a checkin table (see WriteCheckins).
func phaseOf(table string) int {
	switch table {
	case "buckets_by_user":
		return 0
	case "checkins_by_user":
		return 1
	case "checkin_by_id":
		return 3
	default: // checkins_by_user_location, buckets_by_user_location
		return 2
	}
}

// plan groups the writes of batch into units, by phase.
func (s *Store) plan(batch []persistence.Checkin) (phases [writePhases][]unit) {
	var order []partition
	groups := make(map[partition][]stmt)
	add := func(p partition, cql string, args ...any) {
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], stmt{cql, args})
	}
	seenIndex := make(map[string]bool)
	indexKeys := make(map[partition][]string)
	addIndex := func(p partition, key, cql string, args ...any) {
		if seenIndex[key] || s.indexed.Has(key) {
			return
		}
		seenIndex[key] = true
		indexKeys[p] = append(indexKeys[p], key)
		add(p, cql, args...)
	}
	byIDSeen := make(map[partition]int)
	byID := &phases[phaseOf("checkin_by_id")]

	for _, c := range batch {
		c.Timestamp = persistence.Millis(c.Timestamp)
		b := persistence.BucketOf(c.Timestamp)
		// Each value boxed once for the statements that share it (boxing a
		// string or an int64 allocates).
		user, loc, id, bucket, ms := any(c.UserID), any(c.LocationID), any(c.ID), any(b), any(c.Timestamp.UnixMilli())

		add(partition{table: "checkins_by_user", user: c.UserID, bucket: b},
			cqlInsertByUser, user, bucket, ms, id, loc)
		add(partition{table: "checkins_by_user_location", user: c.UserID, loc: c.LocationID, bucket: b},
			cqlInsertByUserLocation, user, loc, bucket, ms, id)
		addIndex(partition{table: "buckets_by_user", user: c.UserID}, indexKey("u", c.UserID, "", b),
			cqlInsertBucketByUser, user, bucket)
		addIndex(partition{table: "buckets_by_user_location", user: c.UserID, loc: c.LocationID}, indexKey("l", c.UserID, c.LocationID, b),
			cqlInsertBucketByUserLocation, user, loc, bucket)

		p := partition{table: "checkin_by_id", user: c.UserID, id: c.ID}
		st := stmt{cqlInsertCheckinByID, []any{user, id, ms, loc}}
		if i, ok := byIDSeen[p]; ok {
			(*byID)[i].stmts[0] = st // the same checkin twice in one batch: the last wins
		} else {
			byIDSeen[p] = len(*byID)
			*byID = append(*byID, unit{table: p.table, stmts: []stmt{st}})
		}
	}

	for _, p := range order {
		st := groups[p]
		phase := &phases[phaseOf(p.table)]
		for len(st) > 0 {
			n := min(len(st), maxRowsPerBatch)
			u := unit{table: p.table, stmts: st[:n:n]}
			if keys := indexKeys[p]; len(keys) > 0 {
				// Index partitions hold one statement per key, in order.
				u.indexKeys, indexKeys[p] = keys[:n:n], keys[n:]
			}
			*phase = append(*phase, u)
			st = st[n:]
		}
	}
	return phases
}

func indexKey(kind, user, loc string, bucket int64) string {
	return kind + user + "\x00" + loc + "\x00" + strconv.FormatInt(bucket, 10)
}

// run executes units concurrently on the store's workers (at most
// Config.MaxInflight requests in flight for the whole store) and returns nil
// only when all succeeded. The first failure cancels the units not yet
// finished. sent reports whether a request of the run may have been
// applied by a node: one succeeded, or failed in a way that may have
// applied it (see classify).
//
// Long-lived workers, not a goroutine per unit: a request through the driver
// needs a deep stack, which a new goroutine grows by copying; that took 4–10 %
// of the server's CPU in write profiles.
func (s *Store) run(parent context.Context, units []unit) (sent bool, err error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	g := &group{cancel: cancel}
launch:
	for i := range units {
		g.wg.Add(1)
		select {
		case s.jobs <- job{ctx: ctx, u: &units[i], g: g}:
		case <-ctx.Done():
			g.wg.Done()
			break launch
		}
	}
	g.wg.Wait()
	sent = g.sent.Load()
	if g.first != nil {
		return sent, g.first
	}
	if err := parent.Err(); err != nil {
		return sent, storeErr("write checkins", err)
	}
	return sent, nil
}

// job is one unit of a run for a worker.
type job struct {
	ctx context.Context
	u   *unit
	g   *group
}

// group tracks the units of one run.
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	first  error
	cancel context.CancelFunc
	sent   atomic.Bool // a request may have been applied (see run)
}

func (g *group) fail(err error) {
	g.once.Do(func() {
		g.first = err
		g.cancel()
	})
}

// work runs jobs until Close closes the queue.
func (s *Store) work() {
	defer s.workers.Done()
	for j := range s.jobs {
		if err := s.execWithRetry(j.ctx, j.u, &j.g.sent); err != nil {
			j.g.fail(err)
		}
		j.g.wg.Done()
	}
}

// execWithRetry runs one unit, retrying transient failures with backoff
// while ctx allows, at most s.retries times. It sets sent once an attempt
// succeeded or may have been applied; a unit whose run was cancelled
// before it started is not sent.
func (s *Store) execWithRetry(ctx context.Context, u *unit, sent *atomic.Bool) error {
	if err := ctx.Err(); err != nil {
		return storeErr("write "+u.table, err)
	}
	for attempt := 0; ; attempt++ {
		err := s.exec(ctx, u)
		if err == nil {
			sent.Store(true)
			for _, k := range u.indexKeys {
				s.indexed.Add(k)
			}
			return nil
		}
		c := classify(err)
		if c.outcome == maybeApplied {
			sent.Store(true)
		}
		if !c.transient || attempt >= s.retries || ctx.Err() != nil {
			return storeErr("write "+u.table, err)
		}
		wait := backoff(attempt)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return storeErr("write "+u.table, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return storeErr("write "+u.table, errors.Join(err, ctx.Err()))
		}
	}
}

// exec sends one unit: a single statement, or an unlogged batch of one
// partition. Retries are left to execWithRetry.
func (s *Store) exec(ctx context.Context, u *unit) error {
	if s.fault != nil {
		if err := s.fault(u.table); err != nil {
			return err
		}
	}
	if len(u.stmts) == 1 {
		st := u.stmts[0]
		q := s.s.Query(st.cql, st.args...).WithContext(ctx).Idempotent(true).RetryPolicy(noRetry)
		err := q.Exec()
		q.Release() // back to the driver's pool: one allocation fewer per request
		return err
	}
	b := s.s.Batch(gocql.UnloggedBatch).WithContext(ctx).RetryPolicy(noRetry)
	b.Entries = make([]gocql.BatchEntry, len(u.stmts))
	for i, st := range u.stmts {
		b.Entries[i] = gocql.BatchEntry{Stmt: st.cql, Args: st.args, Idempotent: true}
	}
	return b.Exec()
}

// backoff returns the wait before retry attempt+1: exponential, capped,
// with full jitter in its upper half.
func backoff(attempt int) time.Duration {
	d := writeBackoffMax
	if attempt < 16 {
		d = min(writeBackoffMin<<attempt, writeBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// indexCacheSize bounds the bucket-index rows a store remembers as written.
const indexCacheSize = 1 << 16
