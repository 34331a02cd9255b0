package actors

import (
	"context"
	"errors"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// Sentinel errors of grain calls; an *Error wraps one of them.
var (
	ErrNotFound    = errors.New("actors: not found")
	ErrConflict    = errors.New("actors: conflict")
	ErrOverloaded  = errors.New("actors: overloaded")
	ErrUnavailable = errors.New("actors: unavailable")
	ErrTimeout     = errors.New("actors: timed out")
)

// Error codes that reach API clients.
const (
	CodeUserNotFound    = "user_not_found"
	CodeNoCheckins      = "no_checkins"
	CodeUserExists      = "user_exists"
	CodeCheckinConflict = "checkin_conflict"
	CodeCheckinNotFound = "checkin_not_found"
	CodeOverloaded      = "overloaded"
	CodeUnavailable     = "unavailable"
	CodeTimeout         = "timeout"
)

// Error is a failed grain call: Kind is one of the sentinels above, Code a
// stable snake_case code for API clients, Message human text.
type Error struct {
	Kind    error
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Kind }

// reasons maps our sentinels to protoactor's grain error reasons, which is
// how errors cross node boundaries.
var reasons = []struct {
	kind   error
	reason string
}{
	{ErrNotFound, pcluster.ErrorReason_NOT_FOUND},
	{ErrConflict, pcluster.ErrorReason_ALREADY_EXISTS},
	{ErrOverloaded, pcluster.ErrorReason_RESOURCE_EXHAUSTED},
	{ErrUnavailable, pcluster.ErrorReason_UNAVAILABLE},
	{ErrTimeout, pcluster.ErrorReason_DEADLINE_EXCEEDED},
}

// toGrainError encodes err for the wire.
func toGrainError(err error) *pcluster.GrainErrorResponse {
	if g, ok := err.(*pcluster.GrainErrorResponse); ok { // already encoded (errMoved)
		return g
	}
	var e *Error
	if !errors.As(err, &e) {
		return pcluster.NewGrainErrorResponse(pcluster.ErrorReason_INTERNAL, err.Error())
	}
	reason := pcluster.ErrorReason_INTERNAL
	for _, r := range reasons {
		if e.Kind == r.kind {
			reason = r.reason
		}
	}
	return pcluster.NewGrainErrorResponse(reason, e.Message).WithMetadata(map[string]string{"code": e.Code})
}

// unanswered reports whether a grain call got no answer in time.
func unanswered(err error) bool {
	return errors.Is(err, errCallTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// fromGrainError decodes a grain call error. A call that got no answer in
// time becomes ErrTimeout (what the grain was asked may still be done);
// other errors that are not grain errors (no activation, the call not
// sent) become ErrUnavailable.
func fromGrainError(err error) error {
	var g *pcluster.GrainErrorResponse
	if !errors.As(err, &g) {
		if unanswered(err) {
			return &Error{Kind: ErrTimeout, Code: CodeTimeout, Message: "the user's actor did not answer in time; a change it was asked to make may still be made"}
		}
		return &Error{Kind: ErrUnavailable, Code: CodeUnavailable, Message: "the user's actor did not answer: " + err.Error()}
	}
	for _, r := range reasons {
		if g.Reason == r.reason {
			return &Error{Kind: r.kind, Code: g.Metadata["code"], Message: g.Message}
		}
	}
	return errors.New(g.Message)
}

// errMoved is a grain's answer to a call that reached it after it was
// handed over to another member (cluster.HandOver): the caller asks the
// identity's owner again, as after a dead letter. It never reaches API
// clients.
var errMoved = pcluster.NewGrainErrorResponse(pcluster.ErrorReason_ABORTED, "the user's actor moved to another node").
	WithMetadata(map[string]string{"code": codeMoved})

const codeMoved = "moved"

// isMoved reports whether a grain's answer is errMoved, from this node or
// another.
func isMoved(res any) bool {
	g, ok := res.(*pcluster.GrainErrorResponse)
	return ok && g.Reason == pcluster.ErrorReason_ABORTED && g.Metadata["code"] == codeMoved
}

func newError(kind error, code, msg string) *Error {
	return &Error{Kind: kind, Code: code, Message: msg}
}
