package actors

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A member stops getting calls after Timeouts timeouts in a row, for
// Pause; after it one call goes as a probe while the others are refused,
// and the probe's timeout stops them again, its answer clears the member;
// members are counted apart.
func TestBreakers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		op   string // timeout, answer, allow, deny
		addr string
		at   time.Duration
	}
	const callTimeout = time.Second // the deadline of each call: its at plus this
	for _, tc := range []struct {
		name   string
		cfg    BreakerConfig
		steps  []step
		denied float64
	}{
		{"three in a row stop calls for the pause", BreakerConfig{Timeouts: 3, Pause: 2 * time.Second}, []step{
			{"timeout", "b", 0}, {"timeout", "b", 0}, {"allow", "b", 0},
			{"timeout", "b", 0}, {"deny", "b", 0}, {"deny", "b", 1999 * time.Millisecond},
			{"allow", "c", time.Second},                                            // another member is not touched
			{"allow", "b", 2 * time.Second},                                        // the probe
			{"deny", "b", 2 * time.Second}, {"deny", "b", 2500 * time.Millisecond}, // the others, while it is out
			{"timeout", "b", 3 * time.Second}, {"deny", "b", 3 * time.Second}, // its timeout stops them again
			{"allow", "b", 5 * time.Second}, {"deny", "b", 5 * time.Second}, {"answer", "b", 5 * time.Second},
			{"allow", "b", 5 * time.Second}, {"allow", "c", 5 * time.Second}, // cleared
			{"timeout", "b", 6 * time.Second}, {"allow", "b", 6 * time.Second}, // three are needed again
		}, 6},
		{"a probe whose caller left lets the next call probe after its deadline", BreakerConfig{Timeouts: 1, Pause: time.Second}, []step{
			{"timeout", "b", 0}, {"allow", "b", time.Second}, // the probe, never answered nor timed out
			{"deny", "b", 1999 * time.Millisecond}, {"allow", "b", 2 * time.Second}, {"deny", "b", 2 * time.Second},
		}, 2},
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
					if got := b.allow(s.addr, at(s.at), at(s.at+callTimeout)); got != (s.op == "allow") {
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

// reportLog is a SilenceReport that writes down what it hears.
type reportLog []string

func (r *reportLog) Silent(addr string)  { *r = append(*r, "silent "+addr) }
func (r *reportLog) Answers(addr string) { *r = append(*r, "answers "+addr) }

// The breakers tell their SilenceReport of every timeout while a member's
// calls are stopped, and of the member answering again or being
// forgotten; timeouts before the stop are not reported.
func TestBreakersReportSilence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got reportLog
	b := newBreakers(BreakerConfig{Timeouts: 2, Pause: time.Second, Report: &got}, nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"}))
	b.timedOut("b", t0)                           // one: not stopped yet
	b.timedOut("b", t0.Add(100*time.Millisecond)) // two: stopped
	b.timedOut("b", t0.Add(500*time.Millisecond)) // a call sent before the stop
	b.allow("b", t0.Add(1200*time.Millisecond), t0.Add(2200*time.Millisecond))
	b.timedOut("b", t0.Add(2200*time.Millisecond)) // the probe
	b.answered("b")
	b.timedOut("c", t0)
	b.timedOut("c", t0)                    // c stopped
	b.timedOut("d", t0.Add(2*time.Minute)) // adding d forgets c
	want := reportLog{"silent b", "silent b", "silent b", "answers b", "silent c", "answers c"}
	if !slices.Equal(got, want) {
		t.Errorf("reports:\n%q\nwant\n%q", got, want)
	}
}

// A member that missed fewer answers than Timeouts and is then never
// called again (it left the cluster; a member that comes back has a new
// address) is forgotten like a stopped one, a minute later: otherwise
// every such member stays in the map for the life of the node, and with
// it the lock that every call to another member takes while any member is
// kept. It was never reported silent, so its forgetting is not reported.
func TestBreakersForgetMembersThatMissedFewAnswers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got reportLog
	b := newBreakers(BreakerConfig{Timeouts: 3, Pause: time.Second, Report: &got}, nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"}))
	b.timedOut("left", t0)
	b.timedOut("left", t0.Add(time.Second)) // two of three: not stopped
	b.timedOut("b", t0.Add(2*time.Minute))  // adding b
	if _, kept := b.members["left"]; kept {
		t.Errorf("a member that missed two answers two minutes ago and was not called since is kept")
	}
	if n := int(b.silent.Load()); n != len(b.members) || n != 1 {
		t.Errorf("silent = %d with %d members kept, want 1 and 1 (b)", n, len(b.members))
	}
	if len(got) != 0 {
		t.Errorf("reports %q, want none: no member was stopped", got)
	}
	// A member that missed an answer lately is kept, its count too.
	b.timedOut("c", t0.Add(2*time.Minute+time.Second))
	b.timedOut("d", t0.Add(2*time.Minute+2*time.Second))
	if s := b.members["c"]; s == nil || s.misses != 1 {
		t.Errorf("a member that missed an answer a second ago was dropped: %+v", s)
	}
}
