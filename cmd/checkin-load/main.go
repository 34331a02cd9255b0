// Command checkin-load is a load generator for checkin: it drives one or
// more nodes over HTTP with a synthetic mix of checkins and reads (closed
// model: fixed concurrency; open model: fixed arrival rate) or replays a
// Gowalla-format check-in file, and reports throughput and latency
// percentiles from an HDR histogram. --verify reads every acknowledged
// checkin back and fails the run if one is missing.
//
//	checkin-load [flags]      see --help for every flag and its env twin
//
// Exit status: 0 ok, 1 error, 2 bad flags, 3 --verify found lost checkins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/checkin/checkin/cmd/internal/flagenv"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], flagenv.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkin-load:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	_, err = run(ctx, cfg, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, errLost):
		fmt.Fprintln(os.Stderr, "checkin-load:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "checkin-load:", err)
		os.Exit(1)
	}
}

// envAPIKey names the environment variable with the API key to send.
const envAPIKey = "CHECKIN_API_KEY"

const usageHead = `Usage: checkin-load [flags]

Drives checkin nodes over HTTP and reports throughput and latency percentiles.
Closed model by default (--concurrency requests in flight); --rate R starts R
requests per second on schedule (open model; latency counts from the intended
start). --replay FILE replays a Gowalla-format check-in file in time order.
Every flag can also be set by its environment variable. For nodes that
require API keys, the key comes from the environment variable CHECKIN_API_KEY
(never a flag, so it stays out of process listings); every request sends it
as "Authorization: Bearer <key>".

`

// parseConfig reads flags, then env twins. A replay runs the whole file,
// and --requests its count, unless --duration is given explicitly.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("checkin-load", flag.ContinueOnError)
	fs.SetOutput(out)
	cfg.register(fs)
	fs.Usage = flagenv.Usage(fs, out, usageHead)
	if err := flagenv.Parse(fs, args, getenv); err != nil {
		return cfg, err
	}
	cfg.APIKey = getenv(envAPIKey)
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	durationSet, requestsSet := false, false
	fs.Visit(func(f *flag.Flag) {
		durationSet = durationSet || f.Name == "duration"
		requestsSet = requestsSet || f.Name == "requests" && cfg.Requests > 0
	})
	if (cfg.replaying() || requestsSet) && !durationSet {
		cfg.Duration = 0 // the file, or the count, sets the end
	}
	return cfg, cfg.validate()
}
