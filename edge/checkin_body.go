package edge

// checkinBody is the body of POST /v1/users/{id}/checkins. A nil field was
// absent (or null).
type checkinBody struct {
	ID         *string `json:"id"`
	LocationID *string `json:"location_id"`
	Timestamp  *string `json:"timestamp"`
}

// decode fills b from body. Bodies of the common shape take a fast path
// (decodeFlat); anything else goes through decodeJSON, which also words
// every error. Both give the same result for what the fast path accepts
// (FuzzCheckinBody checks it).
func (b *checkinBody) decode(body []byte) error {
	if b.decodeFlat(body) {
		return nil
	}
	*b = checkinBody{}
	return decodeJSON(body, b)
}

// decodeFlat decodes body when it is one flat JSON object whose members
// are among id, location_id and timestamp (spelled exactly so), each at
// most once, each a string of printable ASCII without escapes, with
// nothing but JSON whitespace around the tokens. It reports false, leaving
// b partly filled, for anything else. The values share one copy of the
// body: the request's buffer is reused after the handler returns.
func (b *checkinBody) decodeFlat(body []byte) bool {
	var s string // the body's copy, made once the shape is known good
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	type member struct{ key, val [2]int }
	var members [3]member
	n := 0
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			if n == len(members) {
				return false
			}
			var ok bool
			var m member
			if m.key, i, ok = plainString(body, i); !ok {
				return false
			}
			if i = skipSpace(body, i); i == len(body) || body[i] != ':' {
				return false
			}
			if m.val, i, ok = plainString(body, skipSpace(body, i+1)); !ok {
				return false
			}
			members[n] = m
			n++
			if i = skipSpace(body, i); i == len(body) {
				return false
			}
			if body[i] == '}' {
				i++
				break
			}
			if body[i] != ',' {
				return false
			}
			i = skipSpace(body, i+1)
		}
	}
	if skipSpace(body, i) != len(body) {
		return false
	}
	var vals *[len(members)]string // the present values, in one allocation
	if n > 0 {
		s, vals = string(body), new([len(members)]string)
	}
	for k, m := range members[:n] {
		vals[k] = s[m.val[0]:m.val[1]]
		var field **string
		switch s[m.key[0]:m.key[1]] {
		case "id":
			field = &b.ID
		case "location_id":
			field = &b.LocationID
		case "timestamp":
			field = &b.Timestamp
		default:
			return false
		}
		if *field != nil {
			return false // a repeated member: the slow path decides
		}
		*field = &vals[k]
	}
	return true
}

// plainString reads a JSON string at body[i] made only of printable ASCII
// without escapes; it returns the bounds of its content and the index
// after its closing quote.
func plainString(body []byte, i int) (bounds [2]int, next int, ok bool) {
	if i >= len(body) || body[i] != '"' {
		return bounds, i, false
	}
	start := i + 1
	for j := start; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			return [2]int{start, j}, j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return bounds, j, false
		}
	}
	return bounds, len(body), false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
