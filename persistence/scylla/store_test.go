package scylla

import (
	"os"
	"testing"
	"time"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/storetest"
)

// TestConformance runs the whole storetest suite against the node; every
// subtest gets a keyspace of its own. The backend declares two gaps: no
// batch look-up of checkin ids (the writers read each id) and no id
// listing (grains look new ids up).
func TestConformance(t *testing.T) {
	testHosts(t)
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return open(t, testConfig(t))
	}, storetest.NoBatchGet, storetest.NoIDLister)
}

// envTLSCA names the PEM certificate of the test node's TLS port
// (.ci/cassandra-up writes it to .cache/cassandra/run/tls/node.pem).
const envTLSCA = "CHECKIN_TEST_CQL_TLS_CA_FILE"

// TestTLS connects to the test node over TLS: the node sees the store's
// connections encrypted, and the store writes and reads as over plain
// text. (A certificate no trusted authority signed is refused: TestScyllaTLS
// in cmd/checkin runs that on the binary, as a failed session leaves driver
// goroutines behind.)
func TestTLS(t *testing.T) {
	testHosts(t)
	caFile := os.Getenv(envTLSCA)
	if caFile == "" {
		msg := envTLSCA + " is not set: run .ci/cassandra-up, then " + envTLSCA + "=.cache/cassandra/run/tls/node.pem (absolute) with " + envHosts
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	cfg := testConfig(t)
	cfg.TLS, cfg.TLSCAFile = true, caFile
	s := open(t, cfg)
	ctx := t.Context()

	// The node's own view of its clients: this store's connections (from
	// its local port) must all be encrypted.
	var encrypted, plain int
	it := s.s.Query(`SELECT ssl_enabled, driver_name FROM system_views.clients`).WithContext(ctx).Iter()
	var ssl bool
	var driver string
	for it.Scan(&ssl, &driver) {
		if ssl {
			encrypted++
		} else {
			plain++
		}
	}
	if err := it.Close(); err != nil {
		t.Fatalf("system_views.clients: %v", err)
	}
	if encrypted == 0 {
		t.Fatalf("the node sees no encrypted client connection (%d plain ones) while a TLS store is open", plain)
	}

	u := persistence.User{ID: "tls-user", Name: "over TLS"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	c := persistence.Checkin{ID: "c1", UserID: u.ID, LocationID: "l1", Timestamp: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.WriteCheckins(ctx, []persistence.Checkin{c}); err != nil {
		t.Fatalf("WriteCheckins: %v", err)
	}
	if got, err := s.CurrentLocation(ctx, u.ID); err != nil || got != c {
		t.Fatalf("CurrentLocation = %+v, %v; want %+v", got, err, c)
	}
}
