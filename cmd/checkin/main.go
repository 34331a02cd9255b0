// Command checkin runs one node of the checkin service: the HTTP edge, the
// user grains, the writer actors and the store.
//
//	checkin [flags]          run a node (see --help for every flag and its env twin)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/cmd/internal/flagenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "checkin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("checkin", flag.ContinueOnError)
	cfg.register(fs)
	fs.Usage = flagenv.Usage(fs, os.Stderr, "Usage: checkin [flags]\n\nRuns one checkin node. Every flag can also be set by its environment variable.\n\n")
	if err := flagenv.Parse(fs, args, flagenv.Getenv); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	n, err := startNode(cfg, log)
	if err != nil {
		log.Error("start failed", zap.Error(err))
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-n.served:
		log.Error("http server stopped", zap.Error(err))
	}
	return n.stop()
}

// newLogger returns a JSON logger on stderr.
func newLogger(level string) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if err := zc.Level.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	zc.Sampling = nil
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return zc.Build()
}
