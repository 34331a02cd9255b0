package scylla

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/gocql/gocql"

	"github.com/checkin/checkin/persistence"
)

// outcome is what a failed request may have done to the database.
type outcome uint8

const (
	// notApplied: the request was refused before any replica applied it
	// (no connection, too few replicas alive, overloaded, bad statement).
	notApplied outcome = iota + 1
	// maybeApplied: the request reached a coordinator and some or all
	// replicas may have applied it (timeouts, lost connections, cancelled
	// calls). Checkin writes are idempotent upserts, so retrying is safe.
	maybeApplied
)

func (o outcome) String() string {
	if o == notApplied {
		return "not applied"
	}
	return "may have been applied"
}

// errClass is how the store treats a driver error.
type errClass struct {
	// sentinel is the persistence error the call returns, wrapped; nil for
	// permanent failures that no retry fixes (a bug, bad credentials).
	sentinel error
	// transient errors are retried (idempotent requests only) while the
	// caller's deadline allows.
	transient bool
	outcome   outcome
}

// classify is the one place that interprets driver errors. The edge maps
// ErrUnavailable to 503, ErrNotFound to 404, ErrConflict to 409 and other
// errors to 500.
//
// Definitely not written (outcome notApplied): the coordinator refused the
// request (Unavailable: too few replicas alive for the consistency level;
// Overloaded, rate limited by the coordinator itself, Bootstrapping) or the driver never sent it (no
// host up, no connection in the pool, no free stream), and every statement
// error (syntax, invalid, unauthorized, already exists).
//
// Maybe written (outcome maybeApplied): write timeouts and failures
// (replicas did not all answer in time; some may have applied the write),
// rate limits some replica applied (the others may not have), server
// errors (the coordinator failed while handling the request),
// unknown CAS outcomes, lost connections and timeouts waiting for a
// response, requests the driver failed with their connection (a frame it
// could not place closes it), a cancelled or expired context, and anything
// unrecognised (not retried, and no sentinel: a bug to look at). The
// driver's QueryError marks requests it may have sent; those are never
// reported as not applied.
func classify(err error) errClass {
	unavailable := func(transient bool, o outcome) errClass {
		return errClass{sentinel: persistence.ErrUnavailable, transient: transient, outcome: o}
	}
	c := classifyCause(err, unavailable)
	var qe *gocql.QueryError
	if errors.As(err, &qe) && qe.PotentiallyExecuted() {
		c.outcome = maybeApplied
	}
	return c
}

func classifyCause(err error, unavailable func(bool, outcome) errClass) errClass {
	// Our own sentinels pass through.
	for _, s := range []error{persistence.ErrNotFound, persistence.ErrConflict, persistence.ErrUnavailable, persistence.ErrInvalid} {
		if errors.Is(err, s) {
			return errClass{sentinel: s, outcome: maybeApplied}
		}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller gave up; whatever was sent may still be applied.
		return unavailable(false, maybeApplied)
	case errors.Is(err, gocql.ErrNotFound):
		return errClass{sentinel: persistence.ErrNotFound, outcome: notApplied}
	case errors.Is(err, gocql.ErrSessionClosed):
		return unavailable(false, notApplied)
	}

	var rateLimited *gocql.RequestErrRateLimitReached
	if errors.As(err, &rateLimited) {
		// A coordinator that is no replica of the partition leaves the
		// limit to each replica: some may have accepted the write.
		if rateLimited.RejectedByCoordinator {
			return unavailable(true, notApplied)
		}
		return unavailable(true, maybeApplied)
	}
	var re interface{ GetCode() int }
	if errors.As(err, &re) {
		switch re.GetCode() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeReadTimeout, gocql.ErrCodeReadFailure, gocql.ErrCodeUnprepared:
			return unavailable(true, notApplied)
		case gocql.ErrCodeWriteTimeout, gocql.ErrCodeWriteFailure, gocql.ErrCodeCDCWriteFailure,
			gocql.ErrCodeCASWriteUnknown:
			return unavailable(true, maybeApplied)
		case gocql.ErrCodeTruncate:
			return unavailable(false, maybeApplied)
		case gocql.ErrCodeAlreadyExists:
			return errClass{sentinel: persistence.ErrConflict, outcome: notApplied}
		case gocql.ErrCodeSyntax, gocql.ErrCodeInvalid, gocql.ErrCodeUnauthorized, gocql.ErrCodeConfig,
			gocql.ErrCodeCredentials, gocql.ErrCodeProtocol, gocql.ErrCodeFunctionFailure:
			return errClass{outcome: notApplied}
		case gocql.ErrCodeServer:
			// The coordinator failed while handling the request (a node
			// short of memory under load, for one): not a fault of the
			// request, and retried by the caller, not here.
			return unavailable(false, maybeApplied)
		default: // codes this driver does not know
			return errClass{outcome: maybeApplied}
		}
	}

	switch {
	case errors.Is(err, gocql.ErrNoConnections), errors.Is(err, gocql.ErrNoConnectionsStarted),
		errors.Is(err, gocql.ErrHostDown), errors.Is(err, gocql.ErrNoPool),
		errors.Is(err, gocql.ErrNoConnectionsInPool), errors.Is(err, gocql.ErrNoStreams),
		errors.Is(err, gocql.ErrSessionNotReady), errors.Is(err, gocql.ErrNoHosts):
		return unavailable(true, notApplied)
	case errors.Is(err, gocql.ErrTimeoutNoResponse), errors.Is(err, gocql.ErrConnectionClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return unavailable(true, maybeApplied)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return unavailable(true, maybeApplied)
	}
	var qe *gocql.QueryError
	if errors.As(err, &qe) {
		// The driver failed the request on its connection for a reason it
		// has no type for. Cassandra, for one, answers a request that
		// waited in its queue past native_transport_timeout with Overloaded
		// ("Query timed out before it could start") on stream 0, which the
		// driver takes for a protocol error: it closes the connection and
		// fails every request in flight on it with that error.
		return unavailable(true, maybeApplied)
	}
	return errClass{outcome: maybeApplied}
}

// storeErr turns an error of the driver into one that wraps a persistence
// sentinel (see classify), naming the operation and whether the write may
// have been applied. Errors that already wrap a sentinel pass unchanged.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	c := classify(err)
	switch {
	case c.sentinel != nil && errors.Is(err, c.sentinel):
		return err
	case c.sentinel != nil:
		return fmt.Errorf("persistence/scylla: %s: %w (%s): %w", op, c.sentinel, c.outcome, err)
	default:
		return fmt.Errorf("persistence/scylla: %s (%s): %w", op, c.outcome, err)
	}
}
