package actors_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
)

// batchStore records the size of every checkin batch written, and can
// hold one user's first read (an activation of that user's grain) until
// released.
type batchStore struct {
	persistence.Store
	mu      sync.Mutex
	batches []int

	slowUser string
	entered  chan struct{} // closed when the slow user's read began
	release  chan struct{} // the slow user's read waits for it
	once     sync.Once
}

func (s *batchStore) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	s.mu.Lock()
	s.batches = append(s.batches, len(batch))
	s.mu.Unlock()
	return s.Store.WriteCheckins(ctx, batch)
}

func (s *batchStore) GetUser(ctx context.Context, id string) (persistence.User, error) {
	if id == s.slowUser {
		s.once.Do(func() { close(s.entered) })
		select {
		case <-s.release:
		case <-ctx.Done():
			return persistence.User{}, ctx.Err()
		}
	}
	return s.Store.GetUser(ctx, id)
}

func (s *batchStore) written() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// lingeringWriters waits long for company, so that a batch held back by
// mistake shows as a flush by age (or a call that times out).
func lingeringWriters() actors.WriterConfig {
	cfg := actors.DefaultWriterConfig()
	cfg.Writers, cfg.Linger = 1, 3*time.Second
	return cfg
}

// A checkin with nothing else on its way to the writer, on an idle node,
// is written at once: it does not wait the linger time for company.
func TestWriterWritesALoneCheckinAtOnce(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &batchStore{Store: inner}
	n := startNode(t, store, actors.DefaultGrainConfig(), lingeringWriters())
	users := []string{"w1", "w2", "w3", "w4", "w5"}
	for _, u := range users {
		mustUser(t, n, u)
	}
	for i, u := range users {
		if _, created, err := n.client.Checkin(ctx(t), checkin("c-"+u, u, "L1", base.Add(time.Duration(i)*time.Minute)), true, true); err != nil || !created {
			t.Fatalf("checkin of %s: created=%v err=%v", u, created, err)
		}
	}
	if got := store.written(); !slices.Equal(got, []int{1, 1, 1, 1, 1}) {
		t.Fatalf("batches %v, want five of one checkin", got)
	}
	idle, age := n.metric(t, "checkin_writer_flushes_total", "reason", "idle"), n.metric(t, "checkin_writer_flushes_total", "reason", "age")
	if idle != 5 || age != 0 {
		t.Fatalf("flushes: %v idle, %v after the linger time; want 5 and 0", idle, age)
	}
}

// A partial batch waits for a checkin that is still on its way through a
// grain on this node, and both are written in one batch.
func TestWriterWaitsForCheckinsOnTheirWay(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &batchStore{Store: inner, slowUser: "slow", entered: make(chan struct{}), release: make(chan struct{})}
	n := startNode(t, store, actors.DefaultGrainConfig(), lingeringWriters())
	mustUser(t, n, "fast")
	// Created in the store, so its grain is not active yet: its checkin
	// activates it, and the activation's read waits for release.
	if err := inner.CreateUser(ctx(t), persistence.User{ID: "slow", Name: "S", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}

	errs := make(chan error, 2)
	send := func(c persistence.Checkin) {
		_, _, err := n.client.Checkin(ctx(t), c, true, true)
		errs <- err
	}
	go send(checkin("s1", "slow", "L1", base))
	<-store.entered // the slow checkin is on its way, held in its grain's activation
	go send(checkin("f1", "fast", "L2", base))
	waitFor(t, "the fast checkin to reach the writer", func() bool { return n.metric(t, "checkin_writer_queue_depth") == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := store.written(); len(got) != 0 {
		t.Fatalf("batches %v written while a checkin was on its way, want none yet", got)
	}
	close(store.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := store.written(); !slices.Equal(got, []int{2}) {
		t.Fatalf("batches %v, want one of both checkins", got)
	}
}
