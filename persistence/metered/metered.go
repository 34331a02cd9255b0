package metered

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkin/checkin/persistence"
)

// The operations counted, one per Store method (and optional interface
// method); their names are the op label.
const (
	opCreateUser = iota
	opGetUser
	opUpdateUser
	opListUsers
	opDeleteUser
	opCreateLocation
	opGetLocation
	opUpdateLocation
	opListLocations
	opDeleteLocation
	opWriteCheckins
	opGetCheckin
	opDeleteCheckin
	opGetCheckins
	opEachCheckinID
	opCurrentLocation
	opListCheckins
	opPing
	numOps
)

var opNames = [numOps]string{
	opCreateUser: "create_user", opGetUser: "get_user", opUpdateUser: "update_user",
	opListUsers: "list_users", opDeleteUser: "delete_user",
	opCreateLocation: "create_location", opGetLocation: "get_location", opUpdateLocation: "update_location",
	opListLocations: "list_locations", opDeleteLocation: "delete_location",
	opWriteCheckins: "write_checkins", opGetCheckin: "get_checkin", opDeleteCheckin: "delete_checkin", opGetCheckins: "get_checkins",
	opEachCheckinID: "each_checkin_id", opCurrentLocation: "current_location", opListCheckins: "list_checkins",
	opPing: "ping",
}

// The outcomes of a call; their names are the outcome label.
const (
	outOK = iota
	outNotFound
	outConflict
	outInvalid
	outTimeout
	outCanceled
	outUnavailable
	outError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outOK: "ok", outNotFound: "not_found", outConflict: "conflict", outInvalid: "invalid",
	outTimeout: "timeout", outCanceled: "canceled", outUnavailable: "unavailable", outError: "error",
}

// outcome classifies err. A deadline or a cancellation is told apart from
// the store being down even where the backend wraps it in ErrUnavailable.
func outcome(err error) int {
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, persistence.ErrNotFound):
		return outNotFound
	case errors.Is(err, persistence.ErrConflict):
		return outConflict
	case errors.Is(err, persistence.ErrInvalid):
		return outInvalid
	case errors.Is(err, context.DeadlineExceeded):
		return outTimeout
	case errors.Is(err, context.Canceled):
		return outCanceled
	case errors.Is(err, persistence.ErrUnavailable):
		return outUnavailable
	}
	return outError
}

// Metrics are the instruments of metered stores; one set serves every
// store of a process.
type Metrics struct {
	calls   *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	// Resolved once, so that a call does no label look-up.
	byOp [numOps]struct {
		seconds  prometheus.Observer
		outcomes [numOutcomes]prometheus.Counter
	}
}

// NewMetrics creates the instruments and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_store_calls_total",
			Help: "Calls to the store, by operation and outcome (ok, not_found, conflict, invalid, timeout, canceled, unavailable, error).",
		}, []string{"op", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "checkin_store_call_seconds",
			Help:    "Time of one call to the store, whatever its outcome, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17), // 50 µs to 3.3 s
		}, []string{"op"}),
	}
	for op := range numOps {
		m.byOp[op].seconds = m.seconds.WithLabelValues(opNames[op])
		for out := range numOutcomes {
			m.byOp[op].outcomes[out] = m.calls.WithLabelValues(opNames[op], outcomeNames[out])
		}
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.seconds)
	}
	return m
}

func (m *Metrics) observe(op int, start time.Time, err error) {
	o := &m.byOp[op]
	o.seconds.Observe(time.Since(start).Seconds())
	o.outcomes[outcome(err)].Inc()
}

// Store counts and times every call to the Store it wraps. The optional
// interfaces of the wrapped store are found through persistence.As:
// CheckinBatchGetter and CheckinIDLister are counted too, the others reach
// the wrapped store as they are.
type Store struct {
	inner persistence.Store
	m     *Metrics
}

var _ persistence.Store = (*Store)(nil)

// New wraps s.
func New(s persistence.Store, m *Metrics) *Store { return &Store{inner: s, m: m} }

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() persistence.Store { return s.inner }

// As offers counted versions of the optional interfaces the wrapped store
// has (see persistence.As).
func (s *Store) As(target any) bool {
	switch t := target.(type) {
	case *persistence.CheckinBatchGetter:
		if g, ok := persistence.As[persistence.CheckinBatchGetter](s.inner); ok {
			*t = batchGetter{g, s.m}
			return true
		}
	case *persistence.CheckinIDLister:
		if l, ok := persistence.As[persistence.CheckinIDLister](s.inner); ok {
			*t = idLister{l, s.m}
			return true
		}
	}
	return false
}

func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	start := time.Now()
	err := s.inner.CreateUser(ctx, u)
	s.m.observe(opCreateUser, start, err)
	return err
}

func (s *Store) GetUser(ctx context.Context, id string) (persistence.User, error) {
	start := time.Now()
	u, err := s.inner.GetUser(ctx, id)
	s.m.observe(opGetUser, start, err)
	return u, err
}

func (s *Store) UpdateUser(ctx context.Context, id string, p persistence.UserPatch) (persistence.User, error) {
	start := time.Now()
	u, err := s.inner.UpdateUser(ctx, id, p)
	s.m.observe(opUpdateUser, start, err)
	return u, err
}

func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]persistence.User, bool, error) {
	start := time.Now()
	us, more, err := s.inner.ListUsers(ctx, after, limit)
	s.m.observe(opListUsers, start, err)
	return us, more, err
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	start := time.Now()
	err := s.inner.DeleteUser(ctx, id)
	s.m.observe(opDeleteUser, start, err)
	return err
}

func (s *Store) CreateLocation(ctx context.Context, l persistence.Location) error {
	start := time.Now()
	err := s.inner.CreateLocation(ctx, l)
	s.m.observe(opCreateLocation, start, err)
	return err
}

func (s *Store) GetLocation(ctx context.Context, id string) (persistence.Location, error) {
	start := time.Now()
	l, err := s.inner.GetLocation(ctx, id)
	s.m.observe(opGetLocation, start, err)
	return l, err
}

func (s *Store) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	start := time.Now()
	l, err := s.inner.UpdateLocation(ctx, id, p)
	s.m.observe(opUpdateLocation, start, err)
	return l, err
}

func (s *Store) ListLocations(ctx context.Context, after string, limit int) ([]persistence.Location, bool, error) {
	start := time.Now()
	ls, more, err := s.inner.ListLocations(ctx, after, limit)
	s.m.observe(opListLocations, start, err)
	return ls, more, err
}

func (s *Store) DeleteLocation(ctx context.Context, id string) error {
	start := time.Now()
	err := s.inner.DeleteLocation(ctx, id)
	s.m.observe(opDeleteLocation, start, err)
	return err
}

func (s *Store) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	start := time.Now()
	err := s.inner.WriteCheckins(ctx, batch)
	s.m.observe(opWriteCheckins, start, err)
	return err
}

func (s *Store) GetCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	start := time.Now()
	c, err := s.inner.GetCheckin(ctx, userID, checkinID)
	s.m.observe(opGetCheckin, start, err)
	return c, err
}

func (s *Store) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	start := time.Now()
	c, err := s.inner.DeleteCheckin(ctx, userID, checkinID)
	s.m.observe(opDeleteCheckin, start, err)
	return c, err
}

func (s *Store) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	start := time.Now()
	c, err := s.inner.CurrentLocation(ctx, userID)
	s.m.observe(opCurrentLocation, start, err)
	return c, err
}

func (s *Store) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	start := time.Now()
	p, err := s.inner.ListCheckins(ctx, q)
	s.m.observe(opListCheckins, start, err)
	return p, err
}

func (s *Store) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.inner.Ping(ctx)
	s.m.observe(opPing, start, err)
	return err
}

// Close closes the wrapped store; it is not counted.
func (s *Store) Close() error { return s.inner.Close() }

type batchGetter struct {
	inner persistence.CheckinBatchGetter
	m     *Metrics
}

func (g batchGetter) GetCheckins(ctx context.Context, refs []persistence.CheckinRef) ([]persistence.Checkin, []bool, error) {
	start := time.Now()
	got, found, err := g.inner.GetCheckins(ctx, refs)
	g.m.observe(opGetCheckins, start, err)
	return got, found, err
}

type idLister struct {
	inner persistence.CheckinIDLister
	m     *Metrics
}

func (l idLister) EachCheckinID(ctx context.Context, userID string, limit int, fn func(id []byte)) (bool, error) {
	start := time.Now()
	all, err := l.inner.EachCheckinID(ctx, userID, limit, fn)
	l.m.observe(opEachCheckinID, start, err)
	return all, err
}
