// Package scylla is the production checkin store: a persistence.Store on
// ScyllaDB (or Apache Cassandra 4/5, which the tests run against), through
// the ScyllaDB fork of gocql. Nothing outside this package imports the
// driver.
//
// Data model (schema/v001.cql): users and locations by id; checkins in two
// time-bucketed tables, partitioned by (user, day bucket) and by (user,
// location, day bucket), clustered newest first; per-user bucket indexes so
// range reads skip empty days; and checkin_by_id for lookups by id. The
// current location is read from checkins_by_user (the newest non-empty
// bucket's newest millisecond, the larger id on ties); the current_location
// table of v001 is no longer written or read.
//
// Guarantees, on top of those of persistence.Store:
//
//   - WriteCheckins returns nil only when every row of every checkin was
//     acknowledged at the configured write consistency (LOCAL_QUORUM by
//     default). Rows are sent as single-partition unlogged batches, never
//     batches across partitions, concurrently and bounded by
//     scylla.max-inflight. The tables are written in phases, each row
//     after the rows that list it (a user's days, then checkins_by_user,
//     then the by-location rows), so DeleteUser finds every row of a write
//     that failed part way; checkin_by_id is written last, so GetCheckin
//     finds a checkin only when all its rows are written.
//   - A failed call returns an error wrapping persistence.ErrUnavailable when
//     the cluster is down, overloaded or slow, and within the caller's
//     deadline; such a write may have been applied in part, and every write
//     is an idempotent upsert, so retrying it completes it. classify
//     documents which errors mean "not applied" and which "maybe applied".
//   - The current location is right whatever order writes arrive in, on any
//     node, without a write of its own, reads before writes or lightweight
//     transactions.
//   - CreateUser and CreateLocation are lightweight transactions (INSERT IF
//     NOT EXISTS): exactly one of concurrent creates of an id wins.
//   - The driver is token aware (shard aware on Scylla), uses prepared
//     statements, snappy compression, and retries only idempotent
//     statements; every statement carries the caller's context.
//
// The schema is versioned and embedded; Migrate (the `checkin migrate`
// command) or Open with scylla.auto-migrate applies it idempotently. Calls
// after Close fail with persistence.ErrUnavailable.
package scylla
