package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/checkin/checkin/persistence/pebble"
)

// TestBackupRefusals: the backup endpoint answers in the API's error shape
// when it cannot back up (the taking of a backup is TestBackup's).
func TestBackupRefusals(t *testing.T) {
	st, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	tests := []struct {
		name   string
		b      *backups
		method string
		status int
		code   string
	}{
		{"a store without backups", &backups{dir: t.TempDir()}, http.MethodPost, http.StatusNotImplemented, "not_supported"},
		{"no backup.dir", &backups{cp: st}, http.MethodPost, http.StatusConflict, "backups_off"},
		{"not a POST", &backups{dir: t.TempDir(), cp: st}, http.MethodGet, http.StatusMethodNotAllowed, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.b.log = zap.NewNop()
			srv := httptest.NewServer(tt.b)
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL+"/admin/backup", nil)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || body.Error.Code != tt.code || body.Error.Message == "" {
				t.Errorf("%d %+v, want %d %s", res.StatusCode, body.Error, tt.status, tt.code)
			}
		})
	}
}

// slowCheckpointer takes checkpoints like the store, each after release is
// closed, or fails after writing part of one when fail is set (fault
// injection: a disk that fills, a process that stops).
type slowCheckpointer struct {
	st      *pebble.Store
	started chan struct{}
	release chan struct{}
	fail    bool
}

func (c *slowCheckpointer) Checkpoint(dir string) error {
	c.started <- struct{}{}
	<-c.release
	if c.fail {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
		return errors.New("no space left on device")
	}
	return c.st.Checkpoint(dir)
}

// TestBackupOneAtATime: a backup asked for while one is being taken is
// refused at once (409 backup_running), not queued for a client that may
// have gone; a backup cut short never goes by a backup's name (only
// .partial), and a whole one does.
func TestBackupOneAtATime(t *testing.T) {
	st, err := pebble.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cp := &slowCheckpointer{st: st, started: make(chan struct{}, 1), release: make(chan struct{})}
	root := t.TempDir()
	srv := httptest.NewServer(&backups{dir: root, cp: cp, log: zap.NewNop()})
	defer srv.Close()
	post := func() (int, string) {
		res, err := srv.Client().Post(srv.URL+"/admin/backup", "", nil)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer res.Body.Close()
		var body struct {
			Dir   string
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Dir + body.Error.Code
	}
	first := make(chan string, 1)
	go func() { status, dir := post(); first <- strconv.Itoa(status) + " " + dir }()
	<-cp.started
	if status, code := post(); status != http.StatusConflict || code != "backup_running" {
		t.Errorf("a backup asked for during another: %d %s, want 409 backup_running", status, code)
	}
	close(cp.release)
	got := <-first
	if !strings.HasPrefix(got, "200 "+root+"/checkin-") || strings.HasSuffix(got, ".partial") {
		t.Fatalf("the first backup: %s, want 200 and a directory under %s", got, root)
	}
	cp.fail = true
	go func() { <-cp.started }()
	if status, code := post(); status != http.StatusInternalServerError || code != "internal" {
		t.Errorf("a backup cut short: %d %s, want 500 internal", status, code)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	whole, partial := 0, 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), partialSuffix) {
			partial++
		} else {
			whole++
		}
	}
	if whole != 1 || partial != 1 {
		t.Errorf("backups %v: want the whole one and the one cut short, named .partial", entries)
	}
}
