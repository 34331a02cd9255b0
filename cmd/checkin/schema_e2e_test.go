package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// schemaTestFlags are a node on a new keyspace of the test's CQL node with
// short connection timeouts: connecting is bounded by 1.5 s in all, while
// applying the schema to a new keyspace takes seconds (each statement waits
// for the cluster to agree on it).
func schemaTestFlags(t *testing.T) []string {
	t.Helper()
	cql := os.Getenv("CHECKIN_TEST_CQL_HOSTS")
	needServers(t, cql != "", "the schema tests need a CQL node: run .ci/cassandra-up, then CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 make test")
	return []string{"--store=scylla", "--scylla.hosts=" + cql, "--scylla.keyspace=" + newKeyspace(t, cql),
		"--scylla.connect-timeout=1s", "--scylla.timeout=500ms"}
}

// TestSchemaAtStart: a node applies the schema of a new keyspace at start
// however long its statements take, within their own deadline, not the
// connection's (the first node of a new deployment on a busy cluster
// stopped with "context deadline exceeded" half way through the schema),
// and it then serves.
func TestSchemaAtStart(t *testing.T) {
	t.Parallel()
	p := startProc(t, schemaTestFlags(t)...)
	took := -1.0
	for _, s := range strings.Split(p.log.String(), "\n") {
		var rec struct {
			Msg  string  `json:"msg"`
			Took float64 `json:"took"`
		}
		if json.Unmarshal([]byte(s), &rec) == nil && rec.Msg == "schema applied" {
			took = rec.Took
		}
	}
	switch {
	case took < 0:
		t.Fatal(`no "schema applied" line: the node started on a new keyspace without applying the schema`)
	case took < 1.5:
		t.Logf("the schema took %.2f s, less than the connection timeouts (1.5 s): this run did not show that it may take longer", took)
	default:
		t.Logf("the schema took %.2f s, longer than the connection timeouts (1.5 s)", took)
	}
	if r := p.do(t, "GET", "/readyz", nil); r.status != http.StatusOK {
		t.Errorf("GET /readyz = %s, want 200", r)
	}
	user, l := p.mkUser(t, "schema"), p.mkLocation(t, "schema")
	k := ck{uniqueID("schema"), l.ID, ms(time.Now().Add(-time.Minute))}
	p.mkCheckin(t, user, k)
	p.checkCurrent(t, user, k, l)
}

// TestSignalWhileApplyingSchema: SIGTERM while a node applies the schema
// ends it at once, cleanly (exit 0), without serving: the statement in
// flight is abandoned (a later start or `checkin migrate` completes the
// schema; every statement is idempotent).
func TestSignalWhileApplyingSchema(t *testing.T) {
	t.Parallel()
	p := launchProc(t, nil, schemaTestFlags(t)...)
	deadline := time.Now().Add(startTimeout)
	for !p.log.has("applying schema") {
		select {
		case <-p.done:
			p.stopped = true
			t.Fatalf("the node exited (code %d) before applying the schema", p.cmd.ProcessState.ExitCode())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf(`no "applying schema" line within %s`, startTimeout)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.stopped = true
		t.Fatalf("the node did not exit within %s of SIGTERM while applying the schema", stopTimeout)
	}
	p.stopped = true // exited: not for the cleanup's checks of a node that served
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM during start, want 0", code)
	}
	if !p.log.has("stopped while starting") {
		t.Error(`no "stopped while starting" line`)
	}
	if p.log.has("schema applied") || p.log.has("http server listening") {
		t.Error("the node went on applying the schema or started serving after SIGTERM")
	}
}
