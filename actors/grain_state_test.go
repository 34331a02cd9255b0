package actors_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
)

// TestGrainPassivatesAfterItsOwnStoreCalls: a grain whose last request
// came while it waited on a store call of its own (the look-up of a user
// inherited from a lost owner; a CompleteCheckin of a checkin the store
// does not list) passivates once that call is done, like any idle grain:
// the request set its idle deadline to never while the grain was busy.
func TestGrainPassivatesAfterItsOwnStoreCalls(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = 100 * time.Millisecond

	t.Run("inherited from a lost owner", func(t *testing.T) {
		inner := openStore(t, t.TempDir())
		defer inner.Close()
		n := startNode(t, inner, gcfg, actors.DefaultWriterConfig())
		mustUser(t, n, "inh")
		if _, _, err := n.client.Checkin(ctx(t), checkin("c1", "inh", "L1", base), true, true); err != nil {
			t.Fatal(err)
		}
		n.stop()
		n = startNodeWith(t, inner, gcfg, actors.DefaultWriterConfig(), zap.NewNop(), func(d *actors.Deps) {
			d.InheritedFromLost = func(id string) bool { return id == "inh" }
		})
		if _, err := n.client.GetUser(ctx(t), "inh"); err != nil { // one request, then nothing
			t.Fatal(err)
		}
		waitFor(t, "the look-up", func() bool {
			return n.metric(t, "checkin_grain_inherited_checks_total", "result", "checked") == 1
		})
		waitFor(t, "the idle grain to passivate", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	})

	t.Run("completing a checkin the store does not list", func(t *testing.T) {
		inner := openStore(t, t.TempDir())
		defer inner.Close()
		n := startNode(t, inner, gcfg, actors.DefaultWriterConfig())
		mustUser(t, n, "cc")
		waitFor(t, "passivation", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
		if err := n.client.CompleteCheckin(ctx(t), checkin("gone", "cc", "L1", base)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the idle grain to passivate", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	})
}

// deleteThenFail deletes the user, then reports a failure, as a store
// whose last statement applied but whose answer was lost (a timeout).
type deleteThenFail struct{ persistence.Store }

func (s deleteThenFail) DeleteUser(ctx context.Context, id string) error {
	if err := s.Store.DeleteUser(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("%w: injected: applied, answer lost", persistence.ErrUnavailable)
}

// TestRecreatedUserAfterUnconfirmedDelete: after a user delete the store
// applied without confirming it, a user created again under the same id
// gets its checkins written, not acknowledged from what the grain held of
// the old user.
func TestRecreatedUserAfterUnconfirmedDelete(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	n := startNode(t, deleteThenFail{inner}, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "re")
	c := checkin("c1", "re", "L1", base)
	if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
		t.Fatal(err)
	}
	if err := n.client.DeleteUser(ctx(t), "re"); !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("delete: %v, want unavailable", err)
	}
	mustUser(t, n, "re") // the client creates the user again, then records c again
	got, created, err := n.client.Checkin(ctx(t), c, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Errorf("the checkin of the new user was answered as a retry")
	}
	if _, err := inner.GetCheckin(ctx(t), "re", "c1"); err != nil {
		t.Fatalf("checkin acknowledged (%+v) but not in the store: %v", got, err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "re"); err != nil || cur != c {
		t.Errorf("current location %+v (%v), want %+v", cur, err, c)
	}
}

// TestFailedWriteDroppedFromCompletionIsLookedUp: past the failed writes a
// grain completes in the background, the oldest is dropped; it may be
// stored, so a retry of its id with other content is a conflict, not a
// second checkin.
func TestFailedWriteDroppedFromCompletionIsLookedUp(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = time.Hour // no background retry during the test
	n, store := startUnwrittenTest(t, "ov", gcfg)
	store.failLate.Store(true) // each write is stored whole, then reported failed
	for i := range 65 {        // one more than a grain completes
		c := checkin(fmt.Sprintf("x%d", i), "ov", "L1", base.Add(time.Duration(i)*time.Second))
		if _, _, err := n.client.Checkin(ctx(t), c, true, true); err == nil {
			t.Fatal("write succeeded")
		}
	}
	store.failLate.Store(false)
	_, created, err := n.client.Checkin(ctx(t), checkin("x0", "ov", "L2", base.Add(time.Minute)), true, true)
	if err == nil {
		page, _ := store.Store.ListCheckins(ctx(t), persistence.Query{UserID: "ov", From: time.Unix(0, 0), To: base.Add(24 * time.Hour), Limit: 1000})
		twice := 0
		for _, x := range page.Checkins {
			if x.ID == "x0" {
				twice++
			}
		}
		t.Fatalf("retry of x0 with another location and time: created=%v, no conflict; listed %d times", created, twice)
	}
	wantCode(t, err, actors.ErrConflict, actors.CodeCheckinConflict)
}

// TestLateWriteOfAnotherActivationIsLookedUp: another activation of the
// user (handed over, still writing) stored a checkin after this grain
// loaded the user, and told this node (ReloadCurrent). A client's retry of
// that checkin here, without a timestamp, is answered with the stored one,
// not written again at another time.
func TestLateWriteOfAnotherActivationIsLookedUp(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	n := startNode(t, inner, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "mv")
	if _, _, err := n.client.Checkin(ctx(t), checkin("a", "mv", "L1", base), true, true); err != nil {
		t.Fatal(err)
	}
	x := checkin("x", "mv", "L2", base.Add(time.Minute))
	if err := inner.WriteCheckins(ctx(t), []persistence.Checkin{x}); err != nil { // the old owner's late write
		t.Fatal(err)
	}
	n.client.ReloadCurrent("mv") // what Deps.LateWrite leads to
	waitFor(t, "the reload", func() bool {
		cur, err := n.client.CurrentLocation(ctx(t), "mv")
		return err == nil && cur == x
	})
	got, created, err := n.client.Checkin(ctx(t), checkin("x", "mv", "L2", base.Add(time.Hour)), false, true)
	if err != nil || created || got != x {
		page, _ := inner.ListCheckins(ctx(t), persistence.Query{UserID: "mv", From: time.Unix(0, 0), To: base.Add(24 * time.Hour), Limit: 100})
		t.Fatalf("retry of x: %+v created=%v err=%v, want x as stored; listed %+v", got, created, err, page.Checkins)
	}
}

// deafStore's GetCheckin heeds no deadline: it answers after wait, as a
// store call stuck on a frozen disk does.
type deafStore struct {
	persistence.Store
	wait time.Duration
}

func (s deafStore) GetCheckin(_ context.Context, userID, id string) (persistence.Checkin, error) {
	time.Sleep(s.wait)
	return s.Store.GetCheckin(context.Background(), userID, id)
}

// TestGrainWaitsForAStoreCallPastItsDeadline: a grain's own store call
// that outlives grain.store-timeout (and a second more) is waited for:
// the grain takes its result when it comes, instead of taking it for
// failed and going on while the call still runs (and writes what the
// grain then reads).
func TestGrainWaitsForAStoreCallPastItsDeadline(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	gcfg := actors.DefaultGrainConfig()
	n := startNode(t, inner, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "deaf")
	if _, _, err := n.client.Checkin(ctx(t), checkin("c1", "deaf", "L1", base), true, true); err != nil {
		t.Fatal(err)
	}
	n.stop()
	gcfg.StoreTimeout = 200 * time.Millisecond
	n = startNodeWith(t, deafStore{inner, gcfg.StoreTimeout + 1300*time.Millisecond}, gcfg, actors.DefaultWriterConfig(), zap.NewNop(), func(d *actors.Deps) {
		d.InheritedFromLost = func(id string) bool { return id == "deaf" }
	})
	if _, err := n.client.GetUser(ctx(t), "deaf"); err != nil { // activates it: the look-up by id begins
		t.Fatal(err)
	}
	waitFor(t, "the look-up", func() bool {
		return n.metric(t, "checkin_grain_inherited_checks_total", "result", "checked")+
			n.metric(t, "checkin_grain_inherited_checks_total", "result", "failed") >= 1
	})
	if got := n.metric(t, "checkin_grain_inherited_checks_total", "result", "failed"); got != 0 {
		t.Errorf("the look-up was taken for failed (%v) while the store still answered it", got)
	}
}
