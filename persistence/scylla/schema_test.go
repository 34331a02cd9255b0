package scylla

import (
	"strings"
	"testing"
)

func TestMigrations(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "v001.cql" {
		t.Fatalf("migrations = %+v", ms)
	}
	tables := map[string]bool{}
	for _, m := range ms {
		for _, st := range m.statements {
			if !strings.HasPrefix(st, "CREATE TABLE IF NOT EXISTS ") {
				t.Errorf("%s: statement is not an idempotent CREATE TABLE: %q", m.name, firstLine(st))
				continue
			}
			tables[strings.Fields(st)[5]] = true
			if strings.Contains(st, ";") {
				t.Errorf("%s: statement contains a semicolon: %q", m.name, st)
			}
		}
	}
	for _, want := range []string{"users", "locations", "checkins_by_user", "checkins_by_user_location",
		"buckets_by_user", "buckets_by_user_location", "checkin_by_id", "current_location"} {
		if !tables[want] {
			t.Errorf("no table %s in the schema", want)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- comment; not a statement\nCREATE TABLE a (\n  x int -- inline\n);\n\n  -- indented comment\nCREATE TABLE b (y int);\nTRAILING")
	want := []string{"CREATE TABLE a (\n  x int -- inline\n)", "CREATE TABLE b (y int)", "TRAILING"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("splitStatements = %q, want %q", got, want)
	}
}
