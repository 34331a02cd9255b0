package scylla

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
)

// BenchmarkWriteCheckins measures WriteCheckins against the node: batches of
// 1, 16 and 256 checkins of users drawn from a pool of 10,000 (so a batch
// mostly spans many users, as the writer actors' batches do), written by
// 16*GOMAXPROCS concurrent callers. It reports batches/s, checkins/s and the
// p99 latency of one WriteCheckins call.
//
//	CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 go test -run '^$' -bench WriteCheckins -benchtime 3s ./persistence/scylla/
func BenchmarkWriteCheckins(b *testing.B) {
	s := open(b, testConfig(b))
	const users, locations = 10_000, 100
	var seq atomic.Int64
	start := time.Now().Truncate(time.Millisecond)
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(uint64(seq.Add(1)), 7))
				local := make([]time.Duration, 0, 1024)
				batch := make([]persistence.Checkin, size)
				for pb.Next() {
					for i := range batch {
						n := seq.Add(1)
						batch[i] = persistence.Checkin{
							ID:         fmt.Sprintf("c%012d", n),
							UserID:     fmt.Sprintf("u%05d", rng.IntN(users)),
							LocationID: fmt.Sprintf("l%03d", rng.IntN(locations)),
							Timestamp:  start.Add(time.Duration(n) * time.Millisecond),
						}
					}
					t0 := time.Now()
					if err := s.WriteCheckins(b.Context(), batch); err != nil {
						b.Error(err)
						return
					}
					local = append(local, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			b.StopTimer()
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/secs, "batches/s")
			b.ReportMetric(float64(b.N*size)/secs, "checkins/s")
			if len(lat) > 0 {
				slices.Sort(lat)
				p99 := lat[min(len(lat)-1, len(lat)*99/100)]
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(0, "ns/op") // per-batch time is batches/s inverted; keep the output short
		})
	}
}
