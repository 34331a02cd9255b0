package admit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/admit"
	"github.com/checkin/checkin/persistence/pebble"
)

// narrowStore answers reads of checkins by id one slot at a time, each
// taking delay (fault injection: a store pushed past what it can answer).
// Like a real server, it works on a call whose caller gave up, and only
// then answers the caller's expired deadline.
type narrowStore struct {
	persistence.Store
	slot  chan struct{}
	delay time.Duration
}

func (s *narrowStore) GetCheckin(ctx context.Context, userID, id string) (persistence.Checkin, error) {
	s.slot <- struct{}{}
	time.Sleep(s.delay)
	<-s.slot
	if err := ctx.Err(); err != nil {
		return persistence.Checkin{}, err
	}
	return s.Store.GetCheckin(ctx, userID, id)
}

// A store that answers fewer calls than it is offered: with a latency
// target, the calls beyond what it answers in about the target are
// refused at once (ErrRefused, never sent to the store), and none of those
// admitted waits out its caller's deadline; without one, every call
// queues, the queue grows past what the store answers within the
// deadline, and callers time out although the store works all the time.
// The store answers 100 reads a second (one at a time, 10 ms each); 300
// callers read one checkin after another (after a refusal, 20 ms later),
// each waiting 2 s at most: 40 times the target, so that a call admitted
// under the bound times out only if the bound let too many in, not because
// a loaded machine paused the test for a second; without the bound the
// queue (300 calls of 10 ms: 3 s) still outlasts it.
func TestStoreRefusesInsteadOfQueueing(t *testing.T) {
	inner, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	want := persistence.Checkin{ID: "c1", UserID: "u1", LocationID: "l1", Timestamp: time.UnixMilli(1_700_000_000_000).UTC()}
	if err := inner.WriteCheckins(context.Background(), []persistence.Checkin{want}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []time.Duration{50 * time.Millisecond, 0} {
		t.Run(fmt.Sprint("latency target ", target), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := admit.NewMetrics(reg)
			s := admit.New(&narrowStore{Store: inner, slot: make(chan struct{}, 1), delay: 10 * time.Millisecond},
				admit.Config{Target: target, Floor: 2, Ceiling: 4096}, m)
			// Calls that start after settle count: by then the bound has
			// followed the store.
			const callers, settle, run = 300, 1500 * time.Millisecond, 4 * time.Second
			var mu sync.Mutex
			var answered, refused, timedOut, refusedAll int
			start := time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Since(start) < run {
						counted := time.Since(start) >= settle
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						got, err := s.GetCheckin(ctx, want.UserID, want.ID)
						cancel()
						mu.Lock()
						switch {
						case err == nil:
							if got != want {
								t.Errorf("read %+v, want %+v", got, want)
							}
							answered += b2i(counted)
						case errors.Is(err, admit.ErrRefused):
							if !errors.Is(err, persistence.ErrOverloaded) || !errors.Is(err, persistence.ErrNotApplied) {
								t.Errorf("a refusal is %v: want it overloaded and not applied", err)
							}
							refused += b2i(counted)
							refusedAll++
						case errors.Is(err, context.DeadlineExceeded):
							timedOut += b2i(counted)
						default:
							t.Errorf("read: %v", err)
						}
						mu.Unlock()
						if err != nil && errors.Is(err, admit.ErrRefused) {
							time.Sleep(20 * time.Millisecond)
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("after %v: %d answered, %d refused, %d timed out; bound %d", settle, answered, refused, timedOut, s.Limit())
			if got := testutil.ToFloat64(m.Refused()); int(got) != refusedAll {
				t.Errorf("checkin_store_refused_total %v, want the %d refusals", got, refusedAll)
			}
			if target == 0 {
				if refusedAll != 0 {
					t.Errorf("%d calls refused without a target", refusedAll)
				}
				// The load must overload the store, or the other case
				// proves nothing.
				if timedOut <= answered {
					t.Errorf("without a target %d calls timed out and %d were answered: the store was not overloaded", timedOut, answered)
				}
				return
			}
			if timedOut != 0 {
				t.Errorf("%d calls timed out with the bound", timedOut)
			}
			if answered == 0 || refused == 0 {
				t.Errorf("with the bound %d calls answered and %d refused: want both", answered, refused)
			}
			if s.Limit() >= callers {
				t.Errorf("the bound stayed at %d, over the %d callers", s.Limit(), callers)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkGetUser: the cheapest store call there is (a cached user of the
// embedded store) bare and through the bound, from parallel callers (the
// bound's counter and its window's lock are shared by all of them).
func BenchmarkGetUser(b *testing.B) {
	inner, err := pebble.Open(b.TempDir(), pebble.WithMemTableSize(4<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	if err := inner.CreateUser(context.Background(), persistence.User{ID: "u1", Name: "n", CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	bounded := admit.New(inner, admit.Config{Target: 100 * time.Millisecond, Floor: 32, Ceiling: 4096}, admit.NewMetrics(nil))
	for _, tc := range []struct {
		name string
		s    persistence.Store
	}{{"bare", inner}, {"bounded", bounded}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := tc.s.GetUser(ctx, "u1"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// panicStore panics on every read of a checkin by id (a bug in a store).
type panicStore struct{ persistence.Store }

func (panicStore) GetCheckin(context.Context, string, string) (persistence.Checkin, error) {
	panic("a bug in the store")
}

// A store call that panics (the edge recovers and answers 500) gives its
// place back: more panics than the bound's ceiling still leave room for
// the calls after them.
func TestStorePanicGivesItsPlaceBack(t *testing.T) {
	inner, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	s := admit.New(panicStore{inner}, admit.Config{Target: time.Second, Floor: 1, Ceiling: 4}, admit.NewMetrics(prometheus.NewRegistry()))
	for range 10 {
		func() {
			defer func() { _ = recover() }()
			_, _ = s.GetCheckin(t.Context(), "u", "c")
		}()
	}
	if _, err := s.GetUser(t.Context(), "u"); errors.Is(err, admit.ErrRefused) || !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("a call after ten that panicked: %v, want it admitted (not found)", err)
	}
}
