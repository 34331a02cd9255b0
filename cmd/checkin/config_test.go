package main

import (
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/cmd/internal/flagenv"
)

// The README's configuration table is the user's manual: every flag must be
// in it with its environment twin.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("checkin", flag.ContinueOnError)
	cfg.register(fs)
	fs.VisitAll(func(f *flag.Flag) {
		row := "| `--" + f.Name + "` | `" + flagenv.EnvName(f.Name) + "` |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no configuration row starting %s", row)
		}
	})
}

func TestDefaultConfigIsValid(t *testing.T) {
	if err := defaultConfig().validate(); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidConfigNamesTheFlag(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config)
		want   string
	}{
		{"no writers", func(c *config) { c.Writer.Writers = -1 }, "writer.count"},
		{"unknown store", func(c *config) { c.Store = "mysql" }, "store"},
		{"bad log level", func(c *config) { c.LogLevel = "loud" }, "log.level"},
		{"bad http addr", func(c *config) { c.HTTP.Addr = "8080" }, "http.addr"},
		{"bad cluster provider", func(c *config) { c.Cluster.Provider = "zk" }, "cluster.provider"},
		{"etcd on the embedded store", func(c *config) { c.Cluster.Provider = "etcd" }, "store=scylla"},
		{"etcd without endpoints", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.AdvertisedAddr, c.Cluster.Etcd.Endpoints = "scylla", "etcd", "10.0.0.1:7946", nil
		}, "cluster.etcd-endpoints"},
		{"etcd with an unreachable advertised address", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.Addr = "scylla", "etcd", "0.0.0.0:7946"
		}, "cluster.advertised-addr"},
		{"etcd advertising port 0", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.AdvertisedAddr = "scylla", "etcd", "10.0.0.5:0"
		}, "cluster.advertised-addr"},
		{"etcd advertising an unspecified IPv6 address", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.AdvertisedAddr = "scylla", "etcd", "[0:0:0:0:0:0:0:0]:7946"
		}, "cluster.advertised-addr"},
		{"etcd prefix not a path", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.Etcd.Prefix = "scylla", "etcd", "checkin"
		}, "cluster.etcd-prefix"},
		{"etcd lease shorter than etcd renews", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.Etcd.LeaseTTL = "scylla", "etcd", time.Second
		}, "cluster.etcd-lease-ttl"},
		{"etcd lease not in whole seconds", func(c *config) {
			c.Store, c.Cluster.Provider, c.Cluster.Etcd.LeaseTTL = "scylla", "etcd", 2500*time.Millisecond
		}, "cluster.etcd-lease-ttl"},
		{"cluster name with a dot", func(c *config) { c.Cluster.Name = "checkin.silent" }, "cluster.name"},
		{"cluster name with a slash", func(c *config) { c.Cluster.Name = "a/b" }, "cluster.name"},
		{"tiny pid cache", func(c *config) { c.Cluster.PIDCacheSize = 1 }, "cluster.pid-cache-size"},
		{"negative evict-silent-after", func(c *config) { c.Cluster.EvictSilentAfter = -time.Second }, "cluster.evict-silent-after"},
		{"zero idle timeout", func(c *config) { c.Grain.IdleTimeout = 0 }, "grain.idle-timeout"},
		{"negative known ids", func(c *config) { c.Grain.KnownIDs = -1 }, "grain.known-ids"},
		{"no block cache", func(c *config) { c.PebbleCacheMB = 0 }, "pebble.cache-size-mb"},
		{"huge memtable", func(c *config) { c.PebbleMemTableMB = 4096 }, "pebble.memtable-size-mb"},
		{"stuck limit below a slow sync", func(c *config) { c.PebbleStuckAfter = 200 * time.Millisecond }, "pebble.stuck-after"},
		{"backup of the Scylla store", func(c *config) { c.Store, c.DebugAddr, c.BackupDir = "scylla", "127.0.0.1:6060", "/backups" }, "backup.dir"},
		{"backup without the debug server", func(c *config) { c.BackupDir = "/backups" }, "debug.addr"},
		{"negative store latency target", func(c *config) { c.StoreLatencyTarget = -time.Millisecond }, "http.store-latency-target"},
		{"negative request latency target", func(c *config) { c.HTTP.LatencyTarget = -time.Millisecond }, "http.latency-target"},
		{"negative drain delay", func(c *config) { c.DrainDelay = -time.Second }, "http.drain-delay"},
		{"TLS certificate without its key", func(c *config) { c.TLSCertFile = "/etc/checkin/cert.pem" }, "http.tls-key-file"},
		{"no connections", func(c *config) { c.HTTP.MaxConns = 0 }, "http.max-conns"},
		{"negative connections per address", func(c *config) { c.HTTP.MaxConnsPerIP = -1 }, "http.max-conns-per-ip"},
		{"unknown rate scope", func(c *config) { c.HTTP.RateScope = "region" }, "http.rate-scope"},
		{"negative member timeouts", func(c *config) { c.Breaker.Timeouts = -1 }, "grain.member-timeouts"},
		{"no member pause", func(c *config) { c.Breaker.Pause = 0 }, "grain.member-pause"},
		{"no idle time", func(c *config) { c.HTTP.IdleTimeout = 0 }, "http.idle-timeout"},
		{"negative rate limit", func(c *config) { c.HTTP.RateLimit = -1 }, "http.rate-limit"},
		{"negative rate burst", func(c *config) { c.HTTP.RateBurst = -1 }, "http.rate-burst"},
		{"proxy header without trusted proxies", func(c *config) { c.HTTP.ProxyHeader = "X-Real-IP" }, "http.trusted-proxies"},
		{"trusted proxies without a header", func(c *config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/8"} }, "http.proxy-header"},
		{"trusted proxy not an address", func(c *config) {
			c.HTTP.ProxyHeader, c.HTTP.TrustedProxies = "X-Real-IP", []string{"lb.internal"}
		}, "http.trusted-proxies"},
		{"cluster TLS without its authority", func(c *config) { c.PeerCertFile, c.PeerKeyFile = "c.pem", "k.pem" }, "cluster.tls-ca-file"},
		{"etcd TLS files without etcd TLS", func(c *config) { c.EtcdCAFile = "ca.pem" }, "cluster.etcd-tls=true"},
		{"etcd client certificate without its key", func(c *config) { c.EtcdTLS, c.EtcdCertFile = true, "c.pem" }, "cluster.etcd-tls-key-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultConfig()
			tc.mutate(&c)
			err := c.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
