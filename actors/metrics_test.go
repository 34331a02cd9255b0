package actors_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/checkin/checkin/actors"
)

// Every labelled series whose labels are known is exported at zero on a
// node where nothing happened yet: an alert on its rate, or on its being
// there, sees 0 rather than no data.
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	actors.NewMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				got[f.GetName()+"{"+l.GetName()+"="+l.GetValue()+"}"] = true
			}
		}
	}
	for _, want := range []string{
		"checkin_grain_requests_total{served_by=view}", "checkin_grain_requests_total{served_by=local}", "checkin_grain_requests_total{served_by=remote}",
		"checkin_writer_flush_seconds{result=ok}", "checkin_writer_flush_seconds{result=error}",
		"checkin_writer_flushes_total{reason=size}", "checkin_writer_flushes_total{reason=age}",
		"checkin_writer_flushes_total{reason=idle}", "checkin_writer_flushes_total{reason=shutdown}",
		"checkin_grain_inherited_checks_total{result=checked}", "checkin_grain_inherited_checks_total{result=failed}",
		"checkin_grain_writes_passed_on_total{result=passed}", "checkin_grain_writes_passed_on_total{result=failed}",
	} {
		if !got[want] {
			t.Errorf("no series %s on a new node", want)
		}
	}
}
