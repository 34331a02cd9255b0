// Package persistence defines the storage contract of checkin: the Store
// interface every backend implements, the records it stores, the time-bucket
// math shared by writers and readers, the bucket walker that turns
// per-partition reads into paged range queries, and the gate that makes a
// backend's Close wait for its calls in flight.
//
// Guarantees every Store gives (and persistence/storetest checks):
//
//   - A write returns nil only once it is durable: synced to disk by the
//     embedded backend, acknowledged at the configured consistency by the
//     Scylla backend. A write that returns an error may or may not have been
//     applied; it is always safe to retry.
//   - Checkin writes are idempotent upserts keyed by (user id, checkin id):
//     writing the same checkin twice stores it once.
//   - The current location of a user is the checkin with the latest
//     timestamp, ties broken by the larger checkin id, whatever order the
//     writes arrive in.
//   - A range read returns checkins of one user (optionally at one location)
//     in [From, To), newest first (or oldest first), and reports where the
//     next page starts. Following the positions to the end returns every
//     matching checkin exactly once, even while new checkins arrive.
//   - Updates of users and locations set only the fields they name, and
//     concurrent updates of one record each apply to the result of the one
//     before. Deleting a user removes the user and every checkin of the
//     user from every read; deleting a location keeps the checkins made
//     there.
//   - Errors wrap the sentinels of this package (ErrNotFound, ErrConflict,
//     ErrUnavailable); check them with errors.Is.
package persistence
