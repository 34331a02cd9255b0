// Package admit keeps a node's work for its store near a latency target
// under overload, by refusing at once the work beyond an adaptive bound
// (Bound) instead of queueing it. Work queued past what the store answers
// in time is worse than refused: its callers give up before it is done,
// retry, and the store spends its time on answers nobody waits for.
//
// Store wraps a persistence.Store so that the calls made through it are
// held to a Bound: a call beyond it returns ErrRefused (which wraps
// persistence.ErrOverloaded and persistence.ErrNotApplied: nothing was
// done, and a retry is safe) without reaching the store. The checkin
// writers hold their batches to a Bound of their own (actors.Pool), and
// the edge, when asked to (http.latency-target), its requests in flight
// (edge.Server).
package admit
