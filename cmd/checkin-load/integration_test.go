package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/checkin/checkin/cmd/internal/testcert"
)

// startCheckin builds cmd/checkin, starts it on a free loopback port with a
// fresh data dir and env added to its environment, and returns its base
// URL. The node is stopped (SIGTERM, then kill) when the test ends.
func startCheckin(t *testing.T, env ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts the checkin binary")
	}
	bin := buildCheckin(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--http.addr=127.0.0.1:0", "--data.dir="+filepath.Join(dir, "data"), "--http.access-log=false")
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	addrc := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "http server listening" {
				addrc <- line.Addr
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() { <-drained; exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("checkin exited with %v\n%s", err, logs.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("checkin did not stop within 20s of SIGTERM\n%s", logs.String())
		}
	})
	select {
	case addr := <-addrc:
		return "http://" + addr
	case <-drained:
		t.Fatalf("checkin exited before listening\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("checkin did not log its address within 20s\n%s", logs.String())
	}
	return ""
}

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	buildErr  error
)

// buildCheckin builds cmd/checkin once per test binary.
func buildCheckin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "checkin-load-test-"); buildErr != nil {
			return
		}
		args := []string{"build", "-o", filepath.Join(binDir, "checkin")}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/checkin/checkin/cmd/checkin")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/checkin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "checkin")
}

// nodeTimeout is the request timeout of the runners these tests drive
// against the node: the default --timeout, as a setup's synced writes (a
// user, a location) can take more than a second on a loaded machine.
const nodeTimeout = 10 * time.Second

// cleanEnv is the environment without CHECKIN_ variables, so a developer's
// settings do not leak into the node under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHECKIN_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestAgainstCheckin drives the real binary: a short mixed closed-model
// run, a short open-model run and a replay of the testdata excerpt, all
// with --verify. Nothing acknowledged may be lost, nothing may fail. Then
// --verify must notice a checkin that was acknowledged but never stored.
func TestAgainstCheckin(t *testing.T) {
	base := startCheckin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	synthetic := func(mut func(*config)) config {
		cfg := defaultConfig()
		cfg.Targets = base
		cfg.Duration = 2 * time.Second
		cfg.Concurrency = 8
		cfg.Users, cfg.Locations = 40, 10
		cfg.MixCheckin, cfg.MixLocation, cfg.MixRange, cfg.MixRangeLocation, cfg.MixGet, cfg.MixDelete = 2, 1, 0.5, 0.5, 0.5, 0.5
		cfg.Popularity = "zipf"
		cfg.Verify = true
		cfg.ProgressInterval = 500 * time.Millisecond
		mut(&cfg)
		return cfg
	}
	replay := defaultConfig()
	replay.Targets = base
	replay.Replay = "testdata/gowalla_nyc_excerpt.tsv"
	replay.Venues = "testdata/venues_excerpt.tsv"
	replay.Duration = 0
	replay.Concurrency = 4
	replay.Verify = true

	for _, tc := range []struct {
		name string
		cfg  config
		json bool
		// checks beyond "nothing lost, no errors"
		check func(t *testing.T, rep *Report)
	}{
		{"closed mix", synthetic(func(*config) {}), false, func(t *testing.T, rep *Report) {
			for _, name := range opNames {
				if rep.Ops[name] == nil || rep.Ops[name].OK == 0 {
					t.Errorf("no successful %s requests", name)
				}
			}
			if d := rep.Ops[opDelete.String()]; d.StatusCodes["204"] != d.Requests || rep.Verify.Deleted != int(d.Requests) || rep.Verify.Resurrected != 0 {
				t.Errorf("deletes: %+v, verify %+v; want every one answered 204, and checked gone", d, rep.Verify)
			}
		}},
		{"open model", synthetic(func(c *config) {
			c.Rate, c.Duration, c.Setup, c.RunID = 200, time.Second, true, "open1"
		}), true, func(t *testing.T, rep *Report) {
			if rep.Open == nil || rep.Open.Intended != 200 || rep.Open.Queued+rep.Open.Dropped != 200 {
				t.Errorf("open accounting %+v, want 200 intended", rep.Open)
			}
		}},
		{"replay", replay, false, func(t *testing.T, rep *Report) {
			if rep.Requests != 50 || rep.Replay.Created != 49 || rep.Replay.Existing != 1 {
				t.Errorf("replay: %d requests, created %d, existing %d; want 50, 49, 1 (one duplicate row)",
					rep.Requests, rep.Replay.Created, rep.Replay.Existing)
			}
			if rep.Verify.Acknowledged != 49 || rep.Setup.Users != 2 || rep.Setup.Locations != 46 {
				t.Errorf("verify %+v, setup %+v", rep.Verify, rep.Setup)
			}
		}},
		{"replay again is idempotent", replay, false, func(t *testing.T, rep *Report) {
			if rep.Replay.Created != 0 || rep.Replay.Existing != 50 || rep.Setup.Existing != 48 {
				t.Errorf("second replay: created %d, existing %d, setup %+v; want everything already there",
					rep.Replay.Created, rep.Replay.Existing, rep.Setup)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.JSON = tc.json
			var stdout, stderr bytes.Buffer
			rep, err := run(ctx, tc.cfg, &stdout, &stderr)
			if err != nil {
				t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			t.Logf("report:\n%s", stdout.String())
			if tc.json {
				var decoded Report
				if err := json.NewDecoder(io.Reader(&stdout)).Decode(&decoded); err != nil || decoded.Requests != rep.Requests {
					t.Errorf("--json output does not decode to the report: %v", err)
				}
			}
			if rep.Requests == 0 || rep.Errors != 0 || rep.Count5xx() != 0 {
				t.Errorf("requests %d, errors %d, 5xx %d: %v", rep.Requests, rep.Errors, rep.Count5xx(), rep.ErrorKinds)
			}
			if v := rep.Verify; v == nil || v.Lost != 0 || v.Mismatched != 0 || v.StaleCurrent != 0 || v.UnverifiedUsers != 0 || v.Found != v.Acknowledged || v.Found == 0 {
				t.Errorf("verify: %+v", rep.Verify)
			}
			tc.check(t, rep)
		})
	}
	t.Run("a run named after an earlier one", func(t *testing.T) { runNamedAfterAnEarlierOne(t, ctx, base) })
	t.Run("verify of a run after another on the same users", func(t *testing.T) { verifyAfterAnEarlierRun(t, ctx, base) })
	t.Run("verify catches a lost checkin", func(t *testing.T) { verifyCatchesLoss(t, base) })
	t.Run("verify catches a deleted checkin that is back", func(t *testing.T) { verifyCatchesResurrection(t, base) })
	t.Run("verify catches a checkin not found by id", func(t *testing.T) { verifyCatchesNotByID(t, base) })
	t.Run("verify reads past a target that is down", func(t *testing.T) { verifyPastDeadTarget(t, base) })
	t.Run("retries and ejection past a target that is down", func(t *testing.T) { retriesPastDeadTarget(t, ctx, base) })
}

// TestSourceAddrsAgainstARateLimit: against a node that limits each client
// address to 5 requests a second (burst 5), a 2 s run from one address is
// held to about 15 answers and refused the rest with 429; the same run
// from four loopback addresses (--source-addrs, one per connection) is four
// clients to the node and gets about four times as many answered.
func TestSourceAddrsAgainstARateLimit(t *testing.T) {
	base := startCheckin(t, "CHECKIN_HTTP_RATE_LIMIT=5", "CHECKIN_HTTP_RATE_BURST=5")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	answered := func(source string) int64 {
		t.Helper()
		cfg := defaultConfig()
		cfg.Targets, cfg.SourceAddrs = base, source
		cfg.Duration, cfg.Concurrency, cfg.Setup = 2*time.Second, 4, false
		cfg.MixCheckin, cfg.MixLocation, cfg.MixRange, cfg.MixRangeLocation = 0, 1, 0, 0
		var stdout, stderr bytes.Buffer
		rep, err := run(ctx, cfg, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		if rep.StatusCodes["429"] == 0 {
			t.Fatalf("from %q no request was refused with 429: %v", source, rep.StatusCodes)
		}
		return rep.Requests - rep.StatusCodes["429"]
	}
	one := answered("127.0.0.1")
	four := answered("127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5")
	t.Logf("answered in the measured 2 s: %d from one address, %d from four", one, four)
	// One address: the burst and 5 a second, about 5 + 5 * 2 s (margin
	// for the run's ends).
	if one > 20 {
		t.Errorf("from one address %d requests answered, want at most about 15 (the node's limit)", one)
	}
	if four <= 20 {
		t.Errorf("from four addresses %d requests answered, want more than one address's limit (about 4 x 15)", four)
	}
}

// TestAgainstCheckinWithAPIKeyOverTLS: against a node that requires API
// keys and serves HTTPS with a self-signed certificate, a run with the key
// from CHECKIN_API_KEY and the certificate as --tls.ca-file sends both on
// every request (setup, run and read-back); without the key every request
// is refused, and without the certificate none gets through the handshake.
func TestAgainstCheckinWithAPIKeyOverTLS(t *testing.T) {
	const key = "load-test-key-0123456789"
	certFile, keyFile, err := testcert.Write(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	base := startCheckin(t, "CHECKIN_HTTP_API_KEYS="+key, "CHECKIN_HTTP_TLS_CERT_FILE="+certFile, "CHECKIN_HTTP_TLS_KEY_FILE="+keyFile)
	base = "https://" + strings.TrimPrefix(base, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := parseConfig([]string{"--targets=" + base, "--tls.ca-file=" + certFile, "--duration=1s", "--warmup=0s", "--concurrency=4",
		"--users=10", "--locations=5", "--mix.checkin=1", "--mix.location=1", "--mix.range=1", "--mix.range-location=1", "--verify", "--progress=false"},
		func(name string) string {
			if name == envAPIKey {
				return key
			}
			return ""
		}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := run(ctx, cfg, &out, io.Discard)
	if err != nil {
		t.Fatalf("run with the key: %v\n%s", err, out.String())
	}
	if rep.Requests == 0 || rep.Errors != 0 || rep.Verify == nil || rep.Verify.Found == 0 || rep.Verify.Lost != 0 {
		t.Errorf("with the key: %d requests, %d errors %v, verify %+v", rep.Requests, rep.Errors, rep.ErrorKinds, rep.Verify)
	}
	if strings.Contains(out.String(), key) {
		t.Error("the report prints the API key")
	}

	noKey := cfg
	noKey.APIKey, noKey.Setup, noKey.Verify = "", false, false
	rep, err = run(ctx, noKey, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("run without the key: %v", err)
	}
	if rep.Requests == 0 || rep.Errors != rep.Requests || rep.ErrorKinds["401:unauthorized"] != rep.Requests {
		t.Errorf("without the key: %d requests, %d errors %v; want all 401:unauthorized", rep.Requests, rep.Errors, rep.ErrorKinds)
	}

	untrusted := cfg
	untrusted.TLSCAFile, untrusted.Setup, untrusted.Verify = "", false, false
	rep, err = run(ctx, untrusted, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("run without the certificate: %v", err)
	}
	if rep.Requests == 0 || rep.ErrorKinds[kindConnection] != rep.Requests {
		t.Errorf("without the certificate: %d requests, errors %v; want every one a connection error", rep.Requests, rep.ErrorKinds)
	}
}

// verifyPastDeadTarget: with targets refusing connections (nodes killed by
// a fault test), every acknowledged checkin is still read back through the
// one that answers.
// refusedTarget returns the base URL of a loopback port nothing listens
// on: connections to it are refused.
func refusedTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // connections to it are refused from now on
	return "http://" + ln.Addr().String()
}

// retriesPastDeadTarget runs the load against a dead target beside the
// node, as a load test whose node was killed: without retries the dead
// target's share fails; with retries and ejection every request is
// answered, the dead target is ejected, and nothing acknowledged is lost.
func retriesPastDeadTarget(t *testing.T, ctx context.Context, base string) {
	dead := refusedTarget(t)
	cfg := defaultConfig()
	cfg.Targets = dead + "," + base
	cfg.Duration, cfg.Concurrency = time.Second, 4
	cfg.Users, cfg.Locations = 20, 5
	cfg.IDPrefix, cfg.Progress, cfg.Verify = "retry", false, true
	var out bytes.Buffer
	rep, err := run(ctx, cfg, &out, io.Discard)
	if err != nil {
		t.Fatalf("run without retries: %v\n%s", err, out.String())
	}
	if rep.ErrorKinds[kindConnection] == 0 || rep.Retries != 0 || len(rep.Ejections) != 0 {
		t.Fatalf("without retries: errors %v, retries %d, ejections %v; want the dead target's share failed", rep.ErrorKinds, rep.Retries, rep.Ejections)
	}

	// The users exist now; without a setup the measured phase is the
	// first to meet the dead target (a setup would eject it first).
	cfg.Retries, cfg.Eject, cfg.JSON, cfg.Setup = 2, time.Minute, true, false
	out.Reset()
	if rep, err = run(ctx, cfg, &out, io.Discard); err != nil {
		t.Fatalf("run with retries: %v\n%s", err, out.String())
	}
	t.Logf("report:\n%s", out.String())
	if rep.Errors != 0 || rep.OK == 0 {
		t.Errorf("with retries: ok %d, errors %v; want every request answered", rep.OK, rep.ErrorKinds)
	}
	if rep.Retries == 0 || rep.RetriedKinds[kindConnection] != rep.Retries {
		t.Errorf("retries %d after %v; want the dead target's connection errors retried", rep.Retries, rep.RetriedKinds)
	}
	// Ejected for a minute: from its first refusal on, only the other
	// target is asked (each worker may meet it once before that).
	if n := rep.Ejections[dead]; n != 1 || rep.Retries > int64(cfg.Concurrency)+1 {
		t.Errorf("ejections %v, retries %d: want the dead target ejected once and skipped after", rep.Ejections, rep.Retries)
	}
	if v := rep.Verify; v == nil || v.Lost != 0 || v.StaleCurrent != 0 || v.Found != v.Acknowledged || v.Found == 0 {
		t.Errorf("verify: %+v", rep.Verify)
	}
}

func verifyPastDeadTarget(t *testing.T, base string) {
	// Three dead targets of four: a read-back that left target choice to
	// the round-robin could meet them more often than it retries.
	dead, dead2, dead3 := refusedTarget(t), refusedTarget(t), refusedTarget(t)
	cfg := defaultConfig()
	cfg.Targets = dead + "," + dead2 + "," + dead3 + "," + base
	cfg.Users, cfg.Locations, cfg.SetupCheckins = 8, 1, 0
	cfg.Concurrency = 1
	cfg.Progress = false
	cfg.IDPrefix = "dead"
	r := testRunner(t, cfg, nodeTimeout)
	if _, _, err := r.setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	loc := r.syn.locations[0]
	var acks []ack
	for i, user := range r.syn.users {
		id := fmt.Sprintf("dead-%d", i)
		body := fmt.Sprintf(`{"id":%q,"location_id":%q,"timestamp":%q}`, id, loc, now.Format(time.RFC3339Nano))
		res, err := http.Post(base+"/v1/users/"+user+"/checkins", "application/json", strings.NewReader(body))
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("checkin for %s: %v %v", user, res, err)
		}
		res.Body.Close()
		acks = append(acks, ack{User: user, ID: id, Loc: loc, TS: now.UnixMilli()})
	}
	if v := r.verify(context.Background(), acks, outcomes{}); v.Found != len(acks) || v.Lost != 0 || v.UnverifiedUsers != 0 {
		t.Fatalf("verify with a dead target: %+v", v)
	}
}

// verifyCatchesLoss points --verify at an acknowledgement the server never
// stored: it must be reported lost.
func verifyCatchesLoss(t *testing.T, base string) {
	cfg := defaultConfig()
	cfg.Targets = base
	cfg.Users, cfg.Locations, cfg.SetupCheckins = 2, 1, 0
	cfg.Concurrency = 1
	cfg.Progress = false
	r := testRunner(t, cfg, nodeTimeout)
	if _, _, err := r.setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	v := r.verify(context.Background(), []ack{{User: "load-u0", ID: "never-written", Loc: "load-l0", TS: now}}, outcomes{})
	if v.Lost != 1 || v.LostSample[0] != "load-u0/never-written" || v.UnverifiedUsers != 0 {
		t.Fatalf("verify of a checkin that was never written: %+v", v)
	}
	// Nor is it the user's current location: an older checkin of the
	// user's (earlier subtests wrote some), or none.
	if v.StaleCurrent != 1 || !strings.HasSuffix(v.StaleSample[0], " < never-written") && v.StaleSample[0] != "load-u0: no current location" {
		t.Fatalf("verify of the current location of a user whose only acknowledged checkin was never written: %+v", v)
	}
}

// runNamedAfterAnEarlierOne: a run that names an earlier one with
// --run-id reads that run's setup checkins (--mix.get) and writes checkins
// of its own, none answered as the earlier run's (409, or 200 as a
// retry); setting up again under that run's id says why it cannot. The
// setup makes more checkins per user than there are seconds in the five
// minutes the node takes ahead of its clock: none is in the future.
func runNamedAfterAnEarlierOne(t *testing.T, ctx context.Context, base string) {
	cfg := defaultConfig()
	cfg.Targets, cfg.Users, cfg.Locations, cfg.SetupCheckins = base, 3, 2, 400
	cfg.Concurrency, cfg.Progress, cfg.Duration, cfg.Requests = 2, false, 0, 200
	cfg.RunID, cfg.IDPrefix, cfg.Verify = "named1", "named", true
	first, err := run(ctx, cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	cfg.Setup, cfg.MixGet = false, 1
	again, err := run(ctx, cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("the same run id again, without setup: %v", err)
	}
	c, g := again.Ops[opCheckin.String()], again.Ops[opGet.String()]
	if c == nil || c.StatusCodes["201"] != c.Requests || g == nil || g.StatusCodes["200"] != g.Requests || again.Verify.Lost != 0 {
		t.Errorf("the same run id again: checkins %+v, gets %+v, verify %+v; want every checkin 201 and every get 200", c, g, again.Verify)
	}
	if first.Ops[opCheckin.String()].StatusCodes["201"] == 0 {
		t.Errorf("first run wrote nothing: %+v", first.Ops)
	}
	cfg.Setup = true
	if _, err := run(ctx, cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "exist already") ||
		!strings.Contains(err.Error(), `/checkins: 409 {"error":{"code":"checkin_conflict"`) {
		t.Errorf("setting up again under the same run id: %v, want it to say the setup checkins exist already, and what the first refusal said", err)
	}
}

// verifyAfterAnEarlierRun: a run on the users of an earlier one finds that
// run's checkins among its own when it reads back; having never sent them,
// it counts them apart, not as checkins of its own that were never
// acknowledged and stored all the same.
func verifyAfterAnEarlierRun(t *testing.T, ctx context.Context, base string) {
	cfg := defaultConfig()
	cfg.Targets, cfg.Users, cfg.Locations, cfg.SetupCheckins = base, 3, 2, 2
	cfg.Concurrency, cfg.Progress, cfg.Duration, cfg.Requests = 2, false, 0, 100
	cfg.IDPrefix, cfg.Verify = "again", true
	first, err := run(ctx, cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	second, err := run(ctx, cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	written := first.Ops[opCheckin.String()].StatusCodes["201"]
	if v := second.Verify; v.UnackedStored != 0 || v.UnackedNotByID != 0 || v.Lost != 0 || int64(v.Others) < written {
		t.Errorf("second run's verify %+v: want the %d checkins of the first run's measured phase among others, none taken for its own", v, written)
	}
}

// verifyCatchesResurrection points --verify at a delete the server never
// made: a checkin acknowledged and reported deleted is still listed, and
// it is the user's current location.
func verifyCatchesResurrection(t *testing.T, base string) {
	r := oneUserRunner(t, base, "resurrect")
	acks := postCheckins(t, base, r, "kept", -time.Minute, 0)
	v := r.verify(context.Background(), acks, outcomes{gone: acks[1:]})
	if v.Resurrected != 1 || v.ResurrectedSample[0] != acks[1].User+"/"+acks[1].ID || v.Deleted != 1 || v.Found != 1 || v.Lost != 0 {
		t.Fatalf("verify of a delete that never happened: %+v", v)
	}
	if v.StaleCurrent != 1 || v.StaleSample[0] != acks[1].User+": kept-1 was deleted" {
		t.Fatalf("verify of a current location that is a deleted checkin: %+v", v)
	}
	v = r.verify(context.Background(), acks, outcomes{uncertain: acks[1:]})
	if v.Resurrected != 0 || v.StaleCurrent != 0 || v.UncertainDeletes != 1 || v.Found != 1 || v.UnackedStored != 0 || v.UnackedNotByID != 0 {
		t.Fatalf("verify with a delete of unknown outcome (the checkin acknowledged, still listed): %+v", v)
	}
}

// verifyCatchesNotByID points --verify at a checkin stored in part: listed
// by its user, but not found by its id (a proxy in front of the real node
// answers 404 checkin_not_found for it on purpose). It must be counted, and
// the checkins around it found.
func verifyCatchesNotByID(t *testing.T, base string) {
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/checkins/partial-1") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"checkin_not_found","message":"no checkin partial-1"}}`)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	defer front.Close()
	r := oneUserRunner(t, front.URL, "partial")
	acks := postCheckins(t, base, r, "partial", 0, time.Second, 2*time.Second, 3*time.Second)
	v := r.verify(context.Background(), acks, outcomes{})
	if v.NotByID != 1 || v.NotByIDSample[0] != acks[1].User+"/partial-1" || v.Found != 4 || v.Lost != 0 || v.UnverifiedUsers != 0 || v.UnackedNotByID != 0 || v.UnackedStored != 0 {
		t.Fatalf("verify of a checkin listed but not found by id: %+v", v)
	}
	// The same checkin sent and never acknowledged (its write failed):
	// counted apart, not as a loss.
	unacked := slices.Delete(slices.Clone(acks), 1, 2)
	v = r.verify(context.Background(), unacked, outcomes{unacked: acks[1:2]})
	if v.UnackedNotByID != 1 || v.UnackedNotByIDSample[0] != acks[1].User+"/partial-1" || v.NotByID != 0 || v.Found != 3 || v.Lost != 0 || v.UnackedStored != 0 || v.Others != 0 {
		t.Fatalf("verify of an unacknowledged checkin listed but not found by id: %+v", v)
	}
	// One sent, never acknowledged and stored whole is counted as such.
	v = r.verify(context.Background(), slices.Delete(slices.Clone(acks), 2, 3), outcomes{unacked: acks[2:3]})
	if v.UnackedStored != 1 || v.UnackedNotByID != 0 || v.NotByID != 1 || v.Found != 3 || v.Others != 0 {
		t.Fatalf("verify of an unacknowledged checkin stored whole: %+v", v)
	}
	// Listed checkins the run never sent (an earlier run's, another
	// client's) are neither: whole or in part, they are only counted.
	v = r.verify(context.Background(), slices.Delete(slices.Clone(acks), 1, 3), outcomes{})
	if v.Others != 2 || v.UnackedStored != 0 || v.UnackedNotByID != 0 || v.NotByID != 0 || v.Found != 2 || v.Lost != 0 {
		t.Fatalf("verify of checkins listed that the run did not send: %+v", v)
	}
}

// oneUserRunner is a runner against target whose setup created one user
// and one location, ids starting with prefix.
func oneUserRunner(t *testing.T, target, prefix string) *runner {
	t.Helper()
	cfg := defaultConfig()
	cfg.Targets = target
	cfg.Users, cfg.Locations, cfg.SetupCheckins = 1, 1, 0
	cfg.IDPrefix = prefix
	cfg.Concurrency = 1
	cfg.Progress = false
	r := testRunner(t, cfg, nodeTimeout)
	if _, _, err := r.setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// postCheckins writes checkins id-0, id-1, ... of r's user at r's
// location, one per offset from now, straight to base, and returns them
// as acknowledged.
func postCheckins(t *testing.T, base string, r *runner, id string, offsets ...time.Duration) []ack {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	var acks []ack
	for i, off := range offsets {
		a := ack{User: r.syn.users[0], ID: fmt.Sprintf("%s-%d", id, i), Loc: r.syn.locations[0], TS: now.Add(off).UnixMilli()}
		body := fmt.Sprintf(`{"id":%q,"location_id":%q,"timestamp":%q}`, a.ID, a.Loc, time.UnixMilli(a.TS).UTC().Format(time.RFC3339Nano))
		res, err := http.Post(base+"/v1/users/"+a.User+"/checkins", "application/json", strings.NewReader(body))
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("checkin %s: %v %v", a.ID, res, err)
		}
		res.Body.Close()
		acks = append(acks, a)
	}
	return acks
}
