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

func TestWrittenSetDropPrefix(t *testing.T) {
	w := NewWrittenSet(10)
	for _, k := range []string{"uann\x001", "uann\x002", "uanna\x001", "lann\x00x\x001"} {
		w.Add(k)
	}
	w.DropPrefix("uann\x00")
	for k, want := range map[string]bool{"uann\x001": false, "uann\x002": false, "uanna\x001": true, "lann\x00x\x001": true} {
		if w.Has(k) != want {
			t.Errorf("after DropPrefix Has(%q) = %v, want %v", k, !want, want)
		}
	}
}
