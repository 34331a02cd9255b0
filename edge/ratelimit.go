package edge

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// rateLimiter gives every client a token bucket: rate tokens per second
// up to burst, one per request. A client is its API key when the node has
// keys, else its IP address. Buckets live in shards, each bounded: a full
// shard first drops the buckets that have refilled (their clients went
// quiet), then, if still full, an arbitrary one (that client starts
// again with a full bucket).
type rateLimiter struct {
	rate, burst float64
	maxPerShard int
	seed        maphash.Seed
	shards      [rateShards]rateShard
}

const rateShards = 64

type rateShard struct {
	mu      sync.Mutex
	buckets map[uint64]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last refill
}

func newRateLimiter(rate float64, burst, maxClients int) *rateLimiter {
	l := &rateLimiter{rate: rate, burst: float64(burst), maxPerShard: max(maxClients/rateShards, 1), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[uint64]*tokenBucket)
	}
	return l
}

// take spends one of the client's tokens, from a bucket of this node's
// share of the limit: 1/shares of the rate and of the burst (the burst at
// least one request). When there is none it returns false and how long
// until there is.
func (l *rateLimiter) take(client uint64, now int64, shares int) (bool, time.Duration) {
	rate, burst := l.rate, l.burst
	if shares > 1 {
		rate, burst = rate/float64(shares), max(1, burst/float64(shares))
	}
	sh := &l.shards[client%rateShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[client]
	if b == nil {
		if len(sh.buckets) >= l.maxPerShard {
			l.evict(sh, now, rate, burst)
		}
		b = &tokenBucket{tokens: burst, last: now}
		sh.buckets[client] = b
	}
	switch elapsed := now - b.last; {
	case elapsed > 0:
		b.tokens += float64(elapsed) * rate / 1e9
		b.last = now
	case elapsed < 0:
		// The wall clock stepped back: refill from now on, instead of
		// not at all until the clock is back where it was.
		b.last = now
	}
	b.tokens = min(burst, b.tokens) // also when the share just shrank
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration(math.Ceil((1 - b.tokens) / rate * 1e9))
}

// evict makes room in a full shard.
func (l *rateLimiter) evict(sh *rateShard, now int64, rate, burst float64) {
	for k, b := range sh.buckets {
		if b.tokens+float64(now-b.last)*rate/1e9 >= burst {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) < l.maxPerShard {
		return
	}
	for k := range sh.buckets {
		delete(sh.buckets, k)
		return
	}
}

// rateLimit refuses a client's request with 429 once the client has spent
// its tokens. It runs after authenticate, so a client with a key is that
// key; without keys it is the address (from http.proxy-header when a
// trusted proxy sent the request).
func (s *Server) rateLimit(c *fiber.Ctx) error {
	var client uint64
	if h := c.Request().Header.Peek(fiber.HeaderAuthorization); s.keys.Len() > 0 && len(h) > len(bearerScheme) {
		// authenticate let it through: "Bearer " (any case) and a known key
		d := sha256.Sum256(h[len(bearerScheme):])
		client = binary.LittleEndian.Uint64(d[:8])
	} else if s.cfg.ProxyHeader != "" {
		client = maphash.String(s.limiter.seed, c.IP()) // the trusted proxy's word, else the peer
	} else {
		client = maphash.Bytes(s.limiter.seed, c.Context().RemoteIP())
	}
	shares := 1
	if s.shares != nil {
		shares = max(1, s.shares()) // a node that has not joined yet counts itself
	}
	ok, wait := s.limiter.take(client, s.now().UnixNano(), shares)
	if ok {
		return c.Next()
	}
	s.m.rateLimited.Inc()
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(max(1, math.Ceil(wait.Seconds())))))
	return &apiError{status: fiber.StatusTooManyRequests, code: "rate_limited",
		msg: "this client sent more than " + strconv.FormatFloat(s.limiter.rate, 'g', -1, 64) + " requests per second; retry after Retry-After seconds"}
}
