package edge

import (
	"context"
	"strings"
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
