package actors

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A member stops getting calls after Timeouts timeouts in a row, for
// Pause; after it calls go again and the first timeout stops them again;
// an answer clears the member; members are counted apart.
func TestBreakers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		op   string // timeout, answer, allow, deny
		addr string
		at   time.Duration
	}
	for _, tc := range []struct {
		name   string
		cfg    BreakerConfig
		steps  []step
		denied float64
	}{
		{"three in a row stop calls for the pause", BreakerConfig{Timeouts: 3, Pause: 2 * time.Second}, []step{
			{"timeout", "b", 0}, {"timeout", "b", 0}, {"allow", "b", 0},
			{"timeout", "b", 0}, {"deny", "b", 0}, {"deny", "b", 1999 * time.Millisecond},
			{"allow", "c", time.Second}, // another member is not touched
			{"allow", "b", 2 * time.Second},
			{"timeout", "b", 2 * time.Second}, {"deny", "b", 3 * time.Second}, // the first timeout after the pause stops them again
			{"allow", "b", 4 * time.Second}, {"answer", "b", 4 * time.Second},
			{"timeout", "b", 5 * time.Second}, {"allow", "b", 5 * time.Second}, // cleared: three are needed again
		}, 3},
		{"an answer between timeouts clears them", BreakerConfig{Timeouts: 2, Pause: time.Second}, []step{
			{"timeout", "b", 0}, {"answer", "b", 0}, {"timeout", "b", 0}, {"allow", "b", 0},
			{"timeout", "b", 0}, {"deny", "b", 0},
		}, 1},
		{"timeouts of calls sent before the stop do not prolong it", BreakerConfig{Timeouts: 1, Pause: time.Second}, []step{
			{"timeout", "b", 0}, {"timeout", "b", 500 * time.Millisecond}, {"allow", "b", time.Second},
		}, 0},
		{"a member not called for a minute past its pause is forgotten", BreakerConfig{Timeouts: 1, Pause: time.Second}, []step{
			{"timeout", "gone", 0},
			{"timeout", "b", 2 * time.Minute}, // adding b drops gone
			{"allow", "gone", 2 * time.Minute}, {"deny", "b", 2 * time.Minute},
		}, 1},
		{"off", BreakerConfig{}, []step{
			{"timeout", "b", 0}, {"timeout", "b", 0}, {"timeout", "b", 0}, {"allow", "b", 0},
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
			b := newBreakers(tc.cfg, nil, refused)
			for i, s := range tc.steps {
				switch s.op {
				case "timeout":
					b.timedOut(s.addr, at(s.at))
				case "answer":
					b.answered(s.addr)
				case "allow", "deny":
					if got := b.allow(s.addr, at(s.at)); got != (s.op == "allow") {
						t.Fatalf("step %d: allow(%s) at %v = %v, want %v", i, s.addr, s.at, got, s.op == "allow")
					}
				}
			}
			if got := testutil.ToFloat64(refused); got != tc.denied {
				t.Errorf("refused %v calls, want %v", got, tc.denied)
			}
			if n := int(b.silent.Load()); n != len(b.members) {
				t.Errorf("silent = %d, but %d members are kept", n, len(b.members))
			}
		})
	}
}
