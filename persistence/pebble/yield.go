package pebble

import (
	"runtime"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// yieldingFS makes the goroutine that writes a table file — a memtable
// flush or a compaction — step aside at a write (they come about every
// 4 KiB of output) once it has had the CPU for yieldEvery, so that
// requests get the CPU in between. On a
// node with one P a flush otherwise takes whole scheduler time slices
// (10 ms) from the goroutines a checkin passes through, several times per
// checkin: writes in the open model at 8k/s, half the node's capacity,
// saw p99 of 75–150 ms at each memtable flush. The write-ahead log,
// which checkins wait for, is not slowed.
type yieldingFS struct{ vfs.FS }

func (fs yieldingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isTableFile(name) {
		return f, err
	}
	return &yieldingFile{File: f, last: time.Now()}, nil
}

// isTableFile reports whether name is a file that flushes and compactions
// write: an sstable or a blob file.
func isTableFile(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// yieldEvery bounds how long a table writer keeps the CPU between yields.
// Yielding on every write starved flushes at 256 connections (the writer
// waited behind every runnable request each time), and once a millisecond
// still cost 6 % of the writes of an overloaded node (16k/s offered); every
// 3 ms kept the latency gain without that loss.
const yieldEvery = 3 * time.Millisecond

type yieldingFile struct {
	vfs.File
	last time.Time // of the last yield; the file is written by one goroutine
}

func (f *yieldingFile) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(f.last) >= yieldEvery {
		runtime.Gosched()
		f.last = time.Now()
	}
	return f.File.Write(p)
}
