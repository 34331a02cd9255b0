package persistence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them with %w so callers use errors.Is.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("persistence: not found")
	// ErrConflict: a record with that id already exists.
	ErrConflict = errors.New("persistence: already exists")
	// ErrUnavailable: the store cannot serve the call right now (down,
	// overloaded, timed out). A write that failed this way may or may not
	// have been applied; retrying it is safe.
	ErrUnavailable = errors.New("persistence: unavailable")
	// ErrOverloaded: the call was refused before it reached the store,
	// because the store already has as much of the node's work as it can
	// answer in time (persistence/admit). It comes with ErrNotApplied:
	// nothing was done, and retrying later is safe.
	ErrOverloaded = errors.New("persistence: overloaded")
	// ErrInvalid: the call's arguments are malformed (an empty id, a query
	// with an empty range or no limit). Retrying it unchanged fails again.
	ErrInvalid = errors.New("persistence: invalid argument")
	// ErrNotApplied marks a failed write that changed nothing the reads
	// see: the store refused it before any of it was applied (no
	// connection, overloaded, closed). It comes wrapped beside one of the
	// sentinels above. A failed write without it may have been applied in
	// whole or in part, or may still be.
	ErrNotApplied = errors.New("persistence: not applied")
)

// NotApplied returns err marked as a write that changed nothing
// (ErrNotApplied); nil stays nil.
func NotApplied(err error) error {
	if err == nil || errors.Is(err, ErrNotApplied) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, ErrNotApplied)
}

// User is a person who checks in.
type User struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Location is a place users check in at.
type Location struct {
	ID        string
	Name      string
	Lat       float64
	Lon       float64
	CreatedAt time.Time
}

// UserPatch names the fields of a user to change; a nil field keeps its
// value. The id and the creation time never change.
type UserPatch struct {
	Name *string
}

// Empty reports whether the patch changes nothing.
func (p UserPatch) Empty() bool { return p.Name == nil }

// Apply returns u with the patch's fields set.
func (p UserPatch) Apply(u User) User {
	if p.Name != nil {
		u.Name = *p.Name
	}
	return u
}

// LocationPatch names the fields of a location to change; a nil field keeps
// its value. The id and the creation time never change.
type LocationPatch struct {
	Name     *string
	Lat, Lon *float64
}

// Empty reports whether the patch changes nothing.
func (p LocationPatch) Empty() bool { return p.Name == nil && p.Lat == nil && p.Lon == nil }

// Apply returns l with the patch's fields set.
func (p LocationPatch) Apply(l Location) Location {
	if p.Name != nil {
		l.Name = *p.Name
	}
	if p.Lat != nil {
		l.Lat = *p.Lat
	}
	if p.Lon != nil {
		l.Lon = *p.Lon
	}
	return l
}

// Checkin records that a user was at a location at a time. Timestamp is UTC
// with millisecond precision (see Millis).
type Checkin struct {
	ID         string
	UserID     string
	LocationID string
	Timestamp  time.Time
}

// Newer reports whether c should replace cur as the current location: a later
// timestamp wins, and on equal timestamps the larger checkin id wins, so the
// answer does not depend on arrival order.
func (c Checkin) Newer(cur Checkin) bool {
	if !c.Timestamp.Equal(cur.Timestamp) {
		return c.Timestamp.After(cur.Timestamp)
	}
	return c.ID > cur.ID
}

// Order is the direction of a range read.
type Order int8

const (
	// NewestFirst returns the latest checkin first (the default).
	NewestFirst Order = iota
	// OldestFirst returns the earliest checkin first.
	OldestFirst
)

// Position is a point in the order of a range read: the last checkin a page
// returned. The next page starts strictly after it.
type Position struct {
	Timestamp time.Time
	CheckinID string
}

// Query selects checkins of one user, optionally at one location, with
// From <= Timestamp < To.
type Query struct {
	UserID     string
	LocationID string // empty: all locations
	From       time.Time
	To         time.Time
	Limit      int // > 0
	Order      Order
	After      *Position // nil: from the start of the range; a whole millisecond
}

// Page is one page of a range read. Next is nil when no matching checkin
// follows the page.
type Page struct {
	Checkins []Checkin
	Next     *Position
}

// Store is the contract between checkin and its databases. Calls after Close
// return ErrUnavailable; malformed arguments return ErrInvalid.
type Store interface {
	// CreateUser stores a new user; ErrConflict if the id exists.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns the user or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// CreateLocation stores a new location; ErrConflict if the id exists.
	CreateLocation(ctx context.Context, l Location) error
	// GetLocation returns the location or ErrNotFound.
	GetLocation(ctx context.Context, id string) (Location, error)
	// UpdateUser durably sets the fields the patch names and returns the
	// user as stored; ErrNotFound if there is none, ErrInvalid if the patch
	// is empty. Concurrent updates of one user are applied one after the
	// other, each to the result of the one before, so no field set by one
	// is lost to another that did not name it. Setting the same values
	// again is harmless, so a call that failed with ErrUnavailable may be
	// retried.
	UpdateUser(ctx context.Context, id string, p UserPatch) (User, error)
	// UpdateLocation is UpdateUser for locations.
	UpdateLocation(ctx context.Context, id string, p LocationPatch) (Location, error)
	// ListUsers returns up to limit users that follow the user with id
	// after ("": from the first), and whether more follow. The order is the
	// backend's (Pebble: by id; Scylla: by the id's token) and the same on
	// every call, so following the last id returned lists every user once;
	// users created or deleted meanwhile may or may not be listed.
	ListUsers(ctx context.Context, after string, limit int) (users []User, more bool, err error)
	// ListLocations is ListUsers for locations.
	ListLocations(ctx context.Context, after string, limit int) (locations []Location, more bool, err error)
	// DeleteLocation durably removes the location; ErrNotFound if there is
	// none. Checkins made there stay (they are their users' history) and
	// keep its id.
	DeleteLocation(ctx context.Context, id string) error
	// DeleteUser durably removes the user and every checkin of the user
	// from every table; ErrNotFound if there was no user, after removing
	// whatever was left of one all the same, so a call that failed part
	// way (ErrUnavailable) may be retried until it answers nil or
	// ErrNotFound. A checkin of the user written meanwhile may survive it:
	// callers stop the user's writes first (the user's grain does).
	DeleteUser(ctx context.Context, id string) error

	// WriteCheckins durably writes a batch of checkins (any users) to every
	// table that serves reads: by user, by user and location, and by id. It
	// returns nil only when all of it is durable. A failure that wraps
	// ErrNotApplied changed nothing; any other may have written part of the
	// batch (on Scylla, some checkins listed by user but not found by id),
	// which writing the same batch again completes.
	WriteCheckins(ctx context.Context, batch []Checkin) error
	// GetCheckin returns one checkin of a user by id, or ErrNotFound.
	GetCheckin(ctx context.Context, userID, checkinID string) (Checkin, error)
	// DeleteCheckin durably removes one checkin of a user from every table
	// and returns it as it was stored; ErrNotFound if the user has no
	// checkin with that id. A call that failed (ErrUnavailable) may have
	// removed part of it and may be retried until it answers a checkin or
	// ErrNotFound. Writing the same id again afterwards stores it anew.
	// Callers stop writes of that id meanwhile (the user's grain does).
	DeleteCheckin(ctx context.Context, userID, checkinID string) (Checkin, error)
	// CurrentLocation returns the user's checkin with the latest timestamp
	// (ties: larger id), or ErrNotFound if the user never checked in.
	CurrentLocation(ctx context.Context, userID string) (Checkin, error)
	// ListCheckins returns one page of a range read; From and To are
	// rounded up to whole milliseconds (see the func ListCheckins).
	ListCheckins(ctx context.Context, q Query) (Page, error)

	// Ping returns nil when the store can serve calls.
	Ping(ctx context.Context) error
	// Close releases the store; pending writes have been acknowledged or
	// failed before it returns.
	Close() error
}

// WrittenForgetter is a Store that remembers rows it wrote, to skip writing
// them again. What it remembers of a deleted user must go on every node, not
// only on the one whose store deleted the user: the nodes tell each other.
type WrittenForgetter interface {
	ForgetWritten(userID string)
}

// CheckinRef names one checkin: its user and its id.
type CheckinRef struct {
	UserID string
	ID     string
}

// Optional interfaces: callers find them with As, which looks through the
// decorators that wrap a backend.

// As finds an implementation of T (an optional interface) in s or in the
// stores it wraps, as errors.As finds an error in a chain. A store wraps
// another if it has a method Unwrap() Store; it may offer its own
// implementation of T, for instance one that counts the calls, through a
// method As(target any) bool that sets *target (a *T) and reports true.
func As[T any](s Store) (T, bool) {
	var t T
	for s != nil {
		if x, ok := s.(T); ok {
			return x, true
		}
		if a, ok := s.(interface{ As(any) bool }); ok && a.As(&t) {
			return t, true
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return t, false
}

// CheckinBatchGetter is implemented by a Store that looks many checkins up
// by id faster together than with one GetCheckin each (the embedded store:
// one iterator for the whole batch). GetCheckins answers for refs[i] in
// got[i] and found[i], as GetCheckin would; an error means the look-up as
// a whole failed and nothing in got or found holds.
type CheckinBatchGetter interface {
	GetCheckins(ctx context.Context, refs []CheckinRef) (got []Checkin, found []bool, err error)
}

// CheckinIDLister is implemented by a Store that reads one user's checkin
// ids cheaply (the embedded store: one range of keys). EachCheckinID calls
// fn with up to limit of the user's checkin ids, in no promised order; id
// is only valid during the call. all reports whether those were every id
// the user has.
type CheckinIDLister interface {
	EachCheckinID(ctx context.Context, userID string, limit int, fn func(id []byte)) (all bool, err error)
}

// CheckID returns an error wrapping ErrInvalid for an id no backend can
// store: empty, or holding a NUL byte (the key separator). kind names the id
// in the message ("user", "location", "checkin").
func CheckID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty %s id", ErrInvalid, kind)
	}
	if strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: %s id %q contains a NUL byte", ErrInvalid, kind, id)
	}
	return nil
}

// CheckPatch returns ErrInvalid for a malformed id or a patch that changes
// nothing.
func CheckPatch(kind, id string, empty bool) error {
	if err := CheckID(kind, id); err != nil {
		return err
	}
	if empty {
		return fmt.Errorf("%w: %s %q: the update changes no field", ErrInvalid, kind, id)
	}
	return nil
}

// CheckBatch returns an error wrapping ErrInvalid for a checkin batch no
// backend can store (see CheckID).
func CheckBatch(batch []Checkin) error {
	for i := range batch {
		c := &batch[i]
		if err := CheckID("user", c.UserID); err != nil {
			return err
		}
		if err := CheckID("location", c.LocationID); err != nil {
			return err
		}
		if err := CheckID("checkin", c.ID); err != nil {
			return err
		}
	}
	return nil
}
