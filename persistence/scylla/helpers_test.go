package scylla

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/checkin/checkin/persistence/scylla/scyllatest"
)

func TestMain(m *testing.M) {
	if strings.TrimSpace(os.Getenv(envHosts)) == "" && os.Getenv("CI") != "true" {
		// Say it even without -v, where skip messages are not shown.
		fmt.Fprintln(os.Stderr, skipMessage)
	}
	goleak.VerifyTestMain(m,
		// After a connection to a node is lost, the driver refills its pool
		// in goroutines that sleep out the reconnection interval (and its
		// retries, through a debouncer) before they notice the session was
		// closed; they end on their own.
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connectMany"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connectMany.func1"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).fill_debounce"),
	)
}

// envHosts names the CQL node(s) integration tests use.
const envHosts = "CHECKIN_TEST_CQL_HOSTS"

const skipMessage = `
########################################################################
##  SKIPPED: Scylla/Cassandra integration test.                        ##
##  CHECKIN_TEST_CQL_HOSTS is not set, so there is no CQL node to use. ##
##  Run them with a real node:                                         ##
##      .ci/cassandra-up                                               ##
##      CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 go test ./persistence/scylla/
##  (In CI, CI=true makes a missing node a failure, not a skip.)       ##
########################################################################`

// testHosts returns the CQL contact points of the test node, skipping the
// test (failing it when CI=true) when there is none.
func testHosts(t testing.TB) []string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(envHosts))
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set but CI=true: the Scylla backend tests must run in CI (start a node with .ci/cassandra-up)", envHosts)
		}
		t.Skip(skipMessage)
	}
	var hosts hostList
	_ = hosts.Set(v)
	return hosts
}

// testConfig returns a config for a keyspace of the calling test's own,
// which is dropped when the test ends.
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Hosts = testHosts(t)
	cfg.Keyspace = "checkin_test_" + randomHex(6)
	// A 2-core CI machine running the node and parallel tests can be slow.
	cfg.Timeout = 15 * time.Second
	cfg.ConnectTimeout = 15 * time.Second
	scyllatest.DropKeyspaceAtCleanup(t, strings.Join(cfg.Hosts, ","), cfg.Keyspace)
	return cfg
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// open opens a store on cfg (migrating the keyspace) and closes it when the
// test ends.
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	s, err := Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
