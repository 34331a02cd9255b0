// Package metered wraps a persistence.Store so that every call is counted
// by operation and outcome and timed, in Prometheus:
// checkin_store_calls_total{op, outcome} and checkin_store_call_seconds{op}.
// The labels are bounded sets: one op per Store method, and the outcomes
// ok, not_found, conflict, invalid, timeout, canceled, unavailable and
// error. The wrapped store's behaviour is unchanged: every call, argument,
// result and error passes through as it is.
package metered
