package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// build describes the binary: the module version (or "(devel)"), the VCS
// revision it was built from ("unknown" without VCS information), whether
// the tree had uncommitted changes, and the Go version.
type build struct {
	Version, Revision, GoVersion string
	Modified                     bool
}

// stampedRevision is set by the linker where Go cannot read the VCS itself
// (the Docker build: -X main.stampedRevision=...); the VCS's own stamp wins.
var stampedRevision = ""

func readBuild() build {
	b := build{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	if stampedRevision != "" {
		b.Revision = stampedRevision
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version = info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b build) fields() []zap.Field {
	return []zap.Field{zap.String("version", b.Version), zap.String("revision", b.Revision),
		zap.Bool("modified", b.Modified), zap.String("go_version", b.GoVersion)}
}

// register adds checkin_build_info (always 1, the build in its labels).
func (b build) register(reg prometheus.Registerer) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "checkin_build_info",
		Help: "The running binary: module version, VCS revision, uncommitted changes, Go version (always 1)."},
		[]string{"version", "revision", "modified", "go_version"})
	modified := "false"
	if b.Modified {
		modified = "true"
	}
	g.WithLabelValues(b.Version, b.Revision, modified, b.GoVersion).Set(1)
	reg.MustRegister(g)
}
