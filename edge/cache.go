package edge

import (
	"context"
	"encoding/binary"
	"math"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/checkin/checkin/persistence"
)

// records is a read-through cache of users and locations. Both are
// immutable once created, so only hits are cached: a miss always asks the
// store, and a record created a moment ago is found.
type records struct {
	store   persistence.Store
	cache   *bigcache.BigCache
	timeout time.Duration // of a store read on a miss
}

func newRecords(store persistence.Store, sizeMB int, ttl, timeout time.Duration) (*records, error) {
	cfg := bigcache.DefaultConfig(ttl)
	cfg.Shards = 256
	cfg.HardMaxCacheSize = sizeMB
	cfg.MaxEntriesInWindow = 100_000
	cfg.MaxEntrySize = 128
	cfg.Verbose = false
	c, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &records{store: store, cache: c, timeout: timeout}, nil
}

func (r *records) close() error { return r.cache.Close() }

// location returns the location from cache or store.
func (r *records) location(ctx context.Context, id string) (persistence.Location, error) {
	key := "l" + id
	if b, err := r.cache.Get(key); err == nil {
		if l, ok := decodeLocation(id, b); ok {
			return l, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	l, err := r.store.GetLocation(ctx, id)
	if err != nil {
		return l, err
	}
	_ = r.cache.Set(key, encodeLocation(l))
	return l, nil
}

// user returns the user from cache or store.
func (r *records) user(ctx context.Context, id string) (persistence.User, error) {
	key := "u" + id
	if b, err := r.cache.Get(key); err == nil && len(b) >= 8 {
		return persistence.User{ID: id, CreatedAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC(), Name: string(b[8:])}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	u, err := r.store.GetUser(ctx, id)
	if err != nil {
		return u, err
	}
	r.putUser(u)
	return u, nil
}

func (r *records) putUser(u persistence.User) {
	b := binary.BigEndian.AppendUint64(nil, uint64(u.CreatedAt.UnixMilli()))
	_ = r.cache.Set("u"+u.ID, append(b, u.Name...))
}

func (r *records) putLocation(l persistence.Location) {
	_ = r.cache.Set("l"+l.ID, encodeLocation(l))
}

func encodeLocation(l persistence.Location) []byte {
	b := make([]byte, 0, 24+len(l.Name))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(l.Lat))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(l.Lon))
	b = binary.BigEndian.AppendUint64(b, uint64(l.CreatedAt.UnixMilli()))
	return append(b, l.Name...)
}

func decodeLocation(id string, b []byte) (persistence.Location, bool) {
	if len(b) < 24 {
		return persistence.Location{}, false
	}
	return persistence.Location{
		ID:        id,
		Lat:       math.Float64frombits(binary.BigEndian.Uint64(b)),
		Lon:       math.Float64frombits(binary.BigEndian.Uint64(b[8:])),
		CreatedAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b[16:]))).UTC(),
		Name:      string(b[24:]),
	}, true
}
