package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
