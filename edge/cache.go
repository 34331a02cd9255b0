package edge

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/checkin/checkin/persistence"
)

// records is a read-through cache of users and locations. Only hits are
// cached: a miss always asks the store, and a record created a moment ago
// is found. An update drops the record here (forget) and, through the
// cluster, on every other node; a node that missed that notice serves its
// copy until the time to live ends. Locations are kept as the JSON object
// the API answers with, so the hottest read appends it as is; users as
// their creation time and name.
type records struct {
	store     persistence.Store
	users     *bigcache.BigCache // id → created_at (8 bytes, Unix ms) + name
	locations *bigcache.BigCache // id → the location's JSON object
	timeout   time.Duration      // of a store read on a miss
	// gen counts forgets. What a store call returned is cached only if no
	// forget happened since before the call began, so a read that raced an
	// update never puts the old record back. Puts hold fill (shared) across
	// their check and set, forget holds it (exclusive) across its count and
	// delete.
	gen  atomic.Uint64
	fill sync.RWMutex
}

// newRecords splits sizeMB between the two caches.
func newRecords(store persistence.Store, sizeMB int, ttl, timeout time.Duration) (*records, error) {
	open := func(mb, entryBytes int) (*bigcache.BigCache, error) {
		cfg := bigcache.DefaultConfig(ttl)
		cfg.Shards = 256
		cfg.HardMaxCacheSize = max(mb, 1)
		cfg.MaxEntriesInWindow = 100_000
		cfg.MaxEntrySize = entryBytes
		cfg.Verbose = false
		return bigcache.New(context.Background(), cfg)
	}
	users, err := open(sizeMB/2, 96)
	if err != nil {
		return nil, err
	}
	locations, err := open(sizeMB-sizeMB/2, 256)
	if err != nil {
		_ = users.Close()
		return nil, err
	}
	return &records{store: store, users: users, locations: locations, timeout: timeout}, nil
}

func (r *records) close() error {
	err := r.users.Close()
	if lerr := r.locations.Close(); err == nil {
		err = lerr
	}
	return err
}

// appendLocation appends the JSON object of location id to b, from cache
// or store.
func (r *records) appendLocation(ctx context.Context, b []byte, id string) ([]byte, error) {
	if j, err := r.locations.Get(id); err == nil {
		return append(b, j...), nil
	}
	g := r.gen.Load()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	l, err := r.store.GetLocation(ctx, id)
	if err != nil {
		return b, err
	}
	n := len(b)
	b = appendLocationJSON(b, l)
	r.fill.RLock()
	if r.gen.Load() == g {
		_ = r.locations.Set(id, b[n:])
	}
	r.fill.RUnlock()
	return b, nil
}

// hasLocation returns nil when location id exists, ErrNotFound when it
// does not. Callers have seen it missing from the cache: it reads the
// store and fills the cache.
func (r *records) hasLocation(ctx context.Context, id string) error {
	_, err := r.appendLocation(ctx, nil, id)
	return err
}

// locationCached reports whether location id is in the cache.
func (r *records) locationCached(id string) bool {
	_, err := r.locations.Get(id)
	return err == nil
}

// user returns the user from cache or store.
func (r *records) user(ctx context.Context, id string) (persistence.User, error) {
	if b, err := r.users.Get(id); err == nil && len(b) >= 8 {
		return persistence.User{ID: id, CreatedAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC(), Name: string(b[8:])}, nil
	}
	g := r.gen.Load()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	u, err := r.store.GetUser(ctx, id)
	if err != nil {
		return u, err
	}
	r.putUser(g, u)
	return u, nil
}

// putUser caches u, read or created by a store call that began at
// generation g.
func (r *records) putUser(g uint64, u persistence.User) {
	r.fill.RLock()
	defer r.fill.RUnlock()
	if r.gen.Load() != g {
		return
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(u.Name)), uint64(u.CreatedAt.UnixMilli()))
	_ = r.users.Set(u.ID, append(b, u.Name...))
}

// putLocation caches l, read or created by a store call that began at
// generation g.
func (r *records) putLocation(g uint64, l persistence.Location) {
	r.fill.RLock()
	defer r.fill.RUnlock()
	if r.gen.Load() != g {
		return
	}
	_ = r.locations.Set(l.ID, appendLocationJSON(make([]byte, 0, 128), l))
}

// forget drops the cached copy of a user or a location that was updated.
func (r *records) forget(kind RecordKind, id string) {
	r.fill.Lock()
	defer r.fill.Unlock()
	r.gen.Add(1)
	switch kind {
	case KindUser, KindUserDeleted:
		_ = r.users.Delete(id)
	case KindLocation:
		_ = r.locations.Delete(id)
	}
}
