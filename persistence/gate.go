package persistence

import "sync"

// Gate admits a backend's calls until the backend closes, and makes its
// Close wait for the calls in flight, so that no call reaches a closed
// engine or session. The zero Gate is open.
type Gate struct {
	mu     sync.RWMutex // shared by each admitted call, exclusive in Close
	closed bool
}

// Enter admits a call and reports true, or reports false once Close has
// begun. Every admitted call ends with Leave.
func (g *Gate) Enter() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

// Leave ends a call that Enter admitted.
func (g *Gate) Leave() { g.mu.RUnlock() }

// Close waits for the calls in flight, refuses later ones and runs
// release, once: closing again returns nil and runs nothing.
func (g *Gate) Close(release func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return release()
}
