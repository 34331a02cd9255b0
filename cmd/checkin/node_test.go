package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/checkin/checkin/persistence"
)

// TestCloseWithin: a store that closes in time passes its error on; one
// that does not (a write waiting for a full disk) is given up on, so the
// node still stops.
func TestCloseWithin(t *testing.T) {
	errClose := errors.New("close failed")
	if err := closeWithin(func() error { return errClose }, time.Minute); !errors.Is(err, errClose) {
		t.Errorf("closeWithin of a store that closes: %v, want its error", err)
	}
	release := make(chan struct{})
	defer close(release)
	err := closeWithin(func() error { <-release; return nil }, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not close within 50ms") {
		t.Errorf("closeWithin of a store that does not close: %v, want the deadline named", err)
	}
}

// TestStartStopsWhenCanceled: a SIGTERM that comes while the node starts
// (ctx canceled) stops the start even after the step it came in (the
// embedded store opens without heeding ctx): the node neither joins the
// cluster nor listens, so it never answers ready (and drains for
// http.drain-delay) before it stops.
func TestStartStopsWhenCanceled(t *testing.T) {
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr, cfg.Cluster.Addr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := startNode(ctx, cfg, zap.NewNop())
	if n != nil {
		t.Cleanup(func() { _ = n.stop() })
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("start with a canceled context: node %v, error %v; want no node and the cancellation", n != nil, err)
	}
}

// TestFailedStartLeavesNothingRunning: a start that fails at its last step
// (the HTTP port is taken) stops what it started before, the edge's
// caches and the debug server included.
func TestFailedStartLeavesNothingRunning(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		// The grains' and writers' dispatcher is one per process, started
		// on first use; the actor runtime's gossip throttle outlives a
		// cluster that stopped (neither is this package's to stop).
		goleak.IgnoreTopFunction("github.com/checkin/checkin/actors.newPoolDispatcher.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1")}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr, cfg.Cluster.Addr, cfg.DebugAddr = busy.Addr().String(), "127.0.0.1:0", "127.0.0.1:0"
	n, err := startNode(context.Background(), cfg, zap.NewNop())
	if n != nil {
		_ = n.stop()
		t.Fatal("a node started on a port that is taken")
	}
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("start on a port that is taken: %v, want the listen error", err)
	}
	goleak.VerifyNone(t, opts...)
}

// panicStore panics when it lists users (a bug in a store).
type panicStore struct{ persistence.Store }

func (panicStore) ListUsers(context.Context, string, int) ([]persistence.User, bool, error) {
	panic("a bug in the store")
}

// TestDebugServerLogsJSON: what the debug server's HTTP machinery logs
// (here the panic of a handler, which it recovers) goes to the node's
// JSON log, not as lines of plain text on stderr among the JSON ones.
func TestDebugServerLogsJSON(t *testing.T) {
	plain := &syncBuffer{}
	defer log.SetOutput(log.Writer())
	log.SetOutput(plain)
	core, logs := observer.New(zap.InfoLevel)
	n := &node{log: zap.New(core), store: panicStore{}}
	if err := n.startDebug("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer n.debug.Close()
	var addr string
	for _, e := range logs.FilterMessage("debug server listening").All() {
		addr = e.ContextMap()["addr"].(string)
	}
	if res, err := http.Post("http://"+addr+"/admin/complete-checkins", "", nil); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
	// The server logs the panic before it closes the connection; wait
	// for the line all the same, wherever it went.
	inLog := func() bool { return logs.FilterMessageSnippet("a bug in the store").Len() > 0 }
	for deadline := time.Now().Add(30 * time.Second); !inLog() && plain.String() == "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if s := plain.String(); s != "" {
		t.Errorf("the debug server logged plain text: %q", s)
	}
	if !inLog() {
		t.Error("the handler's panic is not in the node's log")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
