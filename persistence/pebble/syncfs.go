package pebble

import (
	"errors"
	"runtime"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ringFS syncs the files Pebble writes — the write-ahead log, table files,
// the manifest and their directories — through a ring (uring_linux.go), so
// that a sync parks its goroutine instead of holding a P. A sync the ring
// cannot take goes the blocking way.
type ringFS struct {
	vfs.FS
	ring *ring
}

func (fs ringFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, category))
}

func (fs ringFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, category, opts...))
}

func (fs ringFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, category))
}

func (fs ringFS) OpenDir(name string) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenDir(name))
}

func (fs ringFS) Unwrap() vfs.FS { return fs.FS }

func (fs ringFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &ringFile{File: f, ring: fs.ring}, nil
}

type ringFile struct {
	vfs.File
	ring *ring
}

// Write first hands finished syncs to their waiters and, if there were
// any, lets them run: a flush or compaction writing a table keeps the P for
// up to yieldEvery, and a checkin waiting for its log sync would wait that
// long behind it (the reaper runs only when the network poller does).
func (f *ringFile) Write(p []byte) (int, error) {
	if f.ring.handOff() {
		runtime.Gosched()
	}
	return f.File.Write(p)
}

// Sync flushes data and metadata; SyncData data and what is needed to read
// it back (fdatasync).
func (f *ringFile) Sync() error     { return f.sync(false) }
func (f *ringFile) SyncData() error { return f.sync(true) }

func (f *ringFile) sync(datasync bool) error {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		if err := f.ring.sync(fd, datasync); !errors.Is(err, errRingUnusable) {
			return err
		}
	}
	if datasync {
		return f.File.SyncData()
	}
	return f.File.Sync()
}
