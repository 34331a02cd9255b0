package goruntime

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// memoryLimit resolves the runtime.memory-limit setting to bytes: "off"
// (or 0) is no limit (math.MaxInt64, Go's default); "auto" is
// autoMemoryFraction of the memory this process may use (the cgroup's
// limit when one is set, else the machine's); otherwise a size such as
// 512MiB, 4GiB or a plain number of bytes.
func memoryLimit(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "0":
		return math.MaxInt64, nil
	case "auto":
		avail, err := availableMemory()
		if err != nil {
			return 0, fmt.Errorf("runtime.memory-limit=auto: %w (set a size or off)", err)
		}
		return int64(float64(avail) * autoMemoryFraction), nil
	}
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("runtime.memory-limit: %w", err)
	}
	if n < 64<<20 {
		return 0, errors.New("runtime.memory-limit must be at least 64MiB (or off)")
	}
	return n, nil
}

// autoMemoryFraction leaves room for what the Go heap does not count
// (goroutine stacks, the store's caches outside the heap, the page cache).
const autoMemoryFraction = 0.75

// parseSize reads 123, 512KiB, 64MiB, 4GiB, 1TiB (also KB/MB/GB/TB as
// powers of 1000).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 4GiB)", s)
	}
	return int64(f * mult), nil
}

// availableMemory is the cgroup's memory limit (v2, then v1) when one is
// set below the machine's memory, else the machine's memory.
func availableMemory() (int64, error) {
	total, err := memTotal("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			break
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n < total {
			return n, nil
		}
		break
	}
	return total, nil
}

func memTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no MemTotal", path)
}
