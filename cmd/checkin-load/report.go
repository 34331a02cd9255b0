package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// errLost: --verify found acknowledged checkins missing (or different, or
// not reflected in the current location, or could not read them all back).
var errLost = errors.New("verify: acknowledged checkins are missing, different, not the current location, or could not be read back, or deleted ones are back")

// Report is the outcome of a run; --json prints it as is.
type Report struct {
	Mode        string   `json:"mode"` // closed | open | replay-closed | replay-open
	Targets     []string `json:"targets"`
	Concurrency int      `json:"concurrency"`
	RunID       string   `json:"run_id"`

	ElapsedS     float64 `json:"elapsed_s"`
	Requests     int64   `json:"requests"` // finished: answered, failed, or (open model) expired unsent
	OK           int64   `json:"ok"`
	Errors       int64   `json:"errors"`  // of Requests, the ones without a 2xx answer; error_kinds sums to it
	Dropped      int64   `json:"dropped"` // open model: never sent, not among Requests
	Throughput   float64 `json:"throughput_rps"`
	OKThroughput float64 `json:"ok_rps"`
	Latency      Latency `json:"latency"`

	Ops         map[string]*OpReport `json:"ops"`
	StatusCodes map[string]int64     `json:"status_codes"`
	ErrorKinds  map[string]int64     `json:"error_kinds"`
	// Retries counts the measured phase's attempts sent again (--retries),
	// RetriedKinds what they had failed with.
	Retries      int64            `json:"retries"`
	RetriedKinds map[string]int64 `json:"retried_kinds,omitempty"`
	// Ejections counts, per target, the times it was skipped after a
	// connection error (--eject), over the whole run.
	Ejections map[string]int64 `json:"ejections,omitempty"`
	// Unready counts, per target, the times a health check found it turned
	// not ready (--health-check; several failed checks in a row count
	// once), over the whole run.
	Unready map[string]int64 `json:"unready,omitempty"`

	Open   *OpenReport   `json:"open,omitempty"`
	Setup  *SetupReport  `json:"setup,omitempty"`
	Replay *ReplayReport `json:"replay,omitempty"`
	Verify *VerifyReport `json:"verify,omitempty"`
}

// OpenReport is the schedule accounting of the open model.
type OpenReport struct {
	OfferedRate float64 `json:"offered_rate,omitempty"`
	ReplaySpeed float64 `json:"replay_speed,omitempty"`
	Intended    int64   `json:"intended"` // requests that came due
	Queued      int64   `json:"queued"`   // accepted: then sent, or expired
	Dropped     int64   `json:"dropped"`  // due while --max-outstanding were queued or in flight: never sent
	Late        int64   `json:"late"`     // started more than 10 ms after their due time
	Expired     int64   `json:"expired"`  // queued longer than --timeout: failed without being sent
	MaxLagMS    float64 `json:"max_lag_ms"`
}

// ReplayReport describes a replayed file.
type ReplayReport struct {
	File          string `json:"file"`
	Rows          int    `json:"rows"`
	Users         int    `json:"users"`
	Locations     int    `json:"locations"`
	DuplicateRows int    `json:"duplicate_rows"` // rows whose checkin id an earlier row has
	Created       int64  `json:"created"`        // 201 answers
	Existing      int64  `json:"existing"`       // 200 answers: the id was stored already (duplicates, re-runs)
}

// fill sets the measured phase's numbers.
func (rep *Report) fill(cfg config, rec *recorder, elapsed time.Duration, open *OpenReport) {
	rep.Mode = "closed"
	if open != nil {
		rep.Mode = "open"
	}
	if cfg.replaying() {
		rep.Mode = "replay-" + rep.Mode
	}
	per, all := rec.merged()
	total := opReport(&all, elapsed)
	rep.ElapsedS = elapsed.Seconds()
	rep.Requests, rep.OK, rep.Errors = total.Requests, total.OK, total.Errors
	rep.Throughput = total.Throughput
	if elapsed > 0 {
		rep.OKThroughput = float64(total.OK) / elapsed.Seconds()
	}
	rep.Latency, rep.StatusCodes = total.Latency, total.StatusCodes
	rep.ErrorKinds = total.ErrorKinds
	rep.Retries, rep.RetriedKinds = total.Retries, total.RetriedKinds
	if rep.ErrorKinds == nil {
		rep.ErrorKinds = map[string]int64{}
	}
	rep.Ops = map[string]*OpReport{}
	for o := range per {
		if per[o].count > 0 {
			rep.Ops[op(o).String()] = opReport(&per[o], elapsed)
		}
	}
	if open != nil {
		rep.Open = open
		rep.Dropped = open.Dropped
	}
}

// Count5xx returns the number of answers with a 5xx status.
func (rep *Report) Count5xx() int64 {
	var n int64
	for k, v := range rep.StatusCodes {
		if strings.HasPrefix(k, "5") {
			n += v
		}
	}
	return n
}

func (rep *Report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var b strings.Builder
	if s := rep.Setup; s != nil {
		fmt.Fprintf(&b, "setup: %d users, %d locations, %d checkins in %.1fs (created %d, existing %d)\n",
			s.Users, s.Locations, s.Checkins, s.ElapsedS, s.Created, s.Existing)
	}
	if rep.Ops != nil {
		fmt.Fprintf(&b, "%s model, %d connections, %s, run %s\n", rep.Mode, rep.Concurrency, strings.Join(rep.Targets, " "), rep.RunID)
		if o := rep.Open; o != nil {
			if o.OfferedRate > 0 {
				fmt.Fprintf(&b, "offered %.0f/s: ", o.OfferedRate)
			} else {
				fmt.Fprintf(&b, "replay at %gx real time: ", o.ReplaySpeed)
			}
			fmt.Fprintf(&b, "intended %d, queued %d (expired unsent %d), dropped %d, late (>10ms) %d, max lag %s\n",
				o.Intended, o.Queued, o.Expired, o.Dropped, o.Late, fmtMS(o.MaxLagMS))
		}
		fmt.Fprintf(&b, "%d requests in %.2fs: %.0f/s, ok %.0f/s, errors %d", rep.Requests, rep.ElapsedS, rep.Throughput, rep.OKThroughput, rep.Errors)
		if rep.Dropped > 0 {
			fmt.Fprintf(&b, ", dropped %d (never sent)", rep.Dropped)
		}
		b.WriteString("\n\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "op\trequests\terrors\trate/s\tp50\tp90\tp99\tp99.9\tmax\t")
		line := func(name string, n, e int64, rate float64, l Latency) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", name, n, e, rate,
				fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max))
		}
		for _, name := range opNames {
			if o := rep.Ops[name]; o != nil {
				line(name, o.Requests, o.Errors, o.Throughput, o.Latency)
			}
		}
		line("total", rep.Requests, rep.Errors, rep.Throughput, rep.Latency)
		tw.Flush()
		fmt.Fprintf(&b, "\nstatus codes: %s\n", fmtCounts(rep.StatusCodes))
		if len(rep.ErrorKinds) > 0 {
			fmt.Fprintf(&b, "errors: %s\n", fmtCounts(rep.ErrorKinds))
		}
		if rep.Retries > 0 {
			fmt.Fprintf(&b, "retried: %d attempts, after %s\n", rep.Retries, fmtCounts(rep.RetriedKinds))
		}
	}
	if len(rep.Ejections) > 0 {
		fmt.Fprintf(&b, "ejected (times): %s\n", fmtCounts(rep.Ejections))
	}
	if len(rep.Unready) > 0 {
		fmt.Fprintf(&b, "turned not ready (times): %s\n", fmtCounts(rep.Unready))
	}
	if r := rep.Replay; r != nil {
		fmt.Fprintf(&b, "replay %s: %d rows (%d duplicate), %d users, %d locations; checkins created %d, already stored %d\n",
			r.File, r.Rows, r.DuplicateRows, r.Users, r.Locations, r.Created, r.Existing)
	}
	if v := rep.Verify; v != nil {
		fmt.Fprintf(&b, "verify: %d acknowledged checkins of %d users read back in %.1fs: found %d, lost %d, mismatched %d, stale current locations %d, unverified users %d\n",
			v.Acknowledged, v.Users, v.ElapsedS, v.Found, v.Lost, v.Mismatched, v.StaleCurrent, v.UnverifiedUsers)
		for _, s := range v.LostSample {
			fmt.Fprintf(&b, "  lost: %s\n", s)
		}
		if v.NotByID > 0 {
			fmt.Fprintf(&b, "verify: %d acknowledged checkins listed but not found by id (stored in part)\n", v.NotByID)
		}
		for _, s := range v.NotByIDSample {
			fmt.Fprintf(&b, "  not by id: %s\n", s)
		}
		if v.UnackedStored > 0 {
			fmt.Fprintf(&b, "verify: %d checkins never acknowledged are stored whole (listed and found by id)\n", v.UnackedStored)
		}
		if v.UnackedNotByID > 0 {
			fmt.Fprintf(&b, "verify: %d checkins never acknowledged listed but not found by id (stored in part, not completed)\n", v.UnackedNotByID)
		}
		for _, s := range v.UnackedNotByIDSample {
			fmt.Fprintf(&b, "  unacknowledged, not by id: %s\n", s)
		}
		if v.Others > 0 {
			fmt.Fprintf(&b, "verify: %d checkins listed that this run did not send (earlier runs, other clients), not checked\n", v.Others)
		}
		for _, s := range v.StaleSample {
			fmt.Fprintf(&b, "  stale current location: %s\n", s)
		}
		if v.Deleted > 0 || v.UncertainDeletes > 0 {
			fmt.Fprintf(&b, "verify: %d deleted checkins: resurrected %d; %d deletes without a final answer not checked\n",
				v.Deleted, v.Resurrected, v.UncertainDeletes)
		}
		for _, s := range v.ResurrectedSample {
			fmt.Fprintf(&b, "  resurrected: %s\n", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtCounts prints "k=v" pairs sorted by key.
func fmtCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
