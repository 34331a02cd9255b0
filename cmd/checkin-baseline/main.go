// Command checkin-baseline runs a baseline server to measure checkin
// against, with the same flags style and the same HTTP API subset the load
// generator drives:
//
//   - --mode=bare: a Fiber app whose handlers answer at once with a
//     same-sized JSON body and do no work: the ceiling of HTTP on the
//     machine.
//
//   - --mode=naive: the "attempt 1" design: every checkin is one
//     synchronous (fsynced) write to the embedded store in the request
//     handler; no actors, no batching; the current location is read from
//     the store.
//
//     checkin-baseline --mode=naive --http.addr=127.0.0.1:8081 --data.dir=/tmp/naive
//     checkin-baseline --mode=naive --store=scylla --scylla.hosts=127.0.0.1:9042
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/checkin/checkin/cmd/internal/flagenv"
	"github.com/checkin/checkin/cmd/internal/goruntime"
	"github.com/checkin/checkin/persistence/scylla"
)

// config of a baseline server; each setting is a flag with an env twin.
type config struct {
	Mode           string
	Store          string
	Scylla         scylla.Config
	Addr           string
	DataDir        string
	IOUring        bool
	RequestTimeout time.Duration
	BodyLimit      int
	LogLevel       string
	Runtime        goruntime.Config // as checkin's, so comparisons share one runtime
}

func defaultConfig() config {
	return config{Mode: "bare", Store: "pebble", Scylla: scylla.DefaultConfig(), Addr: ":8080", DataDir: "./data", IOUring: false, RequestTimeout: 5 * time.Second, BodyLimit: 64 << 10, LogLevel: "info", Runtime: goruntime.DefaultConfig()}
}

func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", c.Mode, "bare (answers at once, no work) or naive (one synced store write per checkin)")
	fs.StringVar(&c.Addr, "http.addr", c.Addr, "HTTP listen address (host:port; port 0 picks a free port)")
	fs.StringVar(&c.Store, "store", c.Store, "naive: pebble (embedded, in data.dir) or scylla (scylla.* flags)")
	fs.StringVar(&c.DataDir, "data.dir", c.DataDir, "naive: directory of the embedded store")
	fs.BoolVar(&c.IOUring, "pebble.io-uring", c.IOUring, "naive: sync the embedded store's files through io_uring where the kernel allows it, as checkin's flag of the same name (false: blocking fsync calls)")
	c.Scylla.RegisterFlags(fs)
	fs.DurationVar(&c.RequestTimeout, "http.request-timeout", c.RequestTimeout, "naive: deadline of one request's store calls")
	fs.IntVar(&c.BodyLimit, "http.body-limit", c.BodyLimit, "largest request body in bytes")
	fs.StringVar(&c.LogLevel, "log.level", c.LogLevel, "lowest log level: debug, info, warn, error")
	c.Runtime.RegisterFlags(fs)
}

func (c config) validate() error {
	if c.Mode != "bare" && c.Mode != "naive" {
		return fmt.Errorf("mode: %q is not bare or naive", c.Mode)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	if err := c.Runtime.Validate(); err != nil {
		return err
	}
	if c.Store != "pebble" && c.Store != "scylla" {
		return fmt.Errorf("store: %q is not pebble or scylla", c.Store)
	}
	if err := c.Scylla.Validate(); err != nil {
		return err
	}
	switch {
	case c.Mode == "naive" && c.DataDir == "":
		return errors.New("data.dir must not be empty")
	case c.RequestTimeout <= 0:
		return errors.New("http.request-timeout must be positive")
	case c.BodyLimit < 1024:
		return errors.New("http.body-limit must be at least 1024")
	}
	return nil
}

func main() {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("checkin-baseline", flag.ContinueOnError)
	cfg.register(fs)
	fs.Usage = flagenv.Usage(fs, os.Stderr, "Usage: checkin-baseline [flags]\n\nRuns a baseline server (bare or naive) for benchmarks. Every flag can also be set by its environment variable.\n\n")
	if err := flagenv.Parse(fs, os.Args[1:], flagenv.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "checkin-baseline:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "checkin-baseline:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down. The listening address is
// logged as {"msg":"http server listening","addr":...}, like checkin.
func run(ctx context.Context, cfg config, logOut io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, logOut)
	defer log.Sync() //nolint:errcheck // stderr
	cfg.Runtime.Apply(log)
	s, err := start(cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-s.served:
		log.Error("http server stopped", zap.Error(err))
	}
	return s.stop()
}

// server is one running baseline.
type server struct {
	app    *fiber.App
	ln     net.Listener
	close  func() error // releases the mode's resources after the app stopped
	served chan error
	log    *zap.Logger
}

func start(cfg config, log *zap.Logger) (*server, error) {
	app := fiber.New(fiber.Config{
		AppName:               "checkin-baseline",
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.RequestTimeout + 5*time.Second,
		WriteTimeout:          cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:           60 * time.Second,
		ErrorHandler:          errorHandler,
		DisableStartupMessage: true,
	})
	s := &server{app: app, served: make(chan error, 1), log: log, close: func() error { return nil }}
	switch cfg.Mode {
	case "bare":
		bareRoutes(app)
	case "naive":
		n, err := openNaive(cfg, log)
		if err != nil {
			return nil, err
		}
		n.routes(app)
		s.close = n.close
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = s.close()
		return nil, fmt.Errorf("http listen: %w", err)
	}
	s.ln = ln
	go func() { s.served <- app.Listener(ln) }()
	log.Info("http server listening", zap.String("addr", ln.Addr().String()), zap.String("mode", cfg.Mode))
	return s, nil
}

func (s *server) stop() error {
	err := errors.Join(s.app.ShutdownWithTimeout(15*time.Second), s.close())
	if err != nil {
		s.log.Error("shutdown finished with errors", zap.Error(err))
	} else {
		s.log.Info("shutdown complete")
	}
	return err
}

// newLogger returns a JSON logger on w (the same shape as checkin's).
func newLogger(level string, w io.Writer) *zap.Logger {
	var lvl zapcore.Level
	_ = lvl.UnmarshalText([]byte(level))
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(zapcore.AddSync(w)), lvl))
}
