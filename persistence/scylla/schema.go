package scylla

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap"
)

// schemaFiles are the versioned schema migrations, applied in version order.
// A released file never changes: a change is a new file (v002.cql, ...).
//
//go:embed schema/*.cql
var schemaFiles embed.FS

// migration is one schema file.
type migration struct {
	version    int
	name       string // file name
	checksum   string // sha256 of the file, hex
	statements []string
}

var migrationName = regexp.MustCompile(`^v(\d{3})\.cql$`)

// loadMigrations parses the embedded schema files.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(schemaFiles, "schema")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("persistence/scylla: schema file %q is not named vNNN.cql", e.Name())
		}
		src, err := schemaFiles.ReadFile("schema/" + e.Name())
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(src)
		out = append(out, migration{version: v, name: e.Name(), checksum: hex.EncodeToString(sum[:]), statements: splitStatements(string(src))})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("persistence/scylla: schema versions are not 1..%d without gaps (found %s)", len(out), m.name)
		}
	}
	return out, nil
}

// splitStatements splits a schema file into statements: lines starting with
// -- are comments, and a statement ends with a semicolon at the end of a
// line (schema files contain no semicolons inside string literals).
func splitStatements(src string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(src) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

const (
	cqlKeyspaceReplication = `SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?`
	cqlTableExists         = `SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`
	// cqlCreateKeyspace takes the keyspace name and the replication map,
	// which CQL cannot bind; both are validated by Config.Validate.
	cqlCreateKeyspace = `CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s AND durable_writes = true`
	// cqlScyllaNoTablets is added on Scylla: its tablets (the default for
	// new keyspaces in recent versions) do not support the lightweight
	// transactions that create users and locations.
	cqlScyllaNoTablets = ` AND tablets = {'enabled': false}`

	// cqlCreateMigrations takes the (validated) keyspace name.
	cqlCreateMigrations = `CREATE TABLE IF NOT EXISTS %s.schema_migrations (
    version    int PRIMARY KEY,
    name       text,
    checksum   text,
    applied_at timestamp
)`
	// cqlAppliedMigrations takes the (validated) keyspace name.
	cqlAppliedMigrations = `SELECT version, name, checksum FROM %s.schema_migrations`
	cqlRecordMigration   = `INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`
)

// Migrate creates the keyspace (with cfg.Replication) if it does not exist
// and applies every embedded schema version not yet recorded in its
// schema_migrations table. It is idempotent and safe to re-run after a
// failure; run it once per deployment (`checkin migrate`) before starting
// nodes with scylla.auto-migrate=false, or let Open run it. An existing
// keyspace keeps its replication: change that with ALTER KEYSPACE and a
// repair.
//
// Credentials come from the environment as for Open.
func Migrate(ctx context.Context, cfg Config, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withEnvCredentials(os.Getenv)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("persistence/scylla: %w", err)
	}
	return migrate(ctx, cfg, log)
}

func migrate(ctx context.Context, cfg Config, log *zap.Logger) error {
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}
	admin, err := connect(ctx, cfg, "", ddlTimeout, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := ensureKeyspace(ctx, admin, cfg, log); err != nil {
		return err
	}
	applied, err := appliedMigrations(ctx, admin, cfg.Keyspace)
	if isInvalid(err) {
		// No schema_migrations table, or one this node does not serve
		// yet: a node lists a new keyspace or table in system_schema
		// before it serves it, and another node starting now may be
		// creating them. A CREATE ... IF NOT EXISTS returns only once a
		// creation in flight is done, so after it the table is served.
		if err := ddl(ctx, admin, fmt.Sprintf(cqlCreateMigrations, cfg.Keyspace)); err != nil {
			return err
		}
		applied, err = appliedMigrations(ctx, admin, cfg.Keyspace)
	}
	if err != nil {
		return err
	}
	latest := migrations[len(migrations)-1].version
	for v := range applied {
		if v > latest {
			log.Warn("database schema is newer than this binary", zap.String("keyspace", cfg.Keyspace),
				zap.Int("database_version", v), zap.Int("binary_version", latest))
		}
	}
	var pending []migration
	for _, m := range migrations {
		sum, ok := applied[m.version]
		if !ok {
			pending = append(pending, m)
			continue
		}
		if err := m.appliedAs(sum); err != nil {
			return err
		}
	}
	if len(pending) == 0 {
		return nil
	}

	// The schema files name their tables without the keyspace: they run in
	// a session on it (which the read above proved this node serves).
	s, err := connect(ctx, cfg, cfg.Keyspace, ddlTimeout, log)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, m := range pending {
		start := time.Now()
		log.Info("applying schema", zap.String("keyspace", cfg.Keyspace), zap.String("file", m.name),
			zap.Int("statements", len(m.statements)), zap.Duration("statement_timeout", ddlTimeout))
		for _, stmt := range m.statements {
			if err := ddl(ctx, s, stmt); err != nil {
				return fmt.Errorf("persistence/scylla: apply %s: %w", m.name, err)
			}
		}
		err := s.Query(cqlRecordMigration, m.version, m.name, m.checksum, time.Now().UnixMilli()).
			WithContext(ctx).Idempotent(true).Exec()
		if err != nil {
			return storeErr("record schema "+m.name, err)
		}
		log.Info("schema applied", zap.String("keyspace", cfg.Keyspace), zap.String("file", m.name),
			zap.Int("statements", len(m.statements)), zap.Duration("took", time.Since(start)))
	}
	return nil
}

// isInvalid reports whether err is the server's answer to a statement it
// finds invalid, such as one naming a table or keyspace it does not serve.
func isInvalid(err error) bool {
	var re interface{ GetCode() int }
	return errors.As(err, &re) && re.GetCode() == gocql.ErrCodeInvalid
}

// ensureKeyspace creates the keyspace unless it exists, through s (a
// session on no keyspace). Nothing is sent that needs schema permissions
// when it exists.
func ensureKeyspace(ctx context.Context, s *gocql.Session, cfg Config, log *zap.Logger) error {
	var replication map[string]string
	err := s.Query(cqlKeyspaceReplication, cfg.Keyspace).WithContext(ctx).Consistency(gocql.One).Idempotent(true).Scan(&replication)
	switch {
	case err == nil:
		log.Info("keyspace exists", zap.String("keyspace", cfg.Keyspace), zap.Any("replication", replication))
		return nil
	case !errors.Is(err, gocql.ErrNotFound):
		return storeErr("read keyspace "+cfg.Keyspace, err)
	}
	stmt := fmt.Sprintf(cqlCreateKeyspace, cfg.Keyspace, cfg.Replication)
	if isScylla(s) {
		stmt += cqlScyllaNoTablets
	}
	if err := ddl(ctx, s, stmt); err != nil {
		return err
	}
	log.Info("keyspace created", zap.String("keyspace", cfg.Keyspace), zap.String("replication", cfg.Replication))
	return nil
}

// isScylla reports whether the cluster is ScyllaDB (its nodes announce
// shard information when a connection starts) rather than Cassandra.
func isScylla(s *gocql.Session) bool {
	for _, h := range s.GetHosts() {
		if h.ScyllaFeatures().IsPresent() {
			return true
		}
	}
	return false
}

// ddl runs one schema statement; the driver waits for schema agreement.
func ddl(ctx context.Context, s *gocql.Session, stmt string) error {
	if err := s.Query(stmt).WithContext(ctx).Idempotent(true).Exec(); err != nil {
		return storeErr("schema statement "+firstLine(stmt), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func tableExists(ctx context.Context, s *gocql.Session, keyspace, table string) (bool, error) {
	var name string
	err := s.Query(cqlTableExists, keyspace, table).WithContext(ctx).Consistency(gocql.One).Idempotent(true).Scan(&name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, gocql.ErrNotFound):
		return false, nil
	}
	return false, storeErr("read table "+keyspace+"."+table, err)
}

// appliedMigrations returns the checksum of every applied version.
func appliedMigrations(ctx context.Context, s *gocql.Session, keyspace string) (map[int]string, error) {
	it := s.Query(fmt.Sprintf(cqlAppliedMigrations, keyspace)).WithContext(ctx).Idempotent(true).Iter()
	applied := make(map[int]string)
	var v int
	var name, sum string
	for it.Scan(&v, &name, &sum) {
		applied[v] = sum
	}
	if err := it.Close(); err != nil {
		return nil, storeErr("read schema_migrations", err)
	}
	return applied, nil
}

// checkSchema fails unless the keyspace exists and every embedded version
// has been applied, for stores opened with AutoMigrate off. It uses a
// session of its own: a session bound to a missing keyspace cannot start.
func checkSchema(ctx context.Context, cfg Config, log *zap.Logger) error {
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}
	s, err := connect(ctx, cfg, "", 0, log)
	if err != nil {
		return err
	}
	defer s.Close()
	notMigrated := func(what string) error {
		return fmt.Errorf("persistence/scylla: keyspace %s lacks %s: run `checkin migrate` (or set scylla.auto-migrate)", cfg.Keyspace, what)
	}
	exists, err := tableExists(ctx, s, cfg.Keyspace, "schema_migrations")
	switch {
	case err != nil:
		return err
	case !exists:
		return notMigrated("its schema")
	}
	applied, err := appliedMigrations(ctx, s, cfg.Keyspace)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		sum, ok := applied[m.version]
		if !ok {
			return notMigrated("schema " + m.name)
		}
		if err := m.appliedAs(sum); err != nil {
			return err
		}
	}
	return nil
}

// appliedAs fails unless sum, the checksum recorded when m's version was
// applied, is m's: a schema file changed after its release describes
// tables the database does not have.
func (m migration) appliedAs(sum string) error {
	if sum != m.checksum {
		return fmt.Errorf("persistence/scylla: schema %s was applied with checksum %s, the embedded file has %s: released schema files must not change", m.name, sum, m.checksum)
	}
	return nil
}
