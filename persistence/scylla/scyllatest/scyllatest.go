// Package scyllatest helps tests that run checkin nodes on a real CQL node
// (Scylla or Cassandra) clean up after themselves: every keyspace holds
// tables, and a test node keeps each table's metadata in memory, so a
// long-lived development node fills its heap after a few runs of the whole
// suite unless each test drops the keyspace it made.
package scyllatest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// DropKeyspaceAtCleanup drops keyspace on the CQL node at hosts (host:port,
// comma separated) when t and its subtests end. A failed drop is logged,
// not an error: the test's result does not depend on it.
func DropKeyspaceAtCleanup(t testing.TB, hosts, keyspace string) {
	t.Helper()
	t.Cleanup(func() {
		if err := dropKeyspace(hosts, keyspace); err != nil {
			t.Logf("drop keyspace %s: %v", keyspace, err)
		}
	})
}

func dropKeyspace(hosts, keyspace string) error {
	c := gocql.NewCluster(strings.Split(hosts, ",")...)
	c.Timeout = time.Minute // a schema change waits for the node's agreement
	c.ConnectTimeout = 15 * time.Second
	c.Logger = nopLogger{}
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return s.Query(`DROP KEYSPACE IF EXISTS "` + keyspace + `"`).WithContext(ctx).Exec()
}

// nopLogger keeps the driver's reconnection chatter out of test output.
type nopLogger struct{}

func (nopLogger) Print(...any)          {}
func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
