package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/edge"
)

// checkpointer is a store that can write a consistent copy of itself while
// it serves (the embedded store).
type checkpointer interface {
	Checkpoint(dir string) error
}

// backups serves POST /admin/backup on the debug server: a checkpoint of the
// embedded store into a new directory under dir, one at a time.
type backups struct {
	dir string       // backup.dir; "" answers that backups are off
	cp  checkpointer // the store; nil when it cannot (store=scylla)
	log *zap.Logger
	mu  sync.Mutex
}

// backupAnswer is the body of a successful backup.
type backupAnswer struct {
	Dir    string  `json:"dir"`
	TookMS float64 `json:"took_ms"`
}

func (b *backups) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "a backup is taken with POST")
		return
	}
	if b.cp == nil {
		writeJSONError(w, http.StatusNotImplemented, "not_supported",
			"this store has no node-local backup: back the Scylla cluster up with its own tools (nodetool snapshot)")
		return
	}
	if b.dir == "" {
		writeJSONError(w, http.StatusConflict, "backups_off", "backups are off: set backup.dir")
		return
	}
	b.mu.Lock() // one at a time: a second request waits and then takes its own
	defer b.mu.Unlock()
	if err := os.MkdirAll(b.dir, 0o750); err != nil {
		b.log.Error("backup failed", zap.Error(err))
		writeJSONError(w, http.StatusInternalServerError, "internal", "backup failed; the log has why")
		return
	}
	start := time.Now()
	dir := filepath.Join(b.dir, "checkin-"+start.UTC().Format("20060102T150405.000000000Z"))
	if err := b.cp.Checkpoint(dir); err != nil {
		b.log.Error("backup failed", zap.String("dir", dir), zap.Error(err))
		status, code := http.StatusInternalServerError, "internal"
		if errors.Is(err, os.ErrExist) {
			status, code = http.StatusConflict, "backup_exists"
		}
		writeJSONError(w, status, code, "backup failed; the log has why")
		return
	}
	took := time.Since(start)
	b.log.Info("backup written", zap.String("dir", dir), zap.Duration("took", took))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(backupAnswer{Dir: dir, TookMS: float64(took.Microseconds()) / 1000})
}

// writeJSONError answers with the API's error body.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(edge.NewErrorBody(code, msg))
}
