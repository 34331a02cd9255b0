package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence"
)

// apiError is an error with the status and code the client sees, in
// checkin's error body shape.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(code, msg string) *apiError { return &apiError{http.StatusBadRequest, code, msg} }

// errorHandler maps errors to checkin's error bodies and status codes.
func errorHandler(c *fiber.Ctx, err error) error {
	var ae *apiError
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		ae = &apiError{fe.Code, "http_error", fe.Message}
		if fe.Code == http.StatusNotFound {
			ae.code = "route_not_found"
		}
	case errors.Is(err, persistence.ErrUnavailable):
		ae = &apiError{http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry shortly"}
	case errors.Is(err, context.DeadlineExceeded):
		ae = &apiError{http.StatusGatewayTimeout, "timeout", "the request timed out"}
	case errors.Is(err, persistence.ErrInvalid):
		ae = &apiError{http.StatusBadRequest, "invalid_argument", err.Error()}
	default:
		ae = &apiError{http.StatusInternalServerError, "internal", "internal error"}
	}
	if ae.status == http.StatusServiceUnavailable {
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	return c.Status(ae.status).JSON(edge.NewErrorBody(ae.code, ae.msg))
}

// decode reads one JSON object, refusing unknown fields.
func decode(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid_json", "request body: "+err.Error())
	}
	return nil
}

func checkID(field, id string) error {
	if !edge.ValidID(id) {
		return badRequest("invalid_id", fmt.Sprintf("%s must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", field))
	}
	return nil
}

// parseTime parses an RFC 3339 time, in UTC with millisecond precision.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Before(time.Unix(0, 0)) {
		return time.Time{}, badRequest("invalid_time", field+" must be an RFC 3339 time from 1970 on, such as 2024-05-01T12:00:00Z")
	}
	return persistence.Millis(t), nil
}
