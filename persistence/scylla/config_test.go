package scylla

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if len(c.Hosts) != 1 || c.Hosts[0] != DefaultHost || c.Keyspace != "checkin" || c.Consistency != "LOCAL_QUORUM" ||
		c.ReadConsistency != "LOCAL_QUORUM" || c.ProtoVersion != 4 || !c.AutoMigrate || c.LocalDC != "" {
		t.Fatalf("defaults = %+v", c)
	}
}

// TestFlags: every setting is a scylla.* flag with an env twin.
func TestFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	env := map[string]string{
		"CHECKIN_SCYLLA_HOSTS":        "scylla-1:9042, scylla-2:9042,scylla-3:9042",
		"CHECKIN_SCYLLA_LOCAL_DC":     "dc1",
		"CHECKIN_SCYLLA_REPLICATION":  "{'class': 'NetworkTopologyStrategy', 'dc1': 3}",
		"CHECKIN_SCYLLA_MAX_INFLIGHT": "64",
		"CHECKIN_SCYLLA_AUTO_MIGRATE": "false",
	}
	args := []string{"--scylla.consistency=QUORUM", "--scylla.timeout=2s"}
	if err := parseWithEnv(fs, args, env); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Hosts, ",") != "scylla-1:9042,scylla-2:9042,scylla-3:9042" || c.LocalDC != "dc1" ||
		c.Replication != env["CHECKIN_SCYLLA_REPLICATION"] || c.MaxInflight != 64 || c.AutoMigrate ||
		c.Consistency != "QUORUM" || c.Timeout != 2*time.Second {
		t.Fatalf("parsed config = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "scylla.") {
			t.Errorf("flag %s lacks the scylla. prefix", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("flag %s has no usage text", f.Name)
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; empty: valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"host without port", func(c *Config) { c.Hosts = []string{"scylla-1"} }, ""},
		{"ipv6 host", func(c *Config) { c.Hosts = []string{"[::1]:9042"} }, ""},
		{"no hosts", func(c *Config) { c.Hosts = nil }, "scylla.hosts"},
		{"bad port", func(c *Config) { c.Hosts = []string{"h:99999"} }, "bad port"},
		{"empty host", func(c *Config) { c.Hosts = []string{":9042"} }, "empty host"},
		{"keyspace with a dash", func(c *Config) { c.Keyspace = "check-in" }, "scylla.keyspace"},
		{"keyspace injection", func(c *Config) { c.Keyspace = "x; DROP KEYSPACE y" }, "scylla.keyspace"},
		// CQL folds an unquoted name to lower case and the driver quotes
		// it: a session on "Checkin" never starts.
		{"keyspace with upper case", func(c *Config) { c.Keyspace = "Checkin" }, "scylla.keyspace"},
		{"replication not a map", func(c *Config) { c.Replication = "3" }, "scylla.replication"},
		{"unknown consistency", func(c *Config) { c.Consistency = "MOST" }, "scylla.consistency"},
		{"serial read consistency", func(c *Config) { c.ReadConsistency = "SERIAL" }, "scylla.read-consistency"},
		{"lower-case consistency", func(c *Config) { c.Consistency = "local_one" }, ""},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "scylla.timeout"},
		{"zero connect timeout", func(c *Config) { c.ConnectTimeout = 0 }, "scylla.connect-timeout"},
		{"no connections", func(c *Config) { c.NumConns = 0 }, "scylla.num-conns"},
		{"no inflight", func(c *Config) { c.MaxInflight = 0 }, "scylla.max-inflight"},
		{"negative retries", func(c *Config) { c.Retries = -1 }, "scylla.retries"},
		{"protocol 2", func(c *Config) { c.ProtoVersion = 2 }, "scylla.proto-version"},
		{"protocol 5", func(c *Config) { c.ProtoVersion = 5 }, ""},
		{"password without user", func(c *Config) { c.Password = "x" }, EnvUsername},
		{"tls", func(c *Config) { c.TLS = true }, ""},
		{"tls with an authority and a client certificate", func(c *Config) {
			c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = true, "ca.pem", "client.pem", "client-key.pem"
		}, ""},
		{"an authority without tls", func(c *Config) { c.TLSCAFile = "ca.pem" }, "scylla.tls=true"},
		{"a client certificate without its key", func(c *Config) { c.TLS, c.TLSCertFile = true, "client.pem" }, "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

// TestCredentials: credentials come from the environment only and never
// print.
func TestCredentials(t *testing.T) {
	const password = "hunter2-very-secret"
	env := map[string]string{EnvUsername: "app", EnvPassword: password}
	c := DefaultConfig().withEnvCredentials(func(k string) string { return env[k] })
	if c.Username != "app" || string(c.Password) != password {
		t.Fatalf("credentials not read from env: %q", c.Username)
	}
	set := Config{Username: "explicit"}.withEnvCredentials(func(k string) string { return env[k] })
	if set.Username != "explicit" || set.Password != "" {
		t.Fatal("env overrode credentials set in the config")
	}

	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("config", zap.Any("config", c), zap.Stringer("password", c.Password))
	j, _ := json.Marshal(c)
	outputs := []string{
		fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v %s %q", c.Password, c.Password, c.Password), string(j),
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			enc := zapcore.NewMapObjectEncoder()
			f.AddTo(enc)
			outputs = append(outputs, fmt.Sprint(enc.Fields))
		}
	}
	for _, out := range outputs {
		if strings.Contains(out, password) {
			t.Fatalf("password printed: %s", out)
		}
	}
	var fs flag.FlagSet
	c.RegisterFlags(&fs)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "password") || strings.Contains(f.Name, "username") {
			t.Errorf("credential flag %s: credentials must come from the environment only", f.Name)
		}
	})
}

// envName is the env twin of a flag, by the rule of cmd/internal/flagenv
// (which this package cannot import): CHECKIN_ + upper case, '.' and '-'
// become '_'.
func envName(flagName string) string {
	return "CHECKIN_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
}

// parseWithEnv parses args, then sets every flag not on the command line
// from its env twin in env, as cmd/internal/flagenv.Parse does.
func parseWithEnv(fs *flag.FlagSet, args []string, env map[string]string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := env[envName(f.Name)]; ok && !set[f.Name] && err == nil {
			err = fs.Set(f.Name, v)
		}
	})
	return err
}
