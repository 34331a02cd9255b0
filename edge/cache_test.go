package edge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/pebble"
)

// slowReads is a store whose location reads, once armed, return what the
// store held when they began only after the test releases them: a read that
// races an update.
type slowReads struct {
	persistence.Store
	began   chan struct{}
	release chan struct{}
}

func (s *slowReads) GetLocation(ctx context.Context, id string) (persistence.Location, error) {
	l, err := s.Store.GetLocation(ctx, id)
	if s.began != nil {
		s.began <- struct{}{}
		<-s.release
	}
	return l, err
}

// A read that began before an update and ends after it must not put the
// old record back into the cache: the next read sees the update.
func TestRecordsReadRacingUpdate(t *testing.T) {
	st, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	defer st.Close()
	slow := &slowReads{Store: st}
	r, err := newRecords(slow, 1, time.Hour, 5*time.Second)
	if err != nil {
		t.Fatalf("newRecords: %v", err)
	}
	defer r.close()
	ctx := t.Context()
	if err := st.CreateLocation(ctx, persistence.Location{ID: "moma", Name: "old", Lat: 1, Lon: 2}); err != nil {
		t.Fatalf("CreateLocation: %v", err)
	}

	slow.began, slow.release = make(chan struct{}), make(chan struct{})
	read := make(chan string)
	go func() {
		b, err := r.appendLocation(ctx, nil, "moma")
		if err != nil {
			t.Errorf("appendLocation: %v", err)
		}
		read <- string(b)
	}()
	<-slow.began // the read has the old record
	if _, err := st.UpdateLocation(ctx, "moma", persistence.LocationPatch{Name: ptr("new")}); err != nil {
		t.Fatalf("UpdateLocation: %v", err)
	}
	r.forget(KindLocation, "moma")
	close(slow.release)
	if got := <-read; !strings.Contains(got, `"name":"old"`) {
		t.Fatalf("the racing read answered %s, want the record it read (old)", got)
	}

	slow.began = nil
	b, err := r.appendLocation(ctx, nil, "moma")
	if err != nil {
		t.Fatalf("appendLocation: %v", err)
	}
	if !strings.Contains(string(b), `"name":"new"`) {
		t.Fatalf("after the update the cache answers %s: the racing read put the old record back", b)
	}
	if !r.locationCached("moma") {
		t.Errorf("a read with no update racing it did not fill the cache")
	}
}

// lostAnswers is a store whose record writes, once armed, are applied and
// then answered with ErrUnavailable: a write whose answer was lost to a
// timeout or a store that failed right after it.
type lostAnswers struct {
	persistence.Store
	armed atomic.Bool
}

func (s *lostAnswers) lost(err error) error {
	if err == nil && s.armed.Load() {
		return fmt.Errorf("%w: the answer was lost", persistence.ErrUnavailable)
	}
	return err
}

func (s *lostAnswers) UpdateUser(ctx context.Context, id string, p persistence.UserPatch) (persistence.User, error) {
	u, err := s.Store.UpdateUser(ctx, id, p)
	return u, s.lost(err)
}

func (s *lostAnswers) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	l, err := s.Store.UpdateLocation(ctx, id, p)
	return l, s.lost(err)
}

func (s *lostAnswers) DeleteLocation(ctx context.Context, id string) error {
	return s.lost(s.Store.DeleteLocation(ctx, id))
}

// A record write that failed after it may have been applied (503, 504)
// must not leave the record's old copy in the caches, here or on the other
// nodes: the next read sees the write, and a checkin at a location deleted
// that way is refused.
func TestRecordWriteWithLostAnswerDropsCachedCopies(t *testing.T) {
	var store *lostAnswers
	var notices noticeLog
	// Each failed write drops the copies again lateWriteWindow (twice the
	// request timeout) later: a minute here, so that on a slow machine no
	// late drop adds a notice before the test counts them.
	ts := newTestServerWithDeps(t, nil, func(c *Config) { c.RequestTimeout = time.Minute }, func(d *Deps) {
		store = &lostAnswers{Store: d.Store}
		d.Store = store
		d.Notify = notices.notify
	})
	base := ts.serve(t)
	c := newClient(t)
	ctx := t.Context()
	if err := ts.store.CreateUser(ctx, persistence.User{ID: "alice", Name: "Alice"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"moma", "met"} {
		if err := ts.store.CreateLocation(ctx, persistence.Location{ID: id, Name: "old", Lat: 1, Lon: 2}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path, want string) {
		t.Helper()
		if r := do(t, c, "GET", base+path, nil); r.status != 200 || !strings.Contains(string(r.body), want) {
			t.Fatalf("GET %s = %d %s, want 200 with %s", path, r.status, r.body, want)
		}
	}
	// Cache all three.
	get("/v1/users/alice", `"name":"Alice"`)
	get("/v1/locations/moma", `"name":"old"`)
	if r := do(t, c, "POST", base+"/v1/users/alice/checkins", []byte(`{"location_id":"met"}`)); r.status != 201 {
		t.Fatalf("checkin at met = %d %s, want 201", r.status, r.body)
	}

	store.armed.Store(true)
	for _, w := range []struct{ method, path, body string }{
		{"PATCH", "/v1/users/alice", `{"name":"Alice Liddell"}`},
		{"PATCH", "/v1/locations/moma", `{"name":"new"}`},
		{"DELETE", "/v1/locations/met", ""},
	} {
		var body []byte
		if w.body != "" {
			body = []byte(w.body)
		}
		if r := do(t, c, w.method, base+w.path, body); r.status != 503 {
			t.Fatalf("%s %s with its answer lost = %d %s, want 503", w.method, w.path, r.status, r.body)
		}
	}
	store.armed.Store(false)

	get("/v1/users/alice", `"name":"Alice Liddell"`)
	get("/v1/locations/moma", `"name":"new"`)
	if r := do(t, c, "POST", base+"/v1/users/alice/checkins", []byte(`{"location_id":"met"}`)); r.status != 404 || r.errBody(t).Error.Code != "location_not_found" {
		t.Fatalf("checkin at the deleted location = %d %s, want 404 location_not_found", r.status, r.body)
	}
	want := []string{fmt.Sprint(KindUser, "/alice"), fmt.Sprint(KindLocation, "/moma"), fmt.Sprint(KindLocation, "/met")}
	if got := notices.list(); !slices.Equal(got, want) {
		t.Errorf("notices to the other nodes = %v, want %v", got, want)
	}
}

// lateWrites is a store whose location updates, once armed, answer
// ErrUnavailable at once and are applied only when apply is called: a
// write still in flight when its request gave up.
type lateWrites struct {
	persistence.Store
	armed   atomic.Bool
	mu      sync.Mutex
	pending []func()
}

func (s *lateWrites) UpdateLocation(ctx context.Context, id string, p persistence.LocationPatch) (persistence.Location, error) {
	if !s.armed.Load() {
		return s.Store.UpdateLocation(ctx, id, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, func() { _, _ = s.Store.UpdateLocation(context.Background(), id, p) })
	return persistence.Location{}, fmt.Errorf("%w: no answer in time", persistence.ErrUnavailable)
}

func (s *lateWrites) apply() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.pending {
		f()
	}
	s.pending = nil
}

// A record write that failed and was applied later, after a read in
// between cached the record as it was, must not leave that copy to be
// served until cache.ttl: the node drops it again (and tells the other
// nodes) once the late-write window has passed.
func TestRecordWriteAppliedLateDropsCachedCopiesAgain(t *testing.T) {
	var store *lateWrites
	var notices noticeLog
	// The late drop comes lateWriteWindow (2 s here) after the PATCH
	// failed: long enough that the read below caches the old copy before
	// it, even on a slow machine. (A drop that came first would leave that
	// copy cached, and the test would fail with the node doing right.)
	ts := newTestServerWithDeps(t, nil, func(c *Config) { c.RequestTimeout = time.Second }, func(d *Deps) {
		store = &lateWrites{Store: d.Store}
		d.Store = store
		d.Notify = notices.notify
	})
	base := ts.serve(t)
	c := newClient(t)
	if err := ts.store.CreateLocation(t.Context(), persistence.Location{ID: "moma", Name: "old", Lat: 1, Lon: 2}); err != nil {
		t.Fatal(err)
	}
	get := func() string {
		t.Helper()
		r := do(t, c, "GET", base+"/v1/locations/moma", nil)
		if r.status != 200 {
			t.Fatalf("GET = %d %s, want 200", r.status, r.body)
		}
		return string(r.body)
	}
	if b := get(); !strings.Contains(b, `"name":"old"`) {
		t.Fatalf("GET before the update = %s", b)
	}

	store.armed.Store(true)
	if r := do(t, c, "PATCH", base+"/v1/locations/moma", []byte(`{"name":"new"}`)); r.status != 503 {
		t.Fatalf("PATCH without an answer = %d %s, want 503", r.status, r.body)
	}
	// A read before the write lands caches the record as it was.
	if b := get(); !strings.Contains(b, `"name":"old"`) {
		t.Fatalf("GET before the late write landed = %s, want the old name", b)
	}
	store.apply()
	// Another request reuses the server's buffers, where the PATCH's path
	// was: the late drop must name moma all the same.
	if r := do(t, c, "GET", base+"/v1/locations/zzzz", nil); r.status != 404 {
		t.Fatalf("GET of a location that does not exist = %d %s, want 404", r.status, r.body)
	}
	// Wait for the late drop itself, not for a guess at when its timer
	// runs: its notice to the other nodes is sent once the copy here is
	// dropped.
	for deadline := time.Now().Add(ts.lateWriteWindow() + 30*time.Second); len(notices.list()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no late drop %v after the failed write: notices %v", ts.lateWriteWindow()+30*time.Second, notices.list())
		}
	}
	if b := get(); !strings.Contains(b, `"name":"new"`) {
		t.Fatalf("GET after the late drop = %s, want the new name (the old copy stayed cached)", b)
	}
	if got, want := notices.list(), []string{fmt.Sprint(KindLocation, "/moma"), fmt.Sprint(KindLocation, "/moma")}; !slices.Equal(got, want) {
		t.Errorf("notices to the other nodes = %v, want %v (at the failure and after the window)", got, want)
	}
}

// noticeLog records the record notices a server sends to the other nodes
// (Deps.Notify), as kind/id.
type noticeLog struct {
	mu  sync.Mutex
	got []string
}

func (n *noticeLog) notify(kind RecordKind, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, fmt.Sprint(kind, "/", id))
}

func (n *noticeLog) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.got)
}
