package scylla

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// driverLogger forwards the driver's log lines (connection errors, node up
// and down events, schema agreement) to a *zap.Logger at info level. The
// driver logs on state changes, not per request, so formatting here is not
// a hot path. It never sees credentials: the driver does not log them.
type driverLogger struct{ l *zap.Logger }

func (d driverLogger) Print(v ...any) { d.write(fmt.Sprint(v...)) }

func (d driverLogger) Printf(format string, v ...any) { d.write(fmt.Sprintf(format, v...)) }

func (d driverLogger) Println(v ...any) { d.write(fmt.Sprintln(v...)) }

func (d driverLogger) write(msg string) {
	if ce := d.l.Check(zap.InfoLevel, "cql driver"); ce != nil {
		ce.Write(zap.String("detail", strings.TrimSpace(msg)))
	}
}
