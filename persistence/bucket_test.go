package persistence

import (
	"testing"
	"time"
)

func TestBucketOf(t *testing.T) {
	day := BucketWidth
	epoch := time.Unix(0, 0).UTC()
	start := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC) // a bucket start: day buckets begin at midnight UTC
	startBucket := int64(19792)                           // 2024-03-10 is day 19792 since 1970-01-01

	tests := []struct {
		name string
		t    time.Time
		want int64
	}{
		{"epoch", epoch, 0},
		{"epoch plus 1ms", epoch.Add(time.Millisecond), 0},
		{"last ms of bucket 0", epoch.Add(day - time.Millisecond), 0},
		{"start of bucket 1", epoch.Add(day), 1},
		{"exactly at a bucket start", start, startBucket},
		{"1ms before a bucket start", start.Add(-time.Millisecond), startBucket - 1},
		{"1ns before a bucket start", start.Add(-time.Nanosecond), startBucket - 1},
		{"end of the bucket day", start.Add(day - time.Nanosecond), startBucket},
		{"other zone, same instant", start.In(time.FixedZone("UTC+5", 5*3600)), startBucket},
		{"1ms before epoch", epoch.Add(-time.Millisecond), -1},
		{"1ns before epoch", epoch.Add(-time.Nanosecond), -1},
		{"exactly one bucket before epoch", epoch.Add(-day), -1},
		{"1ms before bucket -1", epoch.Add(-day - time.Millisecond), -2},
		{"1969-07-20", time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC), -165},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BucketOf(tt.t); got != tt.want {
				t.Fatalf("BucketOf(%v) = %d, want %d", tt.t, got, tt.want)
			}
		})
	}
}

func TestBucketStart(t *testing.T) {
	tests := []struct {
		name string
		b    int64
		want time.Time
	}{
		{"bucket 0", 0, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"bucket 1", 1, time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"bucket -1", -1, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)},
		{"2024-03-10", 19792, time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BucketStart(tt.b)
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Fatalf("BucketStart(%d) = %v, want %v", tt.b, got, tt.want)
			}
			// The start belongs to its bucket, the instant before to the previous one.
			if b := BucketOf(got); b != tt.b {
				t.Errorf("BucketOf(BucketStart(%d)) = %d", tt.b, b)
			}
			if b := BucketOf(got.Add(-time.Millisecond)); b != tt.b-1 {
				t.Errorf("BucketOf(BucketStart(%d) - 1ms) = %d, want %d", tt.b, b, tt.b-1)
			}
		})
	}
}

func TestMillis(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want time.Time
	}{
		{"whole ms unchanged", time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)},
		{"sub-ms truncated", time.Date(2024, 1, 2, 3, 4, 5, 6_999_999, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)},
		{"1ns truncated", time.Date(2024, 1, 2, 3, 4, 5, 1, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"zone converted to UTC", time.Date(2024, 1, 2, 8, 4, 5, 6_500_000, time.FixedZone("UTC+5", 5*3600)), time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)},
		{"before 1970 rounds towards the past", time.Unix(0, -1).UTC(), time.Unix(0, -int64(time.Millisecond)).UTC()},
		{"before 1970 whole ms unchanged", time.Unix(-10, -int64(3*time.Millisecond)).UTC(), time.Unix(-10, -int64(3*time.Millisecond)).UTC()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Millis(tt.t)
			if !got.Equal(tt.want) {
				t.Fatalf("Millis(%v) = %v, want %v", tt.t, got, tt.want)
			}
			if got.Location() != time.UTC {
				t.Errorf("Millis(%v) location = %v, want UTC", tt.t, got.Location())
			}
			if got != tt.want {
				t.Errorf("Millis(%v) = %#v, not == %#v (monotonic reading or location kept)", tt.t, got, tt.want)
			}
		})
	}

	t.Run("monotonic reading stripped", func(t *testing.T) {
		now := time.Now()
		if got := Millis(now); got != Millis(now).Round(0) {
			t.Fatalf("Millis(time.Now()) keeps a monotonic reading: %#v", got)
		}
	})
}
