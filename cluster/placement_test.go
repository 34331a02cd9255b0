package cluster

import (
	"strconv"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

func members(kinds []string, ports ...int) []*pcluster.Member {
	ms := make([]*pcluster.Member, len(ports))
	for i, port := range ports {
		ms[i] = &pcluster.Member{Id: "m" + strconv.Itoa(port), Host: "127.0.0.1", Port: int32(port), Kinds: kinds}
	}
	return ms
}

func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "user-" + strconv.Itoa(i)
	}
	return ids
}

// Members on adjacent ports of one host (how a local cluster or a test
// runs) must each own about their share of the users.
func TestRingSplitsIdentitiesEvenly(t *testing.T) {
	ids := userIDs(100_000)
	for _, tc := range []struct {
		name  string
		ports []int
	}{
		{"3 adjacent ports", []int{7946, 7947, 7948}},
		{"6 adjacent ports", []int{40001, 40002, 40003, 40004, 40005, 40006}},
		{"2 members", []int{9000, 9100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := members([]string{"UserGrain"}, tc.ports...)
			r := newRing(ms)
			// protoactor's own rendezvous (disthash's), for the README's
			// comparison: logged, not asserted.
			theirs := pcluster.NewRendezvous()
			theirs.UpdateMembers(ms)
			counts, theirCounts := map[string]int{}, map[string]int{}
			for _, id := range ids {
				counts[r.owner("UserGrain", id)]++
				theirCounts[theirs.GetByClusterIdentity(pcluster.NewClusterIdentity(id, "UserGrain"))]++
			}
			t.Logf("ids per member: ours %v, protoactor's rendezvous %v", counts, theirCounts)
			if len(counts) != len(tc.ports) {
				t.Fatalf("owners %v, want all %d members", counts, len(tc.ports))
			}
			share := len(ids) / len(tc.ports)
			for addr, n := range counts {
				if n < share*95/100 || n > share*105/100 {
					t.Errorf("%s owns %d of %d ids, want %d ± 5%% (all: %v)", addr, n, len(ids), share, counts)
				}
			}
		})
	}
}

// A member that joins takes only identities from others (about its share),
// and one that leaves hands only its own identities over.
func TestRingMovesOnlyWhatChangesOwner(t *testing.T) {
	ids := userIDs(30_000)
	three := newRing(members([]string{"UserGrain"}, 7946, 7947, 7948))
	four := newRing(members([]string{"UserGrain"}, 7946, 7947, 7948, 7949))
	moved := 0
	for _, id := range ids {
		before, after := three.owner("UserGrain", id), four.owner("UserGrain", id)
		if before != after {
			moved++
			if after != "127.0.0.1:7949" {
				t.Fatalf("%s moved from %s to %s, not to the new member", id, before, after)
			}
		}
	}
	if share := len(ids) / 4; moved < share*90/100 || moved > share*110/100 {
		t.Errorf("%d of %d ids moved to the new member, want about %d", moved, len(ids), share)
	}
}

func TestRingOwnerByKind(t *testing.T) {
	ms := append(members([]string{"UserGrain"}, 7946, 7947), members([]string{"Other"}, 7948)...)
	r := newRing(ms)
	for _, id := range userIDs(1000) {
		if o := r.owner("UserGrain", id); o == "127.0.0.1:7948" || o == "" {
			t.Fatalf("UserGrain %s placed on %q, a member without the kind", id, o)
		}
		if o := r.owner("Other", id); o != "127.0.0.1:7948" {
			t.Fatalf("Other %s placed on %q, want the only member with the kind", id, o)
		}
	}
	if o := r.owner("Missing", "x"); o != "" {
		t.Fatalf("a kind no member hosts placed on %q", o)
	}
	if o := (&ring{}).owner("UserGrain", "x"); o != "" {
		t.Fatalf("an empty ring placed a grain on %q", o)
	}
}

// Every member must compute the same owner whatever order the provider
// lists the members in.
func TestRingIgnoresMemberOrder(t *testing.T) {
	ms := members([]string{"UserGrain"}, 7946, 7947, 7948)
	a := newRing(ms)
	b := newRing([]*pcluster.Member{ms[2], ms[0], ms[1]})
	for _, id := range userIDs(5000) {
		if x, y := a.owner("UserGrain", id), b.owner("UserGrain", id); x != y {
			t.Fatalf("%s: owner %s in one order, %s in another", id, x, y)
		}
	}
}

func TestActivationNameRoundTrip(t *testing.T) {
	for _, identity := range []string{"u1", "a/b", "with$dollar", "x$1$2", "üñí", ""} {
		t.Run(identity, func(t *testing.T) {
			name := activationName("UserGrain", identity, 42)
			got := identityFromName(name)
			if got == nil || got.Kind != "UserGrain" || got.Identity != identity {
				t.Fatalf("name %q gives %v, want UserGrain/%s", name, got, identity)
			}
		})
	}
	for _, name := range []string{"plain", "nodollar/x", "$x/"} {
		if got := identityFromName(name); got != nil {
			t.Errorf("identityFromName(%q) = %v, want nil", name, got)
		}
	}
}

func BenchmarkRingOwner(b *testing.B) {
	r := newRing(members([]string{"UserGrain"}, 7946, 7947, 7948))
	ids := userIDs(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = r.owner("UserGrain", ids[i&1023])
	}
}
