package server

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"

	"github.com/dyno-platform/dyno/internal/agent"
	"github.com/dyno-platform/dyno/internal/apiserver"
	"github.com/dyno-platform/dyno/internal/manifold"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Observability is one process's Prometheus registry (no global default
// registry) and the instruments its roles take in their Configs (nil for
// a role the process does not run: they are nil-safe). Every
// role's metrics, and the router's own text exposition, are served by one
// /metrics (Handler, Serve).
type Observability struct {
	Registry *prometheus.Registry
	API      *apiserver.Metrics
	Manifold *manifold.Metrics
	Agent    *agent.Metrics

	extra prometheus.Gatherers // gatherers beside Registry (the router's)
}

// newServerObservability makes the registry of `dyno server`: the Go
// runtime's and the process's collectors and the API's, manifold's and
// agent's instruments.
func newServerObservability() *Observability {
	o := newAgentObservability()
	o.API = apiserver.NewMetrics(o.Registry)
	o.Manifold = manifold.NewMetrics(o.Registry)
	return o
}

// newAgentObservability makes the registry of `dyno agent`: the Go
// runtime's and the process's collectors and the agent's instruments.
func newAgentObservability() *Observability {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Observability{Registry: reg, Agent: agent.NewMetrics(reg)}
}

// AddText adds a handler that serves metrics in the Prometheus text format
// (the router's MetricsHandler) to what Handler serves.
func (o *Observability) AddText(h http.Handler) {
	o.extra = append(o.extra, textGatherer{h})
}

// Handler serves every metric: the registry's and the AddText handlers'.
// A collector that fails (the store unreachable) costs its own series, not
// the scrape.
func (o *Observability) Handler() http.Handler {
	g := append(prometheus.Gatherers{o.Registry}, o.extra...)
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve binds addr (none when empty) and serves GET /metrics on it until
// ctx ends. It returns once the listener is bound; the returned stop waits
// for the server to end.
func (o *Observability) Serve(ctx context.Context, addr string, log *slog.Logger, out io.Writer) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w (use --metrics to pick another address)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		go func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
		}()
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics server stopped", "role", "metrics", "err", err)
		}
	}()
	fmt.Fprintf(out, "  Metrics: http://%s/metrics\n", reachable(ln.Addr().String()))
	return func() { cancel(); <-done }, nil
}

// textGatherer gathers from a handler that writes the text format, such as
// the router's hand-written exposition.
type textGatherer struct{ h http.Handler }

func (g textGatherer) Gather() ([]*dto.MetricFamily, error) {
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	p := expfmt.NewTextParser(prommodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		return nil, fmt.Errorf("read the router's metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		if len(f.Metric) > 0 { // a family with no series yet (no apps) says nothing
			out = append(out, f)
		}
	}
	return out, nil
}

// PlatformCollector reports the platform as the store has it, read at
// scrape time: dyno_dynos{state,type} (the agents' statuses; assignments
// with none yet count as starting, unplaced ones as pending),
// dyno_hosts{state}, and per host dyno_host_state{host,state},
// dyno_host_memory_bytes, dyno_host_memory_reserved_bytes, dyno_host_dynos
// and dyno_host_heartbeat_age_seconds (memory and states as `dyno hosts`
// shows them). On a cluster every node reports the same numbers.
func PlatformCollector(st *store.Store, hostTTL time.Duration, now func() time.Time) prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	host := []string{"host"}
	return &platformCollector{st: st, ttl: hostTTL, now: now,
		dynos:    prometheus.NewDesc("dyno_dynos", "Dynos by state (starting, up, crashed, down, pending) and process type.", []string{"state", "type"}, nil),
		hosts:    prometheus.NewDesc("dyno_hosts", "Registered hosts by state (live, lost, draining, drained).", []string{"state"}, nil),
		hState:   prometheus.NewDesc("dyno_host_state", "1 for the host's current state (live, lost, draining, drained).", []string{"host", "state"}, nil),
		memory:   prometheus.NewDesc("dyno_host_memory_bytes", "Memory the host offers dynos.", host, nil),
		reserved: prometheus.NewDesc("dyno_host_memory_reserved_bytes", "Memory reserved by the host's dynos (all but crashed ones and ended one-offs).", host, nil),
		hDynos:   prometheus.NewDesc("dyno_host_dynos", "Dynos assigned to the host (one-offs included).", host, nil),
		age:      prometheus.NewDesc("dyno_host_heartbeat_age_seconds", "Time since the host's last heartbeat.", host, nil),
	}
}

type platformCollector struct {
	st                                                  *store.Store
	ttl                                                 time.Duration
	now                                                 func() time.Time
	dynos, hosts, hState, memory, reserved, hDynos, age *prometheus.Desc
}

func (c *platformCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dynos, c.hosts, c.hState, c.memory, c.reserved, c.hDynos, c.age} {
		ch <- d
	}
}

func (c *platformCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hosts, settings, assigns, statuses, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.dynos, err)
		return
	}
	type dynoKey struct{ state, typ string }
	dynos := map[dynoKey]int{}
	for _, s := range statuses {
		dynos[dynoKey{s.State, s.Type}]++
	}
	for _, a := range assigns {
		switch _, reported := statuses[a.ID]; {
		case a.Pending():
			dynos[dynoKey{"pending", a.Type}]++
		case !reported:
			dynos[dynoKey{model.StateStarting, a.Type}]++
		}
	}
	keys := make([]dynoKey, 0, len(dynos))
	for k := range dynos {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b dynoKey) int { return cmp.Or(cmp.Compare(a.state, b.state), cmp.Compare(a.typ, b.typ)) })
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(c.dynos, prometheus.GaugeValue, float64(dynos[k]), k.state, k.typ)
	}

	states := []string{model.HostLive, model.HostLost, model.HostDraining, model.HostDrained}
	byState := map[string]int{}
	const mb = 1 << 20
	for _, h := range manifold.DescribeHosts(hosts, settings, assigns, statuses, c.now(), c.ttl) {
		byState[h.State]++
		for _, s := range states {
			v := 0.0
			if s == h.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.hState, prometheus.GaugeValue, v, h.ID, s)
		}
		ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(h.MemoryMB)*mb, h.ID)
		ch <- prometheus.MustNewConstMetric(c.reserved, prometheus.GaugeValue, float64(h.ReservedMB)*mb, h.ID)
		ch <- prometheus.MustNewConstMetric(c.hDynos, prometheus.GaugeValue, float64(h.Dynos), h.ID)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, h.HeartbeatAge.Seconds(), h.ID)
	}
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(c.hosts, prometheus.GaugeValue, float64(byState[s]), s)
	}
}

// read lists the buckets the collector reports on.
func (c *platformCollector) read(ctx context.Context) ([]model.Host, map[string]model.HostSettings, []model.Assignment, map[string]model.DynoStatus, error) {
	hs, err := c.st.Hosts.List(ctx, ">")
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("list hosts: %w", err)
	}
	sets, err := c.st.HostSettings.List(ctx, ">")
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("list host settings: %w", err)
	}
	as, err := c.st.Assignments.List(ctx, ">")
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("list assignments: %w", err)
	}
	sts, err := c.st.Statuses.List(ctx, ">")
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("list dyno statuses: %w", err)
	}
	hosts := make([]model.Host, len(hs))
	for i, e := range hs {
		hosts[i] = e.Value
	}
	settings := make(map[string]model.HostSettings, len(sets))
	for _, e := range sets {
		settings[e.Key] = e.Value
	}
	assigns := make([]model.Assignment, len(as))
	for i, e := range as {
		assigns[i] = e.Value
	}
	statuses := make(map[string]model.DynoStatus, len(sts))
	for _, e := range sts {
		statuses[e.Value.ID] = e.Value
	}
	return hosts, settings, assigns, statuses, nil
}
