package main

import "testing"

// A revision stamped by the linker (the Docker build's REVISION) is the
// build's revision when Go has none of its own (test binaries carry no VCS
// stamp, as the Docker build's context has no .git).
func TestStampedRevision(t *testing.T) {
	old := stampedRevision
	t.Cleanup(func() { stampedRevision = old })
	stampedRevision = ""
	if got := readBuild().Revision; got != "unknown" {
		t.Fatalf("revision without a stamp = %q, want unknown", got)
	}
	stampedRevision = "0123abcd"
	if got := readBuild().Revision; got != "0123abcd" {
		t.Fatalf("revision = %q, want the stamped 0123abcd", got)
	}
}
