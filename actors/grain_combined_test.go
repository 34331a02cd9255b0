package actors_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
)

// createThenFail stores the user, then fails as if the store's answer was
// lost (a timeout after the write applied).
type createThenFail struct{ persistence.Store }

func (s createThenFail) CreateUser(ctx context.Context, u persistence.User) error {
	if err := s.Store.CreateUser(ctx, u); err != nil {
		return err
	}
	return fmt.Errorf("%w: injected after the create", persistence.ErrUnavailable)
}

// A user create the store did not confirm may have been applied: the grain
// reads the user again, instead of answering user_not_found for a user the
// store holds (and refusing its checkins) until it passivates.
func TestUnconfirmedCreateUserIsReadAgain(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	n := startNode(t, createThenFail{inner}, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	if _, err := n.client.CreateUser(ctx(t), persistence.User{ID: "uc", Name: "N uc", CreatedAt: base}); err == nil {
		t.Fatal("the create succeeded with the store failing it")
	}
	if u, err := n.client.GetUser(ctx(t), "uc"); err != nil || u.ID != "uc" {
		t.Fatalf("get user after the unconfirmed create: %+v, %v; want the user the store holds", u, err)
	}
	c := checkin("c1", "uc", "L1", base)
	if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
		t.Fatalf("checkin after the unconfirmed create: %v", err)
	}
}

// A client's retry of a checkin known only from the listing is written
// again; when that write fails part way, its answer must not promise a
// background completion the grain does not do (the entry goes back to
// listed, written again only at the next retry).
func TestFailedRewriteOfListedCheckinPromisesNoCompletion(t *testing.T) {
	s := openStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	if err := s.CreateUser(ctx(t), persistence.User{ID: "rw", Name: "N rw", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	half := checkin("half", "rw", "L1", base)
	store := &faultyStore{Store: &listedStore{Store: s, extra: half}}
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = 10 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	store.fail.Store(true)
	_, _, err := n.client.Checkin(ctx(t), half, true, true)
	var e *actors.Error
	if !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("retry of the listed checkin with the store failing: err = %v, want unavailable", err)
	}
	attempts := store.attempts.Load()
	store.fail.Store(false)
	if strings.Contains(e.Error(), "completes in the background") {
		// Then it must: wait well past the retry for a write that never comes.
		waitFor(t, "the promised background write", func() bool { return store.attempts.Load() > attempts })
	}
}

// While the current checkin is deleted, a checkin older than it becomes
// durable after the delete's read of the new current location, and is
// found stored (the retry of a write the store applied but did not
// confirm): once the delete is done, it is the current location.
func TestDeleteCurrentKeepsCheckinFoundStoredMeanwhile(t *testing.T) {
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() })
	hooks := newDeleteHooks(inner)
	close(hooks.deleteGate)
	store := &faultyStore{Store: hooks}
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = time.Hour // only the client's retry writes it again
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "dk")
	first, last := checkin("first", "dk", "L1", base), checkin("last", "dk", "L2", base.Add(2*time.Hour))
	for _, c := range []persistence.Checkin{first, last} {
		if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
			t.Fatal(err)
		}
	}
	mid := checkin("mid", "dk", "L3", base.Add(time.Hour))

	gate := make(chan struct{})
	store.gate.Store(&gate)
	attempts := store.attempts.Load()
	firstTry := make(chan error, 1)
	go func() { _, _, err := n.client.Checkin(ctx(t), mid, true, true); firstTry <- err }()
	waitFor(t, "mid's write to reach the store", func() bool { return store.attempts.Load() > attempts })

	hooks.armed.Store(true)
	deleted := make(chan error, 1)
	go func() { _, err := n.client.DeleteCheckin(ctx(t), "dk", "last"); deleted <- err }()
	<-hooks.currentRead // the delete read the new current location: first

	store.failLate.Store(true) // mid is stored, its write answered unconfirmed
	close(gate)
	if err := <-firstTry; err == nil {
		t.Fatal("mid's first write succeeded with the store failing it")
	}
	store.failLate.Store(false)
	store.gate.Store(nil)
	if _, _, err := n.client.Checkin(ctx(t), mid, true, true); err != nil {
		t.Fatalf("retry of mid: %v", err)
	}
	close(hooks.currentGate)
	if err := <-deleted; err != nil {
		t.Fatalf("delete: %v", err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "dk"); err != nil || cur != mid {
		t.Fatalf("current after the delete = %+v (%v), want %+v", cur, err, mid)
	}
}

// A checkin that becomes the grain's current location while it is being
// deleted (the store's current location read again after another
// activation's late write) does not stay current once the delete removed
// it.
func TestCheckinBecomingCurrentWhileDeleted(t *testing.T) {
	n, hooks, first, _ := startDeleteTest(t, "bc", actors.DefaultGrainConfig())
	// Another activation of the user deleted last after this one loaded it.
	if _, err := hooks.Store.DeleteCheckin(ctx(t), "bc", "last"); err != nil {
		t.Fatal(err)
	}
	hooks.deleteGate = make(chan struct{})
	close(hooks.currentGate)
	hooks.armed.Store(true)
	deleted := make(chan error, 1)
	go func() { _, err := n.client.DeleteCheckin(ctx(t), "bc", "first"); deleted <- err }()
	<-hooks.deleting
	n.client.ReloadCurrent("bc")
	waitFor(t, "the grain to take first as current", func() bool {
		cur, err := n.client.CurrentLocation(ctx(t), "bc")
		return err == nil && cur == first
	})
	close(hooks.deleteGate)
	if err := <-deleted; err != nil {
		t.Fatalf("delete: %v", err)
	}
	hooks.armed.Store(false)
	waitFor(t, "the current location to be read again", func() bool {
		_, err := n.client.CurrentLocation(ctx(t), "bc")
		var e *actors.Error
		if errors.As(err, &e) && e.Code == actors.CodeNoCheckins {
			return true
		}
		if err == nil {
			t.Fatalf("current after both checkins were deleted: a deleted checkin")
		}
		return false
	})
}

// A read of the current location again (after another activation's late
// write) that began before a checkin delete and ends after it does not
// bring the deleted checkin back as the current location.
func TestReloadOvertakenByCheckinDelete(t *testing.T) {
	n, hooks, first, last := startDeleteTest(t, "ro", actors.DefaultGrainConfig())
	if cur, err := n.client.CurrentLocation(ctx(t), "ro"); err != nil || cur != last {
		t.Fatalf("current = %+v (%v), want %+v", cur, err, last)
	}
	// Another activation of the user deleted last after this one loaded it.
	if _, err := hooks.Store.DeleteCheckin(ctx(t), "ro", "last"); err != nil {
		t.Fatal(err)
	}
	hooks.armed.Store(true)
	n.client.ReloadCurrent("ro")
	<-hooks.currentRead // it read first, and waits to answer
	if _, err := n.client.DeleteCheckin(ctx(t), "ro", "first"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	hooks.armed.Store(false)
	close(hooks.currentGate)
	waitFor(t, "the reload to be taken", func() bool {
		_, err := n.client.CurrentLocation(ctx(t), "ro")
		var e *actors.Error
		if errors.As(err, &e) && e.Code == actors.CodeNoCheckins {
			return true
		}
		if cur, err := n.client.CurrentLocation(ctx(t), "ro"); err == nil && cur == first {
			t.Logf("current is the deleted %s (may be before the reload is taken)", cur.ID)
		}
		return false
	})
}

// The checkin deletes a grain holds unconfirmed are bounded by refusing
// more, not by forgetting the oldest: forgotten, its id took checkins
// (a retry answered as stored) that a late or half-done delete then
// removes, and it was no longer retried though its answer said so.
func TestUnconfirmedDeletesAreNotForgotten(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.DeleteRetry = time.Hour // no background retries during the test
	n, hooks, _, _ := startDeleteTest(t, "ud", gcfg)
	const max = 64 // maxCheckinDeletes
	for i := range max + 1 {
		if _, _, err := n.client.Checkin(ctx(t), checkin(fmt.Sprint("c", i), "ud", "L1", base.Add(time.Duration(i)*time.Second)), true, true); err != nil {
			t.Fatal(err)
		}
	}
	hooks.deleteFailures.Store(1 << 20)
	for i := range max + 1 {
		_, err := n.client.DeleteCheckin(ctx(t), "ud", fmt.Sprint("c", i))
		var e *actors.Error
		if !errors.As(err, &e) || (e.Code != actors.CodeUnavailable && e.Code != actors.CodeOverloaded) {
			t.Fatalf("delete c%d with the store failing: err = %v, want unavailable or overloaded", i, err)
		}
	}
	_, _, err := n.client.Checkin(ctx(t), checkin("c0", "ud", "L1", base), true, true)
	var e *actors.Error
	if !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("checkin c0, whose delete is unconfirmed: err = %v, want unavailable", err)
	}
}
