package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/checkin/checkin/persistence"
)

const (
	maxIDLen      = 64
	maxNameLen    = 256
	maxFuture     = 5 * time.Minute
	defaultLimit  = 50
	maxLimit      = 1000
	timeLayoutOut = "2006-01-02T15:04:05.000Z07:00"
)

// minTime is the earliest timestamp accepted and the default start of a range.
var minTime = time.Unix(0, 0).UTC()

// ValidID reports whether id is 1–64 characters of [A-Za-z0-9_-], the
// form of every user, location and checkin id in the API.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkID(field, id string) error {
	if !ValidID(id) {
		return badRequest("invalid_id", fmt.Sprintf("%s must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", field))
	}
	return nil
}

func checkName(name string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return badRequest("invalid_name", "name is required")
	}
	if len(name) > maxNameLen {
		return badRequest("invalid_name", fmt.Sprintf("name must be at most %d bytes", maxNameLen))
	}
	return nil
}

// checkCoordinates checks the coordinates that are given (non-nil).
func checkCoordinates(lat, lon *float64) error {
	switch {
	case lat != nil && !(*lat >= -90 && *lat <= 90):
		return badRequest("invalid_coordinates", "lat must be between -90 and 90")
	case lon != nil && !(*lon >= -180 && *lon <= 180):
		return badRequest("invalid_coordinates", "lon must be between -180 and 180")
	}
	return nil
}

// decodePatch decodes an update's body as decodeJSON does, and refuses a
// field set to null: every field of users and locations has a value, so
// null cannot mean "remove it".
func decodePatch(body []byte, v any) error {
	if err := decodeJSON(body, v); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return badRequest("invalid_json", "request body must be a JSON object")
	}
	for name, raw := range fields {
		if string(bytes.TrimSpace(raw)) == "null" {
			return badRequest("invalid_json", fmt.Sprintf("field %q must not be null: leave it out to keep its value", name))
		}
	}
	return nil
}

// decodeJSON decodes one JSON object from body into v, rejecting unknown
// fields, wrong types and trailing data with messages a client can act on.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("invalid_json", "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return badRequest("invalid_json", "request body must hold exactly one JSON object")
		}
		return checkMembers(body, v)
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("invalid_json", fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error()))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("invalid_json", "request body must be a JSON object")
		}
		return badRequest("invalid_json", fmt.Sprintf("field %q must be of type %s", typ.Field, jsonType(typ.Type.Kind().String())))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid_json", "malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown_field", "unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("invalid_json", "malformed JSON: "+err.Error())
}

// checkMembers refuses a body, already decoded into v (a pointer to a
// struct), that names a member twice, or names one in another case than
// v's json tag spells it: encoding/json would take the last of the
// duplicates and match names in any case, where other parsers (a proxy, an
// audit log) may take the first, so what one saw would not be what the
// node did.
func checkMembers(body []byte, v any) error {
	names := jsonNames(reflect.TypeOf(v).Elem())
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object (null): nothing was set
	}
	var seen []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return badRequest("invalid_json", "request body must be a JSON object")
		}
		key, _ := t.(string)
		if !slices.Contains(names, key) {
			return badRequest("unknown_field", fmt.Sprintf("unknown field %q", clip([]byte(key))))
		}
		if slices.Contains(seen, key) {
			return badRequest("invalid_json", fmt.Sprintf("field %q given more than once", key))
		}
		seen = append(seen, key)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badRequest("invalid_json", "request body must be a JSON object")
		}
	}
	return nil
}

// jsonNames returns the json names of the fields of struct type t.
func jsonNames(t reflect.Type) []string {
	if names, ok := jsonNamesOf.Load(t); ok {
		return names.([]string)
	}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	jsonNamesOf.Store(t, names)
	return names
}

// jsonNamesOf caches jsonNames by type.
var jsonNamesOf sync.Map

func jsonType(kind string) string {
	switch kind {
	case "float64", "int", "int64":
		return "number"
	}
	return kind
}

// parseTime parses an RFC 3339 time given in field and returns it in UTC
// with millisecond precision.
func parseTime(field, s string) (time.Time, error) {
	t, err := parseBound(field, s)
	if err != nil {
		return time.Time{}, err
	}
	return persistence.Millis(t), nil
}

// parseBound parses from or to of a range as parseTime does, but keeps
// what is finer than a millisecond: the store narrows the range to whole
// milliseconds, rounding both up (persistence.ListCheckins), so that it
// holds exactly the checkins within it as given. (Rounded down here,
// to=12:00:00.0005 would leave out a checkin at 12:00:00.000, and
// from=12:00:00.0005 take it in.)
func parseBound(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if strings.IndexByte(s, ' ') >= 0 {
			// A '+' sent unencoded in a query reads as a space.
			return time.Time{}, badRequest("invalid_time", fmt.Sprintf("%s must be an RFC 3339 time such as 2024-05-01T12:00:00Z (in a query, send the '+' of an offset as %%2B)", field))
		}
		return time.Time{}, badRequest("invalid_time", fmt.Sprintf("%s must be an RFC 3339 time such as 2024-05-01T12:00:00Z", field))
	}
	if t.Before(minTime) { // a whole millisecond: as t rounded either way
		return time.Time{}, badRequest("invalid_time", field+" must not be before 1970-01-01T00:00:00Z")
	}
	return t.UTC(), nil
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest("invalid_limit", fmt.Sprintf("limit must be an integer from 1 to %d", maxLimit))
	}
	return n, nil
}

func formatTime(t time.Time) string {
	var buf [24]byte
	return string(appendTime(buf[:0], t))
}

// appendTime appends t in the API's time format, RFC 3339 in UTC with
// milliseconds (timeLayoutOut). It is time.Format by hand: every response
// carries times.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, timeLayoutOut)
	}
	h, mi, s := t.Clock()
	b = appendDigits(b, y, 4)
	b = appendDigits(append(b, '-'), int(mo), 2)
	b = appendDigits(append(b, '-'), d, 2)
	b = appendDigits(append(b, 'T'), h, 2)
	b = appendDigits(append(b, ':'), mi, 2)
	b = appendDigits(append(b, ':'), s, 2)
	b = appendDigits(append(b, '.'), t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendDigits appends v (non-negative) as exactly n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		p := 1
		for range i {
			p *= 10
		}
		b = append(b, byte('0'+v/p%10))
	}
	return b
}
