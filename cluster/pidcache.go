package cluster

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// PIDCache holds the PIDs of grain activations on other members that this
// member called, so that the next call goes straight to them. It holds at
// most its size: a shard that fills is emptied (its users' next calls ask
// their owners again, one request each), so the cache follows the users
// called lately instead of every user ever called (protoactor's own cache
// keeps an entry until a call finds it dead or its member leaves: about
// 200 bytes for every user a node ever forwarded a call for). Entries of a
// member that leaves or drains go at once (the placement's topology).
//
// Its methods are those of protoactor's PidCacheValue that callers use.
type PIDCache struct {
	seed     maphash.Seed
	perShard int
	shards   [pidShards]pidShard
}

type pidShard struct {
	mu sync.Mutex
	m  map[identityKey]*actor.PID
}

// pidShards spreads the cache's lock over callers.
const pidShards = 32

// DefaultPIDCacheSize is the default most PIDs a member caches.
const DefaultPIDCacheSize = 1 << 18

// NewPIDCache returns a cache of at most size PIDs (at least one a shard).
func NewPIDCache(size int) *PIDCache {
	c := &PIDCache{seed: maphash.MakeSeed(), perShard: max(size/pidShards, 1)}
	for i := range c.shards {
		c.shards[i].m = map[identityKey]*actor.PID{}
	}
	return c
}

func (c *PIDCache) shard(identity string) *pidShard {
	return &c.shards[maphash.String(c.seed, identity)%pidShards]
}

// Get returns the cached PID of the activation of identity, if any.
func (c *PIDCache) Get(identity, kind string) (*actor.PID, bool) {
	s := c.shard(identity)
	s.mu.Lock()
	pid, ok := s.m[identityKey{kind, identity}]
	s.mu.Unlock()
	return pid, ok
}

// Set caches pid as the activation of identity; identity is copied.
func (c *PIDCache) Set(identity, kind string, pid *actor.PID) {
	s := c.shard(identity)
	key := identityKey{kind, strings.Clone(identity)}
	s.mu.Lock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[key] = pid
	s.mu.Unlock()
}

// RemoveByValue forgets identity's PID if it is pid.
func (c *PIDCache) RemoveByValue(identity, kind string, pid *actor.PID) {
	s := c.shard(identity)
	key := identityKey{kind, identity}
	s.mu.Lock()
	if cur := s.m[key]; cur != nil && cur.Equal(pid) {
		delete(s.m, key)
	}
	s.mu.Unlock()
}

// removeAddress forgets every PID of the member at addr.
func (c *PIDCache) removeAddress(addr string) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, pid := range s.m {
			if pid.Address == addr {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// Len returns how many PIDs are cached.
func (c *PIDCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
