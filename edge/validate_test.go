package edge

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

// wantAPIError checks that err is an *apiError with status 400, the code,
// and a message containing every one of parts.
func wantAPIError(t *testing.T, err error, code string, parts ...string) {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want *apiError %s", err, err, code)
	}
	if ae.status != http.StatusBadRequest || ae.code != code {
		t.Errorf("error = %d %s %q, want 400 %s", ae.status, ae.code, ae.msg, code)
	}
	for _, p := range parts {
		if !strings.Contains(ae.msg, p) {
			t.Errorf("message %q does not contain %q", ae.msg, p)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"empty", "", false},
		{"one char", "a", true},
		{"64 chars", strings.Repeat("a", 64), true},
		{"65 chars", strings.Repeat("a", 65), false},
		{"all allowed classes", "AZaz09_-", true},
		{"only dash", "-", true},
		{"only underscore", "_", true},
		{"uuid", "0190f5c2-7a1b-7c3d-9e4f-5a6b7c8d9e0f", true},
		{"space", "a b", false},
		{"dot", "a.b", false},
		{"slash", "a/b", false},
		{"colon", "a:b", false},
		{"percent", "a%20b", false},
		{"plus", "a+b", false},
		{"tilde", "a~b", false},
		{"NUL", "a\x00b", false},
		{"newline", "a\n", false},
		{"unicode letter", "é", false},
		{"unicode in ascii", "caf\u00e9", false},
		{"cjk", "日本", false},
		{"fullwidth digit", "\uff11", false},
		{"invalid utf-8", "a\xff", false},
		{"32 two-byte runes (64 bytes)", strings.Repeat("é", 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidID(tt.id); got != tt.want {
				t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestCheckID(t *testing.T) {
	if err := checkID("location_id", "cafe-1"); err != nil {
		t.Fatalf("valid id: %v", err)
	}
	wantAPIError(t, checkID("location_id", "café"), "invalid_id", "location_id", "1 to 64")
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"plain", "Alice", false},
		{"empty", "", true},
		{"blank", " \t\n ", true},
		{"surrounded by spaces", "  Alice  ", false},
		{"256 bytes", strings.Repeat("a", 256), false},
		{"257 bytes", strings.Repeat("a", 257), true},
		{"256 bytes between spaces", "  " + strings.Repeat("a", 256) + "  ", false},
		{"129 two-byte runes (258 bytes)", strings.Repeat("é", 129), true},
		{"unicode", "Zoë 日本", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkName(tt.in)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("checkName: %v", err)
				}
				return
			}
			wantAPIError(t, err, "invalid_name", "name")
		})
	}
}

func TestParseTime(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	tests := []struct {
		name    string
		in      string
		want    time.Time // zero: an error is expected
		wantMsg string    // part of the error message
	}{
		{name: "utc", in: "2024-05-01T12:00:00Z", want: utc("2024-05-01T12:00:00Z")},
		{name: "positive offset", in: "2024-05-01T14:00:00+02:00", want: utc("2024-05-01T12:00:00Z")},
		{name: "negative half-hour offset", in: "2024-05-01T07:30:00-04:30", want: utc("2024-05-01T12:00:00Z")},
		{name: "offset crossing a day", in: "2024-05-02T01:00:00+13:00", want: utc("2024-05-01T12:00:00Z")},
		{name: "millis kept", in: "2024-05-01T12:00:00.123Z", want: utc("2024-05-01T12:00:00.123Z")},
		{name: "nanos truncated", in: "2024-05-01T12:00:00.123456789Z", want: utc("2024-05-01T12:00:00.123Z")},
		{name: "truncated, not rounded", in: "2024-05-01T12:00:00.9999999Z", want: utc("2024-05-01T12:00:00.999Z")},
		{name: "one fractional digit", in: "2024-05-01T12:00:00.5+01:00", want: utc("2024-05-01T11:00:00.500Z")},
		{name: "epoch", in: "1970-01-01T00:00:00Z", want: utc("1970-01-01T00:00:00Z")},
		{name: "epoch given with an offset", in: "1970-01-01T01:00:00+01:00", want: utc("1970-01-01T00:00:00Z")},
		{name: "1 ms before epoch", in: "1969-12-31T23:59:59.999Z", wantMsg: "1970"},
		{name: "sub-ms before epoch", in: "1969-12-31T23:59:59.9999Z", wantMsg: "1970"},
		{name: "before epoch by offset", in: "1970-01-01T00:59:59+01:00", wantMsg: "1970"},
		{name: "year 1", in: "0001-01-01T00:00:00Z", wantMsg: "1970"},
		{name: "far future", in: "9999-12-31T23:59:59.999Z", want: utc("9999-12-31T23:59:59.999Z")},
		{name: "empty", in: "", wantMsg: "RFC 3339"},
		{name: "word", in: "yesterday", wantMsg: "RFC 3339"},
		{name: "date only", in: "2024-05-01", wantMsg: "RFC 3339"},
		{name: "no zone", in: "2024-05-01T12:00:00", wantMsg: "RFC 3339"},
		{name: "space separator", in: "2024-05-01 12:00:00Z", wantMsg: "RFC 3339"},
		{name: "unix seconds", in: "1714564800", wantMsg: "RFC 3339"},
		{name: "month 13", in: "2024-13-01T00:00:00Z", wantMsg: "RFC 3339"},
		{name: "hour 24", in: "2024-05-01T24:00:00Z", wantMsg: "RFC 3339"},
		{name: "offset without colon", in: "2024-05-01T12:00:00+0200", wantMsg: "RFC 3339"},
		{name: "trailing garbage", in: "2024-05-01T12:00:00Zx", wantMsg: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTime("from", tt.in)
			if tt.want.IsZero() {
				wantAPIError(t, err, "invalid_time", "from", tt.wantMsg)
				return
			}
			if err != nil {
				t.Fatalf("parseTime(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("parseTime(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got.Location() != time.UTC {
				t.Errorf("parseTime(%q) is in %v, want UTC", tt.in, got.Location())
			}
			if got.Nanosecond()%int(time.Millisecond) != 0 {
				t.Errorf("parseTime(%q) = %v has sub-millisecond precision", tt.in, got)
			}
		})
	}
}

func TestFormatTime(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"utc whole second", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), "2024-05-01T12:00:00.000Z"},
		{"offset converted", time.Date(2024, 5, 1, 14, 0, 0, 0, time.FixedZone("", 2*3600)), "2024-05-01T12:00:00.000Z"},
		{"millis", time.Date(2024, 5, 1, 12, 0, 0, 7_000_000, time.UTC), "2024-05-01T12:00:00.007Z"},
		{"epoch", time.Unix(0, 0), "1970-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatTime(tt.in); got != tt.want {
				t.Errorf("formatTime = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{name: "absent means default", in: "", want: 50},
		{name: "one", in: "1", want: 1},
		{name: "max", in: "1000", want: 1000},
		{name: "over max", in: "1001", wantErr: true},
		{name: "zero", in: "0", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "word", in: "ten", wantErr: true},
		{name: "fraction", in: "1.5", wantErr: true},
		{name: "exponent", in: "1e2", wantErr: true},
		{name: "space", in: " 5", wantErr: true},
		{name: "overflow", in: "99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLimit(tt.in)
			if tt.wantErr {
				wantAPIError(t, err, "invalid_limit", "limit", "1000")
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseLimit(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	type request struct {
		ID   *string  `json:"id"`
		Name *string  `json:"name"`
		Lat  *float64 `json:"lat"`
	}
	tests := []struct {
		name     string
		body     string
		wantCode string   // empty: no error
		wantMsg  []string // parts of the message
		check    func(t *testing.T, r request)
	}{
		{name: "valid", body: `{"id":"a","name":"Alice","lat":1.5}`, check: func(t *testing.T, r request) {
			if r.ID == nil || *r.ID != "a" || r.Name == nil || *r.Name != "Alice" || r.Lat == nil || *r.Lat != 1.5 {
				t.Errorf("decoded %+v", r)
			}
		}},
		{name: "absent fields stay nil", body: `{"name":"Alice"}`, check: func(t *testing.T, r request) {
			if r.ID != nil || r.Lat != nil {
				t.Errorf("decoded %+v", r)
			}
		}},
		{name: "explicit null stays nil", body: `{"id":null,"name":"Alice"}`, check: func(t *testing.T, r request) {
			if r.ID != nil {
				t.Errorf("id = %q, want nil", *r.ID)
			}
		}},
		{name: "surrounding white space", body: "\n {\"name\":\"Alice\"} \n"},
		{name: "null body decodes to nothing", body: `null`},
		{name: "empty body", body: ``, wantCode: "invalid_json", wantMsg: []string{"JSON object"}},
		{name: "white space body", body: " \n\t", wantCode: "invalid_json", wantMsg: []string{"JSON object"}},
		{name: "truncated", body: `{"name":`, wantCode: "invalid_json", wantMsg: []string{"malformed JSON", "unexpected end"}},
		{name: "missing colon", body: `{"name" "Alice"}`, wantCode: "invalid_json", wantMsg: []string{"malformed JSON", "byte"}},
		{name: "single quotes", body: `{'name':'Alice'}`, wantCode: "invalid_json", wantMsg: []string{"malformed JSON"}},
		{name: "trailing comma", body: `{"name":"Alice",}`, wantCode: "invalid_json", wantMsg: []string{"malformed JSON"}},
		{name: "unknown field", body: `{"name":"Alice","nick":"al"}`, wantCode: "unknown_field", wantMsg: []string{`"nick"`}},
		// encoding/json would match names in any case, and take the last
		// of a repeated member; other parsers differ, so both are refused.
		{name: "field name case differs", body: `{"Name":"Alice"}`, wantCode: "unknown_field", wantMsg: []string{`"Name"`}},
		{name: "field repeated", body: `{"name":"Alice","name":"Bob"}`, wantCode: "invalid_json", wantMsg: []string{`"name"`, "more than once"}},
		{name: "field repeated in another case", body: `{"name":"Alice","NAME":"Bob"}`, wantCode: "unknown_field", wantMsg: []string{`"NAME"`}},
		{name: "every field once, null included", body: `{"id":"a","name":"Alice","lat":null}`},
		{name: "string field given a number", body: `{"name":5}`, wantCode: "invalid_json", wantMsg: []string{`"name"`, "string"}},
		{name: "string field given an object", body: `{"name":{"first":"A"}}`, wantCode: "invalid_json", wantMsg: []string{`"name"`, "string"}},
		{name: "number field given a string", body: `{"lat":"north"}`, wantCode: "invalid_json", wantMsg: []string{`"lat"`, "number"}},
		{name: "number field given a bool", body: `{"lat":true}`, wantCode: "invalid_json", wantMsg: []string{`"lat"`, "number"}},
		{name: "trailing object", body: `{"name":"a"} {"name":"b"}`, wantCode: "invalid_json", wantMsg: []string{"exactly one"}},
		{name: "trailing garbage", body: `{"name":"a"}x`, wantCode: "invalid_json"},
		{name: "trailing brace", body: `{"name":"a"}}`, wantCode: "invalid_json"},
		{name: "array instead of object", body: `[{"name":"a"}]`, wantCode: "invalid_json", wantMsg: []string{"JSON object"}},
		{name: "string instead of object", body: `"Alice"`, wantCode: "invalid_json", wantMsg: []string{"JSON object"}},
		{name: "number instead of object", body: `42`, wantCode: "invalid_json", wantMsg: []string{"JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			err := decodeJSON([]byte(tt.body), &r)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("decodeJSON(%q): %v", tt.body, err)
				}
				if tt.check != nil {
					tt.check(t, r)
				}
				return
			}
			wantAPIError(t, err, tt.wantCode, tt.wantMsg...)
		})
	}
}

func TestAppendTimeMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ts := time.UnixMilli(r.Int64N(253402300799999)).In(time.FixedZone("", (r.IntN(48)-24)*1800)) // years 1970–9999, any offset
		if got, want := formatTime(ts), ts.UTC().Format(timeLayoutOut); got != want {
			t.Fatalf("formatTime(%v) = %q, want %q", ts, got, want)
		}
	}
}
