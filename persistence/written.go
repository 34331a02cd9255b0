package persistence

import (
	"strings"
	"sync"
)

// WrittenSet remembers keys of rows known to be durable, so a backend can
// skip rewriting rows that never change once written (the bucket indexes:
// an active user's checkins land in the same day bucket again and again).
// It only ever saves writes: a key it forgot is written again. It is safe
// for concurrent use.
type WrittenSet struct {
	mu  sync.Mutex
	m   map[string]struct{}
	max int
}

// NewWrittenSet returns a set that holds at most max keys; when full it
// forgets everything (a cheap bound: the cost is one rewrite per key).
func NewWrittenSet(max int) *WrittenSet {
	return &WrittenSet{m: make(map[string]struct{}), max: max}
}

// Has reports whether k is known durable.
func (w *WrittenSet) Has(k string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.m[k]
	return ok
}

// Add records k as durable; call it only after the write of k succeeded.
func (w *WrittenSet) Add(k string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) >= w.max {
		clear(w.m)
	}
	w.m[k] = struct{}{}
}

// DropPrefix forgets every key that begins with p.
func (w *WrittenSet) DropPrefix(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.m {
		if strings.HasPrefix(k, p) {
			delete(w.m, k)
		}
	}
}
