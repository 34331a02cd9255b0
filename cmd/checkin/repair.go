package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence"
)

// completions serves POST /admin/complete-checkins on the debug server:
// actors.CompleteListed for the users named by user_id (repeatable), or for
// every user. The answer is JSON lines: one per user with checkins listed
// but not found by id, then one with the totals (or with the error that
// stopped the run).
type completions struct {
	grains *actors.Client
	store  persistence.Store
	log    *zap.Logger
	mu     sync.Mutex // one run at a time
}

// completionLine is a line of the answer: a user's (UserID set) or the
// totals (Users set).
type completionLine struct {
	UserID string `json:"user_id,omitempty"`
	Users  int    `json:"users,omitempty"`
	actors.Repair
	TookMS float64 `json:"took_ms,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// completionsProgress is how often a run over every user logs how far it
// got.
const completionsProgress = 10 * time.Second

func (h *completions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "a completion run is started with POST")
		return
	}
	named := r.URL.Query()["user_id"]
	for _, id := range named {
		if !edge.ValidID(id) {
			writeJSONError(w, http.StatusBadRequest, "invalid_id", "user_id must be 1-64 characters of A-Z a-z 0-9 _ -")
			return
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	ctx := r.Context()
	start, logged := time.Now(), time.Now()
	total := completionLine{}
	run := func(id string) error {
		rep, err := actors.CompleteListed(ctx, h.grains, h.store, id)
		total.Users++
		total.Listed += rep.Listed
		total.NotByID += rep.NotByID
		total.Passed += rep.Passed
		if rep.NotByID > 0 {
			_ = enc.Encode(completionLine{UserID: id, Repair: rep})
			flush()
		}
		if time.Since(logged) >= completionsProgress {
			logged = time.Now()
			h.log.Info("completing listed checkins", zap.Int("users", total.Users), zap.Int("not_by_id", total.NotByID), zap.Int("passed", total.Passed))
		}
		return err
	}
	var err error
	if len(named) > 0 {
		for _, id := range named {
			if err = run(id); err != nil {
				break
			}
		}
	} else {
		err = h.everyUser(ctx, run)
	}
	total.TookMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		total.Error = err.Error()
		h.log.Warn("completing listed checkins stopped", zap.Int("users", total.Users), zap.Int("passed", total.Passed), zap.Error(err))
	} else {
		h.log.Info("listed checkins completed", zap.Int("users", total.Users), zap.Int("listed", total.Listed),
			zap.Int("not_by_id", total.NotByID), zap.Int("passed", total.Passed), zap.Float64("took_ms", total.TookMS))
	}
	_ = enc.Encode(total)
}

// everyUser calls run for every user in the store, in its listing order.
func (h *completions) everyUser(ctx context.Context, run func(string) error) error {
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		users, more, err := h.store.ListUsers(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := run(u.ID); err != nil {
				return err
			}
			after = u.ID
		}
		if !more || len(users) == 0 {
			return nil
		}
	}
}
