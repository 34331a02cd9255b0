package pebble

import (
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Only the files that flushes and compactions write yield; the log that
// acknowledged checkins wait for, and the metadata, are written as they
// were.
func TestYieldingFSWrapsOnlyTableFiles(t *testing.T) {
	dir := t.TempDir()
	fs := yieldingFS{vfs.Default}
	for _, tt := range []struct {
		name  string
		yield bool
	}{
		{"000012.sst", true},
		{"000013.blob", true},
		{"000014.log", false},
		{"MANIFEST-000001", false},
		{"OPTIONS-000003", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := fs.Create(filepath.Join(dir, tt.name), vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, yields := f.(*yieldingFile); yields != tt.yield {
				t.Fatalf("%s: yielding=%v, want %v", tt.name, yields, tt.yield)
			}
			if n, err := f.Write([]byte("checkin")); n != 7 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		})
	}
}
