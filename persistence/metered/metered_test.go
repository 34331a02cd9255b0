package metered_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/metered"
	"github.com/checkin/checkin/persistence/pebble"
	"github.com/checkin/checkin/persistence/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openPebble(t *testing.T) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(t.TempDir(), pebble.WithMemTableSize(4<<20))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestConformance: a metered store is still a store; every call passes
// through as it is (the suite finds the optional interfaces through it).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return metered.New(openPebble(t), metered.NewMetrics(nil))
	})
}

// TestCounts: each call is counted once under its operation and outcome,
// and timed once under its operation.
func TestCounts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := metered.New(openPebble(t), metered.NewMetrics(reg))
	ctx := t.Context()

	u := persistence.User{ID: "u1", Name: "n", CreatedAt: time.Now()}
	_ = s.CreateUser(ctx, u)
	_ = s.CreateUser(ctx, u)        // conflict
	_, _ = s.GetUser(ctx, "nobody") // not found
	_, _ = s.GetUser(ctx, "")       // invalid
	_, _ = s.GetUser(ctx, u.ID)     // ok
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.GetUser(expired, u.ID); err == nil {
		t.Fatal("GetUser with an expired deadline succeeded")
	}
	canceled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := s.WriteCheckins(canceled, []persistence.Checkin{{ID: "c0", UserID: u.ID, LocationID: "l", Timestamp: time.Now()}}); err == nil {
		t.Fatal("WriteCheckins with a cancelled context succeeded")
	}
	c := persistence.Checkin{ID: "c1", UserID: u.ID, LocationID: "l", Timestamp: time.Now()}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c}); err != nil {
		t.Fatal(err)
	}
	bg, ok := persistence.As[persistence.CheckinBatchGetter](s)
	if !ok {
		t.Fatal("As finds no CheckinBatchGetter through the metered store")
	}
	if _, found, err := bg.GetCheckins(ctx, []persistence.CheckinRef{{UserID: u.ID, ID: c.ID}}); err != nil || !found[0] {
		t.Fatalf("GetCheckins through As: found %v, err %v", found, err)
	}
	l, ok := persistence.As[persistence.CheckinIDLister](s)
	if !ok {
		t.Fatal("As finds no CheckinIDLister through the metered store")
	}
	if _, err := l.EachCheckinID(ctx, u.ID, 10, func([]byte) {}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Ping(ctx) // unavailable

	want := map[[2]string]float64{
		{"create_user", "ok"}: 1, {"create_user", "conflict"}: 1,
		{"get_user", "not_found"}: 1, {"get_user", "invalid"}: 1, {"get_user", "ok"}: 1, {"get_user", "timeout"}: 1,
		{"write_checkins", "canceled"}: 1, {"write_checkins", "ok"}: 1,
		{"get_checkins", "ok"}: 1, {"each_checkin_id", "ok"}: 1,
		{"ping", "unavailable"}: 1,
		{"list_checkins", "ok"}: 0, {"ping", "ok"}: 0,
	}
	calls, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]float64{}
	timed := map[string]uint64{}
	for _, mf := range calls {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch mf.GetName() {
			case "checkin_store_calls_total":
				got[[2]string{labels["op"], labels["outcome"]}] = m.GetCounter().GetValue()
			case "checkin_store_call_seconds":
				timed[labels["op"]] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	perOp := map[string]uint64{}
	for k, v := range got {
		perOp[k[0]] += uint64(v)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("checkin_store_calls_total{op=%q,outcome=%q} = %v, want %v", k[0], k[1], got[k], n)
		}
	}
	for op, n := range perOp {
		if timed[op] != n {
			t.Errorf("checkin_store_call_seconds{op=%q} counts %d calls, the counter %d", op, timed[op], n)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

// plain has a Store's methods only: none of the optional interfaces.
type plain struct{ persistence.Store }

// TestAs: the optional interfaces are found through the metered store when
// the wrapped store has them, and only then; the others (Checkpoint here)
// are the wrapped store's own.
func TestAs(t *testing.T) {
	inner := openPebble(t)
	defer inner.Close()
	s := metered.New(inner, metered.NewMetrics(nil))
	cp, ok := persistence.As[interface{ Checkpoint(dir string) error }](s)
	if !ok {
		t.Fatal("As finds no Checkpoint through the metered store")
	}
	if err := cp.Checkpoint(filepath.Join(t.TempDir(), "copy")); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if _, ok := persistence.As[persistence.WrittenForgetter](s); ok {
		t.Error("As finds a WrittenForgetter the embedded store does not have")
	}
	bare := metered.New(plain{inner}, metered.NewMetrics(nil))
	if _, ok := persistence.As[persistence.CheckinBatchGetter](bare); ok {
		t.Error("As finds a CheckinBatchGetter the wrapped store does not have")
	}
	if _, ok := persistence.As[persistence.CheckinIDLister](bare); ok {
		t.Error("As finds a CheckinIDLister the wrapped store does not have")
	}
}

// BenchmarkGetUser: a cached read of the embedded store, the cheapest call
// there is, bare and through the decorator; the difference is what
// counting and timing cost per call.
func BenchmarkGetUser(b *testing.B) {
	inner, err := pebble.Open(b.TempDir(), pebble.WithMemTableSize(4<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	ctx := context.Background()
	if err := inner.CreateUser(ctx, persistence.User{ID: "u1", Name: "n", CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    persistence.Store
	}{{"bare", inner}, {"metered", metered.New(inner, metered.NewMetrics(prometheus.NewRegistry()))}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.s.GetUser(ctx, "u1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
