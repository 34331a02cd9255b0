package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// config is every setting of one run; each is a flag with an env twin.
type config struct {
	Targets     string // comma-separated base URLs
	AllowRemote bool
	APIKey      string // from CHECKIN_API_KEY only, never a flag; "" sends none
	TLSCAFile   string // PEM certificates to trust for https targets; "": the system's

	Concurrency    int
	Rate           float64 // > 0: open model at this many requests per second
	MaxOutstanding int     // open model: queued + in flight before intended requests are dropped
	Duration       time.Duration
	Requests       int64
	Warmup         time.Duration
	Timeout        time.Duration
	Retries        int           // measured phase: attempts after the first, for retryable failures
	RetryMaxWait   time.Duration // longest Retry-After honoured before a retry
	Eject          time.Duration // skip a target this long after a connection error or a timeout on it (0: never)
	HealthCheck    time.Duration // ask each target's /readyz this often and skip it while not 200 (0: never)
	SourceAddrs    string        // comma-separated local IP addresses connections are made from, in turn; "": the system's choice

	MixCheckin       float64
	MixLocation      float64
	MixRange         float64
	MixRangeLocation float64
	MixGet           float64
	MixDelete        float64
	RangeWindow      time.Duration
	RangeLimit       int

	Users      int
	Locations  int
	Popularity string // uniform | zipf
	ZipfS      float64
	ZipfV      float64
	IDPrefix   string
	RunID      string
	Seed       uint64

	Setup            bool
	SetupConcurrency int
	SetupCheckins    int

	Replay       string
	Venues       string
	ReplaySpeed  float64
	ReplayPrefix string

	Verify           bool
	JSON             bool
	Progress         bool
	ProgressInterval time.Duration
}

func defaultConfig() config {
	return config{
		Targets: "http://127.0.0.1:8080", Concurrency: 64, MaxOutstanding: 10000, Duration: 10 * time.Second,
		Timeout: 10 * time.Second, RetryMaxWait: time.Second, MixCheckin: 1, RangeWindow: 24 * time.Hour, RangeLimit: 50,
		Users: 10000, Locations: 1000, Popularity: "uniform", ZipfS: 1.1, ZipfV: 1, IDPrefix: "load",
		Seed: 1, Setup: true, SetupConcurrency: 32, SetupCheckins: 1, Progress: true, ProgressInterval: time.Second,
	}
}

// register binds every setting to a flag of fs.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Targets, "targets", c.Targets, "comma-separated base URLs of the nodes; requests go round-robin")
	fs.BoolVar(&c.AllowRemote, "allow-remote", c.AllowRemote, "allow targets that are not loopback addresses")
	fs.StringVar(&c.TLSCAFile, "tls.ca-file", c.TLSCAFile, "PEM certificates to trust for https:// targets, e.g. a node's self-signed one (empty: the system's roots)")

	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "connections and workers (closed model: requests in flight; open model: at most this many in flight)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "open model: requests per second started on schedule whatever the answers (0: closed model)")
	fs.IntVar(&c.MaxOutstanding, "max-outstanding", c.MaxOutstanding, "open model: requests queued or in flight at most; an intended request beyond it is dropped and counted")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to send requests (0: until --requests are done)")
	fs.Int64Var(&c.Requests, "requests", c.Requests, "stop after this many requests (0: no count limit)")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "run the workload this long before measuring (not in the report)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "timeout of one request")
	fs.IntVar(&c.Retries, "retries", c.Retries, "send a request again, up to this many times, when it got no answer or 429, 503 or 504, as a client would: to the next target, with the same body (a checkin keeps its id); latency covers every attempt; none once --duration is over (0: never)")
	fs.DurationVar(&c.RetryMaxWait, "retry.max-wait", c.RetryMaxWait, "wait before a retry at most this long: an answer's Retry-After, capped (a request without an answer is retried at once)")
	fs.StringVar(&c.SourceAddrs, "source-addrs", c.SourceAddrs, "comma-separated local IP addresses to connect from, one after another per new connection, so that a node that counts clients by address (rate limits, http.max-conns-per-ip) sees that many clients; on Linux every 127.x.y.z is a loopback address (empty: the system's choice)")
	fs.DurationVar(&c.Eject, "eject", c.Eject, "with several targets, send nothing to a target for this long after a connection error or a timeout on it, as a load balancer ejects a dead or hung node (0: never)")
	fs.DurationVar(&c.HealthCheck, "health-check", c.HealthCheck, "with several targets, ask each target's /readyz this often and send it nothing while it does not answer 200, as a load balancer's health check does (0: never)")

	fs.Float64Var(&c.MixCheckin, "mix.checkin", c.MixCheckin, "weight of checkin writes (POST /v1/users/{id}/checkins)")
	fs.Float64Var(&c.MixLocation, "mix.location", c.MixLocation, "weight of current-location reads (GET /v1/users/{id}/location)")
	fs.Float64Var(&c.MixRange, "mix.range", c.MixRange, "weight of range reads (GET /v1/users/{id}/checkins?from=...)")
	fs.Float64Var(&c.MixRangeLocation, "mix.range-location", c.MixRangeLocation, "weight of range reads at one location (…&location_id=...)")
	fs.Float64Var(&c.MixGet, "mix.get", c.MixGet, "weight of reads of one checkin by id (GET /v1/users/{id}/checkins/{checkin_id}), one of the user's setup checkins")
	fs.Float64Var(&c.MixDelete, "mix.delete", c.MixDelete, "weight of checkin deletes (DELETE /v1/users/{id}/checkins/{checkin_id}): each deletes the oldest checkin its connection wrote in this run and has not deleted yet (a connection with none writes one instead); --verify then checks that deleted checkins stay gone")
	fs.DurationVar(&c.RangeWindow, "range.window", c.RangeWindow, "range reads ask for checkins of the last window")
	fs.IntVar(&c.RangeLimit, "range.limit", c.RangeLimit, "page size of range reads (1-1000)")

	fs.IntVar(&c.Users, "users", c.Users, "synthetic users (ids <id-prefix>-u<n>)")
	fs.IntVar(&c.Locations, "locations", c.Locations, "synthetic locations (ids <id-prefix>-l<n>)")
	fs.StringVar(&c.Popularity, "popularity", c.Popularity, "how users are picked: uniform or zipf")
	fs.Float64Var(&c.ZipfS, "zipf.s", c.ZipfS, "Zipf exponent s (> 1): P(rank k) ∝ (v+k)^-s")
	fs.Float64Var(&c.ZipfV, "zipf.v", c.ZipfV, "Zipf offset v (>= 1)")
	fs.StringVar(&c.IDPrefix, "id-prefix", c.IDPrefix, "prefix of synthetic user, location and checkin ids")
	fs.StringVar(&c.RunID, "run-id", c.RunID, "part of every checkin id this run makes (default: random)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the random choices (users, locations, operations)")

	fs.BoolVar(&c.Setup, "setup", c.Setup, "create the users and locations first (409 on existing ones is fine)")
	fs.IntVar(&c.SetupConcurrency, "setup.concurrency", c.SetupConcurrency, "requests in flight during setup")
	fs.IntVar(&c.SetupCheckins, "setup.checkins", c.SetupCheckins, "synthetic: checkins per user made in setup (a minute ago, ids of this run), so reads find data")

	fs.StringVar(&c.Replay, "replay", c.Replay, "replay this Gowalla-format check-in file (TSV: user, time, lat, lon, location) instead of the synthetic mix")
	fs.StringVar(&c.Venues, "venues", c.Venues, "replay: TSV of location id, venue name, lat, lon; names the created locations")
	fs.Float64Var(&c.ReplaySpeed, "replay-speed", c.ReplaySpeed, "replay: 0 as fast as possible (closed model), else this many times real time (open model)")
	fs.StringVar(&c.ReplayPrefix, "replay.id-prefix", c.ReplayPrefix, "replay: prefix added to the file's user and location ids")

	fs.BoolVar(&c.Verify, "verify", c.Verify, "read every acknowledged checkin back at the end; exit 3 if any is lost")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the report as JSON on stdout")
	fs.BoolVar(&c.Progress, "progress", c.Progress, "print a progress line on stderr every --progress.interval")
	fs.DurationVar(&c.ProgressInterval, "progress.interval", c.ProgressInterval, "time between progress lines")
}

// targetURLs returns the parsed base URLs.
func (c config) targetURLs() ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(c.Targets, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("targets: %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("targets: %q is not an http(s) base URL such as http://127.0.0.1:8080", s)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("targets: at least one base URL is needed")
	}
	return out, nil
}

// sourceIPs parses --source-addrs.
func (c config) sourceIPs() ([]net.IP, error) {
	if c.SourceAddrs == "" {
		return nil, nil
	}
	var out []net.IP
	for _, s := range strings.Split(c.SourceAddrs, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("source-addrs: %q is not an IP address", strings.TrimSpace(s))
		}
		out = append(out, ip)
	}
	return out, nil
}

func (c config) replaying() bool { return c.Replay != "" }

// openModel reports whether requests are started on a schedule.
func (c config) openModel() bool { return c.Rate > 0 || c.replaying() && c.ReplaySpeed > 0 }

func (c config) validate() error {
	us, err := c.targetURLs()
	if err != nil {
		return err
	}
	if _, err := c.sourceIPs(); err != nil {
		return err
	}
	if !c.AllowRemote {
		for _, u := range us {
			if err := checkLoopback(u.Hostname()); err != nil {
				return err
			}
		}
	}
	// NaN and the infinities pass every comparison below (and a NaN or
	// infinite Zipf parameter makes math/rand's Zipf loop for ever).
	for _, f := range []struct {
		name string
		v    float64
	}{{"rate", c.Rate}, {"replay-speed", c.ReplaySpeed}, {"zipf.s", c.ZipfS}, {"zipf.v", c.ZipfV},
		{"mix.checkin", c.MixCheckin}, {"mix.location", c.MixLocation}, {"mix.range", c.MixRange},
		{"mix.range-location", c.MixRangeLocation}, {"mix.get", c.MixGet}, {"mix.delete", c.MixDelete}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s must be a finite number, not %v", f.name, f.v)
		}
	}
	switch {
	case c.Concurrency < 1:
		return errors.New("concurrency must be at least 1")
	case c.Rate < 0:
		return errors.New("rate must not be negative")
	case c.MaxOutstanding < 1:
		return errors.New("max-outstanding must be at least 1")
	case c.Duration < 0 || c.Requests < 0 || c.Warmup < 0:
		return errors.New("duration, requests and warmup must not be negative")
	case !c.replaying() && c.Duration == 0 && c.Requests == 0:
		return errors.New("set --duration or --requests, so the run ends")
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.Retries < 0 || c.Retries > 100:
		return errors.New("retries must be 0 to 100")
	case c.RetryMaxWait < 0 || c.Eject < 0 || c.HealthCheck < 0:
		return errors.New("retry.max-wait, eject and health-check must not be negative")
	case c.RangeLimit < 1 || c.RangeLimit > 1000:
		return errors.New("range.limit must be 1 to 1000")
	case c.RangeWindow <= 0:
		return errors.New("range.window must be positive")
	case c.SetupConcurrency < 1:
		return errors.New("setup.concurrency must be at least 1")
	case c.SetupCheckins < 0:
		return errors.New("setup.checkins must not be negative")
	case c.ProgressInterval <= 0:
		return errors.New("progress.interval must be positive")
	case c.ReplaySpeed < 0:
		return errors.New("replay-speed must not be negative")
	case c.Venues != "" && !c.replaying():
		return errors.New("venues needs --replay")
	case c.replaying() && c.Rate > 0 && c.ReplaySpeed > 0:
		return errors.New("replay: set --rate or --replay-speed, not both")
	case c.replaying() && c.Warmup > 0:
		return errors.New("replay: --warmup would replay rows unmeasured; leave it out")
	}
	if !validID(c.IDPrefix) || len(c.IDPrefix) > 20 {
		return errors.New("id-prefix must be 1 to 20 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	if c.RunID != "" && (!validID(c.RunID) || len(c.RunID) > 16) {
		return errors.New("run-id must be 1 to 16 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	if c.ReplayPrefix != "" && (!validID(c.ReplayPrefix) || len(c.ReplayPrefix) > 20) {
		return errors.New("replay.id-prefix must be up to 20 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	for _, f := range []struct{ flag, path string }{{"replay", c.Replay}, {"venues", c.Venues}, {"tls.ca-file", c.TLSCAFile}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		} else if st.IsDir() { // a pipe is fine: each is read once, start to end
			return fmt.Errorf("%s: %s is a directory", f.flag, f.path)
		}
	}
	if c.replaying() {
		return nil
	}
	switch {
	case c.Users < 1 || c.Locations < 1:
		return errors.New("users and locations must be at least 1")
	case c.MixCheckin < 0 || c.MixLocation < 0 || c.MixRange < 0 || c.MixRangeLocation < 0 || c.MixGet < 0 || c.MixDelete < 0:
		return errors.New("mix weights must not be negative")
	case c.MixCheckin+c.MixLocation+c.MixRange+c.MixRangeLocation+c.MixGet+c.MixDelete == 0:
		return errors.New("at least one mix weight must be positive")
	case c.MixGet > 0 && (c.SetupCheckins < 1 || !c.Setup && c.RunID == ""):
		return errors.New("mix.get reads the checkins a setup made: keep --setup.checkins at 1 or more, and --setup, or name with --run-id the run whose setup made them")
	}
	switch c.Popularity {
	case "uniform":
	case "zipf":
		if c.ZipfS <= 1 || c.ZipfV < 1 {
			return errors.New("zipf needs zipf.s > 1 and zipf.v >= 1")
		}
	default:
		return fmt.Errorf("popularity: %q is not uniform or zipf", c.Popularity)
	}
	return nil
}

// checkLoopback refuses hosts that are not loopback addresses, so a load
// run is never pointed at another machine by accident.
func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		var err error
		if ips, err = net.LookupIP(host); err != nil {
			return fmt.Errorf("targets: resolve %s: %w", host, err)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("targets: %s is not a loopback address; pass --allow-remote to load another machine", host)
		}
	}
	return nil
}

// validID reports whether id is 1–64 characters of [A-Za-z0-9_-] (the API's
// id rule).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
