package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// python3 returns the interpreter the benchmark scripts run on. Without one
// the script tests skip, except in CI, where they fail.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not installed: the benchmark script tests need it in CI")
		}
		t.Skip("python3 is not installed: skipping the benchmark script tests")
	}
	return p
}

// writeReport stores a checkin-load report the way bench-http.sh names it.
func writeReport(t *testing.T, dir, name string, okRPS, p99 float64) {
	t.Helper()
	rep := Report{Mode: "closed", OKThroughput: okRPS, Latency: Latency{P99: p99, P999: 2 * p99}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tableRows runs table.py on dir and returns its rows (after the header)
// split into columns.
func tableRows(t *testing.T, dir string) (head string, rows map[string][]string) {
	t.Helper()
	out, err := exec.Command(python3(t), filepath.Join("scripts", "table.py"), "--markdown", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("table.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 {
		t.Fatalf("table.py printed no rows:\n%s", out)
	}
	rows = map[string][]string{}
	for _, l := range lines[2:] {
		var cols []string
		for _, c := range strings.Split(strings.Trim(l, "| "), "|") {
			cols = append(cols, strings.TrimSpace(c))
		}
		rows[cols[1]+"/"+cols[2]] = cols
	}
	return lines[0], rows
}

// The table of the bench script gives (the numbers are chosen so that
// means and medians differ), over rounds, the median throughput
// and p99 of each scenario and the ratios of the medians, and lists every
// round's throughput; names without a round suffix are round 1.
func TestTableScriptMediansOverRounds(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []struct {
		name    string
		ok, p99 float64
	}{
		{"closed-write-bare-c64.json", 90000, 1},
		{"closed-write-bare-c64-2.json", 100000, 6},
		{"closed-write-bare-c64-3.json", 70000, 2},
		{"closed-write-naive-c64.json", 4000, 30},
		{"closed-write-naive-c64-2.json", 7000, 90},
		{"closed-write-naive-c64-3.json", 5000, 40},
		{"closed-write-checkin-c64.json", 20000, 12},
		{"closed-write-checkin-c64-2.json", 36000, 10},
		{"closed-write-checkin-c64-3.json", 25000, 20},
		{"closed-write-naive-scylla-c64.json", 1000, 60},
		{"closed-write-scylla-c64.json", 1500, 70},
		{"warmup-write-scylla.json", 999999, 1}, // not a table run
	} {
		writeReport(t, dir, r.name, r.ok, r.p99)
	}
	head, rows := tableRows(t, dir)
	if !strings.Contains(head, "median of 3") || !strings.Contains(head, "ok/s of each round") {
		t.Errorf("header %q does not say it holds medians of 3 rounds", head)
	}
	// columns: workload scenario conns ok/s p99 p99.9 errors vs-bare vs-naive rounds
	for key, want := range map[string][]string{
		"checkin/64": {"25000", "12.00", "24.00", "0", "0.28x", "5.00x", "20000 / 36000 / 25000"},
		"naive/64":   {"5000", "40.00", "80.00", "0", "0.06x", "1.00x", "4000 / 7000 / 5000"},
		"bare/64":    {"90000", "2.00", "4.00", "0", "1.00x", "18.00x", "90000 / 100000 / 70000"},
		// one round only; compared with the naive design on its own store
		"scylla/64":       {"1500", "70.00", "140.00", "0", "0.02x", "1.50x", "1500"},
		"naive-scylla/64": {"1000", "60.00", "120.00", "0", "0.01x", "1.00x", "1000"},
	} {
		got, ok := rows[key]
		if !ok {
			t.Errorf("no row for %s in %v", key, rows)
			continue
		}
		if g := strings.Join(got[3:], " | "); g != strings.Join(want, " | ") {
			t.Errorf("%s: got %s, want %s", key, g, strings.Join(want, " | "))
		}
	}
	if len(rows) != 5 {
		t.Errorf("got %d rows, want 5 (the warmup report is not a table run): %v", len(rows), rows)
	}
}

// A single round keeps the table's plain columns.
func TestTableScriptOneRound(t *testing.T) {
	dir := t.TempDir()
	writeReport(t, dir, "closed-read-bare-c16.json", 100000, 0.5)
	writeReport(t, dir, "closed-read-checkin-c16.json", 80000, 0.6)
	head, rows := tableRows(t, dir)
	if strings.Contains(head, "round") {
		t.Errorf("header %q of one round mentions rounds", head)
	}
	if got := rows["checkin/16"]; len(got) != 9 || got[3] != "80000" || got[7] != "0.80x" || got[8] != "-" {
		t.Errorf("checkin row %v, want 80000 ok/s, 0.80x bare and no naive ratio", got)
	}
}

// writeABReport stores a report the way ab.sh names it, with the server's
// CPU over a window of the run.
func writeABReport(t *testing.T, dir, name string, okRPS, userS, sysS, windowS float64) {
	t.Helper()
	b, err := json.Marshal(Report{Mode: "closed", OKThroughput: okRPS})
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	rep["server_cpu"] = map[string]float64{"user_s": userS, "sys_s": sysS, "window_s": windowS}
	if b, err = json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The A/B table gives each build's median throughput over the rounds, its
// ratio to the first build's, and the median user and system CPU per
// answer (the CPU of the window over the answers the window held), in the
// order the builds were named.
func TestABScriptMediansOverRounds(t *testing.T) {
	dir := t.TempDir()
	// build 1 (old): 20k, 30k, 25k ok/s; 6 s window
	writeABReport(t, dir, "ab-1-old-1.json", 20000, 3.0, 1.2, 6) // 25 + 10 µs
	writeABReport(t, dir, "ab-1-old-2.json", 30000, 3.6, 1.8, 6) // 20 + 10 µs
	writeABReport(t, dir, "ab-1-old-3.json", 25000, 4.5, 1.5, 6) // 30 + 10 µs
	// build 2 (new): 24k, 36k, 30k ok/s
	writeABReport(t, dir, "ab-2-new-1.json", 24000, 2.88, 1.44, 6) // 20 + 10 µs
	writeABReport(t, dir, "ab-2-new-3.json", 30000, 2.7, 1.8, 6)   // 15 + 10 µs
	writeABReport(t, dir, "ab-2-new-2.json", 36000, 3.24, 2.16, 6) // 15 + 10 µs
	writeReport(t, dir, "closed-write-checkin-c64.json", 1, 1)     // not an A/B report
	out, err := exec.Command(python3(t), filepath.Join("scripts", "ab.py"), "--markdown", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ab.py: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("ab.py printed %d lines, want a header, a rule and two builds:\n%s", len(lines), out)
	}
	want := []string{
		"| old | 3 | 25000 | 1.00x | 25.0 | 10.0 | 20000 / 30000 / 25000 | 35.0 / 30.0 / 40.0 |",
		"| new | 3 | 30000 | 1.20x | 15.0 | 10.0 | 24000 / 36000 / 30000 | 30.0 / 25.0 / 25.0 |",
	}
	for i, w := range want {
		if lines[2+i] != w {
			t.Errorf("row %d:\n got %s\nwant %s", i+1, lines[2+i], w)
		}
	}
}
