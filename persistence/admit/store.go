package admit

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkin/checkin/persistence"
)

// ErrRefused is the error of a call refused at the bound.
var ErrRefused = fmt.Errorf("%w: the store is answering as many calls as it can (%w)", persistence.ErrOverloaded, persistence.ErrNotApplied)

// Config sets a Store's bound.
type Config struct {
	// Target is the latency (a call's time in the store) the bound keeps
	// the calls near under overload; 0: no adaptive bound, Ceiling only.
	Target time.Duration
	// Floor and Ceiling are the least and the most calls in flight the
	// bound allows.
	Floor, Ceiling int64
}

// Metrics are a Store's metrics.
type Metrics struct {
	limit   prometheus.Gauge
	refused prometheus.Counter
}

// NewMetrics registers a Store's metrics in reg (nil: not registered):
// checkin_store_admission_limit and checkin_store_refused_total.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		limit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "checkin_store_admission_limit",
			Help: "Store calls made for requests outside the checkin write path (reads, user and location writes) that may be in flight at once: adapted to keep their latency near http.store-latency-target."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "checkin_store_refused_total",
			Help: "Store calls refused at checkin_store_admission_limit (answered 503 overloaded), never sent to the store."}),
	}
	if reg != nil {
		reg.MustRegister(m.limit, m.refused)
	}
	return m
}

// Refused returns the counter of refused calls.
func (m *Metrics) Refused() prometheus.Counter { return m.refused }

// Store is a persistence.Store whose calls are held to a Bound on the
// calls in flight through it: every call but WriteCheckins (the writers
// bound their own), Ping (a readiness probe must reach the store) and
// Close. Optional interfaces pass through Unwrap unbounded.
type Store struct {
	persistence.Store
	bound *Bound
	held  atomic.Int64
	m     *Metrics
}

var _ persistence.Store = (*Store)(nil)

// New wraps s.
func New(s persistence.Store, cfg Config, m *Metrics) *Store {
	return &Store{Store: s, m: m, bound: NewBound(cfg.Target, cfg.Floor, cfg.Ceiling, func(n int64) { m.limit.Set(float64(n)) })}
}

// Unwrap returns the wrapped store (persistence.As).
func (s *Store) Unwrap() persistence.Store { return s.Store }

// Limit returns the bound.
func (s *Store) Limit() int64 { return s.bound.Limit() }

// call runs f if the bound admits one more call, and times it.
func call[T any](s *Store, f func() (T, error)) (T, error) {
	if !s.bound.Admit(s.held.Add(1)) {
		s.held.Add(-1)
		s.m.refused.Inc()
		var zero T
		return zero, ErrRefused
	}
	start := time.Now()
	defer func() { // also when f panics (the edge recovers): the place is given back
		now := time.Now()
		s.held.Add(-1)
		s.bound.Observe(now, now.Sub(start), 1)
	}()
	return f()
}

// none adapts a call that returns only an error to call.
type none struct{}

func call0(s *Store, f func() error) error {
	_, err := call(s, func() (none, error) { return none{}, f() })
	return err
}

// CreateUser is the wrapped store's, held to the bound.
func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	return call0(s, func() error { return s.Store.CreateUser(ctx, u) })
}

// GetUser is the wrapped store's, held to the bound.
func (s *Store) GetUser(ctx context.Context, id string) (persistence.User, error) {
	return call(s, func() (persistence.User, error) { return s.Store.GetUser(ctx, id) })
}

// CreateLocation is the wrapped store's, held to the bound.
func (s *Store) CreateLocation(ctx context.Context, l persistence.Location) error {
	return call0(s, func() error { return s.Store.CreateLocation(ctx, l) })
}

// GetLocation is the wrapped store's, held to the bound.
func (s *Store) GetLocation(ctx context.Context, id string) (persistence.Location, error) {
	return call(s, func() (persistence.Location, error) { return s.Store.GetLocation(ctx, id) })
}

// UpdateUser is the wrapped store's, held to the bound.
func (s *Store) UpdateUser(ctx context.Context, id string, p persistence.UserPatch) (persistence.User, error) {
	return call(s, func() (persistence.User, error) { return s.Store.UpdateUser(ctx, id, p) })
}

// UpdateLocation is the wrapped store's, held to the bound.
func (s *Store) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	return call(s, func() (persistence.Location, error) { return s.Store.UpdateLocation(ctx, id, p) })
}

// page is one page of a record list.
type page[T any] struct {
	items []T
	more  bool
}

// ListUsers is the wrapped store's, held to the bound.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]persistence.User, bool, error) {
	p, err := call(s, func() (page[persistence.User], error) {
		users, more, err := s.Store.ListUsers(ctx, after, limit)
		return page[persistence.User]{users, more}, err
	})
	return p.items, p.more, err
}

// ListLocations is the wrapped store's, held to the bound.
func (s *Store) ListLocations(ctx context.Context, after string, limit int) ([]persistence.Location, bool, error) {
	p, err := call(s, func() (page[persistence.Location], error) {
		locations, more, err := s.Store.ListLocations(ctx, after, limit)
		return page[persistence.Location]{locations, more}, err
	})
	return p.items, p.more, err
}

// DeleteLocation is the wrapped store's, held to the bound.
func (s *Store) DeleteLocation(ctx context.Context, id string) error {
	return call0(s, func() error { return s.Store.DeleteLocation(ctx, id) })
}

// DeleteUser is the wrapped store's, held to the bound.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return call0(s, func() error { return s.Store.DeleteUser(ctx, id) })
}

// GetCheckin is the wrapped store's, held to the bound.
func (s *Store) GetCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	return call(s, func() (persistence.Checkin, error) { return s.Store.GetCheckin(ctx, userID, checkinID) })
}

// DeleteCheckin is the wrapped store's, held to the bound.
func (s *Store) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	return call(s, func() (persistence.Checkin, error) { return s.Store.DeleteCheckin(ctx, userID, checkinID) })
}

// CurrentLocation is the wrapped store's, held to the bound.
func (s *Store) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	return call(s, func() (persistence.Checkin, error) { return s.Store.CurrentLocation(ctx, userID) })
}

// ListCheckins is the wrapped store's, held to the bound.
func (s *Store) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	return call(s, func() (persistence.Page, error) { return s.Store.ListCheckins(ctx, q) })
}
