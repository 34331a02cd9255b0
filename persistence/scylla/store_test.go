package scylla

import (
	"testing"

	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/storetest"
)

// TestConformance runs the whole storetest suite against the node; every
// subtest gets a keyspace of its own. The backend declares no gaps.
func TestConformance(t *testing.T) {
	testHosts(t)
	storetest.Run(t, func(t *testing.T) persistence.Store {
		return open(t, testConfig(t))
	})
}
