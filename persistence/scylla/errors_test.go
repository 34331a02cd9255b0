package scylla

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/gocql/gocql"

	"github.com/checkin/checkin/persistence"
)

// serverErr returns an error frame with code, as the driver returns for the
// codes it has no type for (Overloaded, Syntax, ...).
func serverErr(code int) error {
	var e gocql.UnknownServerError
	e.Code, e.Message = code, fmt.Sprintf("server error 0x%04x", code)
	return e.ErrorFrame
}

func TestClassify(t *testing.T) {
	unavailable := func() *gocql.RequestErrUnavailable {
		e := &gocql.RequestErrUnavailable{Consistency: gocql.LocalQuorum, Required: 2, Alive: 1}
		e.Code, e.Message = gocql.ErrCodeUnavailable, "Cannot achieve consistency level LOCAL_QUORUM"
		return e
	}
	writeTimeout := func() *gocql.RequestErrWriteTimeout {
		e := &gocql.RequestErrWriteTimeout{WriteType: "UNLOGGED_BATCH", Consistency: gocql.LocalQuorum, Received: 1, BlockFor: 2}
		e.Code, e.Message = gocql.ErrCodeWriteTimeout, "Operation timed out - received only 1 responses."
		return e
	}
	casUnknown := func() *gocql.RequestErrCASWriteUnknown {
		e := &gocql.RequestErrCASWriteUnknown{}
		e.Code = gocql.ErrCodeCASWriteUnknown
		return e
	}
	readTimeout := func() *gocql.RequestErrReadTimeout {
		e := &gocql.RequestErrReadTimeout{}
		e.Code = gocql.ErrCodeReadTimeout
		return e
	}
	alreadyExists := func() *gocql.RequestErrAlreadyExists {
		e := &gocql.RequestErrAlreadyExists{Keyspace: "checkin", Table: "users"}
		e.Code = gocql.ErrCodeAlreadyExists
		return e
	}
	rateLimited := func(byCoordinator bool) *gocql.RequestErrRateLimitReached {
		e := &gocql.RequestErrRateLimitReached{OpType: gocql.OpTypeWrite, RejectedByCoordinator: byCoordinator}
		e.Code = 0x4242 // negotiated per connection
		return e
	}
	netTimeout := &net.OpError{Op: "read", Net: "tcp", Err: &timeoutErr{}}

	tests := []struct {
		name      string
		err       error
		sentinel  error // nil: permanent, no sentinel
		transient bool
		outcome   outcome
	}{
		// Refused before anything was applied: retrying is always safe.
		{"unavailable replicas", unavailable(), persistence.ErrUnavailable, true, notApplied},
		{"overloaded", serverErr(gocql.ErrCodeOverloaded), persistence.ErrUnavailable, true, notApplied},
		{"bootstrapping", serverErr(gocql.ErrCodeBootstrapping), persistence.ErrUnavailable, true, notApplied},
		{"rate limited by the coordinator", rateLimited(true), persistence.ErrUnavailable, true, notApplied},
		{"read timeout", readTimeout(), persistence.ErrUnavailable, true, notApplied},
		{"no host up", gocql.ErrNoConnections, persistence.ErrUnavailable, true, notApplied},
		{"no connection in pool", fmt.Errorf("query: %w", gocql.ErrNoConnectionsInPool), persistence.ErrUnavailable, true, notApplied},
		{"host down", gocql.ErrHostDown, persistence.ErrUnavailable, true, notApplied},
		{"no streams", gocql.ErrNoStreams, persistence.ErrUnavailable, true, notApplied},
		{"session not started", gocql.ErrNoConnectionsStarted, persistence.ErrUnavailable, true, notApplied},
		{"session closed", gocql.ErrSessionClosed, persistence.ErrUnavailable, false, notApplied},

		// Reached a coordinator: maybe applied.
		{"write timeout", writeTimeout(), persistence.ErrUnavailable, true, maybeApplied},
		{"write failure", func() error {
			e := &gocql.RequestErrWriteFailure{}
			e.Code = gocql.ErrCodeWriteFailure
			return e
		}(), persistence.ErrUnavailable, true, maybeApplied},
		{"CAS outcome unknown", casUnknown(), persistence.ErrUnavailable, true, maybeApplied},
		{"rate limited by a replica", rateLimited(false), persistence.ErrUnavailable, true, maybeApplied},
		{"server error", serverErr(gocql.ErrCodeServer), persistence.ErrUnavailable, false, maybeApplied},
		{"no response in time", gocql.ErrTimeoutNoResponse, persistence.ErrUnavailable, true, maybeApplied},
		{"connection closed", gocql.ErrConnectionClosed, persistence.ErrUnavailable, true, maybeApplied},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, persistence.ErrUnavailable, true, maybeApplied},
		{"eof", io.EOF, persistence.ErrUnavailable, true, maybeApplied},
		{"network timeout", netTimeout, persistence.ErrUnavailable, true, maybeApplied},
		{"deadline exceeded", context.DeadlineExceeded, persistence.ErrUnavailable, false, maybeApplied},
		{"cancelled", fmt.Errorf("exec: %w", context.Canceled), persistence.ErrUnavailable, false, maybeApplied},

		// Permanent.
		{"no rows", gocql.ErrNotFound, persistence.ErrNotFound, false, notApplied},
		{"already exists", alreadyExists(), persistence.ErrConflict, false, notApplied},
		{"syntax", serverErr(gocql.ErrCodeSyntax), nil, false, notApplied},
		{"invalid", serverErr(gocql.ErrCodeInvalid), nil, false, notApplied},
		{"unauthorized", serverErr(gocql.ErrCodeUnauthorized), nil, false, notApplied},
		{"bad credentials", serverErr(gocql.ErrCodeCredentials), nil, false, notApplied},
		{"unknown error", errors.New("something else"), nil, false, maybeApplied},

		// Our own errors pass through.
		{"ours: invalid", fmt.Errorf("%w: empty user id", persistence.ErrInvalid), persistence.ErrInvalid, false, maybeApplied},
		{"ours: unavailable", errClosed, persistence.ErrUnavailable, false, maybeApplied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := classify(tt.err)
			if c.sentinel != tt.sentinel || c.transient != tt.transient || c.outcome != tt.outcome {
				t.Fatalf("classify(%v) = {sentinel: %v, transient: %v, outcome: %v}, want {%v, %v, %v}",
					tt.err, c.sentinel, c.transient, c.outcome, tt.sentinel, tt.transient, tt.outcome)
			}
			got := storeErr("write checkins_by_user", tt.err)
			if !wraps(got, tt.err) {
				t.Fatalf("storeErr(%v) = %v, does not wrap the cause", tt.err, got)
			}
			if tt.sentinel != nil && !errors.Is(got, tt.sentinel) {
				t.Fatalf("storeErr(%v) = %v, does not wrap %v", tt.err, got, tt.sentinel)
			}
			for _, s := range []error{persistence.ErrUnavailable, persistence.ErrNotFound, persistence.ErrConflict} {
				if s != tt.sentinel && errors.Is(got, s) {
					t.Fatalf("storeErr(%v) = %v, wraps %v too", tt.err, got, s)
				}
			}
			if tt.sentinel != nil && !errors.Is(tt.err, tt.sentinel) && !strings.Contains(got.Error(), tt.outcome.String()) {
				t.Fatalf("storeErr(%v) = %q, does not say %q", tt.err, got, tt.outcome)
			}
		})
	}
	if storeErr("op", nil) != nil {
		t.Fatal("storeErr(nil) != nil")
	}
}

// wraps reports whether err wraps cause; error frames are not comparable,
// so they match by code.
func wraps(err, cause error) bool {
	if errors.Is(err, cause) {
		return true
	}
	var a, b interface{ GetCode() int }
	return errors.As(cause, &b) && errors.As(err, &a) && a.GetCode() == b.GetCode()
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

// TestRetryPolicy: the driver retries only idempotent statements, only
// transient errors, at most the configured number of times.
func TestRetryPolicy(t *testing.T) {
	p := idempotentRetry{retries: 2}
	for _, tt := range []struct {
		name       string
		idempotent bool
		attempts   int
		want       bool
	}{
		{"idempotent, first failure", true, 1, true},
		{"idempotent, last retry", true, 2, true},
		{"idempotent, retries used up", true, 3, false},
		{"not idempotent", false, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := fakeQuery{idempotent: tt.idempotent, attempts: tt.attempts, ctx: context.Background()}
			if got := p.Attempt(q); got != tt.want {
				t.Fatalf("Attempt = %v, want %v", got, tt.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.Attempt(fakeQuery{idempotent: true, attempts: 1, ctx: ctx}) {
		t.Fatal("Attempt with a cancelled context = true")
	}
	if got := p.GetRetryType(gocql.ErrNoConnections); got != gocql.RetryNextHost {
		t.Fatalf("GetRetryType(no connections) = %v, want RetryNextHost", got)
	}
	if got := p.GetRetryType(serverErr(gocql.ErrCodeSyntax)); got != gocql.Rethrow {
		t.Fatalf("GetRetryType(syntax) = %v, want Rethrow", got)
	}
}

type fakeQuery struct {
	idempotent bool
	attempts   int
	ctx        context.Context
}

func (q fakeQuery) Attempts() int                     { return q.attempts }
func (q fakeQuery) SetConsistency(gocql.Consistency)  {}
func (q fakeQuery) GetConsistency() gocql.Consistency { return gocql.LocalQuorum }
func (q fakeQuery) IsLWT() bool                       { return false }
func (q fakeQuery) Context() context.Context          { return q.ctx }
func (q fakeQuery) IsIdempotent() bool                { return q.idempotent }
