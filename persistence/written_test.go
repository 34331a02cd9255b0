package persistence

import "testing"

func TestWrittenSet(t *testing.T) {
	w := NewWrittenSet(2)
	if w.Has("a") {
		t.Fatal("empty set has a")
	}
	w.Add("a")
	w.Add("b")
	if !w.Has("a") || !w.Has("b") {
		t.Fatal("added keys missing")
	}
	w.Add("c") // full: forgets everything, then holds c
	if w.Has("a") || w.Has("b") || !w.Has("c") {
		t.Fatal("bound not applied")
	}
}
