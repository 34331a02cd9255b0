// Package storetest is the conformance suite every persistence.Store backend
// runs: Run(t, newStore) checks the guarantees documented on the
// persistence package (durable, idempotent checkin writes; an
// order-independent current location; complete, ordered, duplicate-free
// paged range reads, also while new checkins arrive) against expectations
// computed independently from the written data.
//
// Every subtest gets a fresh store from newStore and runs in parallel with
// the others, so a backend should give each store its own keyspace or
// directory. Run closes each store when its subtest ends. A backend that
// cannot give a guarantee declares it in its own test rather than skipping
// it here.
package storetest
