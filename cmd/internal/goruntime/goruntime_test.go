package goruntime

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"off", math.MaxInt64, false},
		{"0", math.MaxInt64, false},
		{"512MiB", 512 << 20, false},
		{"4GiB", 4 << 30, false},
		{" 1.5 GiB ", 3 << 29, false},
		{"2GB", 2e9, false},
		{"134217728", 128 << 20, false},
		{"1MiB", 0, true}, // below the floor
		{"lots", 0, true},
		{"-1GiB", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := memoryLimit(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("memoryLimit(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("memoryLimit(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestMemoryLimitAuto(t *testing.T) {
	total, err := memTotal("/proc/meminfo")
	if err != nil {
		t.Skipf("no /proc/meminfo here: %v", err)
	}
	got, err := memoryLimit("auto")
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0 || got > int64(float64(total)*autoMemoryFraction)+1 {
		t.Fatalf("auto limit %d, machine memory %d", got, total)
	}
}

func TestMemTotal(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, []byte("MemFree:  100 kB\nMemTotal:       2048 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := memTotal(p); err != nil || got != 2048<<10 {
		t.Fatalf("memTotal = %d, %v; want %d", got, err, 2048<<10)
	}
	if err := os.WriteFile(p, []byte("MemFree: 1 kB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := memTotal(p); err == nil {
		t.Fatal("no MemTotal line: want an error")
	}
}

func TestMaxProcs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		current int
		want    int
		wantErr bool
	}{
		{"auto keeps Go's choice", "auto", 1, 1, false},
		{"auto keeps more CPUs", " auto ", 8, 8, false},
		{"a number is taken as is", "2", 1, 2, false},
		{"a number under the CPUs", "1", 4, 1, false},
		{"zero", "0", 2, 0, true},
		{"negative", "-2", 2, 0, true},
		{"words", "many", 2, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := maxProcs(tc.in, tc.current)
			if (err != nil) != tc.wantErr {
				t.Fatalf("maxProcs(%q, %d) error %v, want error %v", tc.in, tc.current, err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("maxProcs(%q, %d) = %d, want %d", tc.in, tc.current, got, tc.want)
			}
		})
	}
}
