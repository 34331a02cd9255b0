package cluster

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// testRecords returns records of the members with ids, at 127.0.0.1 and a port
// of their own, by key.
func testRecords(ids ...string) map[string]etcdRecord {
	records := map[string]etcdRecord{}
	for i, id := range ids {
		records["/p/c/"+id] = etcdRecord{ID: id, Host: "127.0.0.1", Port: 7000 + i}
	}
	return records
}

func TestSilentMembersRemovedByMajority(t *testing.T) {
	tests := []struct {
		name    string
		members []string
		reports map[string][]string // silent member → reporters
		self    string
		want    []string
	}{
		{"two of three report the third", []string{"a", "b", "c"}, map[string][]string{"c": {"a", "b"}}, "a", []string{"c"}},
		{"one of three is not enough", []string{"a", "b", "c"}, map[string][]string{"c": {"a"}}, "a", nil},
		{"two members never remove each other", []string{"a", "b"}, map[string][]string{"a": {"b"}, "b": {"a"}}, "a", nil},
		{"a member reporting itself does not count", []string{"a", "b", "c"}, map[string][]string{"c": {"a", "c"}}, "a", nil},
		{"reporters that left do not count", []string{"a", "b", "c"}, map[string][]string{"c": {"a", "x"}}, "a", nil},
		{"half of four is not more than half", []string{"a", "b", "c", "d"}, map[string][]string{"d": {"a", "b"}}, "a", nil},
		{"three of four", []string{"a", "b", "c", "d"}, map[string][]string{"d": {"a", "b", "c"}}, "a", []string{"d"}},
		{"the silent member does not remove itself", []string{"a", "b", "c"}, map[string][]string{"c": {"a", "b"}}, "c", nil},
		{"a member that left is not removed", []string{"a", "b", "c"}, map[string][]string{"x": {"a", "b", "c"}}, "a", nil},
		{"a split three to two removes nobody of the three", []string{"a", "b", "c", "d", "e"},
			map[string][]string{"a": {"d", "e"}, "b": {"d", "e"}, "c": {"d", "e"}, "d": {"a", "b", "c"}, "e": {"a", "b", "c"}}, "a", []string{"d", "e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSilentReports("/p/c.silent/", time.Second)
			r.members(testRecords(tt.members...))
			for silent, by := range tt.reports {
				for _, reporter := range by {
					r.seen(r.dir+silent+"/"+reporter, true)
				}
			}
			var got []string
			for _, v := range r.judge(tt.self) {
				got = append(got, v.id)
				if v.key != "/p/c/"+v.id {
					t.Errorf("verdict on %s names record %q", v.id, v.key)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("removed %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSilentReportsSeenAndWithdrawn(t *testing.T) {
	r := newSilentReports("/p/c.silent/", time.Second)
	r.members(testRecords("a", "b", "c"))
	r.seen("/p/c.silent/c/a", true)
	r.seen("/p/c.silent/c/b", true)
	if got := r.judge("a"); len(got) != 1 {
		t.Fatalf("c reported by a and b: %v, want it removed", got)
	}
	r.seen("/p/c.silent/c/b", false) // b hears from c again
	if got := r.judge("a"); len(got) != 0 {
		t.Errorf("c reported by a only: %v, want nobody removed", got)
	}
	r.seen("/p/c.silent/garbage", true) // not a report: ignored
	r.reset()
	r.seen("/p/c.silent/c/a", true)
	r.seen("/p/c.silent/c/b", true)
	r.removed["c"] = true
	if got := r.judge("a"); len(got) != 0 {
		t.Errorf("c already removed by this node: %v, want no second verdict", got)
	}
	r.members(testRecords("a", "b")) // c left: the mark goes
	if r.removed["c"] {
		t.Errorf("the removal mark of a member that left stays")
	}
}

// A member this node stopped calling is pinged; it is reported once it
// has answered no ping for the whole time, and not while it answers them
// (its calls time out for another reason: its grains wait for a slow
// store). The report goes when it answers a call again, or leaves.
func TestSilentReportsWanted(t *testing.T) {
	const after = 10 * time.Second
	const c = "127.0.0.1:7002"
	r := newSilentReports("/p/c.silent/", after)
	r.members(testRecords("a", "b", "c"))
	t0 := time.Now()
	if got := r.toPing(); len(got) != 0 {
		t.Fatalf("pings %v before any call stopped, want none", got)
	}
	r.silent(c)
	r.silent("127.0.0.1:9999") // no member
	if got := r.toPing(); !slices.Equal(got, []string{c}) {
		t.Fatalf("pings %v, want [%s]", got, c)
	}
	nothing := func(at time.Duration, why string) {
		t.Helper()
		if put, drop := r.wanted("a", t0.Add(at)); len(put)+len(drop) != 0 {
			t.Fatalf("%s: put %v, drop %v; want nothing", why, put, drop)
		}
	}
	r.pinged(c, true, t0)
	nothing(2*after, "every ping answered")
	r.pinged(c, false, t0)
	nothing(after/2, "pings unanswered for half the time")
	r.pinged(c, false, t0.Add(after/2)) // the silence still began at t0
	r.pinged(c, true, t0.Add(after/2))  // an answer starts it again
	r.pinged(c, false, t0.Add(after))
	nothing(after+after/2, "unanswered for half the time since the last answer")
	put, drop := r.wanted("a", t0.Add(2*after))
	if want := map[string]string{"c": "/p/c.silent/c/a"}; !maps.Equal(put, want) || len(drop) != 0 {
		t.Fatalf("unanswered for the whole time: put %v, drop %v; want put %v", put, drop, want)
	}
	r.wrote("c", put["c"])
	nothing(3*after, "reported already")
	r.seen(put["c"], false) // etcd dropped the report with its lease (a stall)
	if again, drop := r.wanted("a", t0.Add(3*after)); !maps.Equal(again, put) || len(drop) != 0 {
		t.Fatalf("the report went with its lease: put %v, drop %v; want put %v again", again, drop, put)
	}
	r.wrote("c", put["c"])
	nothing(3*after, "reported again")
	r.answers(c)
	if got := r.toPing(); len(got) != 0 {
		t.Fatalf("pings %v after c answered a call, want none", got)
	}
	r.pinged(c, false, t0.Add(3*after)) // a ping sent before the answer
	put, drop = r.wanted("a", t0.Add(5*after))
	if want := map[string]string{"c": "/p/c.silent/c/a"}; len(put) != 0 || !maps.Equal(drop, want) {
		t.Fatalf("c answers again: put %v, drop %v; want drop %v", put, drop, want)
	}
	r.wrote("c", "")

	r.silent(c)
	r.pinged(c, false, t0)
	r.members(testRecords("a", "b")) // c left
	nothing(2*after, "a member that left")
	if len(r.suspects)+len(r.since) != 0 {
		t.Errorf("the silence of a member that left is kept: %v %v", r.suspects, r.since)
	}

	off := newSilentReports("/p/c.silent/", 0)
	off.members(testRecords("a", "b", "c"))
	off.silent(c)
	if got := off.toPing(); len(got) != 0 {
		t.Errorf("with reports off: pings %v", got)
	}
}

// This node's reports follow etcd's view of them, not only its own
// writes. A report that went while the watch was broken (with this node's
// lease, in an etcd stall), so that only a fresh read (readReports:
// reset, then seen) shows it gone, is written again while wanted: it
// stayed among those written, and the member was never reported again.
// A report etcd holds that this node did not record as written (its Put
// failed, but etcd had applied it) is deleted once not wanted: it stayed
// for the node's lifetime, a standing vote that one more report made a
// verdict on a member that answers.
func TestSilentReportsFollowEtcd(t *testing.T) {
	const after = time.Second
	const c = "127.0.0.1:7002"
	r := newSilentReports("/p/c.silent/", after)
	r.members(testRecords("a", "b", "c"))
	t0 := time.Now()
	r.silent(c)
	r.pinged(c, false, t0)
	put, _ := r.wanted("a", t0.Add(after))
	key, ok := put["c"]
	if !ok {
		t.Fatalf("put %v: want c reported", put)
	}
	r.wrote("c", key)
	r.seen(key, true)

	// The report went with this node's lease while the watch was broken:
	// the fresh read finds b's report of c only.
	r.reset()
	r.seen("/p/c.silent/c/b", true)
	if again, _ := r.wanted("a", t0.Add(2*after)); again["c"] != key {
		t.Errorf("after a fresh read without this node's report: put %v, want %s written again", again, key)
	}
	r.wrote("c", key)
	r.seen(key, true)
	if got := r.judge("a"); len(got) != 1 {
		t.Errorf("c reported by a and b: verdicts %v, want c removed", got)
	}

	// A fresh read that finds the report keeps it, without writing it again.
	r.reset()
	r.seen(key, true)
	if again, _ := r.wanted("a", t0.Add(2*after)); len(again) != 0 {
		t.Errorf("after a fresh read with this node's report: put %v, want nothing", again)
	}

	// A report of b that this node's Put timed out on, applied by etcd:
	// b answers every ping, so it goes.
	orphan := "/p/c.silent/b/a"
	r.seen(orphan, true)
	if _, drop := r.wanted("a", t0.Add(2*after)); drop["b"] != orphan {
		t.Errorf("drop %v: want this node's report of b, which it does not want, deleted", drop)
	}
}
