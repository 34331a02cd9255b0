package scylla

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// Environment variables of the credentials. They are read by Open and
// Migrate when Config.Username is empty, and are never flags, so they never
// show up in --help output, process listings or logs.
const (
	EnvUsername = "CHECKIN_SCYLLA_USERNAME"
	EnvPassword = "CHECKIN_SCYLLA_PASSWORD"
)

// Defaults of the settings; RegisterFlags uses them.
const (
	DefaultHost              = "127.0.0.1:9042"
	DefaultKeyspace          = "checkin"
	DefaultReplication       = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	DefaultConsistency       = "LOCAL_QUORUM"
	DefaultTimeout           = 5 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
	DefaultNumConns          = 2
	DefaultMaxInflight       = 256
	DefaultRetries           = 3
	DefaultProtoVersion      = 4
	DefaultReconnectInterval = 2 * time.Second
)

// Config holds every setting of the Scylla store. The zero value is not
// usable: start from DefaultConfig or RegisterFlags.
type Config struct {
	// Hosts are the contact points (host:port); the rest of the ring is
	// discovered from them.
	Hosts []string
	// Keyspace holds every table of the store.
	Keyspace string
	// LocalDC, when set, keeps requests in that data center (DC-aware
	// round robin under the token-aware policy).
	LocalDC string
	// Replication is the CQL replication map used when Migrate creates the
	// keyspace; it does not change an existing keyspace.
	Replication string
	// Consistency of writes and ReadConsistency of reads, by CQL name
	// (ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM, ALL).
	Consistency     string
	ReadConsistency string
	// Timeout bounds one request to one node; ConnectTimeout bounds
	// connection setup. Calls are also bounded by their context.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	// NumConns is the number of connections per host (per shard on Scylla).
	NumConns int
	// MaxInflight bounds the single-partition write batches the store has in
	// flight at once, over all concurrent WriteCheckins calls: Open starts
	// this many worker goroutines, each with one request in flight.
	MaxInflight int
	// Retries is how many times a failed idempotent request is retried:
	// by the driver on another host for reads, and with backoff within the
	// caller's deadline for checkin writes.
	Retries int
	// ProtoVersion is the CQL native protocol version (3, 4 or 5). Frames
	// are snappy-compressed on 3 and 4; 5 has its own framing and is sent
	// uncompressed.
	ProtoVersion int
	// ReconnectInterval is how often the driver tries to reconnect to nodes
	// it considers down.
	ReconnectInterval time.Duration
	// AutoMigrate makes Open apply the embedded schema. When false, Open
	// fails unless `checkin migrate` (Migrate) has applied every version.
	AutoMigrate bool

	// TLS makes every connection to the nodes TLS 1.2 or newer. The nodes'
	// certificates are verified against TLSCAFile (PEM; empty: the
	// system's authorities) and must name the addresses the driver
	// connects to (the contact points and the addresses nodes advertise).
	// TLSCertFile and TLSKeyFile, when set, are the client certificate
	// for nodes that require one.
	TLS         bool
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// Username and Password authenticate with PasswordAuthenticator when
	// Username is set. They come from EnvUsername and EnvPassword (see
	// Open); Password never prints.
	Username string
	Password Secret

	// translator, when set, rewrites every node address the driver
	// connects to (tests route the driver through a fault-injecting proxy).
	translator gocql.AddressTranslator
}

// Secret is a string that never prints: fmt, %+v of a Config and JSON or
// text encodings show a placeholder.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return `"` + redacted + `"` }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags binds every setting to a flag of fs named scylla.* and sets
// the defaults. Credentials are not flags; see EnvUsername.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Hosts = []string{DefaultHost}
	fs.Var((*hostList)(&c.Hosts), "scylla.hosts", "comma-separated host:port contact points of the Scylla (or Cassandra) cluster")
	fs.StringVar(&c.Keyspace, "scylla.keyspace", DefaultKeyspace, "keyspace of the store")
	fs.StringVar(&c.LocalDC, "scylla.local-dc", "", "data center to send requests to (empty: all, no DC-aware routing)")
	fs.StringVar(&c.Replication, "scylla.replication", DefaultReplication,
		"replication map used when the keyspace is created, e.g. {'class': 'NetworkTopologyStrategy', 'dc1': 3}")
	fs.StringVar(&c.Consistency, "scylla.consistency", DefaultConsistency, "consistency level of writes")
	fs.StringVar(&c.ReadConsistency, "scylla.read-consistency", DefaultConsistency, "consistency level of reads")
	fs.DurationVar(&c.Timeout, "scylla.timeout", DefaultTimeout, "timeout of one request to one node")
	fs.DurationVar(&c.ConnectTimeout, "scylla.connect-timeout", DefaultConnectTimeout, "timeout of connection setup")
	fs.IntVar(&c.NumConns, "scylla.num-conns", DefaultNumConns, "connections per host (per shard on Scylla)")
	fs.IntVar(&c.MaxInflight, "scylla.max-inflight", DefaultMaxInflight, "single-partition write batches in flight at once")
	fs.IntVar(&c.Retries, "scylla.retries", DefaultRetries, "retries of a failed idempotent request (within the caller's deadline)")
	fs.IntVar(&c.ProtoVersion, "scylla.proto-version", DefaultProtoVersion, "CQL native protocol version: 3, 4 or 5")
	fs.DurationVar(&c.ReconnectInterval, "scylla.reconnect-interval", DefaultReconnectInterval, "how often to try reconnecting to nodes that are down")
	fs.BoolVar(&c.AutoMigrate, "scylla.auto-migrate", true, "apply the schema at start (false: require `checkin migrate` to have run)")
	fs.BoolVar(&c.TLS, "scylla.tls", false, "connect to the nodes over TLS (1.2 or newer), verifying their certificates")
	fs.StringVar(&c.TLSCAFile, "scylla.tls-ca-file", "", "PEM certificate(s) of the authority that signed the nodes' certificates (empty: the system's authorities)")
	fs.StringVar(&c.TLSCertFile, "scylla.tls-cert-file", "", "PEM client certificate, for nodes that require one (with scylla.tls-key-file)")
	fs.StringVar(&c.TLSKeyFile, "scylla.tls-key-file", "", "PEM private key of scylla.tls-cert-file")
}

// hostList is a comma-separated flag value; Set replaces the list.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*h = out
	return nil
}

// keyspaceName is what CQL accepts as an unquoted keyspace name, in lower
// case: CQL folds unquoted names to lower case, but the driver quotes the
// name of the session's keyspace (USE "Name"), which is then another one.
var keyspaceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Validate reports every setting out of range.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Hosts) == 0 {
		bad("scylla.hosts must name at least one host")
	}
	for _, h := range c.Hosts {
		if err := checkHost(h); err != nil {
			bad("scylla.hosts: %w", err)
		}
	}
	if !keyspaceName.MatchString(c.Keyspace) {
		bad("scylla.keyspace %q: want a lower-case letter then up to 47 lower-case letters, digits or underscores", c.Keyspace)
	}
	if r := strings.TrimSpace(c.Replication); !strings.HasPrefix(r, "{") || !strings.HasSuffix(r, "}") || !strings.Contains(r, "'class'") {
		bad("scylla.replication %q: want a CQL map with a 'class', e.g. %s", c.Replication, DefaultReplication)
	}
	if _, err := parseConsistency(c.Consistency); err != nil {
		bad("scylla.consistency: %w", err)
	}
	if _, err := parseConsistency(c.ReadConsistency); err != nil {
		bad("scylla.read-consistency: %w", err)
	}
	if c.Timeout <= 0 {
		bad("scylla.timeout must be positive")
	}
	if c.ConnectTimeout <= 0 {
		bad("scylla.connect-timeout must be positive")
	}
	if c.NumConns < 1 {
		bad("scylla.num-conns must be at least 1")
	}
	if c.MaxInflight < 1 {
		bad("scylla.max-inflight must be at least 1")
	}
	if c.Retries < 0 {
		bad("scylla.retries must not be negative")
	}
	if c.ProtoVersion < 3 || c.ProtoVersion > 5 {
		bad("scylla.proto-version %d: want 3, 4 or 5", c.ProtoVersion)
	}
	if c.ReconnectInterval <= 0 {
		bad("scylla.reconnect-interval must be positive")
	}
	if !c.TLS && (c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "") {
		bad("scylla.tls-ca-file, scylla.tls-cert-file and scylla.tls-key-file need scylla.tls=true")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("scylla.tls-cert-file and scylla.tls-key-file go together")
	}
	if c.Username == "" && c.Password != "" {
		bad("%s is set but %s is not", EnvPassword, EnvUsername)
	}
	return errors.Join(errs...)
}

// checkHost accepts host or host:port with a valid port ([v6]:port for
// IPv6 addresses).
func checkHost(h string) error {
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		var ae *net.AddrError
		if !errors.As(err, &ae) || ae.Err != "missing port in address" {
			return fmt.Errorf("%q: %w", h, err)
		}
		host, port = h, "" // no port: the driver uses 9042
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", h)
	}
	if port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q: bad port", h)
		}
	}
	return nil
}

// withEnvCredentials fills Username and Password from getenv when Username
// is empty.
func (c Config) withEnvCredentials(getenv func(string) string) Config {
	if c.Username == "" {
		c.Username = getenv(EnvUsername)
		c.Password = Secret(getenv(EnvPassword))
	}
	return c
}

// parseConsistency maps a CQL consistency name to the driver's level. Serial
// levels are not accepted: they only apply to lightweight transactions, which
// use LOCAL_SERIAL.
func parseConsistency(s string) (gocql.Consistency, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "ONE":
		return gocql.One, nil
	case "TWO":
		return gocql.Two, nil
	case "THREE":
		return gocql.Three, nil
	case "QUORUM":
		return gocql.Quorum, nil
	case "ALL":
		return gocql.All, nil
	case "LOCAL_QUORUM":
		return gocql.LocalQuorum, nil
	case "EACH_QUORUM":
		return gocql.EachQuorum, nil
	case "LOCAL_ONE":
		return gocql.LocalOne, nil
	}
	return 0, fmt.Errorf("unknown consistency %q (want ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM or LOCAL_ONE)", s)
}
