package pebble

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// zapLogger forwards the storage engine's log lines to a *zap.Logger. The
// engine logs rarely (recovery, background errors, corruption), so
// formatting here is not a hot path.
type zapLogger struct{ l *zap.Logger }

func (z zapLogger) Infof(format string, args ...any) {
	if ce := z.l.Check(zap.InfoLevel, "storage engine"); ce != nil {
		ce.Write(zap.String("detail", line(format, args)))
	}
}

func (z zapLogger) Errorf(format string, args ...any) {
	z.l.Error("storage engine error", zap.String("detail", line(format, args)))
}

// Fatalf is called on conditions the engine cannot continue from, such as
// data corruption. It must not return: it logs and panics, so the reason is
// visible even when logging is off.
func (z zapLogger) Fatalf(format string, args ...any) {
	msg := line(format, args)
	z.l.Error("storage engine fatal error", zap.String("detail", msg))
	_ = z.l.Sync()
	panic("persistence/pebble: storage engine fatal error: " + msg)
}

func line(format string, args []any) string {
	return strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
}
