//go:build linux

package pebble

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's io_uring ABI, the few parts of it the ring uses
// (include/uapi/linux/io_uring.h).
const (
	uringOpFsync         = 3      // IORING_OP_FSYNC
	uringFsyncDatasync   = 1 << 0 // IORING_FSYNC_DATASYNC
	uringOffSQRing       = 0
	uringOffCQRing       = 0x8000000
	uringOffSQEs         = 0x10000000
	uringFeatSingleMmap  = 1 << 0
	uringRegisterEventfd = 4
)

type uringSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQRingOffsets
	cqOff                                                                  uringCQRingOffsets
}

type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ringEntries bounds the syncs in flight at once: the write-ahead log
// syncs one at a time, and flushes and compactions add one each at the end
// of a table file. More wait for a slot.
const ringEntries = 16

// ring syncs files through io_uring. A blocking fsync holds its P for the
// whole disk flush until the runtime's monitor hands the P to another
// thread (after 20 µs to 10 ms); on a node with one P that leaves the CPU
// idle while requests wait. Through the ring the syncing goroutine parks
// like one waiting on a socket: the kernel does the sync on its own worker
// and reports the result through an eventfd in the network poller.
type ring struct {
	fd             int
	maps           [][]byte // the mmapped regions
	sqTail, sqMask *uint32
	sqArray        []uint32
	sqes           []uringSQE
	cqHead, cqTail *uint32
	cqMask         *uint32
	cqes           []uringCQE
	events         *os.File // eventfd the kernel signals on each completion
	reaped         chan struct{}

	slots   chan uint32 // free request slots; a slot's waiter gets its result
	waiters [ringEntries]chan int32

	reapMu sync.Mutex // draining the completion ring
	mu     sync.Mutex // submission
	broken bool       // a submission failed: everything syncs the blocking way

	completed atomic.Uint64 // syncs the kernel answered, for tests
}

// newRing sets up a ring, or says why the kernel refused (old kernel,
// io_uring disabled by sysctl or a seccomp profile).
func newRing() (_ *ring, err error) {
	var p uringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd), reaped: make(chan struct{}), slots: make(chan uint32, ringEntries)}
	defer func() {
		if err != nil {
			r.unmap()
			_ = unix.Close(r.fd)
		}
	}()

	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{}))
	if p.features&uringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	mmap := func(what string, off int64, size int) ([]byte, error) {
		m, err := unix.Mmap(r.fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("io_uring: map the %s: %w", what, err)
		}
		r.maps = append(r.maps, m)
		return m, nil
	}
	sqMem, err := mmap("submission ring", uringOffSQRing, sqSize)
	if err != nil {
		return nil, err
	}
	cqMem := sqMem
	if p.features&uringFeatSingleMmap == 0 {
		if cqMem, err = mmap("completion ring", uringOffCQRing, cqSize); err != nil {
			return nil, err
		}
	}
	sqeMem, err := mmap("submission entries", uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})))
	if err != nil {
		return nil, err
	}
	at := func(mem []byte, off uint32) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	r.sqTail = (*uint32)(at(sqMem, p.sqOff.tail))
	r.sqMask = (*uint32)(at(sqMem, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(sqMem, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(at(sqeMem, 0)), p.sqEntries)
	r.cqHead = (*uint32)(at(cqMem, p.cqOff.head))
	r.cqTail = (*uint32)(at(cqMem, p.cqOff.tail))
	r.cqMask = (*uint32)(at(cqMem, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*uringCQE)(at(cqMem, p.cqOff.cqes)), p.cqEntries)

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("io_uring: eventfd: %w", err)
	}
	efd32 := int32(efd) // the kernel reads an __s32
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uringRegisterEventfd, uintptr(unsafe.Pointer(&efd32)), 1, 0, 0); errno != 0 {
		_ = unix.Close(efd)
		return nil, fmt.Errorf("io_uring_register eventfd: %w", errno)
	}
	// Non-blocking, so the runtime polls it: a read parks the goroutine.
	r.events = os.NewFile(uintptr(efd), "io_uring-events")

	for i := range r.waiters {
		r.waiters[i] = make(chan int32, 1)
		r.slots <- uint32(i)
	}
	go r.reap()
	return r, nil
}

// errRingUnusable means this sync did not go through the ring; the caller
// syncs the blocking way.
var errRingUnusable = errors.New("io_uring unusable")

// sync flushes fd's data (datasync) or data and metadata to stable storage
// and waits, parked, for the kernel's answer.
func (r *ring) sync(fd uintptr, datasync bool) error {
	slot := <-r.slots
	defer func() { r.slots <- slot }()
	var flags uint32
	if datasync {
		flags = uringFsyncDatasync
	}
	if err := r.submit(uringSQE{opcode: uringOpFsync, fd: int32(fd), opFlags: flags, userData: uint64(slot)}); err != nil {
		return err
	}
	switch res := <-r.waiters[slot]; {
	case res >= 0:
		return nil
	case syscall.Errno(-res) == unix.EINVAL || syscall.Errno(-res) == unix.EOPNOTSUPP:
		return errRingUnusable // the kernel cannot do this sync through the ring
	default:
		// An error of the sync itself (EIO, ENOSPC). Never retried the
		// blocking way: after a failed sync the kernel may have dropped the
		// dirty pages, and a second sync would report success.
		return syscall.Errno(-res)
	}
}

func (r *ring) submit(sqe uringSQE) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken {
		return errRingUnusable
	}
	tail := *r.sqTail // the kernel only reads the tail
	i := tail & *r.sqMask
	r.sqes[i] = sqe
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1)
	for busy := 0; ; {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case (errno == unix.EAGAIN || errno == unix.EBUSY) && busy < 100: // short of kernel memory for a moment
			busy++
			runtime.Gosched()
			continue
		case errno != 0 || n != 1:
			// The entry may still sit in the ring; never enter again, so
			// it is never submitted and its slot never answered.
			r.broken = true
			return errRingUnusable
		}
		return nil
	}
}

// reap hands each completion to the slot's waiter. It ends when the
// eventfd is closed.
func (r *ring) reap() {
	defer close(r.reaped)
	var buf [8]byte
	for {
		_, err := r.events.Read(buf[:])
		r.drain()
		if err != nil {
			return
		}
	}
}

// handOff gives the syncs that have finished to their waiters and reports
// whether there were any.
func (r *ring) handOff() bool {
	if atomic.LoadUint32(r.cqHead) == atomic.LoadUint32(r.cqTail) {
		return false
	}
	r.drain()
	return true
}

func (r *ring) drain() {
	r.reapMu.Lock()
	defer r.reapMu.Unlock()
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := r.cqes[head&*r.cqMask]
		r.completed.Add(1) // before the waiter can see its answer
		r.waiters[c.userData] <- c.res
	}
	atomic.StoreUint32(r.cqHead, head)
}

// close releases the ring; no sync may be in flight or start after it.
func (r *ring) close() error {
	err := r.events.Close()
	<-r.reaped
	r.unmap()
	return errors.Join(err, unix.Close(r.fd))
}

func (r *ring) unmap() {
	for _, m := range r.maps {
		_ = unix.Munmap(m)
	}
	r.maps = nil
}

// The kernel's sizes: a negative array length stops the build if a struct
// above drifts from them.
var (
	_ [unsafe.Sizeof(uringSQE{}) - 64]byte
	_ [64 - unsafe.Sizeof(uringSQE{})]byte
	_ [unsafe.Sizeof(uringCQE{}) - 16]byte
	_ [16 - unsafe.Sizeof(uringCQE{})]byte
	_ [unsafe.Sizeof(uringParams{}) - 120]byte
	_ [120 - unsafe.Sizeof(uringParams{})]byte
)
