package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCloseWithin: a store that closes in time passes its error on; one
// that does not (a write waiting for a full disk) is given up on, so the
// node still stops.
func TestCloseWithin(t *testing.T) {
	errClose := errors.New("close failed")
	if err := closeWithin(func() error { return errClose }, time.Minute); !errors.Is(err, errClose) {
		t.Errorf("closeWithin of a store that closes: %v, want its error", err)
	}
	release := make(chan struct{})
	defer close(release)
	err := closeWithin(func() error { <-release; return nil }, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not close within 50ms") {
		t.Errorf("closeWithin of a store that does not close: %v, want the deadline named", err)
	}
}
