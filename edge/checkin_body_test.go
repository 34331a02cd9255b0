package edge

import (
	"errors"
	"testing"
)

// fuzzOnlyBodies seed FuzzCheckinBody beside the bodies of
// checkinBodyCases: more ways out of the fast path.
var fuzzOnlyBodies = []string{
	`{"id":"c-1"}`,
	`{"location_id":"café"}`,
	`{"location_id" "moma"}`,
	`"moma"`,
	`   `,
	`{"id":"a","location_id":"b","timestamp":"c","x":"d"}`,
	"{\"location_id\":\"mo\x7fma\"}",
	"{\"location_id\":\"mo\x01ma\"}",
}

// FuzzCheckinBody: whatever the fast path accepts, encoding/json (the slow
// path, with unknown fields refused) accepts too and decodes to the same
// fields.
func FuzzCheckinBody(f *testing.F) {
	for _, tc := range checkinBodyCases {
		f.Add([]byte(tc.body))
	}
	for _, s := range fuzzOnlyBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast checkinBody
		if !fast.decodeFlat(body) {
			return
		}
		var slow checkinBody
		if err := decodeJSON(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if !sameField(fast.ID, slow.ID) || !sameField(fast.LocationID, slow.LocationID) || !sameField(fast.Timestamp, slow.Timestamp) {
			t.Fatalf("%q: fast path %s, encoding/json %s", body, show(fast), show(slow))
		}
	})
}

// checkinBodyCases: the common shape, and each way out of the fast path.
var checkinBodyCases = []struct {
	name     string
	body     string
	fast     bool // decoded on the fast path
	want     checkinBody
	wantCode string // the error's code when decoding fails
}{
	{name: "location only", body: `{"location_id":"moma"}`, fast: true, want: checkinBody{LocationID: strp("moma")}},
	{name: "every field", body: `{"id":"c-1","location_id":"moma","timestamp":"2024-05-01T12:00:00Z"}`, fast: true,
		want: checkinBody{ID: strp("c-1"), LocationID: strp("moma"), Timestamp: strp("2024-05-01T12:00:00Z")}},
	{name: "white space", body: " {\n\t\"location_id\" : \"moma\" ,\r\n \"id\":\"c-1\" } \n", fast: true, want: checkinBody{ID: strp("c-1"), LocationID: strp("moma")}},
	{name: "empty object", body: `{}`, fast: true},
	{name: "null", body: `{"location_id":null}`},
	{name: "escape", body: `{"location_id":"mo\u006da"}`, want: checkinBody{LocationID: strp("moma")}},
	{name: "other case", body: `{"Location_ID":"moma"}`, wantCode: "unknown_field"},
	{name: "repeated", body: `{"location_id":"a","location_id":"b"}`, wantCode: "invalid_json"},
	{name: "unknown field", body: `{"location_id":"moma","nick":"x"}`, wantCode: "unknown_field"},
	{name: "number", body: `{"location_id":5}`, wantCode: "invalid_json"},
	{name: "two objects", body: `{"location_id":"moma"} {}`, wantCode: "invalid_json"},
	{name: "trailing comma", body: `{"location_id":"moma",}`, wantCode: "invalid_json"},
	{name: "truncated", body: `{"location_id":"moma"`, wantCode: "invalid_json"},
	{name: "array", body: `["moma"]`, wantCode: "invalid_json"},
	{name: "empty", body: ``, wantCode: "invalid_json"},
}

func strp(s string) *string { return &s }

func TestCheckinBody(t *testing.T) {
	for _, tc := range checkinBodyCases {
		t.Run(tc.name, func(t *testing.T) {
			var probe checkinBody
			if got := probe.decodeFlat([]byte(tc.body)); got != tc.fast {
				t.Errorf("fast path taken = %v, want %v", got, tc.fast)
			}
			var b checkinBody
			err := b.decode([]byte(tc.body))
			if tc.wantCode != "" {
				var ae *apiError
				if !errors.As(err, &ae) || ae.code != tc.wantCode {
					t.Fatalf("error %v, want code %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameField(b.ID, tc.want.ID) || !sameField(b.LocationID, tc.want.LocationID) || !sameField(b.Timestamp, tc.want.Timestamp) {
				t.Fatalf("decoded %s, want %s", show(b), show(tc.want))
			}
		})
	}
}

// The body buffer is reused by the server after the handler: decoded
// values must not alias it.
func TestCheckinBodyCopiesValues(t *testing.T) {
	body := []byte(`{"location_id":"moma"}`)
	var b checkinBody
	if err := b.decode(body); err != nil {
		t.Fatal(err)
	}
	copy(body, `{"location_id":"XXXX"}`)
	if *b.LocationID != "moma" {
		t.Fatalf("location_id changed with the request buffer: %q", *b.LocationID)
	}
}

func BenchmarkCheckinBody(b *testing.B) {
	body := []byte(`{"id":"c-0001","location_id":"L17","timestamp":"2024-05-01T12:00:00.000Z"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c checkinBody
			if err := c.decode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c checkinBody
			if err := decodeJSON(body, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sameField(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(b checkinBody) string {
	f := func(p *string) string {
		if p == nil {
			return "nil"
		}
		return `"` + *p + `"`
	}
	return "{id:" + f(b.ID) + " location_id:" + f(b.LocationID) + " timestamp:" + f(b.Timestamp) + "}"
}
