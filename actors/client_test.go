package actors_test

import (
	"context"
	"testing"
	"time"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/persistence"
)

// A grain call that gets no answer within its deadline is a timeout (504
// at the edge, as for every request whose work outlived its deadline),
// not "unavailable" (503), which for a write tells the client that
// nothing was done: a create or delete that timed out may still be made.
func TestGrainCallTimeoutIsATimeout(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	// The slow user's activation reads the user and waits for release: its
	// grain answers nothing until then.
	store := &batchStore{Store: inner, slowUser: "slow", entered: make(chan struct{}), release: make(chan struct{})}
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	if err := inner.CreateUser(ctx(t), persistence.User{ID: "slow", Name: "S", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	defer close(store.release)
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := n.client.GetUser(c, "slow")
	wantCode(t, err, actors.ErrTimeout, actors.CodeTimeout)
	// Without a context deadline: the client's own call timeout.
	client := actors.NewClient(n.member.Cluster, 300*time.Millisecond, 1, n.view, n.m, n.pool, actors.DefaultBreakerConfig(), nil)
	err = client.DeleteUser(context.Background(), "slow")
	wantCode(t, err, actors.ErrTimeout, actors.CodeTimeout)
}
