package goruntime

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
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

// availableMemory is the memory limit of the process's cgroup when one is
// set below the machine's memory, else the machine's memory.
func availableMemory() (int64, error) { return availableMemoryAt("/") }

// availableMemoryAt is availableMemory with /proc and /sys under root.
//
// The limit is the lowest one set on the process's own cgroup or on any of
// its parents up to the root of the mounted hierarchy, under cgroup v2
// (memory.max) and v1 (memory.limit_in_bytes) alike. The process's cgroup
// is the one /proc/self/cgroup names, found under the hierarchy's mount in
// /proc/self/mountinfo: it is the root of the mount only in a container
// with a cgroup namespace of its own, not for a systemd service with
// MemoryMax, nor in a container or sandbox nested without one. Where
// those files cannot be read, the root of the usual mounts is read.
func availableMemoryAt(root string) (int64, error) {
	total, err := memTotal(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, err
	}
	dirs := cgroupMemoryDirs(root)
	if len(dirs) == 0 {
		dirs = []cgroupDir{{mount: filepath.Join(root, "sys/fs/cgroup"), file: "memory.max"},
			{mount: filepath.Join(root, "sys/fs/cgroup/memory"), file: "memory.limit_in_bytes"}}
	}
	avail := total
	for _, d := range dirs {
		dir := d.mount
		if d.rel != "" {
			dir = filepath.Join(d.mount, d.rel)
		}
		for { // the cgroup, then its parents up to the mount
			if n, ok := readLimit(filepath.Join(dir, d.file)); ok && n < avail {
				avail = n
			}
			if dir == d.mount || len(dir) <= len(d.mount) {
				break
			}
			dir = filepath.Dir(dir)
		}
	}
	return avail, nil
}

// cgroupDir is where the process's memory cgroup of one hierarchy is: the
// hierarchy's mount point, the cgroup's path below it ("" for the mount
// itself) and the file of its limit.
type cgroupDir struct {
	mount, rel, file string
}

// cgroupMemoryDirs finds the process's memory cgroups (v2, and v1's memory
// controller) from /proc/self/cgroup and /proc/self/mountinfo under root;
// nil when those cannot be read.
func cgroupMemoryDirs(root string) []cgroupDir {
	cg, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return nil
	}
	mi, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return nil
	}
	var v2Path, v1Path string
	haveV2, haveV1 := false, false
	for _, line := range strings.Split(string(cg), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path, haveV2 = parts[2], true
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			v1Path, haveV1 = parts[2], true
		}
	}
	dirs := []cgroupDir{}
	for _, line := range strings.Split(string(mi), "\n") {
		// id parent major:minor root mount-point options [optional...] - fstype source super-options
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mountRoot, mountPoint, fstype := unescapeMount(fields[3]), unescapeMount(fields[4]), fields[sep+1]
		var path, file string
		switch {
		case fstype == "cgroup2" && haveV2:
			path, file = v2Path, "memory.max"
		case fstype == "cgroup" && haveV1 && slices.Contains(strings.Split(fields[sep+3], ","), "memory"):
			path, file = v1Path, "memory.limit_in_bytes"
		default:
			continue
		}
		// The cgroup's path is relative to the root of the hierarchy; the
		// mount shows the hierarchy from mountRoot down. A cgroup outside
		// what the mount shows (another namespace's view) is read at the
		// mount itself.
		rel := ""
		if r, err := filepath.Rel(mountRoot, path); err == nil && r != "." && !strings.HasPrefix(r, "..") {
			rel = r
		}
		dirs = append(dirs, cgroupDir{mount: filepath.Join(root, mountPoint), rel: rel, file: file})
	}
	return dirs
}

// unescapeMount undoes the octal escapes of mountinfo (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (v2) for none. v1 writes no limit as a number near math.MaxInt64, which
// is above any machine's memory.
func readLimit(file string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
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
