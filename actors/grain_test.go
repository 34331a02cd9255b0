package actors_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/cluster"
	"github.com/checkin/checkin/messages"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/pebble"
)

// testNode is a real one-node cluster with real writers over a store.
type testNode struct {
	client *actors.Client
	pool   *actors.Pool
	member *cluster.Node
	reg    *prometheus.Registry
	view   *actors.CurrentView
	m      *actors.Metrics
}

func startNode(t testing.TB, store persistence.Store, gcfg actors.GrainConfig, wcfg actors.WriterConfig) *testNode {
	t.Helper()
	return startLoggedNode(t, store, gcfg, wcfg, zap.NewNop())
}

// startLoggedNode is startNode with the node's log going to log.
func startLoggedNode(t testing.TB, store persistence.Store, gcfg actors.GrainConfig, wcfg actors.WriterConfig, log *zap.Logger) *testNode {
	t.Helper()
	return startNodeWith(t, store, gcfg, wcfg, log, nil)
}

// startNodeWith is startLoggedNode with tune, if not nil, changing the
// grains' dependencies before the node starts.
func startNodeWith(t testing.TB, store persistence.Store, gcfg actors.GrainConfig, wcfg actors.WriterConfig, log *zap.Logger, tune func(*actors.Deps)) *testNode {
	t.Helper()
	ccfg := cluster.DefaultConfig()
	system := cluster.NewSystem(ccfg, log)
	reg := prometheus.NewRegistry()
	m := actors.NewMetrics(reg)
	pool, err := actors.NewPool(system, store, wcfg, log, m)
	if err != nil {
		t.Fatal(err)
	}
	view, err := actors.NewCurrentView(8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Close() })
	// As a node wires it: grains handed over pass their failed writes to
	// the user's grain through the node's client.
	var client atomic.Pointer[actors.Client]
	deps := &actors.Deps{View: view, Store: store, Writers: pool, Config: gcfg, Log: log, Metrics: m,
		HandOverWrite: func(ctx context.Context, c persistence.Checkin) error { return client.Load().CompleteCheckin(ctx, c) }}
	if tune != nil {
		tune(deps)
	}
	kind := actors.NewUserGrainKind(deps)
	member, err := cluster.Start(system, ccfg, log, kind)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{client: actors.NewClient(member.Cluster, 5*time.Second, 3, view, m, pool, actors.DefaultBreakerConfig(), log), pool: pool, member: member, reg: reg, view: view, m: m}
	client.Store(n.client)
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) stop() {
	if n.member == nil {
		return
	}
	_ = n.pool.Close(5 * time.Second)
	n.member.Stop()
	n.member = nil
}

func openStore(t testing.TB, dir string) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

var base = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func mustUser(t *testing.T, n *testNode, id string) {
	t.Helper()
	if _, err := n.client.CreateUser(ctx(t), persistence.User{ID: id, Name: "N " + id, CreatedAt: base}); err != nil {
		t.Fatalf("create user %s: %v", id, err)
	}
}

func checkin(id, user, loc string, ts time.Time) persistence.Checkin {
	return persistence.Checkin{ID: id, UserID: user, LocationID: loc, Timestamp: ts}
}

// checkinFails sends c (client-chosen id and timestamp) through n and fails
// the test if the write succeeds: the store is set to fail it.
func checkinFails(t *testing.T, n *testNode, c persistence.Checkin) {
	t.Helper()
	if _, _, err := n.client.Checkin(ctx(t), c, true, true); err == nil {
		t.Fatal("the write succeeded with the store failing")
	}
}

func wantCode(t *testing.T, err error, kind error, code string) {
	t.Helper()
	var e *actors.Error
	if !errors.As(err, &e) || !errors.Is(err, kind) || e.Code != code {
		t.Fatalf("want %v/%s, got %#v (%v)", kind, code, e, err)
	}
}

func TestGrainBehaviour(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())

	t.Run("current location follows the latest timestamp, not arrival", func(t *testing.T) {
		mustUser(t, n, "ooo")
		steps := []struct {
			c        persistence.Checkin
			wantCurr string
		}{
			{checkin("b", "ooo", "L2", base.Add(2*time.Hour)), "b"},
			{checkin("a", "ooo", "L1", base.Add(time.Hour)), "b"},    // older, arrives later
			{checkin("c", "ooo", "L3", base.Add(3*time.Hour)), "c"},  // newer
			{checkin("bb", "ooo", "L4", base.Add(3*time.Hour)), "c"}, // tie, smaller id loses
			{checkin("d", "ooo", "L5", base.Add(3*time.Hour)), "d"},  // tie, larger id wins
		}
		for _, s := range steps {
			if _, created, err := n.client.Checkin(ctx(t), s.c, true, true); err != nil || !created {
				t.Fatalf("checkin %s: created=%v err=%v", s.c.ID, created, err)
			}
			cur, err := n.client.CurrentLocation(ctx(t), "ooo")
			if err != nil || cur.ID != s.wantCurr {
				t.Fatalf("after %s: current %q (%v), want %q", s.c.ID, cur.ID, err, s.wantCurr)
			}
		}
	})

	t.Run("reads of a user come from the view once the grain was read", func(t *testing.T) {
		mustUser(t, n, "read")
		served := func(by string) float64 { return n.metric(t, "checkin_grain_requests_total", "served_by", by) }
		read := func(want string, from string) {
			t.Helper()
			view, local := served("view"), served("local")
			cur, err := n.client.CurrentLocation(ctx(t), "read")
			if err != nil || cur.ID != want {
				t.Fatalf("current %q (%v), want %q", cur.ID, err, want)
			}
			if got := map[string]float64{"view": served("view") - view, "local": served("local") - local}; got[from] != 1 {
				t.Fatalf("read served %v, want by %s", got, from)
			}
		}
		for i, ts := range []time.Duration{time.Hour, 2 * time.Hour} {
			if _, _, err := n.client.Checkin(ctx(t), checkin(fmt.Sprint("w", i), "read", "L1", base.Add(ts)), true, true); err != nil {
				t.Fatal(err)
			}
		}
		read("w1", "local") // written only: nothing published yet
		read("w1", "view")
		for i, ts := range []time.Duration{3 * time.Hour, 30 * time.Minute} { // newer, then older
			if _, _, err := n.client.Checkin(ctx(t), checkin(fmt.Sprint("r", i), "read", "L2", base.Add(ts)), true, true); err != nil {
				t.Fatal(err)
			}
			read("r0", "view") // published before the checkin was acknowledged
		}
	})

	t.Run("retries are idempotent", func(t *testing.T) {
		mustUser(t, n, "idem")
		c := checkin("x1", "idem", "L1", base)
		if _, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || !created {
			t.Fatalf("first: %v %v", created, err)
		}
		tests := []struct {
			name   string
			c      persistence.Checkin
			tsSet  bool
			wantOK bool
		}{
			{"same content", c, true, true},
			{"timestamp left to the server", checkin("x1", "idem", "L1", base.Add(time.Minute)), false, true},
			{"other location", checkin("x1", "idem", "L2", base), true, false},
			{"other timestamp", checkin("x1", "idem", "L1", base.Add(time.Second)), true, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, created, err := n.client.Checkin(ctx(t), tc.c, tc.tsSet, true)
				if !tc.wantOK {
					wantCode(t, err, actors.ErrConflict, actors.CodeCheckinConflict)
					return
				}
				if err != nil || created || got != c {
					t.Fatalf("got %+v created=%v err=%v, want the stored %+v", got, created, err, c)
				}
			})
		}
		page, err := store.ListCheckins(ctx(t), persistence.Query{UserID: "idem", From: base.Add(-time.Hour), To: base.Add(time.Hour), Limit: 10})
		if err != nil || len(page.Checkins) != 1 {
			t.Fatalf("stored %d checkins (%v), want 1", len(page.Checkins), err)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		_, _, err := n.client.Checkin(ctx(t), checkin("z", "nobody", "L1", base), true, false)
		wantCode(t, err, actors.ErrNotFound, actors.CodeUserNotFound)
		_, err = n.client.CurrentLocation(ctx(t), "nobody")
		wantCode(t, err, actors.ErrNotFound, actors.CodeUserNotFound)
	})

	t.Run("user without checkins", func(t *testing.T) {
		mustUser(t, n, "fresh")
		_, err := n.client.CurrentLocation(ctx(t), "fresh")
		wantCode(t, err, actors.ErrNotFound, actors.CodeNoCheckins)
	})

	t.Run("create user twice", func(t *testing.T) {
		mustUser(t, n, "twice")
		_, err := n.client.CreateUser(ctx(t), persistence.User{ID: "twice", Name: "again", CreatedAt: base})
		wantCode(t, err, actors.ErrConflict, actors.CodeUserExists)
		u, err := n.client.GetUser(ctx(t), "twice")
		if err != nil || u.Name != "N twice" {
			t.Fatalf("get user: %+v %v", u, err)
		}
	})

	t.Run("concurrent creates of one user: exactly one wins", func(t *testing.T) {
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := n.client.CreateUser(ctx(t), persistence.User{ID: "race", Name: fmt.Sprint(i), CreatedAt: base})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, actors.ErrConflict):
					conflicts.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 19 {
			t.Fatalf("wins %d conflicts %d", wins.Load(), conflicts.Load())
		}
	})

	t.Run("50 concurrent checkins of one user", func(t *testing.T) {
		mustUser(t, n, "busy")
		var wg sync.WaitGroup
		var created atomic.Int64
		errs := make(chan error, 100)
		for i := range 50 {
			wg.Add(2)
			c := checkin(fmt.Sprintf("k%02d", i), "busy", fmt.Sprintf("L%d", i%5), base.Add(time.Duration((i*37)%50)*time.Minute))
			for range 2 { // every checkin sent twice at once: one write, one replay
				go func() {
					defer wg.Done()
					_, fresh, err := n.client.Checkin(ctx(t), c, true, true)
					if err != nil {
						errs <- err
					}
					if fresh {
						created.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		if got := created.Load(); got != 50 {
			t.Errorf("%d answers said created for 50 checkins sent twice each, want one each", got)
		}
		for err := range errs {
			t.Fatal(err)
		}
		page, err := store.ListCheckins(ctx(t), persistence.Query{UserID: "busy", From: base, To: base.Add(time.Hour), Limit: 100})
		if err != nil || len(page.Checkins) != 50 {
			t.Fatalf("stored %d (%v), want 50", len(page.Checkins), err)
		}
		cur, err := n.client.CurrentLocation(ctx(t), "busy")
		want := page.Checkins[0] // newest first
		if err != nil || cur != want {
			t.Fatalf("current %+v (%v), want %+v", cur, err, want)
		}
	})
}

func TestPassivationAndReactivation(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = 300 * time.Millisecond
	gcfg.RecentIDs = 1
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "sleepy")
	first := checkin("p1", "sleepy", "L1", base.Add(time.Hour))
	if _, _, err := n.client.Checkin(ctx(t), first, true, true); err != nil {
		t.Fatal(err)
	}
	older := checkin("p2", "sleepy", "L2", base)
	if _, _, err := n.client.Checkin(ctx(t), older, true, true); err != nil {
		t.Fatal(err)
	}
	// The grain remembers only the newest checkin (RecentIDs=1): a retry of
	// the older one is found in the store, with the same or another content.
	if got, created, err := n.client.Checkin(ctx(t), older, true, true); err != nil || created || got != older {
		t.Fatalf("retry from store: %+v %v %v", got, created, err)
	}
	if got, created, err := n.client.Checkin(ctx(t), checkin("p2", "sleepy", "L2", base.Add(time.Hour)), false, true); err != nil || created || got != older {
		t.Fatalf("retry without timestamp from store: %+v %v %v", got, created, err)
	}
	_, _, err := n.client.Checkin(ctx(t), checkin("p2", "sleepy", "L7", base), true, true)
	wantCode(t, err, actors.ErrConflict, actors.CodeCheckinConflict)
	waitFor(t, "passivation", func() bool { return n.metric(t, "checkin_grains_active") == 0 })

	cur, err := n.client.CurrentLocation(ctx(t), "sleepy")
	if err != nil || cur != first {
		t.Fatalf("after reactivation current %+v (%v), want %+v", cur, err, first)
	}
	if got, created, err := n.client.Checkin(ctx(t), first, true, true); err != nil || created || got != first {
		t.Fatalf("retry after reactivation: %+v %v %v", got, created, err)
	}
	_, _, err = n.client.Checkin(ctx(t), checkin("p1", "sleepy", "L9", first.Timestamp), true, true)
	wantCode(t, err, actors.ErrConflict, actors.CodeCheckinConflict)
	if got, created, err := n.client.Checkin(ctx(t), older, true, true); err != nil || created || got != older {
		t.Fatalf("retry of the older checkin after reactivation: %+v %v %v", got, created, err)
	}
	if a := n.metric(t, "checkin_grain_activations_total"); a < 2 {
		t.Fatalf("activations %v, want at least 2", a)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "r")
	want := checkin("late", "r", "L2", base.Add(time.Hour))
	for _, c := range []persistence.Checkin{want, checkin("early", "r", "L1", base)} {
		if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
			t.Fatal(err)
		}
	}
	n.stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openStore(t, dir)
	defer store.Close()
	n = startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	cur, err := n.client.CurrentLocation(ctx(t), "r")
	if err != nil || cur != want {
		t.Fatalf("current after restart %+v (%v), want %+v", cur, err, want)
	}
	if _, created, err := n.client.Checkin(ctx(t), checkin("early", "r", "L1", base), true, true); err != nil || created {
		t.Fatalf("retry after restart created=%v err=%v", created, err)
	}
}

// metric returns the value of a counter or gauge without labels, or with
// label (a name and a value) the value of that series: 0 if it has none
// yet (a labelled series appears once it is first counted), as long as
// the metric is registered with that label (a misspelt name or label
// fails the test instead of reading 0).
func (n *testNode) metric(t testing.TB, name string, label ...string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) == 2 && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == label[0] && l.GetValue() == label[1]
			}) {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	if len(label) == 2 && n.described(name, label[0]) {
		return 0
	}
	t.Fatalf("no metric %s %v registered", name, label)
	return 0
}

// described reports whether the node registered the metric name with the
// variable label.
func (n *testNode) described(name, label string) bool {
	descs := make(chan *prometheus.Desc)
	go func() { n.reg.Describe(descs); close(descs) }()
	found := false
	for d := range descs {
		// Desc keeps its fields to itself; its String names them.
		s := d.String()
		if i := strings.Index(s, "variableLabels:"); i >= 0 && strings.Contains(s, `fqName: "`+name+`"`) &&
			slices.Contains(strings.FieldsFunc(s[i+len("variableLabels:"):], func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }), label) {
			found = true
		}
	}
	return found
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultyStore fails or blocks checkin writes on demand (fault injection).
type faultyStore struct {
	persistence.Store
	fail     atomic.Bool // fail writes as if part may have been stored
	failLate atomic.Bool // store writes, then fail them as if unanswered
	refuse   atomic.Bool // fail writes as refused, nothing stored (ErrNotApplied)
	attempts atomic.Int64
	release  chan struct{}                 // non-nil: writes wait for it
	gate     atomic.Pointer[chan struct{}] // set: writes wait for it
}

func (f *faultyStore) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	f.attempts.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if gate := f.gate.Load(); gate != nil {
		select {
		case <-*gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.refuse.Load() {
		return persistence.NotApplied(fmt.Errorf("%w: injected refusal", persistence.ErrUnavailable))
	}
	if f.fail.Load() {
		return fmt.Errorf("%w: injected", persistence.ErrUnavailable)
	}
	if f.failLate.Load() {
		if err := f.Store.WriteCheckins(ctx, batch); err != nil {
			return err
		}
		return fmt.Errorf("%w: injected after the write", persistence.ErrUnavailable)
	}
	return f.Store.WriteCheckins(ctx, batch)
}

func TestStoreFailureIsRetryable(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner}
	gcfg := actors.DefaultGrainConfig()
	// The client's retry comes first: the grain's own (after half a
	// second at least) could write the checkin before it, on a slow
	// machine, and the client's retry would be answered as stored before.
	gcfg.WriteRetry = time.Hour
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "f")
	c := checkin("f1", "f", "L1", base)
	store.fail.Store(true)
	_, _, err := n.client.Checkin(ctx(t), c, true, true)
	wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	if _, err := n.client.CurrentLocation(ctx(t), "f"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("a failed checkin became the current location: %v", err)
	}
	store.fail.Store(false)
	if _, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || !created {
		t.Fatalf("retry after the store recovered: created=%v err=%v", created, err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "f"); err != nil || cur != c {
		t.Fatalf("current %+v %v", cur, err)
	}
}

// TestWriteFailureLogsAreBounded: in an outage every batch fails; the
// writers log the first failures of each second, not one line per batch.
func TestWriteFailureLogsAreBounded(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner}
	core, logs := observer.New(zap.InfoLevel)
	n := startLoggedNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig(), zap.New(core))
	mustUser(t, n, "f")
	store.fail.Store(true)
	const failed = 200
	start := time.Now()
	for i := range failed {
		_, _, err := n.client.Checkin(ctx(t), checkin(fmt.Sprint("f", i), "f", "L1", base), true, true)
		wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	}
	entries := logs.FilterMessage("checkin batch write failed") // one batch or more per checkin: they went one by one
	// at most 10 a second (failureLogsPerSecond), in each second the loop touched
	most := 10 * (int(time.Since(start)/time.Second) + 2)
	if got := entries.Len(); got < 1 || got > most {
		t.Errorf("%d failed batches logged of %d or more, want at most %d: the first 10 of each second", got, failed, most)
	}
	if e := entries.All(); len(e) > 0 && e[0].Level != zapcore.WarnLevel {
		t.Errorf("a batch the store could not take logged at %s, want warn (the outage is logged where it is found)", e[0].Level)
	}
}

func TestFullQueueRefusesAtOnce(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner, release: make(chan struct{})}
	wcfg := actors.WriterConfig{Writers: 1, MaxBatch: 1, Linger: 0, QueueSize: 2, MaxInflight: 1, FlushTimeout: 10 * time.Second, LookupConcurrency: 1}
	n := startNode(t, store, actors.DefaultGrainConfig(), wcfg)
	users := []string{"q1", "q2", "q3"}
	for _, u := range users {
		mustUser(t, n, u)
	}
	results := make(chan error, 2)
	for _, u := range users[:2] {
		go func() {
			_, _, err := n.client.Checkin(ctx(t), checkin("c-"+u, u, "L1", base), true, false)
			results <- err
		}()
	}
	waitFor(t, "two queued checkins", func() bool { return n.metric(t, "checkin_writer_queue_depth") == 2 })
	// The store stays blocked until after this call: had the call queued,
	// it could only have ended in a timeout, not a refusal.
	_, _, err := n.client.Checkin(ctx(t), checkin("c-q3", "q3", "L1", base), true, false)
	wantCode(t, err, actors.ErrOverloaded, actors.CodeOverloaded)
	close(store.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("queued checkin failed: %v", err)
		}
	}
}

// slowStore takes delay for every checkin batch it writes, its inner
// store's write included (fault injection: a store pushed past what it
// can write). The inner write's own time, a disk sync that a loaded
// machine can make much slower, does not add to it: the rate of the store
// is what the test says, whatever the disk.
type slowStore struct {
	persistence.Store
	delay time.Duration
}

func (s *slowStore) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	start := time.Now()
	if err := s.Store.WriteCheckins(ctx, batch); err != nil {
		return err
	}
	select {
	case <-time.After(s.delay - time.Since(start)):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (s *slowStore) Unwrap() persistence.Store { return s.Store }

// A store that writes fewer checkins than it is offered: with
// writer.latency-target, checkins beyond what it writes in about the
// target are refused at once (overloaded), and none of those admitted
// waits out its caller's deadline; without it, every checkin queues, the
// queue grows past what the store writes within the deadline, and callers
// time out, although the store works all the time. The store writes 8
// checkins per 50 ms, 160 a second; 300 users send checkins one after the
// other (after a refusal, 100 ms later); a caller waits 1 s at most.
func TestOverloadedStoreRefusesInsteadOfQueueing(t *testing.T) {
	for _, target := range []time.Duration{50 * time.Millisecond, 0} {
		t.Run(fmt.Sprint("latency target ", target), func(t *testing.T) {
			inner := openStore(t, t.TempDir())
			defer inner.Close()
			store := &slowStore{Store: inner, delay: 50 * time.Millisecond}
			wcfg := actors.WriterConfig{Writers: 1, MaxBatch: 8, Linger: 0, QueueSize: 4096, MaxInflight: 1,
				FlushTimeout: 10 * time.Second, LookupConcurrency: 1, LatencyTarget: target}
			n := startNode(t, store, actors.DefaultGrainConfig(), wcfg)
			client := actors.NewClient(n.member.Cluster, time.Second, 1, n.view, n.m, n.pool, actors.DefaultBreakerConfig(), zap.NewNop())
			const users = 300
			for i := range users {
				mustUser(t, n, fmt.Sprint("o", i))
			}
			// Calls that start after settle count: by then the bound has
			// followed the store.
			const settle, run = 1500 * time.Millisecond, 4 * time.Second
			type outcome struct {
				c       persistence.Checkin
				err     error
				counted bool
			}
			outcomes := make(chan outcome, 1<<16)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					u := fmt.Sprint("o", i)
					for k := 0; time.Since(start) < run; k++ {
						began := time.Since(start)
						c := checkin(fmt.Sprintf("%s-%d", u, k), u, "L1", base.Add(time.Duration(k)*time.Second))
						_, _, err := client.Checkin(context.Background(), c, true, true)
						outcomes <- outcome{c: c, err: err, counted: began >= settle}
						if err != nil {
							time.Sleep(100 * time.Millisecond)
						}
					}
				}()
			}
			wg.Wait()
			close(outcomes)
			var acked, refused, timedOut int
			var ackedCs, refusedCs []persistence.Checkin
			for o := range outcomes {
				switch {
				case o.err == nil:
					ackedCs = append(ackedCs, o.c)
					if o.counted {
						acked++
					}
				case errors.Is(o.err, actors.ErrOverloaded):
					refusedCs = append(refusedCs, o.c)
					if o.counted {
						refused++
					}
				case errors.Is(o.err, actors.ErrTimeout):
					if o.counted {
						timedOut++
					}
				default:
					t.Fatalf("checkin %s: %v", o.c.ID, o.err)
				}
			}
			t.Logf("after %s: %d acknowledged, %d refused, %d timed out", settle, acked, refused, timedOut)
			if target == 0 {
				if timedOut == 0 {
					t.Fatalf("without a latency target no checkin timed out: the load does not overload the store, and the test shows nothing")
				}
				return
			}
			if timedOut > 0 || refused == 0 || acked == 0 {
				t.Errorf("want checkins refused at once and the admitted ones written in time, none timed out")
			}
			if n.metric(t, "checkin_writer_admission_limit") >= float64(users) {
				t.Errorf("the bound stayed at %v, over the %d users' demand", n.metric(t, "checkin_writer_admission_limit"), users)
			}
			// Acknowledged checkins are stored; refused ones never were.
			for _, c := range ackedCs {
				if _, err := inner.GetCheckin(ctx(t), c.UserID, c.ID); err != nil {
					t.Fatalf("acknowledged checkin %s: %v", c.ID, err)
				}
			}
			for _, c := range refusedCs {
				if _, err := inner.GetCheckin(ctx(t), c.UserID, c.ID); !errors.Is(err, persistence.ErrNotFound) {
					t.Fatalf("refused checkin %s: %v, want not found", c.ID, err)
				}
			}
		})
	}
}

// After reactivation the grain knows the newest checkins only; the others,
// even those sharing a timestamp with remembered ones, are recognised from
// the store when retried, with the same content or another.
func TestRetriesAcrossTheMemoryWindow(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = 300 * time.Millisecond
	gcfg.RecentIDs = 2
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "w")
	cs := []persistence.Checkin{
		checkin("a", "w", "L1", base), checkin("b", "w", "L2", base), checkin("c", "w", "L3", base),
		checkin("d", "w", "L4", base.Add(-time.Hour)),
	}
	for _, c := range cs {
		if _, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || !created {
			t.Fatalf("checkin %s: %v %v", c.ID, created, err)
		}
	}
	waitFor(t, "passivation", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	for _, c := range cs {
		got, created, err := n.client.Checkin(ctx(t), c, true, true)
		if err != nil || created || got != c {
			t.Errorf("retry of %s after reactivation: %+v created=%v err=%v", c.ID, got, created, err)
		}
		_, _, err = n.client.Checkin(ctx(t), checkin(c.ID, "w", "elsewhere", c.Timestamp), true, true)
		if !errors.Is(err, actors.ErrConflict) {
			t.Errorf("changed retry of %s: %v, want a conflict", c.ID, err)
		}
	}
	page, err := store.ListCheckins(ctx(t), persistence.Query{UserID: "w", From: base.Add(-2 * time.Hour), To: base.Add(time.Hour), Limit: 10})
	if err != nil || len(page.Checkins) != len(cs) {
		t.Fatalf("stored %d checkins (%v), want %d", len(page.Checkins), err, len(cs))
	}
}

// A call that times out leaves its answer to come later; that late answer
// must reach nobody, and every later call must get its own answer (the
// client reuses its reply boxes). The call's time ends either by its
// context's deadline or, for a context without one (the edge's), by the
// client's own timeout. Both are long enough for the request to be sent
// before the call's time ends (else the checkin would not be written at
// all), and the client's timeout, which bounds each later call too, for a
// synced write on a loaded machine.
func TestLateAnswerReachesNoLaterCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(n *testNode) *actors.Client
		ctx    func() (context.Context, context.CancelFunc)
	}{
		{"context deadline", func(n *testNode) *actors.Client { return n.client },
			func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Second)
			}},
		{"client timeout", func(n *testNode) *actors.Client {
			return actors.NewClient(n.member.Cluster, 2*time.Second, 3, n.view, n.m, n.pool, actors.DefaultBreakerConfig(), nil)
		}, func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := openStore(t, t.TempDir())
			defer inner.Close()
			store := &faultyStore{Store: inner, release: make(chan struct{})}
			n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
			mustUser(t, n, "t")
			client := tc.client(n)
			short, cancel := tc.ctx()
			defer cancel()
			late := checkin("late", "t", "L1", base)
			_, _, err := client.Checkin(short, late, true, true)
			wantCode(t, err, actors.ErrTimeout, actors.CodeTimeout) // 504 at the edge
			if !strings.Contains(err.Error(), "may still be stored") {
				t.Errorf("error %q does not say the checkin may still be stored", err)
			}
			close(store.release) // the write completes and its answer goes out now

			for i := range 20 {
				c := checkin(fmt.Sprintf("next-%d", i), "t", "L2", base.Add(time.Duration(i+1)*time.Second))
				got, created, err := client.Checkin(ctx(t), c, true, true)
				if err != nil || !created || got != c {
					t.Fatalf("call %d answered with %+v created=%v err=%v, want its own checkin %+v", i, got, created, err, c)
				}
			}
			// The timed-out checkin was written after all (a retry would get 200).
			got, created, err := client.Checkin(ctx(t), late, true, true)
			if err != nil || created || got != late {
				t.Fatalf("retry of the timed-out checkin: %+v created=%v err=%v", got, created, err)
			}
		})
	}
}

// A grain waiting for the store does not passivate, however long past its
// idle timeout the write takes: its caller gets the answer. Once the write
// is done the grain passivates as usual.
func TestNoPassivationWhileWriting(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner, release: make(chan struct{})}
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = 100 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "slow")
	done := make(chan error, 1)
	c := checkin("s1", "slow", "L1", base)
	go func() {
		_, _, err := n.client.Checkin(ctx(t), c, true, true)
		done <- err
	}()
	waitFor(t, "the write to reach the store", func() bool { return n.metric(t, "checkin_writer_queue_depth") == 1 })
	time.Sleep(10 * gcfg.IdleTimeout) // the write outlasts the idle timeout many times over
	if a := n.metric(t, "checkin_grains_active"); a != 1 {
		t.Fatalf("active grains %v while its checkin is being written, want 1", a)
	}
	close(store.release)
	if err := <-done; err != nil {
		t.Fatalf("checkin written while idle: %v", err)
	}
	waitFor(t, "passivation after the write", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	if cur, err := n.client.CurrentLocation(ctx(t), "slow"); err != nil || cur != c {
		t.Fatalf("after reactivation current %+v (%v), want %+v", cur, err, c)
	}
}

// A grain handed over to another member (cluster.HandOver: the topology
// moved its user, or its node drains) answers the checkin it is writing
// once the store has it, answers calls that reach it afterwards "moved"
// (their callers ask the new owner), and stops once idle.
func TestHandedOverGrainAnswersWhatItHolds(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner, release: make(chan struct{})}
	late := make(chan string, 4)
	n := startNodeWith(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig(), zap.NewNop(),
		func(d *actors.Deps) { d.LateWrite = func(id string) { late <- id } })
	mustUser(t, n, "mover")
	done := make(chan error, 1)
	go func() {
		_, _, err := n.client.Checkin(ctx(t), checkin("m1", "mover", "L1", base), true, true)
		done <- err
	}()
	waitFor(t, "the write to reach the store", func() bool { return n.metric(t, "checkin_writer_queue_depth") == 1 })
	system := n.member.System
	pid := n.member.Cluster.Get("mover", "UserGrain")
	system.Root.Send(pid, &cluster.HandOver{})

	// A call from another member, as the generated client sends it.
	method := messages.File_checkin_proto.Services().ByName("UserGrain").Methods().ByName("CurrentLocation").Index()
	data, err := proto.Marshal(&messages.CurrentLocationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := system.Root.RequestFuture(pid, &pcluster.GrainRequest{MethodIndex: int32(method), MessageData: data}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("a call to the handed-over grain got no answer: %v", err)
	}
	if g, ok := res.(*pcluster.GrainErrorResponse); !ok || g.Reason != pcluster.ErrorReason_ABORTED || g.Metadata["code"] != "moved" {
		t.Fatalf("a call to the handed-over grain was answered %v, want the moved answer", res)
	}
	if _, alive := system.ProcessRegistry.Get(pid); !alive {
		t.Fatal("the grain stopped with a checkin being written")
	}

	select {
	case id := <-late:
		t.Fatalf("late write of %s reported before the checkin was stored", id)
	default:
	}
	close(store.release)
	if err := <-done; err != nil {
		t.Fatalf("the checkin the grain held when handed over: %v", err)
	}
	select {
	case id := <-late:
		if id != "mover" {
			t.Errorf("late write reported for %q, want mover", id)
		}
	case <-time.After(5 * time.Second):
		t.Error("the checkin stored after the hand-over was not reported: the user's new grain would not read it")
	}
	waitFor(t, "the grain to stop once idle", func() bool {
		_, alive := system.ProcessRegistry.Get(pid)
		return !alive
	})
	if got, err := inner.GetCheckin(ctx(t), "mover", "m1"); err != nil || got.LocationID != "L1" {
		t.Fatalf("the store has %+v (%v), want the acknowledged checkin", got, err)
	}
	if got := n.metric(t, "checkin_grain_handovers_total"); got != 1 {
		t.Errorf("checkin_grain_handovers_total = %v, want 1", got)
	}
}

// ReloadCurrent makes an active grain read its user's current location
// from the store again, as after another activation's late checkin or
// delete: forward to a newer checkin, and back once that one is deleted.
func TestReloadCurrent(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "re")
	first := checkin("r1", "re", "L1", base)
	if _, _, err := n.client.Checkin(ctx(t), first, true, true); err != nil {
		t.Fatal(err)
	}
	current := func() persistence.Checkin {
		c, err := n.client.CurrentLocation(ctx(t), "re")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := current(); got != first {
		t.Fatalf("current %+v, want %+v", got, first)
	}

	late := checkin("r2", "re", "L2", base.Add(time.Minute)) // written by another activation
	if err := store.WriteCheckins(ctx(t), []persistence.Checkin{late}); err != nil {
		t.Fatal(err)
	}
	if got := current(); got != first {
		t.Fatalf("current %+v before the reload, want what the grain loaded (%+v): the test needs a grain that does not read the store by itself", got, first)
	}
	n.client.ReloadCurrent("re")
	waitFor(t, "the grain to take the newer checkin", func() bool { return current() == late })

	if _, err := store.DeleteCheckin(ctx(t), "re", "r2"); err != nil {
		t.Fatal(err)
	}
	n.client.ReloadCurrent("re")
	waitFor(t, "the grain to move back after the delete", func() bool { return current() == first })
	n.client.ReloadCurrent("nobody-active") // no grain here: nothing happens
}

// The grain of a user that does not exist passivates after
// grain.missing-timeout; one that exists stays for grain.idle-timeout, and
// requests keep it active.
func TestPassivationTimeouts(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = time.Hour
	gcfg.MissingTimeout = 200 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "here")
	if _, err := n.client.GetUser(ctx(t), "ghost"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("ghost: %v, want not found", err)
	}
	// Both grains were activated. The missing user's may have passivated
	// already, on a machine that took its timeout to get here: the
	// activations count it all the same, the active grains need not.
	if act := n.metric(t, "checkin_grain_activations_total"); act != 2 {
		t.Fatalf("activations %v, want 2", act)
	}
	waitFor(t, "the missing user's grain to passivate", func() bool { return n.metric(t, "checkin_grains_active") == 1 })
	for range 5 { // well past the missing timeout, with requests
		time.Sleep(gcfg.MissingTimeout)
		if _, err := n.client.GetUser(ctx(t), "here"); err != nil {
			t.Fatal(err)
		}
	}
	if a := n.metric(t, "checkin_grains_active"); a != 1 {
		t.Fatalf("active grains %v, want the existing user's grain", a)
	}
	if act := n.metric(t, "checkin_grain_activations_total"); act != 2 {
		t.Fatalf("activations %v, want 2 (no reactivation of the existing user)", act)
	}
}

// lookupFailingStore fails checkin-id look-ups on demand (fault injection),
// one by one or, with batch set, through the batch look-up.
type lookupFailingStore struct {
	persistence.Store
	fail atomic.Bool
}

func (f *lookupFailingStore) GetCheckin(ctx context.Context, userID, id string) (persistence.Checkin, error) {
	if f.fail.Load() {
		return persistence.Checkin{}, fmt.Errorf("%w: injected", persistence.ErrUnavailable)
	}
	return f.Store.GetCheckin(ctx, userID, id)
}

type batchLookupFailingStore struct{ *lookupFailingStore }

func (f batchLookupFailingStore) GetCheckins(ctx context.Context, refs []persistence.CheckinRef) ([]persistence.Checkin, []bool, error) {
	if f.fail.Load() {
		return nil, nil, fmt.Errorf("%w: injected", persistence.ErrUnavailable)
	}
	return f.Store.(persistence.CheckinBatchGetter).GetCheckins(ctx, refs)
}

// A client-chosen id the grain has forgotten is looked up before it is
// written; when the look-up fails the checkin is neither written nor
// acknowledged, and a retry once the store is back records it once.
func TestLookupFailureIsRetryable(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			inner := openStore(t, t.TempDir())
			defer inner.Close()
			f := &lookupFailingStore{Store: inner}
			var store persistence.Store = f
			if batch {
				store = batchLookupFailingStore{f}
			}
			gcfg := actors.DefaultGrainConfig()
			gcfg.RecentIDs, gcfg.KnownIDs = 1, 0
			n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
			mustUser(t, n, "k")
			first, second := checkin("k1", "k", "L1", base), checkin("k2", "k", "L2", base.Add(time.Minute))
			for _, c := range []persistence.Checkin{first, second} { // the grain keeps one id: it no longer knows them all
				if _, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || !created {
					t.Fatalf("checkin %s: created=%v err=%v", c.ID, created, err)
				}
			}
			third := checkin("k3", "k", "L3", base.Add(2*time.Minute))
			f.fail.Store(true)
			_, _, err := n.client.Checkin(ctx(t), third, true, true)
			wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
			if _, err := inner.GetCheckin(ctx(t), "k", "k3"); !errors.Is(err, persistence.ErrNotFound) {
				t.Fatalf("a checkin whose look-up failed was written: %v", err)
			}
			if cur, err := n.client.CurrentLocation(ctx(t), "k"); err != nil || cur != second {
				t.Fatalf("current after the failed look-up: %+v %v, want %+v", cur, err, second)
			}
			f.fail.Store(false)
			for i, wantCreated := range []bool{true, false} {
				got, created, err := n.client.Checkin(ctx(t), third, true, true)
				if err != nil || created != wantCreated || got != third {
					t.Fatalf("call %d after the store recovered: %+v created=%v err=%v", i+1, got, created, err)
				}
			}
			// the first checkin, forgotten by the grain, is found in the store
			if got, created, err := n.client.Checkin(ctx(t), first, true, true); err != nil || created || got != first {
				t.Fatalf("retry of a forgotten checkin: %+v created=%v err=%v", got, created, err)
			}
		})
	}
}

// countingStore counts checkin-id look-ups (it hides any batch look-up, so
// every id is one GetCheckin).
type countingStore struct {
	persistence.Store
	lookups atomic.Int64
}

func (s *countingStore) GetCheckin(ctx context.Context, userID, id string) (persistence.Checkin, error) {
	s.lookups.Add(1)
	return s.Store.GetCheckin(ctx, userID, id)
}

// EachCheckinID lists ids as the store under it does (not a look-up).
func (s *countingStore) EachCheckinID(ctx context.Context, userID string, limit int, fn func([]byte)) (bool, error) {
	return s.Store.(persistence.CheckinIDLister).EachCheckinID(ctx, userID, limit, fn)
}

// The grain remembers the ids of the user's newest grain.recent-ids
// checkins by timestamp, whatever order they arrived in: their retries are
// answered from memory, an older one's from the store.
func TestRecentIDsAreTheNewestByTimestamp(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &countingStore{Store: inner}
	gcfg := actors.DefaultGrainConfig()
	gcfg.RecentIDs = 2
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "r")
	oldest, newest, middle := checkin("r1", "r", "L1", base), checkin("r2", "r", "L2", base.Add(2*time.Hour)), checkin("r3", "r", "L3", base.Add(time.Hour))
	for _, c := range []persistence.Checkin{oldest, newest, middle} { // arrival order is not time order
		if _, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || !created {
			t.Fatalf("checkin %s: created=%v err=%v", c.ID, created, err)
		}
	}
	for _, tt := range []struct {
		c       persistence.Checkin
		lookups int64
	}{{newest, 0}, {middle, 0}, {oldest, 1}} {
		before := store.lookups.Load()
		if got, created, err := n.client.Checkin(ctx(t), tt.c, true, true); err != nil || created || got != tt.c {
			t.Fatalf("retry of %s: %+v created=%v err=%v", tt.c.ID, got, created, err)
		}
		if d := store.lookups.Load() - before; d != tt.lookups {
			t.Errorf("retry of %s made %d store look-ups, want %d", tt.c.ID, d, tt.lookups)
		}
	}
}

// A grain that knows every checkin id of its user (recent ones whole,
// older ones by hash, read on activation from a store that lists them)
// sends a new id to the store without a look-up; a retry of a known id,
// or any id once the user has more than it keeps, is looked up.
func TestKnownIDsSpareLookups(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &countingStore{Store: inner}
	gcfg := actors.DefaultGrainConfig()
	gcfg.RecentIDs, gcfg.KnownIDs = 1, 2
	gcfg.IdleTimeout = 300 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }
	// step sends c and checks that it made want look-ups.
	step := func(t *testing.T, c persistence.Checkin, wantCreated bool, want int64) {
		t.Helper()
		before := store.lookups.Load()
		got, created, err := n.client.Checkin(ctx(t), c, true, true)
		if err != nil || created != wantCreated || got != c {
			t.Fatalf("checkin %s: %+v created=%v err=%v", c.ID, got, created, err)
		}
		if d := store.lookups.Load() - before; d != want {
			t.Fatalf("checkin %s (created=%v) made %d store look-ups, want %d", c.ID, created, d, want)
		}
	}
	passivate := func(t *testing.T) {
		t.Helper()
		waitFor(t, "passivation", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	}

	t.Run("grain that created the user", func(t *testing.T) {
		mustUser(t, n, "a")
		c := []persistence.Checkin{checkin("a1", "a", "L1", at(1)), checkin("a2", "a", "L2", at(2)), checkin("a3", "a", "L3", at(3)),
			checkin("a4", "a", "L4", at(4)), checkin("a5", "a", "L5", at(5))}
		for _, x := range c[:3] { // one recent, two known
			step(t, x, true, 0)
		}
		step(t, c[0], false, 1) // a retry of a known id: its content is in the store
		step(t, c[3], true, 0)  // new: no look-up; the grain now holds more than it keeps
		step(t, c[4], true, 1)
	})
	t.Run("reactivated, ids fit", func(t *testing.T) {
		mustUser(t, n, "b")
		c := []persistence.Checkin{checkin("b1", "b", "L1", at(1)), checkin("b2", "b", "L2", at(2)), checkin("b3", "b", "L3", at(3)), checkin("b4", "b", "L4", at(4))}
		for _, x := range c[:3] {
			step(t, x, true, 0)
		}
		passivate(t)
		step(t, c[3], true, 0)  // the activation read all three ids
		step(t, c[1], false, 1) // known by hash: looked up
	})
	t.Run("reactivated, too many ids", func(t *testing.T) {
		mustUser(t, n, "c")
		c := []persistence.Checkin{checkin("c1", "c", "L1", at(1)), checkin("c2", "c", "L2", at(2)), checkin("c3", "c", "L3", at(3)),
			checkin("c4", "c", "L4", at(4)), checkin("c5", "c", "L5", at(5))}
		for _, x := range c[:4] { // the fourth is new to a grain that knew all three before it
			step(t, x, true, 0)
		}
		passivate(t)
		step(t, c[4], true, 1) // four ids do not fit in one recent and two known
	})
}

// Requests that meet a grain as it passivates — queued behind its stop, or
// served just before it while their write is still in flight — must all
// be answered: by the grain, or by a new activation once the caller hears
// that the old one is gone. Clients pause about one idle timeout between
// checkins, so grains stop and start again thousands of times.
func TestPassivationRaceLosesNoAnswer(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	gcfg := actors.DefaultGrainConfig()
	gcfg.IdleTimeout = 10 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	const users = 40
	for u := range users {
		mustUser(t, n, fmt.Sprintf("p%d", u))
	}
	start := n.metric(t, "checkin_grain_activations_total")
	var failed atomic.Int64
	var wg sync.WaitGroup
	var stop atomic.Bool
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(u), 1))
			user := fmt.Sprintf("p%d", u)
			for i := 0; !stop.Load(); i++ {
				// A long deadline: a slow answer is not a lost one (a lost
				// one still fails, at the deadline).
				c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := n.client.Checkin(c, checkin(fmt.Sprintf("%s-%d", user, i), user, "L1", base.Add(time.Duration(i)*time.Second)), true, true)
				cancel()
				if err != nil {
					failed.Add(1)
					t.Errorf("checkin %d of %s: %v", i, user, err)
				}
				time.Sleep(time.Duration(8000+rng.IntN(8000)) * time.Microsecond)
			}
		}()
	}
	// The clients go on for 3 s, and past that until the grains stopped
	// and started again users*10 times (30 s at most): on a slow machine
	// checkins take longer and fewer pauses outlast the idle timeout, so
	// 3 s alone may not exercise the race.
	const least = users * 10
	activations := func() float64 { return n.metric(t, "checkin_grain_activations_total") - start }
	time.Sleep(3 * time.Second)
	for deadline := time.Now().Add(27 * time.Second); activations() < least && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	got := activations()
	t.Logf("%v activations, %d failed checkins", got, failed.Load())
	if got < least {
		t.Fatalf("only %v activations: the grains did not passivate between checkins, so the race was not exercised", got)
	}
}

// A delete waits for the checkin being written (which is answered as
// written), refuses checkins and creates sent meanwhile, and then removes
// the user and every checkin; the user can be created again, empty.
func TestDeleteUser(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &faultyStore{Store: inner, release: make(chan struct{})}
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "bye")

	written := make(chan error, 1)
	c := checkin("b1", "bye", "L1", base)
	go func() {
		_, _, err := n.client.Checkin(ctx(t), c, true, true)
		written <- err
	}()
	waitFor(t, "the write to reach the store", func() bool { return n.metric(t, "checkin_writer_queue_depth") == 1 })
	deleted := make(chan error, 2)
	sent := n.metric(t, "checkin_grain_requests_total", "served_by", "local")
	for range 2 { // a second delete joins the first
		go func() { deleted <- n.client.DeleteUser(ctx(t), "bye") }()
	}
	waitFor(t, "both deletes to reach the grain", func() bool {
		return n.metric(t, "checkin_grain_requests_total", "served_by", "local") >= sent+2
	})
	select {
	case err := <-deleted:
		t.Fatalf("the delete answered (%v) while a checkin of the user was being written", err)
	default:
	}
	var e *actors.Error
	if _, _, err := n.client.Checkin(ctx(t), checkin("b2", "bye", "L1", base.Add(time.Minute)), true, true); !errors.As(err, &e) || e.Code != actors.CodeUserNotFound {
		t.Errorf("a checkin sent during the delete: err = %v, want user_not_found", err)
	}
	if _, err := n.client.CreateUser(ctx(t), persistence.User{ID: "bye", Name: "again"}); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Errorf("a create sent during the delete: err = %v, want unavailable", err)
	}
	close(store.release)
	if err := <-written; err != nil {
		t.Fatalf("the checkin written before the delete: %v", err)
	}
	for range 2 {
		if err := <-deleted; err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	waitFor(t, "the deleted user's grain to stop", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	if _, err := inner.GetUser(ctx(t), "bye"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("the store still has the user: %v", err)
	}
	if _, err := inner.GetCheckin(ctx(t), "bye", "b1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("the store still has the checkin written before the delete: %v", err)
	}
	if _, err := n.client.CurrentLocation(ctx(t), "bye"); !errors.As(err, &e) || e.Code != actors.CodeUserNotFound {
		t.Errorf("current location after the delete: err = %v, want user_not_found", err)
	}
	if err := n.client.DeleteUser(ctx(t), "bye"); !errors.As(err, &e) || e.Code != actors.CodeUserNotFound {
		t.Errorf("deleting again: err = %v, want user_not_found", err)
	}

	mustUser(t, n, "bye")
	if _, err := n.client.CurrentLocation(ctx(t), "bye"); !errors.As(err, &e) || e.Code != actors.CodeNoCheckins {
		t.Errorf("current location of the user created again: err = %v, want no_checkins", err)
	}
	c2 := checkin("b1", "bye", "L2", base.Add(time.Hour)) // the old id is free again
	if _, created, err := n.client.Checkin(ctx(t), c2, true, true); err != nil || !created {
		t.Fatalf("checkin of the user created again: created %v, err %v", created, err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "bye"); err != nil || cur != c2 {
		t.Errorf("current location %+v (%v), want %+v", cur, err, c2)
	}
}

// failingDeletes fails the first DeleteUser calls on purpose, before
// deleting anything, as a store that cannot be reached would.
type failingDeletes struct {
	persistence.Store
	failures atomic.Int32
}

func (f *failingDeletes) DeleteUser(ctx context.Context, id string) error {
	if f.failures.Add(-1) >= 0 {
		return fmt.Errorf("%w: injected before deleting anything", persistence.ErrUnavailable)
	}
	return f.Store.DeleteUser(ctx, id)
}

// A delete the store fails answers unavailable and leaves the user as the
// store has it (the grain reads it again); retrying completes it.
func TestDeleteUserRetry(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	store := &failingDeletes{Store: inner}
	store.failures.Store(1)
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "flaky")
	c := checkin("f1", "flaky", "L1", base)
	if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
		t.Fatal(err)
	}
	var e *actors.Error
	if err := n.client.DeleteUser(ctx(t), "flaky"); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("delete the store failed: err = %v, want unavailable", err)
	}
	// The grain does not pretend: the user is still there, with its checkin.
	if cur, err := n.client.CurrentLocation(ctx(t), "flaky"); err != nil || cur != c {
		t.Fatalf("after the failed delete current = %+v (%v), want %+v", cur, err, c)
	}
	if err := n.client.DeleteUser(ctx(t), "flaky"); err != nil {
		t.Fatalf("retried delete: %v", err)
	}
	if _, err := inner.GetCheckin(ctx(t), "flaky", "f1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("the store still has the checkin after the retried delete: %v", err)
	}
	if _, err := n.client.CurrentLocation(ctx(t), "flaky"); !errors.As(err, &e) || e.Code != actors.CodeUserNotFound {
		t.Errorf("current location after the retried delete: err = %v, want user_not_found", err)
	}
}

func TestDeleteCheckin(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "dc")
	old := checkin("old", "dc", "L1", base)
	mid := checkin("mid", "dc", "L2", base.Add(time.Hour))
	newest := checkin("new", "dc", "L3", base.Add(2*time.Hour))
	late := checkin("late", "dc", "L4", base.Add(30*time.Minute)) // arrives last, older than the current
	for _, c := range []persistence.Checkin{old, mid, newest, late} {
		if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
			t.Fatal(err)
		}
	}
	current := func(want persistence.Checkin, what string) {
		t.Helper()
		// The first read asks the grain, which then publishes to the
		// node's view; the second is answered from the view.
		for range 2 {
			if cur, err := n.client.CurrentLocation(ctx(t), "dc"); err != nil || cur != want {
				t.Fatalf("%s: current location %+v (%v), want %+v", what, cur, err, want)
			}
		}
	}
	current(newest, "before any delete")
	var e *actors.Error

	got, err := n.client.DeleteCheckin(ctx(t), "dc", "new")
	if err != nil || got != newest {
		t.Fatalf("deleting the current checkin: %+v (%v), want %+v", got, err, newest)
	}
	current(mid, "the current checkin deleted")
	if _, err := store.GetCheckin(ctx(t), "dc", "new"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the store still has the deleted checkin: %v", err)
	}
	if _, err := n.client.DeleteCheckin(ctx(t), "dc", "new"); !errors.As(err, &e) || e.Code != actors.CodeCheckinNotFound {
		t.Fatalf("deleting it again: err = %v, want checkin_not_found", err)
	}
	if _, err := n.client.DeleteCheckin(ctx(t), "dc", "old"); err != nil {
		t.Fatalf("deleting an older checkin: %v", err)
	}
	current(mid, "an older checkin deleted")
	if _, err := n.client.DeleteCheckin(ctx(t), "nobody", "new"); !errors.As(err, &e) || e.Code != actors.CodeUserNotFound {
		t.Fatalf("deleting a checkin of an unknown user: err = %v, want user_not_found", err)
	}

	// The deleted id is free again: a checkin with it elsewhere is new,
	// not a conflict with the one deleted.
	again := checkin("new", "dc", "L9", base.Add(3*time.Hour))
	if stored, created, err := n.client.Checkin(ctx(t), again, true, true); err != nil || !created || stored != again {
		t.Fatalf("the deleted id written again: %+v created %v (%v), want %+v created", stored, created, err, again)
	}
	current(again, "the deleted id written again")

	for _, id := range []string{"new", "mid"} {
		if _, err := n.client.DeleteCheckin(ctx(t), "dc", id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	current(late, "down to the checkin that arrived last")
	if _, err := n.client.DeleteCheckin(ctx(t), "dc", "late"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := n.client.CurrentLocation(ctx(t), "dc"); !errors.As(err, &e) || e.Code != actors.CodeNoCheckins {
			t.Fatalf("every checkin deleted: err = %v, want no_checkins", err)
		}
	}
	// The state survives reactivation: what the grain knows is what the
	// store has.
	n.stop()
	n = startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	if _, err := n.client.CurrentLocation(ctx(t), "dc"); !errors.As(err, &e) || e.Code != actors.CodeNoCheckins {
		t.Fatalf("after a restart: err = %v, want no_checkins", err)
	}
}

// deleteHooks holds checkin deletes and the current-location reads after
// them on purpose (fault injection), once armed.
type deleteHooks struct {
	persistence.Store
	armed          atomic.Bool
	deleting       chan struct{} // closed when an armed DeleteCheckin started
	deleteGate     chan struct{} // an armed DeleteCheckin waits for it before deleting
	currentRead    chan struct{} // closed when an armed CurrentLocation read
	currentGate    chan struct{} // an armed CurrentLocation answers once it is closed
	currentFailed  atomic.Bool   // an armed CurrentLocation fails instead
	deleteFailures atomic.Int32  // DeleteCheckin fails this many times, before deleting anything
}

func newDeleteHooks(s persistence.Store) *deleteHooks {
	return &deleteHooks{Store: s, deleting: make(chan struct{}), deleteGate: make(chan struct{}),
		currentRead: make(chan struct{}), currentGate: make(chan struct{})}
}

func (h *deleteHooks) DeleteCheckin(ctx context.Context, userID, id string) (persistence.Checkin, error) {
	if h.deleteFailures.Add(-1) >= 0 {
		return persistence.Checkin{}, fmt.Errorf("%w: injected before deleting anything", persistence.ErrUnavailable)
	}
	if h.armed.Load() {
		close(h.deleting)
		<-h.deleteGate
	}
	return h.Store.DeleteCheckin(ctx, userID, id)
}

func (h *deleteHooks) CurrentLocation(ctx context.Context, userID string) (persistence.Checkin, error) {
	if !h.armed.Load() {
		return h.Store.CurrentLocation(ctx, userID)
	}
	if h.currentFailed.Load() {
		return persistence.Checkin{}, fmt.Errorf("%w: injected", persistence.ErrUnavailable)
	}
	c, err := h.Store.CurrentLocation(ctx, userID)
	close(h.currentRead)
	<-h.currentGate
	return c, err
}

// startDeleteTest starts a node with gcfg on a store with deleteHooks (not
// armed; deletes not held) and creates user with two checkins, "first"
// and, two hours later, "last".
func startDeleteTest(t *testing.T, user string, gcfg actors.GrainConfig) (n *testNode, hooks *deleteHooks, first, last persistence.Checkin) {
	t.Helper()
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() }) // after the node stops
	hooks = newDeleteHooks(inner)
	close(hooks.deleteGate)
	n = startNode(t, hooks, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, user)
	first = checkin("first", user, "L1", base)
	last = checkin("last", user, "L2", base.Add(2*time.Hour))
	for _, c := range []persistence.Checkin{first, last} {
		if _, _, err := n.client.Checkin(ctx(t), c, true, true); err != nil {
			t.Fatal(err)
		}
	}
	return n, hooks, first, last
}

// While a checkin is being deleted, a checkin with its id is refused and a
// second delete of it gets the first one's answer; a checkin still being
// written is not deleted.
func TestDeleteCheckinConcurrency(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	hooks := newDeleteHooks(inner)
	store := &faultyStore{Store: hooks}
	n := startNode(t, store, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	mustUser(t, n, "cc")
	d1 := checkin("d1", "cc", "L1", base)
	if _, _, err := n.client.Checkin(ctx(t), d1, true, true); err != nil {
		t.Fatal(err)
	}
	var e *actors.Error

	hooks.armed.Store(true)
	type result struct {
		c   persistence.Checkin
		err error
	}
	deleted := make(chan result, 2)
	deleteD1 := func() {
		c, err := n.client.DeleteCheckin(ctx(t), "cc", "d1")
		deleted <- result{c, err}
	}
	go deleteD1()
	<-hooks.deleting
	// A second delete of it, sent while the first is held in the store:
	// it waits for the first one's answer (the store is not asked again).
	sent := n.metric(t, "checkin_grain_requests_total", "served_by", "local")
	go deleteD1()
	waitFor(t, "the second delete to be sent", func() bool {
		return n.metric(t, "checkin_grain_requests_total", "served_by", "local") > sent
	})
	if _, _, err := n.client.Checkin(ctx(t), checkin("d1", "cc", "L2", base.Add(time.Hour)), true, true); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a checkin with the id being deleted: err = %v, want unavailable", err)
	}
	close(hooks.deleteGate)
	close(hooks.currentGate)
	for range 2 {
		if r := <-deleted; r.err != nil || r.c != d1 {
			t.Fatalf("delete: %+v (%v), want %+v", r.c, r.err, d1)
		}
	}
	hooks.armed.Store(false)

	store.release = make(chan struct{})
	tried := store.attempts.Load()
	written := make(chan error, 1)
	go func() {
		_, _, err := n.client.Checkin(ctx(t), checkin("w1", "cc", "L1", base), true, true)
		written <- err
	}()
	// (Not the queue depth: the writer lowers it just after it answers
	// d1's write, so it can still read 1 from that.)
	waitFor(t, "the write to reach the store", func() bool { return store.attempts.Load() > tried })
	if _, err := n.client.DeleteCheckin(ctx(t), "cc", "w1"); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("deleting a checkin being written: err = %v, want unavailable", err)
	}
	close(store.release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if _, err := n.client.DeleteCheckin(ctx(t), "cc", "w1"); err != nil {
		t.Fatalf("deleting it once written: %v", err)
	}
}

// A checkin that becomes durable while the current one is deleted counts
// for the new current location even when the store's read came before it.
func TestDeleteCheckinKeepsCheckinsWrittenMeanwhile(t *testing.T) {
	n, hooks, _, _ := startDeleteTest(t, "mw", actors.DefaultGrainConfig())
	hooks.armed.Store(true)
	deleted := make(chan error, 1)
	go func() {
		_, err := n.client.DeleteCheckin(ctx(t), "mw", "last")
		deleted <- err
	}()
	<-hooks.currentRead // the store answered "first"; the answer is held
	between := checkin("between", "mw", "L3", base.Add(time.Hour))
	if _, _, err := n.client.Checkin(ctx(t), between, true, true); err != nil {
		t.Fatal(err)
	}
	close(hooks.currentGate)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	hooks.armed.Store(false)
	if cur, err := n.client.CurrentLocation(ctx(t), "mw"); err != nil || cur != between {
		t.Fatalf("current location %+v (%v), want %+v", cur, err, between)
	}
}

// A grain that cannot read the current location back after deleting the
// current checkin says so instead of answering the deleted one, and reads
// it from the store again.
func TestDeleteCheckinWithFailedRead(t *testing.T) {
	n, hooks, first, last := startDeleteTest(t, "fr", actors.DefaultGrainConfig())
	if cur, err := n.client.CurrentLocation(ctx(t), "fr"); err != nil || cur != last {
		t.Fatalf("current location %+v (%v), want %+v", cur, err, last)
	}
	hooks.currentFailed.Store(true)
	hooks.armed.Store(true)
	if _, err := n.client.DeleteCheckin(ctx(t), "fr", "last"); err != nil {
		t.Fatalf("delete (durable, though the read after it failed): %v", err)
	}
	hooks.armed.Store(false)
	waitFor(t, "the current location read again", func() bool {
		cur, err := n.client.CurrentLocation(ctx(t), "fr")
		if err == nil && cur != first {
			t.Fatalf("current location %+v, want %+v", cur, first)
		}
		return err == nil
	})
}

// A delete the store fails answers unavailable; until a delete of the id
// answers, a checkin with it is refused (the failed delete might still be
// applied after it), and then accepted again.
func TestDeleteCheckinRetry(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.DeleteRetry = time.Hour // the client's retry comes first
	n, hooks, first, last := startDeleteTest(t, "rt", gcfg)
	var e *actors.Error
	hooks.deleteFailures.Store(1)
	if _, err := n.client.DeleteCheckin(ctx(t), "rt", "last"); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a delete the store failed: err = %v, want unavailable", err)
	}
	// The grain does not pretend: the checkin is still the current one.
	if cur, err := n.client.CurrentLocation(ctx(t), "rt"); err != nil || cur != last {
		t.Fatalf("after the failed delete current = %+v (%v), want %+v", cur, err, last)
	}
	again := checkin("last", "rt", "L3", base.Add(2*time.Hour))
	if _, _, err := n.client.Checkin(ctx(t), again, true, true); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a checkin with the id of a failed delete: err = %v, want unavailable", err)
	}
	if _, err := n.client.DeleteCheckin(ctx(t), "rt", "last"); err != nil {
		t.Fatalf("the retried delete: %v", err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "rt"); err != nil || cur != first {
		t.Fatalf("after the retried delete current = %+v (%v), want %+v", cur, err, first)
	}
	if _, created, err := n.client.Checkin(ctx(t), again, true, true); err != nil || !created {
		t.Fatalf("the id once deleted: created %v, err %v", created, err)
	}
}

// A delete the store did not confirm is sent again by the grain on its own
// until the store confirms it, and the grain does not passivate before:
// its id stays refused, even past the idle timeout, and the current
// location moves back once the delete is through.
func TestDeleteCheckinRetriedInBackground(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.DeleteRetry = 20 * time.Millisecond
	gcfg.IdleTimeout = 50 * time.Millisecond
	n, hooks, first, last := startDeleteTest(t, "bg", gcfg)
	var e *actors.Error
	hooks.deleteFailures.Store(1 << 20)
	if _, err := n.client.DeleteCheckin(ctx(t), "bg", "last"); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a delete the store failed: err = %v, want unavailable", err)
	}
	// The grain keeps sending it: the store sees more deletes.
	waitFor(t, "the grain to retry the delete", func() bool { return hooks.deleteFailures.Load() < 1<<20-3 })
	// Many idle timeouts later the grain is still there: the id is refused.
	time.Sleep(10 * gcfg.IdleTimeout)
	again := checkin("last", "bg", "L3", base.Add(3*time.Hour))
	if _, _, err := n.client.Checkin(ctx(t), again, true, true); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a checkin with the id of a delete still being retried: err = %v, want unavailable", err)
	}
	if cur, err := n.client.CurrentLocation(ctx(t), "bg"); err != nil || cur != last {
		t.Fatalf("while the delete fails current = %+v (%v), want %+v", cur, err, last)
	}
	// The store recovers; nobody sends the delete again.
	hooks.deleteFailures.Store(0)
	waitFor(t, "the retried delete to move the current location back", func() bool {
		cur, err := n.client.CurrentLocation(ctx(t), "bg")
		return err == nil && cur == first
	})
	if _, err := hooks.Store.GetCheckin(ctx(t), "bg", "last"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the store still has the deleted checkin: err = %v", err)
	}
	if _, created, err := n.client.Checkin(ctx(t), again, true, true); err != nil || !created {
		t.Fatalf("the id once deleted: created %v, err %v", created, err)
	}
	if got := n.metric(t, "checkin_grain_delete_retries_total"); got < 3 {
		t.Fatalf("checkin_grain_delete_retries_total = %v, want at least 3", got)
	}
}

// A grain handed over stops retrying deletes the store did not confirm,
// and stops: the new owner takes checkins with their ids, which a retry
// from the old grain could delete after they were acknowledged.
func TestHandedOverGrainStopsDeleteRetries(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.DeleteRetry = 20 * time.Millisecond
	n, hooks, _, _ := startDeleteTest(t, "hb", gcfg)
	hooks.deleteFailures.Store(1 << 20)
	var e *actors.Error
	if _, err := n.client.DeleteCheckin(ctx(t), "hb", "last"); !errors.As(err, &e) || e.Code != actors.CodeUnavailable {
		t.Fatalf("a delete the store failed: err = %v, want unavailable", err)
	}
	waitFor(t, "the grain to retry the delete", func() bool { return hooks.deleteFailures.Load() < 1<<20-2 })

	handOver(t, n, "hb")
	left := hooks.deleteFailures.Load()
	time.Sleep(10 * gcfg.DeleteRetry)
	if got := hooks.deleteFailures.Load(); got != left {
		t.Fatalf("%d deletes reached the store after the grain was handed over", left-got)
	}
}

// handOver hands the user's grain over, as the placement does when another
// member takes the user, and waits for it to stop.
func handOver(t *testing.T, n *testNode, user string) {
	t.Helper()
	system := n.member.System
	pid := n.member.Cluster.Get(user, "UserGrain")
	system.Root.Send(pid, &cluster.HandOver{})
	waitFor(t, "the handed-over grain to stop", func() bool {
		_, alive := system.ProcessRegistry.Get(pid)
		return !alive
	})
}

// listedStore lists one more checkin of its user than the store holds, as
// Scylla lists a checkin whose write failed after its by-user row: it is
// not found by id, nor at its location. Once the checkin is written, the
// store holds it for real and lists it as it is (deleted: not at all).
type listedStore struct {
	persistence.Store
	extra   persistence.Checkin // the newest of its user
	written atomic.Bool
}

func (s *listedStore) WriteCheckins(ctx context.Context, cs []persistence.Checkin) error {
	if slices.ContainsFunc(cs, func(c persistence.Checkin) bool { return c.ID == s.extra.ID }) {
		s.written.Store(true)
	}
	return s.Store.WriteCheckins(ctx, cs)
}

func (s *listedStore) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	p, err := s.Store.ListCheckins(ctx, q)
	if err != nil || q.UserID != s.extra.UserID || q.LocationID != "" || q.Order != persistence.NewestFirst || s.written.Load() {
		return p, err
	}
	p.Checkins = append([]persistence.Checkin{s.extra}, p.Checkins...)
	return p, nil
}

// startListedTest starts a node on a listedStore whose user (created in
// the store, its grain not active) has one checkin that is only listed,
// "half", and activates the grain, which loads it as current.
func startListedTest(t *testing.T, user string) (n *testNode, inner persistence.Store, half persistence.Checkin) {
	t.Helper()
	s := openStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() }) // after the node stops
	if err := s.CreateUser(ctx(t), persistence.User{ID: user, Name: "N " + user, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	half = checkin("half", user, "L1", base)
	n = startNode(t, &listedStore{Store: s, extra: half}, actors.DefaultGrainConfig(), actors.DefaultWriterConfig())
	if cur, err := n.client.CurrentLocation(ctx(t), user); err != nil || cur != half {
		t.Fatalf("current = %+v (%v), want %+v", cur, err, half)
	}
	return n, s, half
}

// A re-sent checkin that the grain loaded from its user's listing is
// written again, as listed, before it is answered: the listing also shows
// a write that failed part way, and answering "already stored" from it
// acknowledged a checkin not found by id, nor at its location (and so not
// deletable). A re-sent id with another location is a conflict, as ever.
func TestRetryWritesListedCheckinAgain(t *testing.T) {
	n, inner, half := startListedTest(t, "pw")
	other := half
	other.LocationID = "L2"
	var e *actors.Error
	if _, _, err := n.client.Checkin(ctx(t), other, true, true); !errors.As(err, &e) || e.Code != actors.CodeCheckinConflict {
		t.Fatalf("the id re-sent with another location: err = %v, want checkin_conflict", err)
	}
	got, created, err := n.client.Checkin(ctx(t), half, true, true)
	if err != nil || created || got != half {
		t.Fatalf("the retry: %+v created=%v err=%v; want %+v, not created", got, created, err, half)
	}
	if c, err := inner.GetCheckin(ctx(t), "pw", "half"); err != nil || c != half {
		t.Fatalf("by id after the retry: %+v, %v; want %+v", c, err, half)
	}
	p, err := inner.ListCheckins(ctx(t), persistence.Query{UserID: "pw", LocationID: "L1", From: base, To: base.Add(time.Hour), Limit: 10})
	if err != nil || len(p.Checkins) != 1 || p.Checkins[0] != half {
		t.Fatalf("at its location after the retry: %+v, %v; want [%+v]", p.Checkins, err, half)
	}
	// Written once, answered from memory since.
	if _, created, err := n.client.Checkin(ctx(t), half, true, true); err != nil || created {
		t.Fatalf("a second retry: created=%v err=%v", created, err)
	}
	if _, err := n.client.DeleteCheckin(ctx(t), "pw", "half"); err != nil {
		t.Fatalf("delete after the retry: %v", err)
	}
}

// A checkin the grain knows only from the listing it loaded, not found by
// id (a write that stopped part way), is deleted all the same: the grain
// completes its write, then deletes it, instead of answering
// checkin_not_found for a checkin its user's listing shows.
func TestDeleteListedCheckin(t *testing.T) {
	n, inner, half := startListedTest(t, "pd")
	if got, err := n.client.DeleteCheckin(ctx(t), "pd", "half"); err != nil || got != half {
		t.Fatalf("delete: %+v, %v; want %+v", got, err, half)
	}
	if _, err := inner.GetCheckin(ctx(t), "pd", "half"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("by id after the delete: err = %v, want not found", err)
	}
	if p, err := inner.ListCheckins(ctx(t), persistence.Query{UserID: "pd", From: base, To: base.Add(time.Hour), Limit: 10}); err != nil || len(p.Checkins) != 0 {
		t.Fatalf("listing after the delete: %+v, %v; want none", p.Checkins, err)
	}
	var e *actors.Error
	if _, err := n.client.CurrentLocation(ctx(t), "pd"); !errors.As(err, &e) || e.Code != actors.CodeNoCheckins {
		t.Fatalf("current after the delete: err = %v, want no_checkins", err)
	}
}

// startUnwrittenTest starts a node on a faultyStore whose user exists,
// with background write retries every 20 ms.
func startUnwrittenTest(t *testing.T, user string, gcfg actors.GrainConfig) (*testNode, *faultyStore) {
	t.Helper()
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() }) // after the node stops
	store := &faultyStore{Store: inner}
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, user)
	return n, store
}

// failedWriteRetry is grain.write-retry in startFailedWrite.
const failedWriteRetry = 20 * time.Millisecond

// startFailedWrite starts a node as startUnwrittenTest does, with retries
// every failedWriteRetry, and fails the write of c there: the grain writes it again
// in the background, and the store still fails writes.
func startFailedWrite(t *testing.T, c persistence.Checkin) (*testNode, *faultyStore) {
	t.Helper()
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = failedWriteRetry
	n, store := startUnwrittenTest(t, c.UserID, gcfg)
	store.fail.Store(true)
	checkinFails(t, n, c)
	return n, store
}

// A checkin write that failed and may have stored part of the checkin (on
// Scylla: listed, not found by id, so not deletable) is written again by
// the grain on its own until the store confirms it, even when the client
// never retries; the grain does not passivate before, and the checkin
// becomes the current location once it is durable. Whether the failed
// attempts stored nothing or all of it (found by the look-up of the
// retry, not written again).
func TestUnconfirmedWriteCompletedInBackground(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*faultyStore) *atomic.Bool
		// stored: the first attempt stored all of it, so the grain's
		// first retry finds it and the store sees one write
		stored bool
	}{
		{"nothing stored", func(f *faultyStore) *atomic.Bool { return &f.fail }, false},
		{"all stored", func(f *faultyStore) *atomic.Bool { return &f.failLate }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gcfg := actors.DefaultGrainConfig()
			gcfg.WriteRetry = 20 * time.Millisecond
			gcfg.IdleTimeout = 50 * time.Millisecond
			if tc.stored {
				// The grain stays: its current location is its own
				// doing, not read from the store by a new activation.
				gcfg.IdleTimeout = time.Hour
			}
			n, store := startUnwrittenTest(t, "uw", gcfg)
			c := checkin("u1", "uw", "L1", base)
			fault := tc.fault(store)
			fault.Store(true)
			_, _, err := n.client.Checkin(ctx(t), c, true, true)
			wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
			if !strings.Contains(err.Error(), "completes in the background") {
				t.Errorf("the answer does not say the write is completed: %v", err)
			}
			if !tc.stored {
				waitFor(t, "the grain to write it again", func() bool { return store.attempts.Load() >= 4 })
				time.Sleep(10 * gcfg.IdleTimeout)
				if a := n.metric(t, "checkin_grains_active"); a != 1 {
					t.Fatalf("active grains %v with a write to complete, want 1", a)
				}
				if _, err := n.client.CurrentLocation(ctx(t), "uw"); !errors.Is(err, actors.ErrNotFound) {
					t.Fatalf("an unconfirmed checkin is the current location: %v", err)
				}
			}
			fault.Store(false) // the store recovers; nobody sends the checkin again
			waitFor(t, "the checkin to be stored", func() bool {
				got, err := store.Store.GetCheckin(ctx(t), "uw", "u1")
				return err == nil && got == c
			})
			waitFor(t, "the checkin to become the current location", func() bool {
				cur, err := n.client.CurrentLocation(ctx(t), "uw")
				return err == nil && cur == c
			})
			if got := n.metric(t, "checkin_grain_write_retries_total"); got < 3 && !tc.stored || got < 1 {
				t.Errorf("checkin_grain_write_retries_total = %v, want at least %d", got, map[bool]int{false: 3, true: 1}[tc.stored])
			}
			if tc.stored && store.attempts.Load() != 1 {
				t.Errorf("%d writes reached the store, want 1: the retry finds the checkin stored", store.attempts.Load())
			}
			if !tc.stored {
				waitFor(t, "passivation once written", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
			}
			// The client's late retry is answered as stored, not written twice.
			if got, created, err := n.client.Checkin(ctx(t), c, true, true); err != nil || created || got != c {
				t.Fatalf("the retry after it was completed: %+v created=%v err=%v", got, created, err)
			}
		})
	}
}

// A write the store refused (ErrNotApplied: nothing stored) is not written
// again behind the client's back: the 503 means not stored.
func TestRefusedWriteIsNotCompleted(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = 20 * time.Millisecond
	gcfg.IdleTimeout = 50 * time.Millisecond
	n, store := startUnwrittenTest(t, "rf", gcfg)
	store.refuse.Store(true)
	_, _, err := n.client.Checkin(ctx(t), checkin("r1", "rf", "L1", base), true, true)
	wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	if !strings.Contains(err.Error(), "did not store") {
		t.Errorf("the answer does not say the checkin was not stored: %v", err)
	}
	store.refuse.Store(false)
	waitFor(t, "passivation", func() bool { return n.metric(t, "checkin_grains_active") == 0 })
	if _, err := store.Store.GetCheckin(ctx(t), "rf", "r1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("a refused checkin was stored: err = %v", err)
	}
	if got := store.attempts.Load(); got != 1 {
		t.Errorf("%d writes reached the store, want 1", got)
	}
}

// A checkin whose write may be stored in part stays so when a later attempt
// is refused outright (that attempt changed nothing; the first may have
// stored part of it): the grain goes on completing it, and a client
// waiting on the refused attempt is not told that nothing was stored.
func TestRefusedRetryKeepsCompleting(t *testing.T) {
	c := checkin("r1", "rr", "L1", base)
	n, store := startFailedWrite(t, c)
	store.refuse.Store(true) // the next attempts are refused before the store
	store.fail.Store(false)
	_, _, err := n.client.Checkin(ctx(t), c, true, true)
	wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	if strings.Contains(err.Error(), "did not store") {
		t.Errorf("a refused retry of a checkin that may be stored in part is answered as not stored: %v", err)
	}
	refused := store.attempts.Load()
	waitFor(t, "more background attempts", func() bool { return store.attempts.Load() >= refused+2 })
	store.refuse.Store(false)
	waitFor(t, "the grain to complete the checkin", func() bool {
		got, err := store.Store.GetCheckin(ctx(t), "rr", "r1")
		return err == nil && got == c
	})
}

// A client's retry of a checkin whose write may be stored in part gets it
// as first sent: with a server-chosen timestamp the retry's own is not
// used (the store would list the checkin twice, at both timestamps), and
// another location is a conflict.
func TestRetryOfUnconfirmedWriteKeepsIt(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = time.Hour // the client's retry comes first
	n, store := startUnwrittenTest(t, "kt", gcfg)
	first := checkin("k1", "kt", "L1", base) // the server's now at the first attempt
	store.fail.Store(true)
	if _, _, err := n.client.Checkin(ctx(t), first, false, true); err == nil {
		t.Fatal("the first attempt succeeded with the store failing")
	}
	store.fail.Store(false)
	elsewhere := checkin("k1", "kt", "L2", base.Add(time.Minute))
	if _, _, err := n.client.Checkin(ctx(t), elsewhere, false, true); !errors.Is(err, actors.ErrConflict) {
		t.Fatalf("a retry with another location: err = %v, want a conflict", err)
	}
	retry := checkin("k1", "kt", "L1", base.Add(time.Minute)) // the server's now at the retry
	got, _, err := n.client.Checkin(ctx(t), retry, false, true)
	if err != nil || got != first {
		t.Fatalf("the retry: %+v (%v), want %+v", got, err, first)
	}
	page, err := store.Store.ListCheckins(ctx(t), persistence.Query{UserID: "kt", From: base.Add(-time.Hour), To: base.Add(time.Hour), Limit: 10})
	if err != nil || len(page.Checkins) != 1 || page.Checkins[0] != first {
		t.Fatalf("stored %+v (%v), want [%+v]", page.Checkins, err, first)
	}
}

// A delete of a checkin whose write may be stored in part removes it
// (completing the write first where needed), and the grain no longer
// writes it; so does a deletion of the user.
func TestDeleteOfUnconfirmedWrite(t *testing.T) {
	c := checkin("d1", "dw", "L1", base)
	n, store := startFailedWrite(t, c)
	store.fail.Store(false)
	// A delete that comes while the grain writes d1 again (every
	// failedWriteRetry or so) is refused, still being written, and sent
	// again, as its answer says.
	waitFor(t, "the delete", func() bool {
		got, err := n.client.DeleteCheckin(ctx(t), "dw", "d1")
		var e *actors.Error
		if errors.As(err, &e) && e.Code == actors.CodeUnavailable && strings.Contains(err.Error(), "still being written") {
			return false
		}
		if err != nil || got != c {
			t.Fatalf("delete: %+v (%v), want %+v", got, err, c)
		}
		return true
	})
	time.Sleep(10 * failedWriteRetry)
	if _, err := store.Store.GetCheckin(ctx(t), "dw", "d1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the deleted checkin is stored: err = %v", err)
	}

	// The user's deletion drops the checkins the grain would complete.
	store.fail.Store(true)
	checkinFails(t, n, checkin("d2", "dw", "L1", base))
	store.fail.Store(false)
	if err := n.client.DeleteUser(ctx(t), "dw"); err != nil {
		t.Fatalf("delete user: %v", err)
	}
	time.Sleep(10 * failedWriteRetry)
	if _, err := store.Store.GetCheckin(ctx(t), "dw", "d2"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("a checkin of the deleted user was written after the deletion: err = %v", err)
	}
}

// halfStore fails checkin writes, while fail is set, after their by-user
// rows, as Scylla fails a write part way: such a checkin is listed (newest
// first; not at its location) but not found by id, until a write of it
// succeeds. A deletion of its user takes it along.
type halfStore struct {
	persistence.Store
	fail     atomic.Bool
	failByID atomic.Bool                   // reads of a checkin by id fail
	byIDGate atomic.Pointer[chan struct{}] // set: reads of a checkin by id wait for it
	byIDHeld atomic.Int64                  // reads of a checkin by id that waited for byIDGate
	attempts atomic.Int64
	mu       sync.Mutex
	half     map[string]persistence.Checkin // by id
}

func newHalfStore(t *testing.T) *halfStore {
	t.Helper()
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() }) // after the node stops
	return &halfStore{Store: inner, half: map[string]persistence.Checkin{}}
}

func (s *halfStore) WriteCheckins(ctx context.Context, batch []persistence.Checkin) error {
	s.attempts.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail.Load() {
		for _, c := range batch {
			if _, err := s.Store.GetCheckin(ctx, c.UserID, c.ID); errors.Is(err, persistence.ErrNotFound) {
				s.half[c.ID] = c
			}
		}
		return fmt.Errorf("%w: injected after the by-user rows", persistence.ErrUnavailable)
	}
	if err := s.Store.WriteCheckins(ctx, batch); err != nil {
		return err
	}
	for _, c := range batch {
		delete(s.half, c.ID)
	}
	return nil
}

func (s *halfStore) ListCheckins(ctx context.Context, q persistence.Query) (persistence.Page, error) {
	p, err := s.Store.ListCheckins(ctx, q)
	if err != nil || q.LocationID != "" || q.Order != persistence.NewestFirst {
		return p, err
	}
	s.mu.Lock()
	all := p.Checkins
	for _, c := range s.half {
		if c.UserID == q.UserID && !c.Timestamp.Before(q.From) && c.Timestamp.Before(q.To) &&
			(q.After == nil || c.Timestamp.Before(q.After.Timestamp) || c.Timestamp.Equal(q.After.Timestamp) && c.ID > q.After.CheckinID) {
			all = append(all, c)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b persistence.Checkin) int {
		if c := b.Timestamp.Compare(a.Timestamp); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(all) > q.Limit {
		all = all[:q.Limit]
		p.Next = &persistence.Position{Timestamp: all[q.Limit-1].Timestamp, CheckinID: all[q.Limit-1].ID}
	} else if p.Next != nil {
		p.Next = &persistence.Position{Timestamp: all[len(all)-1].Timestamp, CheckinID: all[len(all)-1].ID}
	}
	p.Checkins = all
	return p, nil
}

func (s *halfStore) GetCheckin(ctx context.Context, userID, id string) (persistence.Checkin, error) {
	if gate := s.byIDGate.Load(); gate != nil {
		s.byIDHeld.Add(1)
		select {
		case <-*gate:
		case <-ctx.Done():
			return persistence.Checkin{}, ctx.Err()
		}
	}
	if s.failByID.Load() {
		return persistence.Checkin{}, fmt.Errorf("%w: injected", persistence.ErrUnavailable)
	}
	return s.Store.GetCheckin(ctx, userID, id)
}

func (s *halfStore) DeleteUser(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.half, func(_ string, c persistence.Checkin) bool { return c.UserID == id })
	return s.Store.DeleteUser(ctx, id)
}

// listedOnly reports whether s lists c but does not find it by id.
func (s *halfStore) listedOnly(c persistence.Checkin) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.half[c.ID]
	return ok && h == c
}

// A grain handed over passes the checkin writes it was completing to the
// user's grain at the new owner, which completes them: the checkin ends up
// found by id, although its client never retried. Whether the new grain
// loads the checkin with its user's newest ones or not (older than them:
// it asks the store whether the checkin is still listed).
func TestHandedOverGrainPassesFailedWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newer int // checkins of the user newer than the failed one
	}{
		{"among the newest", 0},
		{"older than the newest", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gcfg := actors.DefaultGrainConfig()
			gcfg.WriteRetry = 20 * time.Millisecond
			store := newHalfStore(t)
			n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
			mustUser(t, n, "hp")
			for i := range tc.newer {
				if _, _, err := n.client.Checkin(ctx(t), checkin(fmt.Sprintf("n%02d", i), "hp", "L2", base.Add(time.Duration(i+1)*time.Minute)), true, true); err != nil {
					t.Fatal(err)
				}
			}
			x := checkin("x", "hp", "L1", base)
			store.fail.Store(true)
			_, _, err := n.client.Checkin(ctx(t), x, true, true)
			wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
			if !store.listedOnly(x) {
				t.Fatal("the failed write did not leave the checkin listed only")
			}
			handOver(t, n, "hp") // the store still fails: the new grain cannot complete it yet
			if got := n.metric(t, "checkin_grain_writes_passed_on_total", "result", "passed"); got != 1 {
				t.Fatalf("checkin_grain_writes_passed_on_total{result=passed} = %v, want 1", got)
			}
			store.fail.Store(false)
			waitFor(t, "the new grain to complete the checkin", func() bool {
				c, err := store.GetCheckin(ctx(t), "hp", "x")
				return err == nil && c == x
			})
			if store.listedOnly(x) {
				t.Fatal("still listed only")
			}
			cur, err := n.client.CurrentLocation(ctx(t), "hp")
			if want := map[bool]string{true: "x", false: fmt.Sprintf("n%02d", tc.newer-1)}[tc.newer == 0]; err != nil || cur.ID != want {
				t.Fatalf("current = %+v (%v), want %s", cur, err, want)
			}
		})
	}
}

// A checkin passed on after the new owner deleted it is not written again:
// the new grain finds it no longer listed and forgets it, so the delete
// stays and the id is free. Here the passing is held until after the
// delete.
func TestPassedOnWriteDeletedMeanwhile(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = 20 * time.Millisecond
	store := newHalfStore(t)
	passed := make(chan persistence.Checkin, 1)
	n := startNodeWith(t, store, gcfg, actors.DefaultWriterConfig(), zap.NewNop(), func(d *actors.Deps) {
		d.HandOverWrite = func(_ context.Context, c persistence.Checkin) error { passed <- c; return nil }
	})
	mustUser(t, n, "hd")
	x := checkin("x", "hd", "L1", base)
	store.fail.Store(true)
	checkinFails(t, n, x)
	handOver(t, n, "hd")
	c := <-passed
	store.fail.Store(false)
	// The new grain lists x: deleting it completes it, then deletes it.
	if got, err := n.client.DeleteCheckin(ctx(t), "hd", "x"); err != nil || got != x {
		t.Fatalf("delete: %+v, %v; want %+v", got, err, x)
	}
	if err := n.client.CompleteCheckin(ctx(t), c); err != nil {
		t.Fatalf("pass on: %v", err)
	}
	// Refused while the grain asks the store, then free: a checkin with
	// the id and another location is new.
	other := checkin("x", "hd", "L2", base.Add(time.Minute))
	var got persistence.Checkin
	var created bool
	waitFor(t, "the id to be free", func() bool {
		var err error
		got, created, err = n.client.Checkin(ctx(t), other, true, true)
		var e *actors.Error
		if errors.As(err, &e) && e.Code == actors.CodeCheckinConflict {
			t.Fatalf("the id is taken after the delete (the deleted checkin came back): %v", err)
		}
		return err == nil
	})
	if !created || got != other {
		t.Fatalf("the id after the delete: %+v created=%v, want %+v created", got, created, other)
	}
	p, err := store.ListCheckins(ctx(t), persistence.Query{UserID: "hd", From: base, To: base.Add(time.Hour), Limit: 10})
	if err != nil || len(p.Checkins) != 1 || p.Checkins[0] != other {
		t.Fatalf("listing: %+v (%v), want only %+v: the deleted checkin came back", p.Checkins, err, other)
	}
}

// leftListedOnly stores whole for its user (created) on a node that then
// fails to write x, with a store that keeps x listed but not by id, and
// stops the node, as a crash would: nobody completes x. It returns the
// grain settings the test's nodes use (the old node's, but for its store
// timeout) and the store.
func leftListedOnly(t *testing.T, whole, x persistence.Checkin) (actors.GrainConfig, *halfStore) {
	t.Helper()
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = time.Hour // the old node does not complete it before it stops
	oldCfg := gcfg
	// The old node's grain, handed over as the node stops, tries to pass
	// x on for its store timeout: not long.
	oldCfg.StoreTimeout = 300 * time.Millisecond
	store := newHalfStore(t)
	// Created in the store, not through the old node's grain: that synced
	// write may take longer than its short store timeout on a loaded
	// machine.
	if err := store.CreateUser(ctx(t), persistence.User{ID: whole.UserID, Name: "N " + whole.UserID, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	old := startNode(t, store, oldCfg, actors.DefaultWriterConfig())
	if _, _, err := old.client.Checkin(ctx(t), whole, true, true); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	checkinFails(t, old, x)
	old.stop() // nobody to pass it to
	store.fail.Store(false)
	if !store.listedOnly(x) {
		t.Fatal("the checkin is not left listed only")
	}
	return gcfg, store
}

// After a node stopped with a failed write it could neither complete nor
// pass on (as after a crash), CompleteListed run on a new node finds the
// checkin listed but not found by id and hands it to the user's grain,
// which completes it; a second run finds nothing left. Checkins stored
// whole are counted and left alone.
func TestCompleteListedAfterCrash(t *testing.T) {
	x := checkin("x", "cl", "L1", base)
	gcfg, store := leftListedOnly(t, checkin("w", "cl", "L1", base.Add(time.Minute)), x)

	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	r, err := actors.CompleteListed(ctx(t), n.client, store, "cl")
	if err != nil || r != (actors.Repair{Listed: 2, NotByID: 1, Passed: 1}) {
		t.Fatalf("CompleteListed = %+v, %v; want 2 listed, 1 not by id, 1 passed", r, err)
	}
	waitFor(t, "the user's grain to complete the checkin", func() bool {
		c, err := store.GetCheckin(ctx(t), "cl", "x")
		return err == nil && c == x
	})
	if r, err := actors.CompleteListed(ctx(t), n.client, store, "cl"); err != nil || r != (actors.Repair{Listed: 2}) {
		t.Fatalf("CompleteListed again = %+v, %v; want 2 listed, nothing else", r, err)
	}
	if r, err := actors.CompleteListed(ctx(t), n.client, store, "nobody"); err != nil || r != (actors.Repair{}) {
		t.Fatalf("CompleteListed of a user without checkins = %+v, %v", r, err)
	}
}

// A grain activated for a user whose last owner left without draining
// (Deps.InheritedFromLost) looks up by id the checkins it loaded from the
// listing and writes again one listed but not found by id, which the lost
// owner's grain was completing; a look-up that fails is tried again at the
// next call. One activated for any other user reads nothing more.
func TestGrainCompletesWritesOfALostOwner(t *testing.T) {
	x := checkin("x", "lo", "L2", base.Add(time.Minute))
	gcfg, store := leftListedOnly(t, checkin("w", "lo", "L1", base), x)

	activate := func(inherited bool) *testNode {
		n := startNodeWith(t, store, gcfg, actors.DefaultWriterConfig(), zap.NewNop(), func(d *actors.Deps) {
			d.InheritedFromLost = func(id string) bool { return inherited && id == "lo" }
		})
		if _, err := n.client.CurrentLocation(ctx(t), "lo"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := activate(false)
	time.Sleep(200 * time.Millisecond)
	if !store.listedOnly(x) {
		t.Errorf("completed at an activation whose last owner did not leave without draining")
	}
	if got := n.metric(t, "checkin_grain_inherited_checks_total", "result", "checked"); got != 0 {
		t.Errorf("checkin_grain_inherited_checks_total = %v there, want 0", got)
	}
	n.stop()

	// The look-up fails at the activation (the store does not answer
	// reads by id): the next call tries again.
	store.failByID.Store(true)
	n = activate(true)
	waitFor(t, "the look-up to fail", func() bool {
		return n.metric(t, "checkin_grain_inherited_checks_total", "result", "failed") >= 1
	})
	if !store.listedOnly(x) {
		t.Fatalf("completed although its look-up failed")
	}
	store.failByID.Store(false)
	waitFor(t, "the grain to write the lost owner's checkin again", func() bool {
		// Calls the grain answers (reads of the current location may not
		// reach it); one that comes while a failing look-up is still out
		// does not start another.
		if _, err := n.client.GetUser(ctx(t), "lo"); err != nil {
			t.Fatal(err)
		}
		c, err := store.GetCheckin(ctx(t), "lo", "x")
		return err == nil && c == x
	})
	if got := n.metric(t, "checkin_grain_inherited_checks_total", "result", "checked"); got != 1 {
		t.Errorf("checkin_grain_inherited_checks_total{result=checked} = %v, want 1", got)
	}
	if got := n.metric(t, "checkin_grain_inherited_writes_total"); got != 1 {
		t.Errorf("checkin_grain_inherited_writes_total = %v, want 1 (the whole checkin was found)", got)
	}
	cur, err := n.client.CurrentLocation(ctx(t), "lo")
	if err != nil || cur.ID != "x" {
		t.Errorf("current location %+v, %v; want checkin x", cur, err)
	}
}

// A user deleted while its grain looks up the checkins a lost owner left:
// the delete waits for the look-up, the grain neither writes them again nor
// counts them as written, and they go with the user.
func TestLostOwnersCheckinsOfAUserBeingDeleted(t *testing.T) {
	x := checkin("x", "ld", "L2", base.Add(time.Minute))
	gcfg, store := leftListedOnly(t, checkin("w", "ld", "L1", base), x)
	gate := make(chan struct{})
	store.byIDGate.Store(&gate)
	n := startNodeWith(t, store, gcfg, actors.DefaultWriterConfig(), zap.NewNop(), func(d *actors.Deps) {
		d.InheritedFromLost = func(id string) bool { return id == "ld" }
	})
	if _, err := n.client.CurrentLocation(ctx(t), "ld"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the look-up to reach the store", func() bool { return store.byIDHeld.Load() > 0 })
	sent := n.metric(t, "checkin_grain_requests_total", "served_by", "local")
	deleted := make(chan error, 1)
	go func() { deleted <- n.client.DeleteUser(ctx(t), "ld") }()
	waitFor(t, "the delete to be sent", func() bool {
		return n.metric(t, "checkin_grain_requests_total", "served_by", "local") > sent
	})
	close(gate)
	if err := <-deleted; err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if got := n.metric(t, "checkin_grain_inherited_checks_total", "result", "checked"); got != 1 {
		t.Errorf("checkin_grain_inherited_checks_total{result=checked} = %v, want 1", got)
	}
	if got := n.metric(t, "checkin_grain_inherited_writes_total"); got != 0 {
		t.Errorf("checkin_grain_inherited_writes_total = %v, want 0: the user was deleted, nothing written", got)
	}
	for _, id := range []string{"w", "x"} {
		if _, err := store.Store.GetCheckin(ctx(t), "ld", id); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("checkin %s of the deleted user: %v, want not found", id, err)
		}
	}
	if _, err := n.client.GetUser(ctx(t), "ld"); !errors.Is(err, actors.ErrNotFound) {
		t.Errorf("GetUser after the delete: %v, want not found", err)
	}
}

// A grain handed over stops writing checkins in the background: a late
// write from it could bring back a checkin the new owner deleted. When the
// new owner does not take them over in time (unreachable), the grain says
// so in its log and in checkin_grain_writes_passed_on_total.
func TestHandedOverGrainStopsWriteRetries(t *testing.T) {
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = 20 * time.Millisecond
	gcfg.StoreTimeout = 300 * time.Millisecond
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() })
	store := &faultyStore{Store: inner}
	core, logs := observer.New(zap.WarnLevel)
	var tries atomic.Int64
	// Created in the store, not through a grain: a synced write may take
	// longer than the short store timeout on a loaded machine.
	if err := inner.CreateUser(ctx(t), persistence.User{ID: "hw", Name: "N hw", CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, store, gcfg, actors.DefaultWriterConfig(), zap.New(core), func(d *actors.Deps) {
		d.HandOverWrite = func(context.Context, persistence.Checkin) error {
			tries.Add(1)
			return fmt.Errorf("%w: injected", actors.ErrUnavailable)
		}
	})
	store.fail.Store(true)
	checkinFails(t, n, checkin("h1", "hw", "L1", base))
	waitFor(t, "the grain to write it again", func() bool { return store.attempts.Load() >= 3 })
	handOver(t, n, "hw")
	left := store.attempts.Load()
	time.Sleep(10 * gcfg.WriteRetry)
	if got := store.attempts.Load(); got != left {
		t.Fatalf("%d writes reached the store after the grain was handed over", got-left)
	}
	if tries.Load() < 2 {
		t.Errorf("the grain tried to pass the write on %d times, want it to try again until grain.store-timeout", tries.Load())
	}
	if l := logs.FilterMessageSnippet("new owner did not take over").All(); len(l) != 1 || l[0].ContextMap()["first_checkin_id"] != "h1" {
		t.Errorf("hand-over logs %+v, want one warning naming h1", l)
	}
	if got := n.metric(t, "checkin_grain_writes_passed_on_total", "result", "failed"); got != 1 {
		t.Errorf("checkin_grain_writes_passed_on_total{result=failed} = %v, want 1", got)
	}
}

// A client's checkin that comes while the grain writes a failed one again
// in the background, with the same id, waits for that write and is
// answered by it: created (no earlier attempt was acknowledged; the write
// that made it durable is the one it waited for), with the checkin as
// first sent; or checkin_conflict when it names another location (not
// "created" with the other's content). In either order of arrival.
func TestCheckinJoiningBackgroundWrite(t *testing.T) {
	for _, order := range []string{"same first", "other first"} {
		t.Run(order, func(t *testing.T) {
			x := checkin("x", "bj", "L1", base)
			n, store := startFailedWrite(t, x)
			gate := make(chan struct{})
			store.gate.Store(&gate)
			store.fail.Store(false)
			held := store.attempts.Load()
			waitFor(t, "the background write to reach the store", func() bool { return store.attempts.Load() > held })
			type answer struct {
				c       persistence.Checkin
				created bool
				err     error
			}
			send := func(c persistence.Checkin) chan answer {
				to := make(chan answer, 1)
				sent := n.metric(t, "checkin_grain_requests_total", "served_by", "local")
				go func() {
					got, created, err := n.client.Checkin(ctx(t), c, true, true)
					to <- answer{got, created, err}
				}()
				waitFor(t, "the request to reach the grain", func() bool {
					return n.metric(t, "checkin_grain_requests_total", "served_by", "local") > sent
				})
				return to
			}
			var same, other chan answer
			if order == "same first" {
				same = send(x)
				other = send(checkin("x", "bj", "L2", base))
			} else {
				other = send(checkin("x", "bj", "L2", base))
				same = send(x)
			}
			store.gate.Store(nil)
			close(gate)
			if a := <-same; a.err != nil || a.c != x || !a.created {
				t.Errorf("the same checkin: %+v created=%v, %v; want %+v, created", a.c, a.created, a.err, x)
			}
			a := <-other
			var e *actors.Error
			if !errors.As(a.err, &e) || e.Code != actors.CodeCheckinConflict {
				t.Errorf("another location with the id: %+v created=%v err=%v; want checkin_conflict", a.c, a.created, a.err)
			}
		})
	}
}

// A write that fails while the user is being deleted is not completed
// (written after the deletion, it would bring the user back), and its
// answer does not promise it.
func TestWriteFailingDuringUserDeletion(t *testing.T) {
	inner := openStore(t, t.TempDir())
	t.Cleanup(func() { inner.Close() })
	store := &faultyStore{Store: inner, release: make(chan struct{})}
	gcfg := actors.DefaultGrainConfig()
	gcfg.WriteRetry = 20 * time.Millisecond
	n := startNode(t, store, gcfg, actors.DefaultWriterConfig())
	mustUser(t, n, "fd") // not a checkin write: not held
	written := make(chan error, 1)
	go func() {
		_, _, err := n.client.Checkin(ctx(t), checkin("f1", "fd", "L1", base), true, true)
		written <- err
	}()
	waitFor(t, "the write to reach the store", func() bool { return store.attempts.Load() == 1 })
	deleted := make(chan error, 1)
	sent := n.metric(t, "checkin_grain_requests_total", "served_by", "local")
	go func() { deleted <- n.client.DeleteUser(ctx(t), "fd") }()
	waitFor(t, "the deletion to reach the grain (it waits for the write)", func() bool {
		return n.metric(t, "checkin_grain_requests_total", "served_by", "local") > sent
	})
	store.fail.Store(true)
	close(store.release)
	err := <-written
	wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	if strings.Contains(err.Error(), "background") {
		t.Errorf("the answer promises a background write while the user is deleted: %v", err)
	}
	store.fail.Store(false)
	if err := <-deleted; err != nil {
		t.Fatalf("delete user: %v", err)
	}
	time.Sleep(10 * gcfg.WriteRetry)
	if got := store.attempts.Load(); got != 1 {
		t.Errorf("%d writes reached the store, want 1: the failed one is not written again", got)
	}
	if _, err := inner.GetCheckin(ctx(t), "fd", "f1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("a checkin of the deleted user is stored: err = %v", err)
	}
}

// userReadFailingStore fails reads of users with an error that names the
// store's insides (fault injection).
type userReadFailingStore struct{ persistence.Store }

const storeInsides = "gocql: no response from 10.9.8.7:9042 (pool exhausted)"

func (f userReadFailingStore) GetUser(context.Context, string) (persistence.User, error) {
	return persistence.User{}, fmt.Errorf("%w: %s", persistence.ErrUnavailable, storeInsides)
}

// A grain whose store call fails answers what failed and what to do,
// without the store's own words (hosts, driver messages): those go to the
// node's log, with the user.
func TestStoreFailureTextStaysInTheLog(t *testing.T) {
	inner := openStore(t, t.TempDir())
	defer inner.Close()
	core, logs := observer.New(zap.InfoLevel)
	n := startLoggedNode(t, userReadFailingStore{inner}, actors.DefaultGrainConfig(), actors.DefaultWriterConfig(), zap.New(core))
	_, err := n.client.GetUser(ctx(t), "sf")
	wantCode(t, err, actors.ErrUnavailable, actors.CodeUnavailable)
	if strings.Contains(err.Error(), "10.9.8.7") || !strings.Contains(err.Error(), "cannot load the user") {
		t.Errorf("the caller's error %q: want what failed, without the store's words", err)
	}
	lines := logs.FilterMessageSnippet("cannot load the user").FilterField(zap.String("user_id", "sf")).All()
	if len(lines) == 0 || !strings.Contains(lines[0].ContextMap()["error"].(string), storeInsides) {
		t.Errorf("log lines of the failure %v: want the store's error with the user", lines)
	}
}
