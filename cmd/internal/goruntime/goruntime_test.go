package goruntime

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"

	"go.uber.org/zap"
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

// TestAvailableMemoryCgroups: runtime.memory-limit=auto follows the memory
// limit of the cgroup the process is in, wherever in the hierarchy that is
// (a systemd service with MemoryMax, a container without its own cgroup
// namespace, a sandbox nested under another), the lowest limit on its way
// to the root, under cgroup v2 and v1.
func TestAvailableMemoryCgroups(t *testing.T) {
	const machine = 16 << 30
	const v2Root = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	const v1Memory = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	const unified = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	const v1Unlimited = "9223372036854771712"
	tests := []struct {
		name      string
		cgroup    string // /proc/self/cgroup; "" leaves it out
		mountinfo string
		files     map[string]string // under sys/fs/cgroup
		want      int64
	}{
		{"v2, the container's own namespace", "0::/\n", v2Root,
			map[string]string{"memory.max": "2147483648"}, 2 << 30},
		{"v2, a systemd service with MemoryMax", "0::/system.slice/checkin.service\n", v2Root,
			map[string]string{"system.slice/checkin.service/memory.max": "1073741824", "system.slice/memory.max": "max"}, 1 << 30},
		{"v2, a lower limit on a parent", "0::/system.slice/checkin.service\n", v2Root,
			map[string]string{"system.slice/checkin.service/memory.max": "max", "system.slice/memory.max": "536870912"}, 512 << 20},
		{"v2, no limit", "0::/user.slice\n", v2Root,
			map[string]string{"user.slice/memory.max": "max"}, machine},
		{"v2, a limit above the machine's memory", "0::/big\n", v2Root,
			map[string]string{"big/memory.max": "68719476736"}, machine},
		{"v1, nested under the root", "4:memory:/process_api/abc\n0::/\n", v1Memory + unified,
			map[string]string{"memory/memory.limit_in_bytes": v1Unlimited, "memory/process_api/abc/memory.limit_in_bytes": "3221225472"}, 3 << 30},
		{"v1, a container mounting its own cgroup", "4:memory:/docker/abc\n", "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
			map[string]string{"memory/memory.limit_in_bytes": "1073741824"}, 1 << 30},
		{"v1 with controllers joined", "4:cpu,memory:/svc\n", "35 31 0:32 / /sys/fs/cgroup/cpu,memory rw - cgroup cgroup rw,cpu,memory\n",
			map[string]string{"cpu,memory/svc/memory.limit_in_bytes": "1073741824"}, 1 << 30},
		{"no /proc/self/cgroup: the root's files", "", "",
			map[string]string{"memory.max": "1073741824"}, 1 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write := func(name, content string) {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write("proc/meminfo", "MemTotal:       16777216 kB\n")
			if tc.cgroup != "" {
				write("proc/self/cgroup", tc.cgroup)
				write("proc/self/mountinfo", "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"+tc.mountinfo)
			}
			for name, content := range tc.files {
				write(filepath.Join("sys/fs/cgroup", name), content+"\n")
			}
			got, err := availableMemoryAt(root)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("available memory %d, want %d", got, tc.want)
			}
		})
	}
}

// TestApplyPinsANumberOfPs: runtime.gomaxprocs set to a number is set in
// the runtime even when it equals Go's current choice, since only a set
// value stops the runtime from changing it when the container's CPU limit
// or the CPU affinity changes; auto leaves Go's choice (and its updates)
// alone.
func TestApplyPinsANumberOfPs(t *testing.T) {
	defer func(f func(int) int) { setMaxProcs = f }(setMaxProcs)
	var set []int
	setMaxProcs = func(n int) int { set = append(set, n); return runtime.GOMAXPROCS(0) }
	cfg := DefaultConfig()
	cfg.MemoryLimit = "off"
	cfg.GCPercent = debug.SetGCPercent(100)
	debug.SetGCPercent(cfg.GCPercent)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	cfg.Apply(zap.NewNop())
	if len(set) != 0 {
		t.Errorf("auto set GOMAXPROCS to %v, want Go's choice left alone", set)
	}
	cfg.MaxProcs = strconv.Itoa(runtime.GOMAXPROCS(0))
	cfg.Apply(zap.NewNop())
	if want := []int{runtime.GOMAXPROCS(0)}; !slices.Equal(set, want) {
		t.Errorf("runtime.gomaxprocs=%s (Go's current choice) set %v, want %v", cfg.MaxProcs, set, want)
	}
}
