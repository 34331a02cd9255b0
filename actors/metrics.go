package actors

import "github.com/prometheus/client_golang/prometheus"

// Flush reasons, the label values of checkin_writer_flushes_total.
const (
	flushSize     = "size"     // the batch was full
	flushAge      = "age"      // it waited the linger time for checkins on their way
	flushIdle     = "idle"     // no more checkins were on their way
	flushShutdown = "shutdown" // the pool is draining
)

var flushReasons = []string{flushSize, flushAge, flushIdle, flushShutdown}

// Outcomes, the label values of checkin_writer_flush_seconds (flushOK,
// flushError), checkin_grain_inherited_checks_total (checked, failed) and
// checkin_grain_writes_passed_on_total (passed, failed).
const (
	flushOK      = "ok"
	flushError   = "error"
	checkChecked = "checked"
	resultPassed = "passed"
	resultFailed = "failed"
)

// Where a grain request was served, the label values of
// checkin_grain_requests_total.
const (
	servedView   = "view"   // a current-location read answered from this node's view
	servedLocal  = "local"  // a call to a grain on this node
	servedRemote = "remote" // a call forwarded to the node that owns the user
)

// Metrics are the actors' Prometheus instruments.
type Metrics struct {
	served       *prometheus.CounterVec
	activations  prometheus.Counter
	active       prometheus.Gauge
	batchSize    prometheus.Histogram
	flushLatency *prometheus.HistogramVec
	flushes      *prometheus.CounterVec
	rejected     prometheus.Counter
	queueDepth   prometheus.Gauge
	admitLimit   prometheus.Gauge
	failedFast   prometheus.Counter
	// deleteRetries: checkin deletes a grain sent again on its own.
	deleteRetries prometheus.Counter
	// writeRetries: checkin writes a grain sent again on its own.
	writeRetries prometheus.Counter
	handOvers    prometheus.Counter // grains handed over (cluster.HandOver)
	// passedOn: failed checkin writes a grain handed over passed to the
	// user's new owner (passOn), by result.
	passedOn *prometheus.CounterVec
	// inherited: activations of users whose last owner left without
	// draining, by whether their listed checkins were looked up;
	// inheritedWrites: checkins found listed but not by id there
	inherited       *prometheus.CounterVec
	inheritedWrites prometheus.Counter
	moved           prometheus.Counter // calls answered errMoved and sent again
}

// NewMetrics creates the instruments and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_grain_requests_total", Help: "Requests to user grains, by where they were served: view (a current-location read answered from this node's view), local (a grain on this node), remote (forwarded to the node that owns the user)."}, []string{"served_by"}),
		activations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_activations_total", Help: "User grains activated on this node."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkin_grains_active", Help: "User grains active on this node."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "checkin_writer_batch_size", Help: "Checkins per store write batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		flushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "checkin_writer_flush_seconds", Help: "Time for the store to make one batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"result"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_writer_flushes_total", Help: "Batches flushed, by what triggered the flush."}, []string{"reason"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_writer_rejected_total", Help: "Checkins refused because the writers held as many as they may (writer.latency-target) or the writer queue was full."}),
		admitLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkin_writer_admission_limit", Help: "Checkins the writers may hold at once (queued or being written): adapted to keep their wait for the store near writer.latency-target."}),
		failedFast: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_calls_failed_fast_total", Help: "Grain calls not sent because the member that holds the grain stopped answering this node's calls (grain.member-timeouts)."}),
		writeRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_write_retries_total", Help: "Checkin writes that failed and may have stored part of the checkin, sent again by the user's grain on its own (grain.write-retry)."}),
		deleteRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_delete_retries_total", Help: "Checkin deletes the store did not confirm, sent again by the user's grain on its own (grain.delete-retry)."}),
		handOvers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_handovers_total", Help: "User grains on this node handed over to another node: the topology gave their user to it, or this node drained."}),
		inherited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_grain_inherited_checks_total", Help: "Activations of user grains whose previous owner left the cluster without draining, whose loaded checkins were then looked up by id, by result: checked, or failed (a store read failed)."}, []string{"result"}),
		inheritedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_inherited_writes_total", Help: "Checkins found listed but not by id at such activations (left part way by the node that left) and written again."}),
		passedOn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "checkin_grain_writes_passed_on_total", Help: "Checkin writes that failed part way at a grain handed over to another node, by result: passed (the user's new owner took them over and completes them) or failed (not taken over in time: they may stay stored in part)."}, []string{"result"}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "checkin_grain_calls_moved_total", Help: "Grain calls from this node answered 'moved' by a grain handed over, and sent again to the user's new owner."}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "checkin_writer_queue_depth", Help: "Checkins queued or being written on this node."}),
	}
	// Every series of a labelled instrument whose labels are known exists
	// from the start, at zero: an alert on a rate, or on the series being
	// there, sees 0 on a node where nothing happened yet, not no data.
	for _, l := range []string{servedView, servedLocal, servedRemote} {
		m.served.WithLabelValues(l)
	}
	for _, l := range []string{flushOK, flushError} {
		m.flushLatency.WithLabelValues(l)
	}
	for _, l := range flushReasons {
		m.flushes.WithLabelValues(l)
	}
	for _, l := range []string{checkChecked, resultFailed} {
		m.inherited.WithLabelValues(l)
	}
	for _, l := range []string{resultPassed, resultFailed} {
		m.passedOn.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.served, m.activations, m.active, m.batchSize, m.flushLatency, m.flushes, m.rejected, m.queueDepth, m.admitLimit, m.failedFast, m.deleteRetries, m.writeRetries, m.handOvers, m.passedOn, m.inherited, m.inheritedWrites, m.moved)
	}
	return m
}
