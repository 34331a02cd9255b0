package pebble

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
)

var (
	_ persistence.Store              = (*Store)(nil)
	_ persistence.CheckinBatchGetter = (*Store)(nil)
	_ persistence.CheckinIDLister    = (*Store)(nil)
)

// Defaults sized for a small server.
const (
	DefaultCacheSize    = 64 << 20 // block cache, bytes
	DefaultMemTableSize = 16 << 20 // bytes; also bounds the WAL replayed at start
	// DefaultStuckAfter is how long writes (or reads) may be in flight
	// with none finishing before the store counts as failing (see
	// WithStuckAfter): far longer than a synced write or a flush takes on
	// a disk that works (by then checkin batches fail at their deadline).
	DefaultStuckAfter = 5 * time.Second
)

// errClosed is returned by every call on a closed Store.
var errClosed = fmt.Errorf("%w: store is closed", persistence.ErrUnavailable)

// Store is the embedded checkin store. It is safe for concurrent use.
type Store struct {
	db     *pebbledb.DB
	ring   *ring   // nil: files sync the blocking way
	health *health // of the engine's flushes: a full disk makes the store unavailable

	gate persistence.Gate // so that Close waits for calls in flight

	// records makes the check-and-insert and the read-modify-write of
	// users and locations atomic: a call holds it (one token) from its
	// read until the write it decided has been applied, even when the
	// caller stopped waiting for that write, and waiting for it ends with
	// the caller's context.
	records chan struct{}
}

// Option configures Open.
type Option func(*config)

type config struct {
	logger       *zap.Logger
	cacheSize    int64
	memTableSize uint64
	ioURing      bool
	wrapFS       func(vfs.FS) vfs.FS // tests only: a file system that fails on purpose
	stuckAfter   time.Duration       // see WithStuckAfter
}

// WithLogger sends the storage engine's log lines to l. Without it they are
// dropped.
func WithLogger(l *zap.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithCacheSize sets the size of the block cache in bytes (default
// DefaultCacheSize).
func WithCacheSize(bytes int64) Option {
	return func(c *config) { c.cacheSize = bytes }
}

// WithMemTableSize sets the size of one memtable in bytes (default
// DefaultMemTableSize). Larger memtables absorb more writes before a flush
// and make recovery after a crash replay more of the log.
func WithMemTableSize(bytes uint64) Option {
	return func(c *config) { c.memTableSize = bytes }
}

// WithIOUring(true) syncs files through io_uring where the kernel allows
// it, so that a goroutine waiting for the disk parks instead of holding one
// of the runtime's Ps (uring_linux.go); where the kernel refuses, files sync
// the blocking way and the logger says so. The default (false) syncs with
// blocking system calls. The guarantee is the same either way: a write
// returns once its log is synced. On a node with one P the ring raised write
// throughput and lowered p99 in the HTTP benchmarks, while a lone small
// commit pays a few tens of µs more (README, Benchmarks).
func WithIOUring(on bool) Option {
	return func(c *config) { c.ioURing = on }
}

// WithStuckAfter sets how long writes (or reads) may be in flight with
// none of them finishing before the store counts its disk as not
// answering (default DefaultStuckAfter): Ping fails and new writes (reads)
// fail at once with persistence.ErrUnavailable, until one finishes. Keep
// it well above the longest sync the disk takes when it works.
func WithStuckAfter(d time.Duration) Option {
	return func(c *config) { c.stuckAfter = d }
}

// Open opens the store in dir, creating it if needed. Only one Store may have
// a directory open at a time.
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := config{logger: zap.NewNop(), cacheSize: DefaultCacheSize, memTableSize: DefaultMemTableSize, stuckAfter: DefaultStuckAfter}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	if cfg.stuckAfter <= 0 {
		return nil, fmt.Errorf("persistence/pebble: open %s: the stuck limit must be positive, not %s", dir, cfg.stuckAfter)
	}
	var fs vfs.FS = yieldingFS{vfs.Default}
	var r *ring
	if cfg.ioURing {
		var err error
		if r, err = newRing(); err != nil {
			cfg.logger.Warn("syncing files with blocking system calls: io_uring is not available", zap.Error(err))
		} else {
			cfg.logger.Info("syncing files through io_uring")
			fs = ringFS{FS: fs, ring: r}
		}
	}
	if cfg.wrapFS != nil {
		fs = cfg.wrapFS(fs)
	}
	closeRing := func() {
		if r != nil {
			_ = r.close()
		}
	}
	h := newHealth(cfg.logger, cfg.stuckAfter)
	db, err := pebbledb.Open(dir, &pebbledb.Options{
		CacheSize:     cfg.cacheSize,
		MemTableSize:  cfg.memTableSize,
		Merger:        currentMerger,
		Logger:        zapLogger{cfg.logger},
		EventListener: h.listener(),
		FS:            fs,
		// Pinned so that upgrading the library never ratchets the on-disk
		// format by itself.
		FormatMajorVersion: pebbledb.FormatValueSeparation,
	})
	if err != nil {
		closeRing()
		return nil, fmt.Errorf("persistence/pebble: open %s: %w", dir, err)
	}
	if err := upgradeLayout(db, cfg.logger); err != nil {
		_ = db.Close()
		closeRing()
		return nil, fmt.Errorf("persistence/pebble: open %s: %w", dir, err)
	}
	return &Store{db: db, ring: r, health: h, records: make(chan struct{}, 1)}, nil
}

// enter admits a call that uses the db; every successful enter is paired
// with leave.
func (s *Store) enter() error {
	if !s.gate.Enter() {
		return errClosed
	}
	return nil
}

func (s *Store) leave() { s.gate.Leave() }

// enterRead admits a read that uses the db (see enter), unless reads do
// not finish (health); every successful enterRead is paired with
// leaveRead.
func (s *Store) enterRead() error {
	if err := s.enter(); err != nil {
		return err
	}
	if err := s.health.admitRead(); err != nil {
		s.leave()
		return err
	}
	s.health.reads.begin()
	return nil
}

func (s *Store) leaveRead() {
	s.health.reads.end()
	s.leave()
}

// userRecord and locationRecord are the stored values; the id is the key.
type userRecord struct {
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_ms"`
}

type locationRecord struct {
	Name      string  `json:"name"`
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	CreatedAt int64   `json:"created_ms"`
}

// CreateUser stores a new user; ErrConflict if the id exists.
func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	if err := persistence.CheckID("user", u.ID); err != nil {
		return err
	}
	v, err := json.Marshal(userRecord{Name: u.Name, CreatedAt: u.CreatedAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("%w: user %q: %w", persistence.ErrInvalid, u.ID, err)
	}
	return s.create(ctx, appendUserKey(nil, u.ID), v, "user", u.ID)
}

// GetUser returns the user or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (persistence.User, error) {
	if err := persistence.CheckID("user", id); err != nil {
		return persistence.User{}, err
	}
	var r userRecord
	if err := s.getJSON(ctx, appendUserKey(nil, id), &r, "user", id); err != nil {
		return persistence.User{}, err
	}
	return persistence.User{ID: id, Name: r.Name, CreatedAt: time.UnixMilli(r.CreatedAt).UTC()}, nil
}

// CreateLocation stores a new location; ErrConflict if the id exists.
func (s *Store) CreateLocation(ctx context.Context, l persistence.Location) error {
	if err := persistence.CheckID("location", l.ID); err != nil {
		return err
	}
	v, err := json.Marshal(locationRecord{Name: l.Name, Lat: l.Lat, Lon: l.Lon, CreatedAt: l.CreatedAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("%w: location %q: %w", persistence.ErrInvalid, l.ID, err)
	}
	return s.create(ctx, appendLocationKey(nil, l.ID), v, "location", l.ID)
}

// GetLocation returns the location or ErrNotFound.
func (s *Store) GetLocation(ctx context.Context, id string) (persistence.Location, error) {
	if err := persistence.CheckID("location", id); err != nil {
		return persistence.Location{}, err
	}
	var r locationRecord
	if err := s.getJSON(ctx, appendLocationKey(nil, id), &r, "location", id); err != nil {
		return persistence.Location{}, err
	}
	return persistence.Location{
		ID: id, Name: r.Name, Lat: r.Lat, Lon: r.Lon,
		CreatedAt: time.UnixMilli(r.CreatedAt).UTC(),
	}, nil
}

// create durably sets key to v unless key exists.
func (s *Store) create(ctx context.Context, key, v []byte, kind, id string) error {
	return s.withRecord(ctx, key, func(b *pebbledb.Batch, _ []byte, found bool) error {
		if found {
			return fmt.Errorf("%w: %s %q", persistence.ErrConflict, kind, id)
		}
		return storeErr(b.Set(key, v, nil))
	})
}

// withRecord calls fn with the value of key and whether it is stored,
// holding records, so that the reads and writes fn makes of users,
// locations and a deleted checkin are atomic. fn puts its writes in b;
// they are applied, synced, unless fn returns an error. v is valid only
// during the call. Neither the wait for records nor the write outlasts ctx
// (commit).
func (s *Store) withRecord(ctx context.Context, key []byte, fn func(b *pebbledb.Batch, v []byte, found bool) error) error {
	if err := ctx.Err(); err != nil {
		return storeErr(err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	if err := s.health.admitWrite(); err != nil {
		s.leave()
		return err
	}
	select {
	case s.records <- struct{}{}:
	case <-ctx.Done():
		s.leave()
		return fmt.Errorf("%w: another write of a user or location is still being applied: %w", persistence.ErrUnavailable, ctx.Err())
	}
	release := func() { <-s.records; s.leave() }

	b := s.db.NewBatch()
	if err := readRecord(s.db, key, func(v []byte, found bool) error { return fn(b, v, found) }); err != nil || b.Empty() {
		b.Close()
		release()
		return err
	}
	return s.commit(ctx, b, release)
}

// readRecord calls fn with the value of key and whether it is stored.
func readRecord(db *pebbledb.DB, key []byte, fn func(v []byte, found bool) error) error {
	v, closer, err := db.Get(key)
	switch {
	case errors.Is(err, pebbledb.ErrNotFound):
		return fn(nil, false)
	case err != nil:
		return storeErr(err)
	}
	defer closer.Close()
	return fn(v, true)
}

// UpdateUser durably sets the fields the patch names and returns the user
// as stored; ErrNotFound if there is none.
func (s *Store) UpdateUser(ctx context.Context, id string, p persistence.UserPatch) (persistence.User, error) {
	if err := persistence.CheckPatch("user", id, p.Empty()); err != nil {
		return persistence.User{}, err
	}
	var u persistence.User
	err := updateJSON(ctx, s, appendUserKey(nil, id), "user", id, func(r *userRecord) {
		u = p.Apply(persistence.User{ID: id, Name: r.Name, CreatedAt: time.UnixMilli(r.CreatedAt).UTC()})
		r.Name = u.Name
	})
	return u, err
}

// UpdateLocation durably sets the fields the patch names and returns the
// location as stored; ErrNotFound if there is none.
func (s *Store) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	if err := persistence.CheckPatch("location", id, p.Empty()); err != nil {
		return persistence.Location{}, err
	}
	var l persistence.Location
	err := updateJSON(ctx, s, appendLocationKey(nil, id), "location", id, func(r *locationRecord) {
		l = p.Apply(persistence.Location{ID: id, Name: r.Name, Lat: r.Lat, Lon: r.Lon, CreatedAt: time.UnixMilli(r.CreatedAt).UTC()})
		r.Name, r.Lat, r.Lon = l.Name, l.Lat, l.Lon
	})
	return l, err
}

// updateJSON reads the record at key, lets change modify it and durably
// writes it back, all holding records so that concurrent updates apply
// one after the other.
func updateJSON[R any](ctx context.Context, s *Store, key []byte, kind, id string, change func(*R)) error {
	return s.withRecord(ctx, key, func(b *pebbledb.Batch, v []byte, found bool) error {
		if !found {
			return fmt.Errorf("%w: %s %q", persistence.ErrNotFound, kind, id)
		}
		var r R
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: %s %q: %w", errCorrupt, kind, id, err)
		}
		change(&r)
		v, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("%w: %s %q: %w", persistence.ErrInvalid, kind, id, err)
		}
		return storeErr(b.Set(key, v, nil))
	})
}

// ListUsers lists users in id order.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]persistence.User, bool, error) {
	var out []persistence.User
	more, err := s.listRecords(ctx, famUser, after, limit, func(id string, v []byte) error {
		var r userRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: user %q: %w", errCorrupt, id, err)
		}
		out = append(out, persistence.User{ID: id, Name: r.Name, CreatedAt: time.UnixMilli(r.CreatedAt).UTC()})
		return nil
	})
	return out, more, err
}

// ListLocations lists locations in id order.
func (s *Store) ListLocations(ctx context.Context, after string, limit int) ([]persistence.Location, bool, error) {
	var out []persistence.Location
	more, err := s.listRecords(ctx, famLocation, after, limit, func(id string, v []byte) error {
		var r locationRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: location %q: %w", errCorrupt, id, err)
		}
		out = append(out, persistence.Location{ID: id, Name: r.Name, Lat: r.Lat, Lon: r.Lon, CreatedAt: time.UnixMilli(r.CreatedAt).UTC()})
		return nil
	})
	return out, more, err
}

// listRecords calls fn with up to limit records of family fam whose ids
// follow after, in id order, and reports whether more follow.
func (s *Store) listRecords(ctx context.Context, fam byte, after string, limit int, fn func(id string, v []byte) error) (bool, error) {
	if limit < 1 {
		return false, fmt.Errorf("%w: limit %d", persistence.ErrInvalid, limit)
	}
	if err := ctx.Err(); err != nil {
		return false, storeErr(err)
	}
	if err := s.enterRead(); err != nil {
		return false, err
	}
	defer s.leaveRead()
	lower := []byte{fam}
	if after != "" {
		lower = append(append(lower, after...), 0) // the first id after it (ids hold no NUL)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: lower, UpperBound: []byte{fam + 1}})
	if err != nil {
		return false, storeErr(err)
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n == limit {
			return true, storeErr(it.Close())
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(string(it.Key()[1:]), v)
		}
		if err != nil {
			_ = it.Close()
			return false, storeErr(err)
		}
		n++
	}
	return false, storeErr(it.Close())
}

// DeleteLocation removes the location record; ErrNotFound if there is none.
func (s *Store) DeleteLocation(ctx context.Context, id string) error {
	if err := persistence.CheckID("location", id); err != nil {
		return err
	}
	key := appendLocationKey(nil, id)
	return s.withRecord(ctx, key, func(b *pebbledb.Batch, _ []byte, found bool) error {
		if !found {
			return fmt.Errorf("%w: location %q", persistence.ErrNotFound, id)
		}
		return storeErr(b.Delete(key, nil))
	})
}

// DeleteUser removes the user, the user's rows (one range: they share a
// prefix) and any current-location operands of older layouts, in one
// synced batch; the rows go even when the user record is missing.
// ErrNotFound if there was no user record.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if err := persistence.CheckID("user", id); err != nil {
		return err
	}
	key := appendUserKey(nil, id)
	existed := false
	err := s.withRecord(ctx, key, func(b *pebbledb.Batch, _ []byte, found bool) error {
		existed = found
		from := append(append([]byte{famUserScoped}, id...), sep)
		to := append(append([]byte{famUserScoped}, id...), sep+1)
		if err := b.DeleteRange(from, to, nil); err != nil {
			return storeErr(err)
		}
		if err := b.Delete(append([]byte{famCurrent}, id...), nil); err != nil {
			return storeErr(err)
		}
		return storeErr(b.Delete(key, nil))
	})
	if err == nil && !existed {
		return fmt.Errorf("%w: user %q", persistence.ErrNotFound, id)
	}
	return err
}

func (s *Store) getJSON(ctx context.Context, key []byte, dst any, kind, id string) error {
	return s.get(ctx, key, kind, id, func(v []byte) error {
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%w: %s %q: %w", errCorrupt, kind, id, err)
		}
		return nil
	})
}

// get calls decode with the value of key; the value is only valid during
// the call.
func (s *Store) get(ctx context.Context, key []byte, kind, id string, decode func([]byte) error) error {
	if err := ctx.Err(); err != nil {
		return storeErr(err)
	}
	if err := s.enterRead(); err != nil {
		return err
	}
	defer s.leaveRead()
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebbledb.ErrNotFound) {
		return fmt.Errorf("%w: %s %q", persistence.ErrNotFound, kind, id)
	}
	if err != nil {
		return storeErr(err)
	}
	defer closer.Close()
	return decode(v)
}

// WriteCheckins durably writes the batch in one atomic, synced write: every
// checkin goes to the by-user and by-user-and-location partitions and the
// by-id table, three rows. Readers find a user's non-empty buckets by
// seeking through the partitions (reader.Buckets), so no bucket index is
// written. The current location needs no write
// of its own: CurrentLocation reads it from the by-user partitions.
// Rewriting a checkin produces the same keys and values, so retries are
// safe.
func (s *Store) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	if len(batch) == 0 {
		return nil
	}
	if err := persistence.CheckBatch(batch); err != nil {
		return persistence.NotApplied(err)
	}
	if err := ctx.Err(); err != nil {
		return persistence.NotApplied(storeErr(err))
	}
	if err := s.enter(); err != nil {
		return persistence.NotApplied(err)
	}
	b, err := s.checkinBatch(batch)
	if err == nil {
		err = storeErr(ctx.Err())
	}
	if err == nil {
		err = s.health.admitWrite()
	}
	if err != nil {
		b.Close()
		s.leave()
		return persistence.NotApplied(err)
	}
	return s.commit(ctx, b, s.leave) // the batch is atomic, but a commit cut short by ctx may still be applied
}

// checkinBatch returns the records of batch as one engine batch.
func (s *Store) checkinBatch(batch []persistence.Checkin) (*pebbledb.Batch, error) {
	b := s.db.NewBatchWithSize(len(batch) * estimatedCheckinBytes)
	var key, val []byte
	for _, i := range byUser(batch) {
		c := &batch[i]
		ms := persistence.Millis(c.Timestamp).UnixMilli()
		bucket := persistence.BucketOf(c.Timestamp)

		key = appendCheckinKey(key[:0], c.UserID, "", bucket, ms, c.ID)
		val = append(val[:0], c.LocationID...)
		if err := b.Set(key, val, nil); err != nil {
			return b, storeErr(err)
		}
		key = appendCheckinKey(key[:0], c.UserID, c.LocationID, bucket, ms, c.ID)
		if err := b.Set(key, nil, nil); err != nil {
			return b, storeErr(err)
		}
		key = appendCheckinByIDKey(key[:0], c.UserID, c.ID)
		val = appendCheckinByID(val[:0], ms, c.LocationID)
		if err := b.Set(key, val, nil); err != nil {
			return b, storeErr(err)
		}
	}
	return b, nil
}

// commit applies b, synced, then closes it and calls release (which ends
// the call the caller entered) once the write is over, whether or not the
// caller is still waiting. The engine may hold a write back with no
// deadline, until its table files can be written (a disk that is full or
// stops answering); so commit waits no longer than ctx, nor, while
// flushes fail (see health), past the moment the engine starts to hold
// writes back, and the write goes on by itself. A retry of it is safe:
// checkin writes are idempotent, and a record write that was not answered
// was not acknowledged.
func (s *Store) commit(ctx context.Context, b *pebbledb.Batch, release func()) error {
	var stalled <-chan struct{} // nil: a healthy disk may yet write the tables
	if s.health.current() != nil {
		stalled = s.health.stallSignal()
	}
	done := make(chan error, 1)
	s.health.commits.begin()
	go func() {
		defer release() // so Close waits for the write
		err := s.db.Apply(b, pebbledb.Sync)
		s.health.commits.end()
		b.Close()
		done <- err
	}()
	select {
	case err := <-done:
		return storeErr(err)
	case <-stalled:
		return fmt.Errorf("%w: the store holds the write back while it cannot write its files, and may still apply it", persistence.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%w: the write was not done by its deadline and may still be applied: %w", persistence.ErrUnavailable, ctx.Err())
	}
}

// byUser returns the indexes of batch ordered by user id: the memtable
// inserts a batch's keys in its order, and each insert searches from the
// last, so a user's keys go in next to each other (keys.go).
func byUser(batch []persistence.Checkin) []int32 {
	order := make([]int32, len(batch))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(batch[a].UserID, batch[b].UserID) })
	return order
}

// estimatedCheckinBytes sizes a batch up front: three records per checkin,
// each a key of two ids, a bucket and a timestamp (about 100 bytes with
// UUIDs) and a short value.
const estimatedCheckinBytes = 3 * 128

// GetCheckin returns one checkin of a user by id, or ErrNotFound.
func (s *Store) GetCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	if err := persistence.CheckID("user", userID); err != nil {
		return persistence.Checkin{}, err
	}
	if err := persistence.CheckID("checkin", checkinID); err != nil {
		return persistence.Checkin{}, err
	}
	c := persistence.Checkin{ID: checkinID, UserID: userID}
	err := s.get(ctx, appendCheckinByIDKey(nil, userID, checkinID), "checkin", checkinID, func(v []byte) error {
		ms, loc, err := decodeCheckinByID(v)
		c.LocationID, c.Timestamp = loc, time.UnixMilli(ms).UTC()
		return err
	})
	if err != nil {
		return persistence.Checkin{}, err
	}
	return c, nil
}

// DeleteCheckin removes one checkin of a user, its three rows, in one
// synced batch, and returns it; ErrNotFound if the user has no checkin with
// that id. Its by-id row names the other two.
func (s *Store) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	if err := persistence.CheckID("user", userID); err != nil {
		return persistence.Checkin{}, err
	}
	if err := persistence.CheckID("checkin", checkinID); err != nil {
		return persistence.Checkin{}, err
	}
	c := persistence.Checkin{ID: checkinID, UserID: userID}
	key := appendCheckinByIDKey(nil, userID, checkinID)
	err := s.withRecord(ctx, key, func(b *pebbledb.Batch, v []byte, found bool) error {
		if !found {
			return fmt.Errorf("%w: checkin %q", persistence.ErrNotFound, checkinID)
		}
		ms, loc, err := decodeCheckinByID(v)
		if err != nil {
			return err
		}
		c.LocationID, c.Timestamp = loc, time.UnixMilli(ms).UTC()
		bucket := persistence.BucketOf(c.Timestamp)
		for _, k := range [][]byte{
			appendCheckinKey(nil, userID, "", bucket, ms, checkinID),
			appendCheckinKey(nil, userID, loc, bucket, ms, checkinID),
			key,
		} {
			if err := b.Delete(k, nil); err != nil {
				return storeErr(err)
			}
		}
		return nil
	})
	if err != nil {
		return persistence.Checkin{}, err
	}
	return c, nil
}

// GetCheckins looks the checkins up with one iterator for the batch: its
// per-level iterators stay open between look-ups, where a GetCheckin each
// builds the read state again (a new id, the usual case, costs about a
// third: BenchmarkLookupNewIDs).
func (s *Store) GetCheckins(ctx context.Context, refs []persistence.CheckinRef) ([]persistence.Checkin, []bool, error) {
	for _, r := range refs {
		if err := persistence.CheckID("user", r.UserID); err != nil {
			return nil, nil, err
		}
		if err := persistence.CheckID("checkin", r.ID); err != nil {
			return nil, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, storeErr(err)
	}
	if err := s.enterRead(); err != nil {
		return nil, nil, err
	}
	defer s.leaveRead()
	got, found := make([]persistence.Checkin, len(refs)), make([]bool, len(refs))
	if len(refs) == 0 {
		return got, found, nil
	}
	it, err := s.db.NewIterWithContext(ctx, nil)
	if err != nil {
		return nil, nil, storeErr(err)
	}
	var key []byte
	for i, r := range refs {
		key = appendCheckinByIDKey(key[:0], r.UserID, r.ID)
		if !it.SeekPrefixGE(key) {
			// Not found, or not read: the next seek clears the error, so
			// it is checked now (a read error taken for "not found" would
			// have a retry of the id written as a new checkin).
			if err := it.Error(); err != nil {
				_ = it.Close()
				return nil, nil, storeErr(err)
			}
			continue
		}
		if !bytes.Equal(it.Key(), key) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, nil, storeErr(err)
		}
		ms, loc, err := decodeCheckinByID(v)
		if err != nil {
			_ = it.Close()
			return nil, nil, err
		}
		got[i] = persistence.Checkin{ID: r.ID, UserID: r.UserID, LocationID: loc, Timestamp: time.UnixMilli(ms).UTC()}
		found[i] = true
	}
	if err := it.Close(); err != nil {
		return nil, nil, storeErr(err)
	}
	return got, found, nil
}

// EachCheckinID walks the user's by-id keys, in id order.
func (s *Store) EachCheckinID(ctx context.Context, userID string, limit int, fn func(id []byte)) (bool, error) {
	if err := persistence.CheckID("user", userID); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, storeErr(err)
	}
	if err := s.enterRead(); err != nil {
		return false, err
	}
	defer s.leaveRead()
	prefix := appendCheckinByIDKey(nil, userID, "")
	it, err := s.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(bytes.Clone(prefix))})
	if err != nil {
		return false, storeErr(err)
	}
	n := 0
	valid := it.First()
	for ; valid && n < limit; valid = it.Next() {
		fn(it.Key()[len(prefix):])
		n++
	}
	if err := it.Close(); err != nil {
		return false, storeErr(err)
	}
	return !valid, nil
}

// CurrentLocation returns the user's newest checkin, or ErrNotFound.
func (s *Store) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	if err := persistence.CheckID("user", userID); err != nil {
		return persistence.Checkin{}, err
	}
	if err := ctx.Err(); err != nil {
		return persistence.Checkin{}, storeErr(err)
	}
	if err := s.enterRead(); err != nil {
		return persistence.Checkin{}, err
	}
	defer s.leaveRead()
	return currentFromPartitions(ctx, s.db, userID)
}

// ListCheckins returns one page of a range read. It reads from the live
// database, not a snapshot: checkins written while a client pages through a
// range appear in later pages if they sort after the page position, and
// never cause a pre-existing checkin to be skipped or repeated.
func (s *Store) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	if err := s.enterRead(); err != nil {
		return persistence.Page{}, err
	}
	defer s.leaveRead()
	return persistence.ListCheckins(ctx, reader{db: s.db}, q)
}

// Ping returns nil unless the store is closed or cannot write its files
// (see health).
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return storeErr(err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.leave()
	return s.health.check()
}

// Checkpoint writes a consistent copy of the database into dir, which must
// not exist yet: every write acknowledged before the call is in it, none
// that starts after it returns. Table files are hard-linked when dir is on
// the same file system as the data dir (then the copy takes little time and
// space until compactions replace the tables), copied otherwise; the log and
// manifest are copied. A node opened on a copy of dir serves that state.
// Writes go on while it runs.
func (s *Store) Checkpoint(dir string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.db.Checkpoint(dir, pebbledb.WithFlushedWAL()); err != nil {
		return fmt.Errorf("persistence/pebble: checkpoint %s: %w", dir, err)
	}
	return nil
}

// Close waits for calls in flight, then closes the database. Every write
// acknowledged before it was synced; calls after Close fail with
// ErrUnavailable. Closing twice is a no-op.
func (s *Store) Close() error {
	return s.gate.Close(func() error {
		err := s.db.Close()
		if s.ring != nil { // after the db: no sync is in flight or to come
			err = errors.Join(err, s.ring.close())
		}
		if err != nil {
			return fmt.Errorf("persistence/pebble: close: %w", err)
		}
		return nil
	})
}

// storeErr turns an error of the engine or of a context into one that wraps
// a persistence sentinel. Errors that already wrap one pass unchanged.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, persistence.ErrNotFound),
		errors.Is(err, persistence.ErrConflict),
		errors.Is(err, persistence.ErrUnavailable),
		errors.Is(err, persistence.ErrInvalid):
		return err
	case errors.Is(err, pebbledb.ErrNotFound):
		return fmt.Errorf("%w: %w", persistence.ErrNotFound, err)
	default:
		// Cancelled or timed-out contexts, a closed database and I/O errors:
		// the call may be retried later.
		return fmt.Errorf("%w: %w", persistence.ErrUnavailable, err)
	}
}
