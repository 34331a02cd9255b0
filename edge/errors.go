package edge

import (
	"context"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
)

// apiError is an error with the status and code the client sees.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: msg}
}

func notFound(code, msg string) *apiError {
	return &apiError{status: http.StatusNotFound, code: code, msg: msg}
}

// ErrorBody is the one shape of every error answer:
// {"error":{"code":"snake_case_code","message":"human text"}}. Other HTTP
// servers of the node (the debug server) and the baselines answer in it too.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// NewErrorBody returns the error answer with code and message.
func NewErrorBody(code, msg string) ErrorBody {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	return b
}

// toAPIError maps any error to what the client sees. Unknown errors become
// a 500 whose message is not echoed.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		return &apiError{status: fe.Code, code: fiberCode(fe.Code), msg: fe.Message}
	}
	var ge *actors.Error
	if errors.As(err, &ge) {
		if st := kindStatus(ge.Kind); st != http.StatusInternalServerError {
			return &apiError{status: st, code: ge.Code, msg: ge.Message}
		}
	}
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return &apiError{http.StatusNotFound, "not_found", "not found"}
	case errors.Is(err, persistence.ErrConflict):
		return &apiError{http.StatusConflict, "conflict", "already exists"}
	case errors.Is(err, persistence.ErrInvalid):
		return &apiError{http.StatusBadRequest, "bad_request", "the request's arguments are invalid"}
	case errors.Is(err, persistence.ErrOverloaded):
		return &apiError{http.StatusServiceUnavailable, actors.CodeOverloaded, "the store is answering as many requests as it can; retry shortly"}
	case errors.Is(err, context.DeadlineExceeded):
		// Before unavailable: the stores wrap a call that ran out of time
		// in both.
		return &apiError{http.StatusGatewayTimeout, actors.CodeTimeout, "the request timed out"}
	case errors.Is(err, persistence.ErrUnavailable):
		return &apiError{http.StatusServiceUnavailable, actors.CodeUnavailable, "the store is unavailable; retry shortly"}
	}
	return &apiError{http.StatusInternalServerError, "internal", "internal error"}
}

// refused counts, and logs when access logs are on, a request the HTTP
// server answered with status before routing: its route label is empty
// (its path is not a route), a method that is none of HTTP's is OTHER, and
// a request whose headers were never read whole (too large, malformed,
// not arrived in time) has an empty method and path: the server's
// defaults (GET /) would name a request the client did not send.
func (s *Server) refused(c *fiber.Ctx, status int) {
	if len(c.Request().Header.RawHeaders()) == 0 {
		s.m.observe("", "", status, 0)
		s.accessLog(c, "", "", "", status, 0)
		return
	}
	method := c.Method()
	switch method {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete, fiber.MethodOptions:
	default:
		method = "OTHER"
	}
	s.m.observe(method, "", status, 0)
	s.accessLog(c, method, "", c.Path(), status, 0)
}

func kindStatus(kind error) int {
	switch kind {
	case actors.ErrNotFound:
		return http.StatusNotFound
	case actors.ErrConflict:
		return http.StatusConflict
	case actors.ErrOverloaded, actors.ErrUnavailable:
		return http.StatusServiceUnavailable
	case actors.ErrTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func fiberCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return "route_not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	}
	return "http_error"
}

// refusalLogsPerSecond bounds the warnings of refused requests (503, 504)
// a node logs: the first ones of each second.
const refusalLogsPerSecond = 10

// errorHandler is the app's one error handler.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	ae := toAPIError(err)
	if len(c.Response().Header.Peek(fiber.HeaderXRequestID)) == 0 {
		// The HTTP server refused the request before any middleware ran
		// (a body or headers over the limits, a malformed request): it
		// gets an id, a count and an access-log line as others do.
		// No cache may keep it either: its path may be under /v1, where
		// every answer carries no-store (noStore runs only once routed).
		s.ids.set(c)
		c.Set(fiber.HeaderCacheControl, "no-store")
		defer s.refused(c, ae.status)
	}
	if ae.status >= 500 {
		// Refusals (overload, unavailable, timeouts) are expected under
		// load and while a cluster member fails over or the store is down:
		// warnings, a few a second (in an outage every request would log
		// one; checkin_http_requests_total counts them all). Anything else
		// is a defect: errors, every one.
		log, lvl := s.log, zapcore.ErrorLevel
		if ae.status == http.StatusServiceUnavailable || ae.status == http.StatusGatewayTimeout {
			log, lvl = s.refusals, zapcore.WarnLevel
		}
		log.Log(lvl, "request failed", zap.String("request_id", requestID(c)), zap.String("route", c.Route().Path), zap.Int("status", ae.status), zap.Error(err))
	}
	if (ae.status == http.StatusServiceUnavailable || ae.status == http.StatusTooManyRequests) &&
		len(c.Response().Header.Peek(fiber.HeaderRetryAfter)) == 0 { // the rate limit sets its own
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	return c.Status(ae.status).JSON(NewErrorBody(ae.code, ae.msg))
}
