package actors

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// BreakerConfig sets when calls to another member fail at once instead of
// waiting out their timeouts: a member that did not answer Timeouts calls
// in a row (with no answer in between) gets no calls from this node for
// Pause; after it, one call goes as a probe while the others still fail at
// once: its answer clears the member, its timeout stops calls for another
// Pause (and a probe that ends neither way, its caller gone, lets the next
// call probe once its deadline passed). A member that is
// frozen or cut off from this node (but still in the membership) would
// otherwise hold every request for its users for the whole request
// timeout, until those requests fill this node's http.max-inflight and
// its own users are refused too.
type BreakerConfig struct {
	Timeouts int           // 0: calls are never stopped
	Pause    time.Duration // how long calls to such a member fail at once
	// Report, when set, hears of the members whose calls are stopped and
	// of those that answer again (nil: nobody).
	Report SilenceReport
}

// SilenceReport hears from a node's breakers which members it stopped
// calling: Silent at every call that times out while calls to the member
// are stopped; Answers once the member answers again, or is forgotten (it
// left). cluster.Node is one: it pings those members, and members that
// most of the cluster cannot reach are removed. Its methods must not
// block: they are called with the breakers' lock held.
type SilenceReport interface {
	Silent(addr string)
	Answers(addr string)
}

// DefaultBreakerConfig stops calls to a member after 3 timeouts in a row
// for 2 s.
func DefaultBreakerConfig() BreakerConfig { return BreakerConfig{Timeouts: 3, Pause: 2 * time.Second} }

// Validate reports the first setting out of range.
func (c BreakerConfig) Validate() error {
	switch {
	case c.Timeouts < 0:
		return errors.New("grain.member-timeouts must be 0 (never stop calls) or more")
	case c.Timeouts > 0 && c.Pause <= 0:
		return errors.New("grain.member-pause must be positive")
	}
	return nil
}

// noReport is the SilenceReport of breakers that have none: nobody hears.
type noReport struct{}

func (noReport) Silent(string)  {}
func (noReport) Answers(string) {}

// errMemberSilent is the error of a call that was not sent: the member
// holding the grain stopped answering this node's calls a moment ago.
var errMemberSilent = errors.New("the node that holds this user stopped answering this node's calls a moment ago; the request was not sent: retry shortly")

// breakers keeps a BreakerConfig's state for each other member that has
// missed an answer since it last gave one.
type breakers struct {
	cfg     BreakerConfig
	log     *zap.Logger
	refused prometheus.Counter
	mu      sync.Mutex
	members map[string]*silence // by cluster address
	// silent is len(members), read without the lock: while no member has
	// missed an answer, calls pay one atomic load.
	silent atomic.Int32
}

type silence struct {
	misses  int       // calls timed out in a row
	last    time.Time // of the last call that timed out
	until   time.Time // calls fail at once before this
	stopped bool      // calls were stopped since the member last answered
	// probe: after the pause, the one call sent to learn whether the
	// member answers again is out until this deadline (its own); the
	// others fail at once meanwhile, instead of all waiting out their
	// timeouts while the member is still silent.
	probe time.Time
}

func newBreakers(cfg BreakerConfig, log *zap.Logger, refused prometheus.Counter) *breakers {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Report == nil {
		cfg.Report = noReport{}
	}
	return &breakers{cfg: cfg, log: log, refused: refused, members: map[string]*silence{}}
}

// allow reports whether a call to the member at addr may be sent at now;
// deadline is the call's, which bounds it as a probe.
func (b *breakers) allow(addr string, now, deadline time.Time) bool {
	if b.cfg.Timeouts == 0 || b.silent.Load() == 0 {
		return true
	}
	b.mu.Lock()
	s := b.members[addr]
	ok := true
	switch {
	case s == nil || !s.stopped: // not stopped (yet)
	case now.Before(s.until), now.Before(s.probe):
		ok = false // the pause, or a probe is out
	default:
		s.probe = deadline // this call is the probe
	}
	b.mu.Unlock()
	if !ok {
		b.refused.Inc()
	}
	return ok
}

// timedOut counts a call to addr that got no answer in time.
func (b *breakers) timedOut(addr string, now time.Time) {
	if b.cfg.Timeouts == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.members[addr]
	if s == nil {
		b.forgetGone(now)
		s = &silence{}
		b.members[addr] = s
		b.silent.Add(1)
	}
	s.misses++
	s.last = now
	if now.Before(s.until) || (s.misses < b.cfg.Timeouts && !s.stopped) {
		if s.stopped { // a call sent before the stop
			b.cfg.Report.Silent(addr)
		}
		return // stopped already (a call sent before), or not yet
	}
	s.until, s.stopped, s.misses, s.probe = now.Add(b.cfg.Pause), true, 0, time.Time{}
	b.cfg.Report.Silent(addr)
	b.log.Warn("a member did not answer this node's last calls: calls to it fail at once for a while",
		zap.String("member", addr), zap.Int("timeouts", b.cfg.Timeouts), zap.Duration("pause", b.cfg.Pause))
}

// forgetGone drops the members whose calls were stopped and have not been
// tried since for a minute past the pause, and those whose calls were not
// stopped (fewer timeouts in a row) and did not time out for a minute:
// they left the cluster (a member that comes back has a new address), or
// nobody calls them any more. Called with the lock held, as a member is
// added, so the map stays as small as the members that missed answers
// lately.
func (b *breakers) forgetGone(now time.Time) {
	for addr, s := range b.members {
		switch {
		case s.stopped && now.Sub(s.until) > time.Minute:
			b.cfg.Report.Answers(addr)
		case !s.stopped && now.Sub(s.last) > time.Minute: // never reported silent
		default:
			continue
		}
		delete(b.members, addr)
		b.silent.Add(-1)
	}
}

// answered clears addr: it answered a call.
func (b *breakers) answered(addr string) {
	if b.cfg.Timeouts == 0 || b.silent.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.members[addr]
	if s == nil {
		return
	}
	if s.stopped {
		b.log.Info("a member answers this node's calls again", zap.String("member", addr))
		b.cfg.Report.Answers(addr)
	}
	delete(b.members, addr)
	b.silent.Add(-1)
}
