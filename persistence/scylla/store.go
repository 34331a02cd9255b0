package scylla

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence"
)

var (
	_ persistence.Store           = (*Store)(nil)
	_ persistence.PartitionReader = (*Store)(nil)
)

// errClosed is returned by every call on a closed Store.
var errClosed = fmt.Errorf("persistence/scylla: %w: store is closed", persistence.ErrUnavailable)

// Store is the Scylla (or Cassandra) checkin store. It is safe for
// concurrent use.
type Store struct {
	s       *gocql.Session
	log     *zap.Logger
	readCL  gocql.Consistency
	retries int
	jobs    chan job       // write requests for the workers
	workers sync.WaitGroup // Config.MaxInflight workers, each one request in flight
	indexed *persistence.WrittenSet
	// fault, when set (tests only), fails the requests that write its
	// table with the error it returns, before they are sent.
	fault func(table string) error

	gate persistence.Gate // so that Close waits for calls in flight
}

// Open connects to the cluster, applies the schema when cfg.AutoMigrate is
// set (see Migrate; otherwise it checks the schema is current), and returns
// the store. ctx cancels it; each connection is set up within
// cfg.ConnectTimeout plus cfg.Timeout, and each schema statement may take
// up to a minute (the cluster agreeing on a change), so give ctx no
// deadline shorter than the schema needs. When cfg.Username is empty, the
// credentials are read from the environment variables EnvUsername and
// EnvPassword. A nil log discards the store's and the driver's logs.
func Open(ctx context.Context, cfg Config, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withEnvCredentials(os.Getenv)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("persistence/scylla: %w", err)
	}
	check := checkSchema
	if cfg.AutoMigrate {
		check = migrate
	}
	if err := check(ctx, cfg, log); err != nil {
		return nil, err
	}
	s, err := connect(ctx, cfg, cfg.Keyspace, 0, log)
	if err != nil {
		return nil, err
	}
	readCL, _ := parseConsistency(cfg.ReadConsistency) // checked by Validate
	log.Info("scylla store open",
		zap.Strings("hosts", cfg.Hosts), zap.String("keyspace", cfg.Keyspace), zap.String("local_dc", cfg.LocalDC),
		zap.String("write_consistency", cfg.Consistency), zap.String("read_consistency", cfg.ReadConsistency),
		zap.Bool("scylla", isScylla(s)), zap.Bool("authenticated", cfg.Username != ""), zap.Bool("tls", cfg.TLS))
	st := &Store{
		s:       s,
		log:     log,
		readCL:  readCL,
		retries: cfg.Retries,
		jobs:    make(chan job),
		indexed: persistence.NewWrittenSet(indexCacheSize),
	}
	st.workers.Add(cfg.MaxInflight)
	for range cfg.MaxInflight {
		go st.work()
	}
	return st, nil
}

// enter admits a call that uses the session; every successful enter is
// paired with leave.
func (s *Store) enter() error {
	if !s.gate.Enter() {
		return errClosed
	}
	return nil
}

func (s *Store) leave() { s.gate.Leave() }

const (
	cqlInsertUser         = `INSERT INTO users (user_id, name, created_at) VALUES (?, ?, ?) IF NOT EXISTS`
	cqlSelectUser         = `SELECT name, created_at FROM users WHERE user_id = ?`
	cqlInsertLocation     = `INSERT INTO locations (location_id, name, lat, lon, created_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS`
	cqlSelectLocation     = `SELECT name, lat, lon, created_at FROM locations WHERE location_id = ?`
	cqlUpdateUser         = `UPDATE users SET name = ? WHERE user_id = ? IF name = ?`
	cqlUpdateLocation     = `UPDATE locations SET name = ?, lat = ?, lon = ? WHERE location_id = ? IF name = ? AND lat = ? AND lon = ?`
	cqlListUsers          = `SELECT user_id, name, created_at FROM users LIMIT ?`
	cqlListUsersAfter     = `SELECT user_id, name, created_at FROM users WHERE token(user_id) > token(?) LIMIT ?`
	cqlListLocations      = `SELECT location_id, name, lat, lon, created_at FROM locations LIMIT ?`
	cqlListLocationsAfter = `SELECT location_id, name, lat, lon, created_at FROM locations WHERE token(location_id) > token(?) LIMIT ?`
	cqlSelectCheckin      = `SELECT ts, location_id FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`
	cqlPing               = `SELECT release_version FROM system.local`
)

// CreateUser stores a new user; ErrConflict if the id exists. It is a
// lightweight transaction: of concurrent creates of one id exactly one
// succeeds (or several, if they create identical users). When the outcome
// is unknown (a timeout), a serial read settles it: nil if the stored user is
// this one, ErrConflict if it is another, ErrUnavailable if none is stored.
func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	if err := persistence.CheckID("user", u.ID); err != nil {
		return err
	}
	ms := persistence.Millis(u.CreatedAt).UnixMilli()
	return s.create(ctx, "user", u.ID, cqlInsertUser, []any{u.ID, u.Name, ms}, func(ctx context.Context) (bool, error) {
		got, err := s.getUser(ctx, u.ID, gocql.LocalSerial)
		if err != nil {
			return false, err
		}
		return got.Name == u.Name && got.CreatedAt.UnixMilli() == ms, nil
	})
}

// GetUser returns the user or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (persistence.User, error) {
	if err := persistence.CheckID("user", id); err != nil {
		return persistence.User{}, err
	}
	if err := s.enter(); err != nil {
		return persistence.User{}, err
	}
	defer s.leave()
	return s.getUser(ctx, id, s.readCL)
}

func (s *Store) getUser(ctx context.Context, id string, cl gocql.Consistency) (persistence.User, error) {
	u := persistence.User{ID: id}
	var ms int64
	err := s.s.Query(cqlSelectUser, id).WithContext(ctx).Consistency(cl).Idempotent(true).Scan(&u.Name, &ms)
	if err != nil {
		return persistence.User{}, notFound(err, "get user", "user", id)
	}
	u.CreatedAt = time.UnixMilli(ms).UTC()
	return u, nil
}

// CreateLocation stores a new location; ErrConflict if the id exists. It
// behaves as CreateUser.
func (s *Store) CreateLocation(ctx context.Context, l persistence.Location) error {
	if err := persistence.CheckID("location", l.ID); err != nil {
		return err
	}
	ms := persistence.Millis(l.CreatedAt).UnixMilli()
	return s.create(ctx, "location", l.ID, cqlInsertLocation, []any{l.ID, l.Name, l.Lat, l.Lon, ms}, func(ctx context.Context) (bool, error) {
		got, err := s.getLocation(ctx, l.ID, gocql.LocalSerial)
		if err != nil {
			return false, err
		}
		return got.Name == l.Name && got.Lat == l.Lat && got.Lon == l.Lon && got.CreatedAt.UnixMilli() == ms, nil
	})
}

// GetLocation returns the location or ErrNotFound.
func (s *Store) GetLocation(ctx context.Context, id string) (persistence.Location, error) {
	if err := persistence.CheckID("location", id); err != nil {
		return persistence.Location{}, err
	}
	if err := s.enter(); err != nil {
		return persistence.Location{}, err
	}
	defer s.leave()
	return s.getLocation(ctx, id, s.readCL)
}

func (s *Store) getLocation(ctx context.Context, id string, cl gocql.Consistency) (persistence.Location, error) {
	l := persistence.Location{ID: id}
	var ms int64
	err := s.s.Query(cqlSelectLocation, id).WithContext(ctx).Consistency(cl).Idempotent(true).Scan(&l.Name, &l.Lat, &l.Lon, &ms)
	if err != nil {
		return persistence.Location{}, notFound(err, "get location", "location", id)
	}
	l.CreatedAt = time.UnixMilli(ms).UTC()
	return l, nil
}

// create runs an INSERT ... IF NOT EXISTS. When its outcome is unknown,
// mine reads the row at serial consistency (which completes any unfinished
// transaction on it) and reports whether the stored row is the one this call
// tried to insert; it returns ErrNotFound if there is none.
func (s *Store) create(ctx context.Context, kind, id, stmt string, args []any, mine func(context.Context) (bool, error)) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	conflict := func() error { return fmt.Errorf("persistence/scylla: %w: %s %q", persistence.ErrConflict, kind, id) }
	// Not idempotent: a retry could see this call's own insert.
	applied, err := s.s.Query(stmt, args...).WithContext(ctx).MapScanCAS(map[string]any{})
	switch {
	case err == nil && applied:
		return nil
	case err == nil:
		return conflict()
	case classify(err).outcome == maybeApplied && ctx.Err() == nil:
		same, rerr := mine(ctx)
		switch {
		case rerr == nil && same:
			return nil
		case rerr == nil:
			return conflict()
		}
	}
	return storeErr("create "+kind+" "+id, err)
}

// UpdateUser durably sets the fields the patch names and returns the user
// as stored; ErrNotFound if there is none. It is a compare-and-set: the
// user is read at serial consistency, patched, and written only if the
// stored row still holds what was read, else read again (see update).
func (s *Store) UpdateUser(ctx context.Context, id string, p persistence.UserPatch) (persistence.User, error) {
	if err := persistence.CheckPatch("user", id, p.Empty()); err != nil {
		return persistence.User{}, err
	}
	var next persistence.User
	err := s.update(ctx, "user", id, func(ctx context.Context) (bool, []any, error) {
		cur, err := s.getUser(ctx, id, gocql.LocalSerial)
		if err != nil {
			return false, nil, err
		}
		next = p.Apply(cur)
		return next == cur, []any{next.Name, id, cur.Name}, nil
	}, cqlUpdateUser)
	return next, err
}

// UpdateLocation is UpdateUser for locations.
func (s *Store) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	if err := persistence.CheckPatch("location", id, p.Empty()); err != nil {
		return persistence.Location{}, err
	}
	var next persistence.Location
	err := s.update(ctx, "location", id, func(ctx context.Context) (bool, []any, error) {
		cur, err := s.getLocation(ctx, id, gocql.LocalSerial)
		if err != nil {
			return false, nil, err
		}
		next = p.Apply(cur)
		return next == cur, []any{next.Name, next.Lat, next.Lon, id, cur.Name, cur.Lat, cur.Lon}, nil
	}, cqlUpdateLocation)
	return next, err
}

// updateAttempts bounds the compare-and-set rounds of one update; only
// updates of the same record racing each other use more than one.
const updateAttempts = 8

// update runs read-patch-CAS rounds: prepare reads the record at serial
// consistency (which completes any unfinished transaction on it) and
// returns whether the patch changes nothing and otherwise the arguments of
// stmt, an UPDATE ... IF the read values. A round whose condition failed
// lost to a concurrent update and is run again on its result.
func (s *Store) update(ctx context.Context, kind, id string, prepare func(context.Context) (same bool, args []any, err error), stmt string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	for range updateAttempts {
		same, args, err := prepare(ctx)
		if err != nil || same {
			return err
		}
		// Not idempotent: a retry could fail its condition on this call's
		// own write. The next round's read settles it instead.
		applied, err := s.s.Query(stmt, args...).WithContext(ctx).MapScanCAS(map[string]any{})
		if err != nil {
			return storeErr("update "+kind+" "+id, err)
		}
		if applied {
			return nil
		}
	}
	return fmt.Errorf("persistence/scylla: %w: update %s %q: %d concurrent updates won over this one", persistence.ErrUnavailable, kind, id, updateAttempts)
}

// ListUsers lists users in the order of their ids' tokens (the order of
// the table), a page being one range read: token(user_id) > token(after).
// Two ids whose tokens are equal (64-bit Murmur3 hashes) would list only
// one of them across a page boundary.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]persistence.User, bool, error) {
	var out []persistence.User
	err := s.listRecords(ctx, "users", cqlListUsers, cqlListUsersAfter, after, limit, func(it *gocql.Iter) bool {
		var u persistence.User
		var ms int64
		if !it.Scan(&u.ID, &u.Name, &ms) {
			return false
		}
		u.CreatedAt = time.UnixMilli(ms).UTC()
		out = append(out, u)
		return true
	})
	if len(out) > limit {
		return out[:limit], true, err
	}
	return out, false, err
}

// ListLocations is ListUsers for locations.
func (s *Store) ListLocations(ctx context.Context, after string, limit int) ([]persistence.Location, bool, error) {
	var out []persistence.Location
	err := s.listRecords(ctx, "locations", cqlListLocations, cqlListLocationsAfter, after, limit, func(it *gocql.Iter) bool {
		var l persistence.Location
		var ms int64
		if !it.Scan(&l.ID, &l.Name, &l.Lat, &l.Lon, &ms) {
			return false
		}
		l.CreatedAt = time.UnixMilli(ms).UTC()
		out = append(out, l)
		return true
	})
	if len(out) > limit {
		return out[:limit], true, err
	}
	return out, false, err
}

// listRecords reads up to limit+1 rows with first, or with next after an
// id, scanning each with scan until it reports none left; callers keep
// limit of them, the extra one only tells that more follow.
func (s *Store) listRecords(ctx context.Context, table, first, next, after string, limit int, scan func(*gocql.Iter) bool) error {
	if limit < 1 {
		return fmt.Errorf("persistence/scylla: %w: limit %d", persistence.ErrInvalid, limit)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	// CQL's LIMIT is a 32-bit int; a page that large is more than
	// memory holds anyway.
	n := min(limit, math.MaxInt32-1) + 1
	q := s.s.Query(first, n)
	if after != "" {
		q = s.s.Query(next, after, n)
	}
	q = q.WithContext(ctx).Consistency(s.readCL).Idempotent(true).PageSize(readPageSize)
	defer q.Release()
	it := q.Iter()
	for scan(it) {
	}
	if err := it.Close(); err != nil {
		return storeErr("list "+table, err)
	}
	return nil
}

// WriteCheckins: see write.go.

// GetCheckin returns one checkin of a user by id, or ErrNotFound. A checkin
// is found only once every table of it has been written (checkin_by_id is
// written last).
func (s *Store) GetCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	if err := persistence.CheckID("user", userID); err != nil {
		return persistence.Checkin{}, err
	}
	if err := persistence.CheckID("checkin", checkinID); err != nil {
		return persistence.Checkin{}, err
	}
	if err := s.enter(); err != nil {
		return persistence.Checkin{}, err
	}
	defer s.leave()
	c := persistence.Checkin{ID: checkinID, UserID: userID}
	var ms int64
	q := s.s.Query(cqlSelectCheckin, userID, checkinID).WithContext(ctx).Consistency(s.readCL).Idempotent(true)
	err := q.Scan(&ms, &c.LocationID)
	q.Release()
	if err != nil {
		return persistence.Checkin{}, notFound(err, "get checkin", "checkin", checkinID)
	}
	c.Timestamp = time.UnixMilli(ms).UTC()
	return c, nil
}

// CurrentLocation returns the user's newest checkin (ties: larger id), or
// ErrNotFound, read from the by-user partitions (persistence.NewestCheckin):
// the newest non-empty bucket's first row, then the last row of its
// millisecond. Nothing is written per checkin for it.
func (s *Store) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	if err := s.enter(); err != nil {
		return persistence.Checkin{}, err
	}
	defer s.leave()
	return persistence.NewestCheckin(ctx, s, userID)
}

// ListCheckins returns one page of a range read, walking the bucket index
// and the time-bucketed partitions (see Buckets and ReadBucket). It reads
// live data, not a snapshot: checkins written while a client pages through a
// range appear in later pages if they sort after the page position, and
// never cause a checkin to be skipped or repeated.
func (s *Store) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	if err := s.enter(); err != nil {
		return persistence.Page{}, err
	}
	defer s.leave()
	return persistence.ListCheckins(ctx, s, q)
}

// Ping returns nil when a node answers a query.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	var v string
	err := s.s.Query(cqlPing).WithContext(ctx).Consistency(gocql.One).Idempotent(true).Scan(&v)
	return storeErr("ping", err)
}

// Close waits for calls in flight, then closes the session. Every write
// that returned nil before was acknowledged by the cluster; calls after
// Close fail with ErrUnavailable. Closing twice is a no-op.
func (s *Store) Close() error {
	return s.gate.Close(func() error {
		close(s.jobs) // no call is in flight: none sends
		s.workers.Wait()
		s.s.Close()
		return nil
	})
}

// notFound maps the driver's "no rows" to ErrNotFound naming the record,
// and other errors with storeErr.
func notFound(err error, op, kind, id string) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("persistence/scylla: %w: %s %q", persistence.ErrNotFound, kind, id)
	}
	return storeErr(op, err)
}
