// Command checkin runs one node of the checkin service: the HTTP edge, the
// user grains, the writer actors and the store.
//
//	checkin [flags]          run a node (see --help for every flag and its env twin)
//	checkin migrate [flags]  apply the Scylla schema (idempotent) and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/cmd/internal/flagenv"
	"github.com/checkin/checkin/persistence/scylla"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "checkin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	migrate := len(args) > 0 && args[0] == "migrate"
	if migrate {
		args = args[1:]
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("checkin", flag.ContinueOnError)
	cfg.register(fs)
	fs.Usage = flagenv.Usage(fs, os.Stderr, "Usage: checkin [migrate] [flags]\n\n"+
		"Runs one checkin node; with migrate, applies the Scylla schema (store=scylla) and exits.\n"+
		"Every flag can also be set by its environment variable.\n\n")
	if err := flagenv.Parse(fs, args, flagenv.Getenv); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		// flag stops at the first word that is not a flag: every flag
		// after it would be left out unseen.
		return fmt.Errorf("unexpected argument %q: flags are --name=value (a boolean flag takes its value after =, as --cluster.etcd-tls=true), and migrate comes first", fs.Arg(0))
	}
	cfg.resolve()
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr
	log.Info("checkin", readBuild().fields()...)
	if migrate {
		return runMigrate(cfg, log)
	}
	cfg.Runtime.Apply(log)

	// Signals are caught from here on, so one that arrives while the node
	// starts does not end the process: SIGINT or SIGTERM stops the node
	// (after http.drain-delay; a second one cuts the delay short), SIGHUP
	// re-reads the API keys and the TLS certificate.
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(term)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The same signals also cancel the start itself (connecting to the
	// store, applying its schema), which may wait on a slow cluster.
	starting, started := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	n, err := startNode(starting, cfg, log)
	canceled := starting.Err() != nil
	started()
	if err != nil && canceled {
		log.Info("stopped while starting", zap.NamedError("reason", err))
		return nil
	}
	if err != nil {
		log.Error("start failed", zap.Error(err))
		return err
	}
	for {
		select {
		case <-term:
			if d := cfg.DrainDelay; d > 0 {
				n.edge.Drain()
				log.Info("draining: /readyz answers 503, connections are closed after each answer", zap.Duration("delay", d))
				select {
				case <-time.After(d):
				case <-term:
					log.Info("second signal: stopping without the rest of the drain delay")
				}
			}
			log.Info("shutting down")
			return n.stop()
		case err := <-n.served:
			// Unasked: exit with an error, so that a supervisor restarts
			// the node.
			if err == nil {
				err = errors.New("its listener closed")
			}
			log.Error("http server stopped", zap.Error(err))
			return errors.Join(fmt.Errorf("http server stopped: %w", err), n.stop())
		case <-n.member.Evicted():
			// Not ready since the eviction, so balancers have stopped
			// sending requests here: no drain delay.
			log.Error("the cluster removed this node: stopping with exit status 1 so that its supervisor starts it again",
				zap.String("why", "its membership record is gone: its lease ran out (the process was paused, or cut off from etcd, for longer than the lease), or most members could not reach it (cluster.evict-silent-after); a member that left cannot rejoin under its identity"))
			n.edge.Drain()
			return errors.Join(errEvicted, n.stop())
		case <-hup:
			n.reload()
		}
	}
}

// errEvicted ends a node that the cluster removed (cluster.Node.Evicted).
var errEvicted = errors.New("removed from the cluster: start the node again to rejoin")

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

// runMigrate applies the schema of the configured store.
func runMigrate(cfg config, log *zap.Logger) error {
	if cfg.Store != "scylla" {
		log.Info("nothing to migrate: the embedded store needs no schema", zap.String("store", cfg.Store))
		return nil
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := scylla.Migrate(ctx, cfg.Scylla, log.Named("scylla")); err != nil {
		log.Error("migrate failed", zap.Error(err))
		return err
	}
	log.Info("migrate complete", zap.String("keyspace", cfg.Scylla.Keyspace))
	return nil
}
