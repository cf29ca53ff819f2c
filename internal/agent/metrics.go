package agent

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dyno-platform/dyno/internal/model"
)

// Metrics are the agent's Prometheus counters (events: state changes,
// failed heartbeats). The gauges (dynos, memory, fence) are read from the
// agent at scrape time by Collector. A nil *Metrics counts nothing, so
// Config.Metrics is optional.
type Metrics struct {
	states     *prometheus.CounterVec
	heartbeats *prometheus.CounterVec
}

// NewMetrics registers the agent's counters with reg:
// dyno_agent_dyno_state_changes_total{state} and
// dyno_agent_heartbeats_total{result} (ok, error).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		states: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dyno_agent_dyno_state_changes_total",
			Help: "Dyno states this host's agent reported, by the state entered (starting, up, crashed, down).",
		}, []string{"state"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dyno_agent_heartbeats_total",
			Help: "Heartbeats of this host's lease, by result (ok, error); the agent fences itself after FenceAfter without an ok.",
		}, []string{"result"}),
	}
	for _, s := range []string{model.StateStarting, model.StateUp, model.StateCrashed, model.StateDown} {
		m.states.WithLabelValues(s)
	}
	m.heartbeats.WithLabelValues("ok")
	m.heartbeats.WithLabelValues("error")
	reg.MustRegister(m.states, m.heartbeats)
	return m
}

// stateChanged counts a dyno entering state.
func (m *Metrics) stateChanged(state string) {
	if m != nil {
		m.states.WithLabelValues(state).Inc()
	}
}

// heartbeat counts a heartbeat and whether the store took it.
func (m *Metrics) heartbeat(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.heartbeats.WithLabelValues("error").Inc()
		return
	}
	m.heartbeats.WithLabelValues("ok").Inc()
}

// Collector reports the agent's gauges, read at scrape time: dyno_agent_dynos{type},
// dyno_agent_memory_bytes, dyno_agent_memory_reserved_bytes,
// dyno_agent_fenced and dyno_agent_heartbeat_age_seconds. Register it
// with the same registry as NewMetrics.
func (a *Agent) Collector() prometheus.Collector {
	return &agentCollector{a: a,
		dynos: prometheus.NewDesc("dyno_agent_dynos",
			"Dynos this host's agent runs now (one-offs included), by process type.", []string{"type"}, nil),
		memory: prometheus.NewDesc("dyno_agent_memory_bytes",
			"Memory this host offers dynos.", nil, nil),
		reserved: prometheus.NewDesc("dyno_agent_memory_reserved_bytes",
			"Memory the sizes of the dynos this agent runs reserve.", nil, nil),
		fenced: prometheus.NewDesc("dyno_agent_fenced",
			"1 while the agent has stopped its dynos because no heartbeat reached the control plane.", nil, nil),
		heartbeatAge: prometheus.NewDesc("dyno_agent_heartbeat_age_seconds",
			"Time since the last heartbeat the control plane acknowledged.", nil, nil),
	}
}

type agentCollector struct {
	a                                             *Agent
	dynos, memory, reserved, fenced, heartbeatAge *prometheus.Desc
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dynos, c.memory, c.reserved, c.fenced, c.heartbeatAge} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	byType := map[string]int{}
	reservedMB := 0
	a.mu.Lock()
	for _, r := range a.runners { // r.as is set once, when the runner is made
		byType[r.as.Type]++
		if sz, err := model.LookupSize(r.as.Size); err == nil {
			reservedMB += sz.MemoryMB
		}
	}
	a.mu.Unlock()
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	slices.SortFunc(types, cmp.Compare)
	for _, t := range types {
		ch <- prometheus.MustNewConstMetric(c.dynos, prometheus.GaugeValue, float64(byType[t]), t)
	}
	const mb = 1 << 20
	ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(a.cfg.MemoryMB)*mb)
	ch <- prometheus.MustNewConstMetric(c.reserved, prometheus.GaugeValue, float64(reservedMB)*mb)
	a.fence.mu.Lock()
	fenced, last := a.fence.fenced, a.fence.lastOK
	a.fence.mu.Unlock()
	f := 0.0
	if fenced {
		f = 1
	}
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.GaugeValue, f)
	if !last.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.heartbeatAge, prometheus.GaugeValue, max(a.cfg.Now().Sub(last).Seconds(), 0))
	}
}
