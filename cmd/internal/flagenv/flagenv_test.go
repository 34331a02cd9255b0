package flagenv

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for name, want := range map[string]string{
		"http.addr":          "CHECKIN_HTTP_ADDR",
		"writer.max-batch":   "CHECKIN_WRITER_MAX_BATCH",
		"store":              "CHECKIN_STORE",
		"scylla.local-dc":    "CHECKIN_SCYLLA_LOCAL_DC",
		"grain.idle-timeout": "CHECKIN_GRAIN_IDLE_TIMEOUT",
	} {
		if got := EnvName(name); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestParsePrecedence(t *testing.T) {
	env := map[string]string{"CHECKIN_HTTP_ADDR": ":9000", "CHECKIN_GRAIN_IDLE_TIMEOUT": "3s", "CHECKIN_DATA_DIR": "/env"}
	tests := []struct {
		name     string
		args     []string
		wantAddr string
		wantDir  string
		wantIdle time.Duration
	}{
		{"env fills unset flags", nil, ":9000", "/env", 3 * time.Second},
		{"command line wins", []string{"--http.addr=:7000", "--data.dir=/cli"}, ":7000", "/cli", 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			addr := fs.String("http.addr", ":8080", "")
			dir := fs.String("data.dir", "./data", "")
			idle := fs.Duration("grain.idle-timeout", time.Minute, "")
			if err := Parse(fs, tc.args, func(k string) string { return env[k] }); err != nil {
				t.Fatal(err)
			}
			if *addr != tc.wantAddr || *dir != tc.wantDir || *idle != tc.wantIdle {
				t.Fatalf("got %q %q %v", *addr, *dir, *idle)
			}
		})
	}
}

func TestParseBadEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("grain.idle-timeout", time.Minute, "")
	err := Parse(fs, nil, func(k string) string { return map[string]string{"CHECKIN_GRAIN_IDLE_TIMEOUT": "soon"}[k] })
	if err == nil || !strings.Contains(err.Error(), "CHECKIN_GRAIN_IDLE_TIMEOUT") {
		t.Fatalf("want an error naming the variable, got %v", err)
	}
}

func TestUsageListsEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("http.addr", ":8080", "listen address")
	var b bytes.Buffer
	Usage(fs, &b, "usage\n")()
	if !strings.Contains(b.String(), "CHECKIN_HTTP_ADDR") || !strings.Contains(b.String(), `":8080"`) {
		t.Fatalf("usage lacks env or default:\n%s", b.String())
	}
}
