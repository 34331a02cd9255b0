package cluster

import (
	"fmt"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// TestPIDCacheIsBounded: a cache of size n holds at most n PIDs however
// many users are called, and still answers for the ones set lately.
func TestPIDCacheIsBounded(t *testing.T) {
	const size = 1024
	c := NewPIDCache(size)
	for i := range 100 * size {
		c.Set(fmt.Sprintf("u%d", i), "User", actor.NewPID("10.0.0.1:7946", fmt.Sprintf("a%d", i)))
		if n := c.Len(); n > size {
			t.Fatalf("%d PIDs cached after %d set, want at most %d", n, i+1, size)
		}
	}
	if n := c.Len(); n < size/4 {
		t.Errorf("%d PIDs cached, want most of %d", n, size)
	}
	last := fmt.Sprintf("u%d", 100*size-1)
	if pid, ok := c.Get(last, "User"); !ok || pid.Id != fmt.Sprintf("a%d", 100*size-1) {
		t.Errorf("the PID set last: %v %v", pid, ok)
	}
}

// TestPIDCacheForgets: a PID goes when a caller finds it dead (only that
// one: a newer PID of the identity stays), and every PID of a member that
// left goes at once; the identity given to Set is copied (callers pass
// strings of a request's buffer).
func TestPIDCacheForgets(t *testing.T) {
	c := NewPIDCache(1024)
	a, b := actor.NewPID("10.0.0.1:7946", "x"), actor.NewPID("10.0.0.2:7946", "y")
	buf := []byte("alice")
	c.Set(string(buf), "User", a) // the conversion copies too; Set must not rely on its caller
	copy(buf, "xxxxx")
	if pid, ok := c.Get("alice", "User"); !ok || !pid.Equal(a) {
		t.Fatalf("alice: %v %v", pid, ok)
	}
	c.RemoveByValue("alice", "User", b) // not its PID
	if _, ok := c.Get("alice", "User"); !ok {
		t.Errorf("alice forgotten by a PID that is not hers")
	}
	c.RemoveByValue("alice", "User", a)
	if _, ok := c.Get("alice", "User"); ok {
		t.Errorf("alice still cached after her PID was found dead")
	}
	c.Set("alice", "User", a)
	c.Set("bob", "User", b)
	c.removeAddress("10.0.0.1:7946")
	if _, ok := c.Get("alice", "User"); ok {
		t.Errorf("alice's PID on a member that left is still cached")
	}
	if _, ok := c.Get("bob", "User"); !ok {
		t.Errorf("bob's PID on a member still there was dropped")
	}
}

// TestPIDCacheForgetsAMemberStartedAgain: a member that died and was
// started again at its address in one topology change is another process:
// the PIDs of the one that died go, although the address stays a member.
func TestPIDCacheForgetsAMemberStartedAgain(t *testing.T) {
	kind := pcluster.NewKind("Probe", actor.PropsFromFunc(func(actor.Context) {}))
	_, p := startOneMember(t, kind)
	self, other := selfAndOther(t, p)
	p.onTopology([]*pcluster.Member{self, other}, nil)
	p.remote.Set("u1", "Probe", actor.NewPID(other.Address(), "old-activation"))
	again := &pcluster.Member{Id: other.Id + "-again", Host: other.Host, Port: other.Port, Kinds: other.Kinds}
	p.onTopology([]*pcluster.Member{self, again}, nil)
	if pid, ok := p.remote.Get("u1", "Probe"); ok {
		t.Errorf("the PID of the member that died (%v) is still cached after it was started again at its address", pid)
	}
}
