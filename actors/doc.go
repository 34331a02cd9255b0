// Package actors holds checkin's actors: UserGrain, the virtual actor of one
// user, and the writer pool that batches checkin writes into the store.
//
// Guarantees:
//   - A user's checkins are decided by one grain at a time (the cluster keeps
//     a single activation per user id); the grain's current location is the
//     checkin with the latest timestamp, ties broken by the larger id.
//   - A checkin is acknowledged only after the writer that carried it saw
//     the store report the whole batch durable.
//   - Every grain command is idempotent: a re-sent checkin id is answered
//     from memory or from the store and never written as a second checkin.
//   - Queues are bounded: a full writer refuses at once with ErrOverloaded.
//   - A user is deleted through its grain: checkins being written finish
//     and are answered first, none is accepted meanwhile, and none can land
//     after the store deleted the user's data.
//   - A single checkin is deleted through its user's grain, one at a time
//     per user, never while a checkin with its id is being written; when it
//     was the current location, the current location becomes the newest
//     checkin left. Its id is free afterwards: a checkin sent with it is
//     new, not a retry. A delete the store did not confirm is sent again
//     by the grain until the store does; meanwhile checkins with its id
//     are refused and the grain does not passivate.
//   - A checkin write that failed in a way that may have stored part of it
//     (the store's error does not wrap persistence.ErrNotApplied) is
//     written again by the grain until the store confirms it, and the
//     grain does not passivate before; a retry of it gets it as first
//     sent. A write the store refused outright is never written again by
//     the grain. These retries end when the grain deletes its user or
//     stops; a grain handed over passes them to the user's grain at the
//     new owner (Deps.HandOverWrite, userGrain.CompleteCheckin), which
//     writes each again only while the store still lists it. Retries of
//     deletes end when the grain deletes its user, is handed over or stops.
//
// Client is the typed front of the grains for the edge: it turns a request
// context into grain call timeouts and grain errors into this package's
// errors.
package actors
