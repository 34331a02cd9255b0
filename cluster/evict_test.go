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

func TestSilentReportsWanted(t *testing.T) {
	const after = 10 * time.Second
	r := newSilentReports("/p/c.silent/", after)
	r.members(testRecords("a", "b", "c")) // c at 127.0.0.1:7002
	t0 := time.Now()
	r.silent("127.0.0.1:7002", t0)
	if _, ok := <-r.wake; !ok {
		t.Fatal("silent did not wake the reporter")
	}
	put, drop := r.wanted("a", t0.Add(after/2))
	if len(put)+len(drop) != 0 {
		t.Fatalf("silent for half the time: put %v, drop %v; want nothing", put, drop)
	}
	r.silent("127.0.0.1:7002", t0.Add(time.Second)) // a later timeout: the silence still began at t0
	put, drop = r.wanted("a", t0.Add(after))
	if want := map[string]string{"c": "/p/c.silent/c/a"}; !maps.Equal(put, want) || len(drop) != 0 {
		t.Fatalf("silent for the whole time: put %v, drop %v; want put %v", put, drop, want)
	}
	r.wrote("c", put["c"])
	if put, drop = r.wanted("a", t0.Add(2*after)); len(put)+len(drop) != 0 {
		t.Fatalf("reported already: put %v, drop %v; want nothing", put, drop)
	}
	r.answers("127.0.0.1:7002")
	put, drop = r.wanted("a", t0.Add(2*after))
	if want := map[string]string{"c": "/p/c.silent/c/a"}; len(put) != 0 || !maps.Equal(drop, want) {
		t.Fatalf("c answers again: put %v, drop %v; want drop %v", put, drop, want)
	}
	r.wrote("c", "")

	r.silent("127.0.0.1:7002", t0)
	r.members(testRecords("a", "b")) // c left
	if put, drop = r.wanted("a", t0.Add(2*after)); len(put)+len(drop) != 0 {
		t.Errorf("a member that left: put %v, drop %v; want nothing", put, drop)
	}
	if len(r.since) != 0 {
		t.Errorf("the silence of a member that left is kept: %v", r.since)
	}

	off := newSilentReports("/p/c.silent/", 0)
	off.members(testRecords("a", "b", "c"))
	off.silent("127.0.0.1:7002", t0)
	if put, _ := off.wanted("a", t0.Add(time.Hour)); len(put) != 0 {
		t.Errorf("with reports off: put %v", put)
	}
}
