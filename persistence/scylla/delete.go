package scylla

import (
	"context"
	"fmt"

	"github.com/checkin/checkin/persistence"
)

const (
	cqlAllBucketsByUser            = `SELECT bucket FROM buckets_by_user WHERE user_id = ?`
	cqlCheckinsOfBucket            = `SELECT checkin_id, location_id FROM checkins_by_user WHERE user_id = ? AND bucket = ?`
	cqlDeleteCheckinByID           = `DELETE FROM checkin_by_id WHERE user_id = ? AND checkin_id = ?`
	cqlDeleteCheckinByUser         = `DELETE FROM checkins_by_user WHERE user_id = ? AND bucket = ? AND ts = ? AND checkin_id = ?`
	cqlDeleteCheckinByUserLocation = `DELETE FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ? AND ts = ? AND checkin_id = ?`
	cqlDeleteByUserLocation        = `DELETE FROM checkins_by_user_location WHERE user_id = ? AND location_id = ? AND bucket = ?`
	cqlDeleteBucketsByUserLocation = `DELETE FROM buckets_by_user_location WHERE user_id = ? AND location_id = ?`
	cqlDeleteCurrentLocation       = `DELETE FROM current_location WHERE user_id = ?`
	cqlDeleteByUser                = `DELETE FROM checkins_by_user WHERE user_id = ? AND bucket = ?`
	cqlDeleteBucketsByUser         = `DELETE FROM buckets_by_user WHERE user_id = ?`
	cqlDeleteBucketByUser          = `DELETE FROM buckets_by_user WHERE user_id = ? AND bucket = ?`
	cqlDeleteUser                  = `DELETE FROM users WHERE user_id = ? IF EXISTS`
	cqlDeleteLocation              = `DELETE FROM locations WHERE location_id = ? IF EXISTS`
)

// DeleteLocation removes the location, a lightweight transaction like its
// creation; ErrNotFound if there is none.
func (s *Store) DeleteLocation(ctx context.Context, id string) error {
	if err := persistence.CheckID("location", id); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	applied, err := s.s.Query(cqlDeleteLocation, id).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return storeErr("delete location "+id, err)
	}
	if !applied {
		return fmt.Errorf("persistence/scylla: %w: location %q", persistence.ErrNotFound, id)
	}
	return nil
}

// DeleteCheckin removes one checkin of a user and returns it; ErrNotFound
// if the user has no checkin with that id. Its checkin_by_id row names the
// by-user and by-location rows, which go first; the checkin_by_id row goes
// last, so a call that fails part way leaves what a retry needs. The bucket
// indexes keep their rows: a reader finds the bucket empty, or holding the
// user's other checkins.
func (s *Store) DeleteCheckin(ctx context.Context, userID, checkinID string) (persistence.Checkin, error) {
	c, err := s.GetCheckin(ctx, userID, checkinID)
	if err != nil {
		return persistence.Checkin{}, err
	}
	if err := s.enter(); err != nil {
		return persistence.Checkin{}, err
	}
	defer s.leave()
	user, loc, id := any(userID), any(c.LocationID), any(checkinID)
	bucket, ms := any(persistence.BucketOf(c.Timestamp)), any(c.Timestamp.UnixMilli())
	rows := []unit{
		{table: "checkins_by_user", stmts: []stmt{{cqlDeleteCheckinByUser, []any{user, bucket, ms, id}}}},
		{table: "checkins_by_user_location", stmts: []stmt{{cqlDeleteCheckinByUserLocation, []any{user, loc, bucket, ms, id}}}},
	}
	byID := []unit{{table: "checkin_by_id", stmts: []stmt{{cqlDeleteCheckinByID, []any{user, id}}}}}
	if err := s.runPhases(ctx, rows, byID); err != nil {
		return persistence.Checkin{}, err
	}
	return c, nil
}

// DeleteUser removes the user and every checkin of the user. The user's
// bucket index and by-user partitions list everything else: every checkin
// id (its checkin_by_id partition) and every location (its by-location
// partitions and bucket index). It goes deleteRound buckets at a time:
// first what their by-user partitions list, then those partitions, then
// their rows of the bucket index; after the last round the user's
// remaining index partitions, last the user (a lightweight transaction,
// like its creation). So a call that fails part way leaves what a retry
// needs to find the rest, and the buckets it finished are gone for good:
// a user with more checkins than one call deletes in its deadline is
// deleted by retries, each going on where the last stopped. Deletes are
// idempotent and run as writes do: concurrently, bounded by max-inflight,
// retried with backoff.
//
// Writes go in the same order (see WriteCheckins), so a checkin write that
// failed part way leaves no row this walk does not reach. (Rows orphaned
// that way by versions that wrote all checkin tables at once are not
// found.)
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if err := persistence.CheckID("user", id); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()

	var buckets []int64
	q := s.s.Query(cqlAllBucketsByUser, id).WithContext(ctx).Consistency(s.readCL).Idempotent(true).PageSize(readPageSize)
	it := q.Iter()
	var b int64
	for it.Scan(&b) {
		buckets = append(buckets, b)
	}
	err := it.Close()
	q.Release()
	if err != nil {
		return storeErr("delete user "+id+": read bucket index", err)
	}
	// From the first index row deleted on, a checkin of the user (if this
	// call fails and the user stays) must write its index rows again.
	s.ForgetWritten(id)

	one := func(table, cql string, args ...any) unit {
		return unit{table: table, stmts: []stmt{{cql, args}}}
	}
	locations := make(map[string]bool)
	for len(buckets) > 0 {
		round := buckets[:min(deleteRound, len(buckets))]
		buckets = buckets[len(round):]
		var derived, byUser, index []unit
		for _, b := range round {
			seen := make(map[string]bool) // locations of this bucket
			q := s.s.Query(cqlCheckinsOfBucket, id, b).WithContext(ctx).Consistency(s.readCL).Idempotent(true).PageSize(readPageSize)
			it := q.Iter()
			var checkinID, loc string
			for it.Scan(&checkinID, &loc) {
				derived = append(derived, one("checkin_by_id", cqlDeleteCheckinByID, id, checkinID))
				if !seen[loc] {
					seen[loc] = true
					derived = append(derived, one("checkins_by_user_location", cqlDeleteByUserLocation, id, loc, b))
				}
				if !locations[loc] {
					// The location's whole day index, with the rows of days
					// whose checkins were deleted one by one: a retry that
					// starts after this round would not see the location.
					locations[loc] = true
					derived = append(derived, one("buckets_by_user_location", cqlDeleteBucketsByUserLocation, id, loc))
				}
			}
			err := it.Close()
			q.Release()
			if err != nil {
				return storeErr("delete user "+id+": read checkins", err)
			}
			byUser = append(byUser, one("checkins_by_user", cqlDeleteByUser, id, b))
			index = append(index, one("buckets_by_user", cqlDeleteBucketByUser, id, b))
		}
		if err := s.runPhases(ctx, derived, byUser, index); err != nil {
			return err
		}
	}
	// What the rounds left of the user's day index: rows of days whose
	// checkins were deleted one by one.
	rest := []unit{one("current_location", cqlDeleteCurrentLocation, id), one("buckets_by_user", cqlDeleteBucketsByUser, id)}
	if err := s.runPhases(ctx, rest); err != nil {
		return err
	}
	// A re-created user's first checkins in these buckets must write their
	// index rows again.
	s.ForgetWritten(id)

	applied, err := s.s.Query(cqlDeleteUser, id).WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return storeErr("delete user "+id, err)
	}
	if !applied {
		return fmt.Errorf("persistence/scylla: %w: user %q", persistence.ErrNotFound, id)
	}
	return nil
}

// deleteRound is how many buckets of a user DeleteUser deletes at a time:
// a round's work is done, and stays done, before the next begins.
const deleteRound = 16

var _ persistence.WrittenForgetter = (*Store)(nil)

// ForgetWritten drops what the store remembers having written for the user
// (bucket-index rows it skips when they are known durable). Every node's
// store must forget a deleted user's: a node calls it when it hears of a
// deletion made through another.
func (s *Store) ForgetWritten(userID string) {
	s.indexed.DropPrefix("u" + userID + "\x00") // as indexKey writes them
	s.indexed.DropPrefix("l" + userID + "\x00")
}
