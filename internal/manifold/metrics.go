package manifold

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the manifold's Prometheus instruments: what its plans
// decided and how long deciding and applying took. A nil *Metrics counts
// nothing, so Config.Metrics is optional.
type Metrics struct {
	plans     prometheus.Counter
	decisions *prometheus.CounterVec
	failed    prometheus.Counter
	duration  prometheus.Histogram
	pending   prometheus.Gauge
	leading   prometheus.Gauge
}

// NewMetrics registers the manifold's metrics with reg:
// dyno_manifold_plans_applied_total, dyno_manifold_decisions_total{action}
// (create, update, delete, cycle, expire, oneoff_done, status_forget),
// dyno_manifold_write_failures_total, dyno_manifold_reconcile_duration_seconds,
// dyno_manifold_pending_dynos and dyno_manifold_running (1 on the node whose
// manifold runs: the leader of a cluster).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		plans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dyno_manifold_plans_applied_total",
			Help: "Plans the manifold applied (reconciles that changed something).",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dyno_manifold_decisions_total",
			Help: "Writes the manifold's plans made, by action: create, update, delete (assignments), cycle, expire, oneoff_done, status_forget.",
		}, []string{"action"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dyno_manifold_write_failures_total",
			Help: "Plan writes that failed for another reason than a stale view (retried after a delay).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dyno_manifold_reconcile_duration_seconds",
			Help:    "Time to plan and apply one reconcile that changed something.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dyno_manifold_pending_dynos",
			Help: "Dynos the manifold could not place (no live host with room), as of its last reconcile.",
		}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dyno_manifold_running",
			Help: "1 while this node's manifold runs (the leader of a cluster), else 0.",
		}),
	}
	for _, a := range []string{"create", "update", "delete", "cycle", "expire", "oneoff_done", "status_forget"} {
		m.decisions.WithLabelValues(a) // every action shows from the first scrape, at 0
	}
	reg.MustRegister(m.plans, m.decisions, m.failed, m.duration, m.pending, m.leading)
	return m
}

// running records whether the manifold loop runs on this node.
func (m *Metrics) running(on bool) {
	if m == nil {
		return
	}
	if on {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

// applied records one applied plan, its failed writes and its duration.
func (m *Metrics) applied(p Plan, failed int, d time.Duration) {
	if m == nil {
		return
	}
	m.plans.Inc()
	for action, n := range map[string]int{
		"create": len(p.Create), "update": len(p.Update), "delete": len(p.Delete), "cycle": len(p.Cycled),
		"expire": len(p.Expired), "oneoff_done": len(p.DeleteOneOffs), "status_forget": len(p.DeleteStatuses),
	} {
		m.decisions.WithLabelValues(action).Add(float64(n))
	}
	m.failed.Add(float64(failed))
	m.duration.Observe(d.Seconds())
}

// pendingDynos records how many assignments wait for a host.
func (m *Metrics) pendingDynos(v *view) {
	if m == nil {
		return
	}
	n := 0
	for _, e := range v.assigns {
		if e.Assignment.Pending() {
			n++
		}
	}
	m.pending.Set(float64(n))
}
