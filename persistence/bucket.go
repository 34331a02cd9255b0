package persistence

import "time"

// BucketWidth is the span of one time bucket. Checkins are partitioned by
// (user, bucket) and (user, location, bucket), so the width bounds how large
// one partition can grow: with day buckets a heavy user checking in once a
// second, all day, writes 86,400 rows (about 10 MB) into one partition, far
// below the 100 MB where wide partitions start to hurt. Readers skip empty
// buckets through a per-user bucket index, so narrow buckets cost nothing on
// sparse users.
//
// Changing the width changes where existing rows live; it requires a data
// migration.
const BucketWidth = 24 * time.Hour

var bucketMillis = BucketWidth.Milliseconds()

// Millis returns t in UTC, truncated to the millisecond: the precision every
// backend stores timestamps with. Truncation rounds towards the past, also
// for times before 1970.
func Millis(t time.Time) time.Time {
	return t.Truncate(time.Millisecond).UTC()
}

// BucketOf returns the bucket holding t: the unix time of t in milliseconds,
// divided by BucketWidth and rounded down (towards the past, also for times
// before 1970).
func BucketOf(t time.Time) int64 {
	ms := t.UnixMilli()
	b := ms / bucketMillis
	if ms%bucketMillis < 0 {
		b--
	}
	return b
}

// BucketStart returns the first instant of bucket b, in UTC. Bucket b holds
// the times in [BucketStart(b), BucketStart(b+1)).
func BucketStart(b int64) time.Time {
	return time.UnixMilli(b * bucketMillis).UTC()
}
