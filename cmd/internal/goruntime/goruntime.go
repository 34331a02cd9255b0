// Package goruntime holds the Go runtime settings every server binary takes
// the same way: the GC target, the soft memory limit and the number of Ps
// (threads running Go code at once). Baselines and checkin share it, so a
// comparison between them never hides a runtime difference.
package goruntime

import (
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Config is the runtime settings; each is a flag (runtime.*) with an env
// twin.
type Config struct {
	GCPercent   int
	MemoryLimit string // a size, auto or off
	MaxProcs    string // a number or auto
}

// DefaultConfig: GC at 400 %, memory limit and Ps auto.
func DefaultConfig() Config {
	return Config{GCPercent: 400, MemoryLimit: "auto", MaxProcs: "auto"}
}

// RegisterFlags adds the runtime.* flags to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.GCPercent, "runtime.gc-percent", c.GCPercent, "Go GC target percentage (GOGC): the heap may grow this much over the live heap before a collection; higher trades memory for CPU and tail latency, -1 turns the GC off (then only runtime.memory-limit triggers it)")
	fs.StringVar(&c.MemoryLimit, "runtime.memory-limit", c.MemoryLimit, "soft limit of the Go heap (GOMEMLIMIT): a size (512MiB, 4GiB), auto (75% of the cgroup's or machine's memory) or off; the GC runs more often near it")
	fs.StringVar(&c.MaxProcs, "runtime.gomaxprocs", c.MaxProcs, "threads running Go code at once (GOMAXPROCS): a number, or auto (Go's choice: the CPUs this process may use, or the GOMAXPROCS environment variable)")
}

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	if c.GCPercent < -1 {
		return errors.New("runtime.gc-percent must be -1 (off) or more")
	}
	if _, err := memoryLimit(c.MemoryLimit); err != nil {
		return err
	}
	if _, err := maxProcs(c.MaxProcs, runtime.GOMAXPROCS(0)); err != nil {
		return err
	}
	return nil
}

// Apply sets the runtime as c says (c validated) and logs the outcome.
func (c Config) Apply(log *zap.Logger) {
	debug.SetGCPercent(c.GCPercent)
	limit, _ := memoryLimit(c.MemoryLimit)
	debug.SetMemoryLimit(limit)
	procs, _ := maxProcs(c.MaxProcs, runtime.GOMAXPROCS(0))
	if strings.TrimSpace(c.MaxProcs) != "auto" {
		// Set even when it equals Go's choice: only a set value stays
		// when the CPU limit or affinity changes (Go updates its own).
		setMaxProcs(procs)
	}
	log.Info("runtime", zap.Int("gc_percent", c.GCPercent), zap.Int64("memory_limit_bytes", limit),
		zap.Int("gomaxprocs", procs), zap.Int("cpus", runtime.NumCPU()))
}

// setMaxProcs is runtime.GOMAXPROCS (a variable for tests).
var setMaxProcs = runtime.GOMAXPROCS

// maxProcs resolves runtime.gomaxprocs given Go's current choice: auto
// keeps it.
func maxProcs(s string, current int) (int, error) {
	if strings.TrimSpace(s) == "auto" {
		return current, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("runtime.gomaxprocs: %q is not auto or a number of at least 1", s)
	}
	return n, nil
}
