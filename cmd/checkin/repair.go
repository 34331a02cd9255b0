package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/checkin/checkin/actors"
	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence"
)

// completions serves POST /admin/complete-checkins on the debug server:
// actors.CompleteListed for the users named by user_id (repeatable), or for
// every user (after the user named by after=, to resume a run). The
// answer is JSON lines: one per user with checkins listed but not found
// by id, or whose completion failed (the run goes on), then one with the
// totals: the last user done, and the error that stopped the run if one
// did. A run that fails before its first line answers with an error
// status instead; one asked for while another runs is refused.
type completions struct {
	grains *actors.Client
	store  persistence.Store
	log    *zap.Logger
	mu     sync.Mutex // one run at a time
}

// completionLine is a user's line of the answer.
type completionLine struct {
	UserID string `json:"user_id"`
	actors.Repair
	Error string `json:"error,omitempty"`
}

// completionTotals is the last line of the answer. Every field but failed
// and error is always there, so that a script finds last_user_id (empty
// when the run did no user) and the counts however the run went.
type completionTotals struct {
	Users int `json:"users"`
	actors.Repair
	Failed   int     `json:"failed,omitempty"` // users whose completion failed
	LastUser string  `json:"last_user_id"`     // the last user done: after= resumes from it
	TookMS   float64 `json:"took_ms"`
	Error    string  `json:"error,omitempty"`
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
	q := r.URL.Query()
	named, after := q["user_id"], q.Get("after")
	for _, id := range append(slices.Clone(named), after) {
		if id != "" && !edge.ValidID(id) {
			writeJSONError(w, http.StatusBadRequest, "invalid_id", "user_id and after must be 1-64 characters of A-Z a-z 0-9 _ -")
			return
		}
	}
	if !h.mu.TryLock() {
		writeJSONError(w, http.StatusConflict, "completion_running", "a completion run is under way; ask again when it is done")
		return
	}
	defer h.mu.Unlock()
	wrote := false
	enc := json.NewEncoder(w)
	line := func(l any) {
		if !wrote {
			w.Header().Set("Content-Type", "application/x-ndjson")
			wrote = true
		}
		_ = enc.Encode(l)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	ctx := r.Context()
	start, logged := time.Now(), time.Now()
	total := completionTotals{}
	run := func(id string) error {
		rep, err := actors.CompleteListed(ctx, h.grains, h.store, id)
		total.Users++
		total.Listed += rep.Listed
		total.NotByID += rep.NotByID
		total.Passed += rep.Passed
		switch {
		case err != nil && ctx.Err() != nil:
			return err // the client went: the run stops
		case err != nil:
			total.Failed++
			h.log.Warn("completing a user's listed checkins failed; the run goes on", zap.String("user_id", id), zap.Error(err))
			line(completionLine{UserID: id, Repair: rep, Error: err.Error()})
		case rep.NotByID > 0:
			line(completionLine{UserID: id, Repair: rep})
		}
		total.LastUser = id
		if time.Since(logged) >= completionsProgress {
			logged = time.Now()
			h.log.Info("completing listed checkins", zap.Int("users", total.Users), zap.Int("not_by_id", total.NotByID), zap.Int("passed", total.Passed))
		}
		return nil
	}
	var err error
	if len(named) > 0 {
		for _, id := range named {
			if err = run(id); err != nil {
				break
			}
		}
	} else {
		err = h.everyUser(ctx, after, run)
	}
	total.TookMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		h.log.Warn("completing listed checkins stopped", zap.Int("users", total.Users), zap.Int("passed", total.Passed),
			zap.String("last_user_id", total.LastUser), zap.Error(err))
		if !wrote && total.Users == 0 {
			writeJSONError(w, http.StatusServiceUnavailable, "unavailable", "the completion run failed before any user: "+err.Error())
			return
		}
		total.Error = err.Error()
	} else {
		h.log.Info("listed checkins completed", zap.Int("users", total.Users), zap.Int("listed", total.Listed),
			zap.Int("not_by_id", total.NotByID), zap.Int("passed", total.Passed), zap.Int("failed", total.Failed), zap.Float64("took_ms", total.TookMS))
	}
	line(total)
}

// everyUser calls run for every user in the store after the user after
// ("": from the first), in its listing order.
func (h *completions) everyUser(ctx context.Context, after string, run func(string) error) error {
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
