package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/admit"
)

func TestToAPIError(t *testing.T) {
	grain := func(kind error, code, msg string) error {
		return &actors.Error{Kind: kind, Code: code, Message: msg}
	}
	invalid := badRequest("invalid_id", "id must be ...")
	const secret = "password=hunter2"
	tests := []struct {
		name   string
		err    error
		same   *apiError // when set, the very error must come back
		status int
		code   string
		msg    string
	}{
		{name: "apiError passes through", err: invalid, same: invalid},
		{name: "wrapped apiError passes through", err: fmt.Errorf("checkin: %w", invalid), same: invalid},
		{name: "notFound", err: notFound("location_not_found", "location x does not exist"),
			status: 404, code: "location_not_found", msg: "location x does not exist"},

		{name: "fiber not found", err: fiber.ErrNotFound, status: 404, code: "route_not_found", msg: "Not Found"},
		{name: "fiber no route", err: fiber.NewError(404, "Cannot GET /x"), status: 404, code: "route_not_found", msg: "Cannot GET /x"},
		{name: "fiber method not allowed", err: fiber.ErrMethodNotAllowed, status: 405, code: "method_not_allowed", msg: "Method Not Allowed"},
		{name: "fiber body too large", err: fiber.ErrRequestEntityTooLarge, status: 413, code: "body_too_large", msg: "Request Entity Too Large"},
		{name: "fiber bad request", err: fiber.NewError(400, "malformed header"), status: 400, code: "bad_request", msg: "malformed header"},
		{name: "fiber request timeout", err: fiber.ErrRequestTimeout, status: 408, code: "request_timeout"},
		{name: "fiber unsupported media type", err: fiber.ErrUnsupportedMediaType, status: 415, code: "unsupported_media_type"},
		{name: "fiber other status", err: fiber.ErrRequestHeaderFieldsTooLarge, status: 431, code: "http_error"},
		{name: "wrapped fiber error", err: fmt.Errorf("x: %w", fiber.ErrMethodNotAllowed), status: 405, code: "method_not_allowed"},

		{name: "grain not found", err: grain(actors.ErrNotFound, actors.CodeUserNotFound, "user a does not exist"),
			status: 404, code: "user_not_found", msg: "user a does not exist"},
		{name: "grain no checkins", err: grain(actors.ErrNotFound, actors.CodeNoCheckins, "user a has no checkins"),
			status: 404, code: "no_checkins", msg: "user a has no checkins"},
		{name: "grain conflict", err: grain(actors.ErrConflict, actors.CodeCheckinConflict, "different content"),
			status: 409, code: "checkin_conflict", msg: "different content"},
		{name: "grain user exists", err: grain(actors.ErrConflict, actors.CodeUserExists, "user a already exists"),
			status: 409, code: "user_exists"},
		{name: "grain overloaded", err: grain(actors.ErrOverloaded, actors.CodeOverloaded, "retry shortly"),
			status: 503, code: "overloaded", msg: "retry shortly"},
		{name: "grain unavailable", err: grain(actors.ErrUnavailable, actors.CodeUnavailable, "no answer"),
			status: 503, code: "unavailable", msg: "no answer"},
		{name: "grain timeout", err: grain(actors.ErrTimeout, actors.CodeTimeout, "not confirmed in time"),
			status: 504, code: "timeout", msg: "not confirmed in time"},
		{name: "wrapped grain error", err: fmt.Errorf("call: %w", grain(actors.ErrTimeout, actors.CodeTimeout, "slow")),
			status: 504, code: "timeout", msg: "slow"},

		{name: "store not found", err: fmt.Errorf("pebble: get user: %w", persistence.ErrNotFound), status: 404, code: "not_found", msg: "not found"},
		{name: "store conflict", err: fmt.Errorf("pebble: create: %w", persistence.ErrConflict), status: 409, code: "conflict", msg: "already exists"},
		{name: "store call refused at its bound", err: fmt.Errorf("list checkins: %w", admit.ErrRefused),
			status: 503, code: "overloaded", msg: "the store is answering as many requests as it can; retry shortly"},
		{name: "store unavailable", err: fmt.Errorf("pebble: %w: store is closed", persistence.ErrUnavailable),
			status: 503, code: "unavailable", msg: "the store is unavailable; retry shortly"},
		{name: "store unavailable twice wrapped", err: fmt.Errorf("list: %w", fmt.Errorf("scylla: %w", persistence.ErrUnavailable)),
			status: 503, code: "unavailable"},

		{name: "deadline exceeded", err: context.DeadlineExceeded, status: 504, code: "timeout", msg: "the request timed out"},
		{name: "wrapped deadline exceeded", err: fmt.Errorf("read: %w", context.DeadlineExceeded), status: 504, code: "timeout"},
		{name: "store call out of time", err: fmt.Errorf("scylla: list: %w (may have been applied): %w", persistence.ErrUnavailable, context.DeadlineExceeded),
			status: 504, code: "timeout", msg: "the request timed out"},

		{name: "unknown error", err: errors.New("dial tcp 10.0.0.7: " + secret), status: 500, code: "internal", msg: "internal error"},
		{name: "wrapped unknown error", err: fmt.Errorf("store write failed: %w", errors.New(secret)), status: 500, code: "internal", msg: "internal error"},
		{name: "panic value", err: fmt.Errorf("%v", "runtime error: index out of range "+secret), status: 500, code: "internal", msg: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toAPIError(tt.err)
			if got == nil {
				t.Fatal("toAPIError returned nil")
			}
			if tt.same != nil {
				if got != tt.same {
					t.Errorf("got %+v, want the apiError itself %+v", got, tt.same)
				}
				return
			}
			if got.status != tt.status || got.code != tt.code {
				t.Errorf("got %d %s, want %d %s", got.status, got.code, tt.status, tt.code)
			}
			if tt.msg != "" && got.msg != tt.msg {
				t.Errorf("message = %q, want %q", got.msg, tt.msg)
			}
			if strings.Contains(got.msg, "hunter2") {
				t.Errorf("message %q echoes the error", got.msg)
			}
		})
	}
}

func TestKindStatus(t *testing.T) {
	tests := []struct {
		kind error
		want int
	}{
		{actors.ErrNotFound, http.StatusNotFound},
		{actors.ErrConflict, http.StatusConflict},
		{actors.ErrOverloaded, http.StatusServiceUnavailable},
		{actors.ErrUnavailable, http.StatusServiceUnavailable},
		{actors.ErrTimeout, http.StatusGatewayTimeout},
		{errors.New("other"), http.StatusInternalServerError},
		{nil, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.kind != nil {
			name = tt.kind.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := kindStatus(tt.kind); got != tt.want {
				t.Errorf("kindStatus(%v) = %d, want %d", tt.kind, got, tt.want)
			}
		})
	}
}
