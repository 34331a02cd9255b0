package persistence

import (
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	var g Gate
	if !g.Enter() {
		t.Fatal("a new gate refuses a call")
	}
	released := make(chan struct{})
	closed := make(chan error, 1)
	go func() {
		closed <- g.Close(func() error { close(released); return nil })
	}()
	select {
	case <-released:
		t.Fatal("Close released the backend while a call was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	g.Leave()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if g.Enter() {
		t.Error("a closed gate admits a call")
	}
	if err := g.Close(func() error { t.Error("the second Close released again"); return nil }); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
