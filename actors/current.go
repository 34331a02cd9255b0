package actors

import (
	"context"
	"encoding/binary"
	"sync"
	"time"
	"unsafe"

	"github.com/allegro/bigcache/v3"

	"github.com/checkin/checkin/persistence"
)

// CurrentView is this node's read side of the user grains: an active grain
// whose current location was read publishes it here, from then on before
// it acknowledges each checkin that changes it, and withdraws it when it
// stops. Reading it serves a current-location request from the grain's
// memory without a trip through the grain's mailbox. An entry that is
// missing (the user is not read, the entry was evicted, or the grain is
// not active here) only means the read goes to the grain, which publishes
// it again.
//
// It is valid while this node hosts the users' grains: when the topology
// changes, a grain this node no longer owns is stopped and withdraws its
// entry, and reads for it go to the grain on its new owner.
type CurrentView struct {
	cache *bigcache.BigCache
}

// NewCurrentView returns a view of at most sizeMB megabytes.
func NewCurrentView(sizeMB int) (*CurrentView, error) {
	cfg := bigcache.DefaultConfig(24 * time.Hour) // grains withdraw their entries; the window only bounds leftovers
	cfg.Shards = 256
	cfg.HardMaxCacheSize = sizeMB
	cfg.MaxEntriesInWindow = 100_000
	cfg.MaxEntrySize = 96
	cfg.CleanWindow = time.Hour
	cfg.Verbose = false // it would print every shard growth on the standard logger
	c, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &CurrentView{cache: c}, nil
}

// Close releases the view.
func (v *CurrentView) Close() error { return v.cache.Close() }

// publish records that userID exists and its current checkin (nil: none).
func (v *CurrentView) publish(userID string, cur *persistence.Checkin) {
	if v == nil {
		return
	}
	if cur == nil {
		_ = v.cache.Set(userID, nil)
		return
	}
	buf := entries.Get().(*[]byte) // Set copies the entry: the buffer is reused
	b := binary.BigEndian.AppendUint64((*buf)[:0], uint64(cur.Timestamp.UnixMilli()))
	b = append(b, byte(len(cur.ID)))
	b = append(append(b, cur.ID...), cur.LocationID...)
	_ = v.cache.Set(userID, b)
	*buf = b
	entries.Put(buf)
}

// entries are the buffers publish renders entries into.
var entries = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// withdraw forgets userID (its grain stops).
func (v *CurrentView) withdraw(userID string) {
	if v != nil {
		_ = v.cache.Delete(userID)
	}
}

// get returns the published state of userID: found is false when nothing
// is published; ok is false when the user has no checkins.
func (v *CurrentView) get(userID string) (c persistence.Checkin, ok, found bool) {
	if v == nil {
		return c, false, false
	}
	b, err := v.cache.Get(userID)
	if err != nil {
		return c, false, false
	}
	if len(b) <= 9 || len(b) < 9+int(b[8]) {
		return c, false, len(b) == 0
	}
	// b is a copy made for this call that nothing else references or
	// changes, so the strings may share its bytes instead of copying them.
	n := int(b[8])
	ids := unsafe.String(&b[9], len(b)-9)
	return persistence.Checkin{
		ID:         ids[:n],
		UserID:     userID,
		LocationID: ids[n:],
		Timestamp:  time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC(),
	}, true, true
}
