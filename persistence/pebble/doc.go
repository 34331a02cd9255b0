// Package pebble is the embedded checkin store: a persistence.Store on a
// local Pebble database in one directory, for single-node deployments and
// tests.
//
// It gives every guarantee of persistence.Store:
//
//   - WriteCheckins applies a whole batch atomically in one write that is
//     synced to disk before it returns nil; a batch that returns an error was
//     either fully applied or not at all.
//   - Checkin rows are keyed by (user, bucket, timestamp, checkin id), so
//     rewriting a checkin rewrites the same rows: writes are idempotent.
//   - The current location of a user is read from the by-user partitions
//     (the newest bucket's newest checkin, ties to the larger id, as
//     persistence.Checkin.Newer), so it is right whatever order batches
//     commit in and costs no write of its own.
//   - Range reads walk the same time-bucketed partitions the Scylla backend
//     uses (persistence.ListCheckins over bounded iterators) and skip empty
//     buckets by seeking through the partitions, whose keys begin with the
//     bucket. A page sees every checkin whose write returned before the
//     page was requested.
//   - CreateUser and CreateLocation are atomic check-and-insert within the
//     process, synced to disk.
//
// No write waits for the disk past its context: a write the engine holds
// back (a full disk, a disk that stops answering) fails with
// persistence.ErrUnavailable and may still be applied later, and while
// flushes fail or no write finishes for 5 s (WithStuckAfter) the store reports itself
// unavailable (Ping) and refuses writes at once (health.go). Reads are
// bounded less: a read of a disk that stops answering waits for it, but
// once no read has finished for as long the store reports itself unavailable
// and new reads fail at once.
//
// A database written in an older key layout is brought to the current one
// when it is opened (layout.go); one in a newer layout is refused.
//
// One process at a time may open a directory. Calls after Close fail with
// persistence.ErrUnavailable.
package pebble
