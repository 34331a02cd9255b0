package main

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// picker picks an index in [0, n).
type picker interface {
	pick() int
}

type uniformPicker struct {
	r *rand.Rand
	n int
}

func (p uniformPicker) pick() int { return p.r.IntN(p.n) }

// zipfPicker picks rank k with probability ∝ (v+k)^-s: index 0 is the most
// popular user.
type zipfPicker struct{ z *rand.Zipf }

func (p zipfPicker) pick() int { return int(p.z.Uint64()) }

func newPicker(r *rand.Rand, popularity string, n int, s, v float64) picker {
	if popularity == "zipf" && n > 1 {
		return zipfPicker{rand.NewZipf(r, s, v, uint64(n-1))}
	}
	return uniformPicker{r: r, n: n}
}

// mix picks an operation by weight.
type mix struct {
	cum   [numOps]float64
	total float64
}

func newMix(c config) mix {
	var m mix
	w := [numOps]float64{opCheckin: c.MixCheckin, opLocation: c.MixLocation, opRange: c.MixRange, opRangeLocation: c.MixRangeLocation, opGet: c.MixGet, opDelete: c.MixDelete}
	for o := range w {
		m.total += w[o]
		m.cum[o] = m.total
	}
	return m
}

func (m mix) pick(r *rand.Rand) op {
	x := r.Float64() * m.total
	for o := range m.cum {
		if x < m.cum[o] {
			return op(o)
		}
	}
	// only reached through rounding: the last op with a weight
	for o := numOps - 1; o > 0; o-- {
		if m.cum[o] > m.cum[o-1] {
			return o
		}
	}
	return opCheckin
}

// synthetic is the generated workload: users and locations named by index.
type synthetic struct {
	users     []string
	locations []string
	mix       mix
}

func userID(prefix string, i int) string     { return prefix + "-u" + strconv.Itoa(i) }
func locationID(prefix string, i int) string { return prefix + "-l" + strconv.Itoa(i) }

func newSynthetic(c config) *synthetic {
	s := &synthetic{users: make([]string, c.Users), locations: make([]string, c.Locations), mix: newMix(c)}
	for i := range s.users {
		s.users[i] = userID(c.IDPrefix, i)
	}
	for i := range s.locations {
		s.locations[i] = locationID(c.IDPrefix, i)
	}
	return s
}

// timeLayout is how the API writes times: UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendCheckinBody appends {"id":…,"location_id":…,"timestamp":…}. Ids
// are [A-Za-z0-9_-] and need no escaping.
func appendCheckinBody(b []byte, id, locationID string, ts time.Time) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","location_id":"`...)
	b = append(b, locationID...)
	b = append(b, `","timestamp":"`...)
	b = ts.UTC().AppendFormat(b, timeLayout)
	return append(b, `"}`...)
}

func appendUserPath(b []byte, user, suffix string) []byte {
	b = append(b, "/v1/users/"...)
	b = append(b, user...)
	return append(b, suffix...)
}

// appendRangePath appends the path of a range read of the last window,
// at one location when loc is not empty.
func appendRangePath(b []byte, user, loc string, from time.Time, limit int) []byte {
	b = appendUserPath(b, user, "/checkins?from=")
	b = from.UTC().AppendFormat(b, timeLayout)
	b = append(b, "&limit="...)
	b = strconv.AppendInt(b, int64(limit), 10)
	if loc != "" {
		b = append(b, "&location_id="...)
		b = append(b, loc...)
	}
	return b
}
