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
// embedded store into a new directory under dir, one at a time (a request
// while one runs is refused, not queued: a client that gave up would
// still get a backup taken later). The checkpoint is written under a
// name ending in .partial and renamed when whole, so a directory without
// it is a whole backup: one cut short (the process stopped, the disk
// filled) keeps the .partial name and is never to be restored.
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
	if !b.mu.TryLock() {
		writeJSONError(w, http.StatusConflict, "backup_running", "a backup is being taken; ask again when it is done")
		return
	}
	defer b.mu.Unlock()
	if err := os.MkdirAll(b.dir, 0o750); err != nil {
		b.log.Error("backup failed", zap.Error(err))
		writeJSONError(w, http.StatusInternalServerError, "internal", "backup failed; the log has why")
		return
	}
	start := time.Now()
	dir := filepath.Join(b.dir, "checkin-"+start.UTC().Format("20060102T150405.000000000Z"))
	if _, err := os.Lstat(dir); err == nil {
		writeJSONError(w, http.StatusConflict, "backup_exists", "a backup of that name exists; ask again")
		return
	}
	partial := dir + partialSuffix
	err := b.cp.Checkpoint(partial)
	if err == nil {
		err = renameSynced(partial, dir)
	}
	if err != nil {
		b.log.Error("backup failed", zap.String("dir", partial), zap.Error(err))
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

// usableDir makes dir if need be and checks that a file can be written in
// it, so that a backup.dir that cannot hold backups stops the node at
// start instead of failing every backup.
func usableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// partialSuffix ends the name of a backup being written.
const partialSuffix = ".partial"

// renameSynced renames from to to and syncs their directory, so that the
// name a whole backup goes by survives a crash.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// writeJSONError answers with the API's error body.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(edge.NewErrorBody(code, msg))
}
