package admit

import (
	"testing"
	"time"
)

// floor is the bound's floor in the tests (the writers' default).
const floor = 64

// batch is one batch's end for Bound.Observe: at (since the test's
// start), the wait of its oldest checkin, its checkins.
type batch struct {
	at   time.Duration
	wait time.Duration
	n    int
}

// window returns the batches of one window starting at start:
// count batches of n checkins each, evenly over the window, the i-th
// waiting waits[i%len(waits)].
func window(start time.Duration, count, n int, waits ...time.Duration) []batch {
	bs := make([]batch, count)
	for i := range bs {
		bs[i] = batch{at: start + time.Duration(i)*Window/time.Duration(count-1), wait: waits[i%len(waits)], n: n}
	}
	return bs
}

func TestBound(t *testing.T) {
	const target = 100 * time.Millisecond
	const w = Window
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		target time.Duration
		// refuse: a checkin is refused at the bound before each window
		// after the first (the demand is above the bound).
		refuse  bool
		windows [][]batch
		want    int64
	}{
		{
			// 11 batches of 20 in 100 ms: 2,200 checkins a second; waiting
			// 100 ms at that rate is 220 held.
			name:    "a store slow for every batch: the bound becomes its rate times the target",
			target:  target,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond)},
			want:    220,
		},
		{
			name:    "one slow batch in three: the median is fast, the bound stays",
			target:  target,
			windows: [][]batch{window(0, 11, 20, 5*time.Millisecond, 3*time.Second, 5*time.Millisecond)},
			want:    100_000,
		},
		{
			name:    "a store that writes almost nothing: the bound stops at the floor",
			target:  target,
			windows: [][]batch{window(0, 5, 1, 2*time.Second)},
			want:    floor,
		},
		{
			// Four batches over a second, two of them slow: no window yet.
			name:    "slow batches at light load, fewer than a window needs: the bound stays",
			target:  target,
			windows: [][]batch{{{0, 2 * time.Second, 1}, {300 * time.Millisecond, 2 * time.Second, 1}, {600 * time.Millisecond, time.Millisecond, 1}, {time.Second, time.Millisecond, 1}}},
			want:    100_000,
		},
		{
			// Five batches of 20 over 2 s: 50 checkins a second; waiting
			// 100 ms at that rate is 5 held, under the floor.
			name:    "a store so slow that few batches end in a window: judged once five have",
			target:  target,
			windows: [][]batch{{{0, 3 * time.Second, 20}, {500 * time.Millisecond, 3 * time.Second, 20}, {time.Second, 3 * time.Second, 20}, {1500 * time.Millisecond, 3 * time.Second, 20}, {2 * time.Second, 3 * time.Second, 20}}},
			want:    floor,
		},
		{
			// 220 after the slow window; the windows under the target with
			// refusals add a tenth each: 242, 266.
			name:    "the store is under the target again and checkins are refused: the bound grows by a tenth a window",
			target:  target,
			refuse:  true,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond), window(w, 11, 20, 80*time.Millisecond), window(2*w, 11, 20, 80*time.Millisecond)},
			want:    266,
		},
		{
			// Under half the target: 220, 440, 880.
			name:    "the store keeps up with room to spare and checkins are refused: the bound doubles a window",
			target:  target,
			refuse:  true,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond), window(w, 11, 20, 5*time.Millisecond), window(2*w, 11, 20, 5*time.Millisecond)},
			want:    880,
		},
		{
			name:    "doubling stops at the ceiling",
			target:  target,
			refuse:  true,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond), window(w, 11, 20, 5*time.Millisecond), window(2*w, 11, 20, 5*time.Millisecond), window(3*w, 11, 20, 5*time.Millisecond), window(4*w, 11, 20, 5*time.Millisecond), window(5*w, 11, 20, 5*time.Millisecond), window(6*w, 11, 20, 5*time.Millisecond), window(7*w, 11, 20, 5*time.Millisecond), window(8*w, 11, 20, 5*time.Millisecond), window(9*w, 11, 20, 5*time.Millisecond)},
			want:    100_000,
		},
		{
			name:    "the store is fast again but nothing is refused: the bound stays",
			target:  target,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond), window(w, 11, 20, 5*time.Millisecond), window(2*w, 11, 20, 5*time.Millisecond)},
			want:    220,
		},
		{
			// The second window writes twice the rate; the smoothed rate
			// (2,200 + 4,400) / 2 = 3,300 a second gives 330, over the
			// bound of 220: a cut never raises it.
			name:    "a slow window after a cut never raises the bound",
			target:  target,
			windows: [][]batch{window(0, 11, 20, 400*time.Millisecond), window(w, 11, 40, 400*time.Millisecond)},
			want:    220,
		},
		{
			name:    "target 0: the bound is the ceiling, whatever the waits",
			target:  0,
			refuse:  true,
			windows: [][]batch{window(0, 11, 20, 4*time.Second), window(w, 11, 20, 4*time.Second)},
			want:    100_000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reported int64
			a := NewBound(tt.target, floor, 100_000, func(n int64) { reported = n })
			for i, win := range tt.windows {
				if tt.refuse && i > 0 && a.Admit(a.Limit()+1) {
					t.Fatalf("window %d: a checkin beyond the bound %d was admitted", i, a.Limit())
				}
				for _, b := range win {
					a.Observe(t0.Add(b.at), b.wait, b.n)
				}
			}
			if got := a.Limit(); got != tt.want {
				t.Errorf("bound %d, want %d", got, tt.want)
			}
			if reported != tt.want {
				t.Errorf("the gauge reads %d, want %d", reported, tt.want)
			}
			if !a.Admit(tt.want) || a.Admit(tt.want+1) {
				t.Errorf("admit at the bound %d: want %d held admitted and %d refused", tt.want, tt.want, tt.want+1)
			}
		})
	}
}
