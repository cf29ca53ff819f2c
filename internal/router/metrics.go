package router

import (
	"bufio"
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the latency histogram:
// from sub-millisecond proxying to Heroku's 30 s first-byte limit.
var latencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// appMetrics are one app's request counters, updated with atomics on the
// request path and read by the metrics handler.
type appMetrics struct {
	requests sync.Map // reqKey → *atomic.Uint64
	buckets  [len(latencyBuckets) + 1]atomic.Uint64
	sumNanos atomic.Int64
	count    atomic.Uint64
}

// reqKey is a (status, code) pair; the code is a pointer to one of the
// package's read-only hcodes (nil when the dyno answered).
type reqKey struct {
	status int
	code   *hcode
}

func (m *appMetrics) observe(status int, code *hcode, d time.Duration) {
	k := reqKey{status, code}
	c, ok := m.requests.Load(k)
	if !ok {
		c, _ = m.requests.LoadOrStore(k, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
	sec := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets[:], sec)
	m.buckets[i].Add(1)
	m.sumNanos.Add(int64(d))
	m.count.Add(1)
}

// routerMetrics are the router-wide counters.
type routerMetrics struct {
	unknownHost atomic.Uint64 // requests for no known app (404)
	clientConns atomic.Int64  // open client connections (NewHTTPServer)
}

// MetricsHandler serves the router's metrics in the Prometheus text
// format (version 0.0.4). Apps own every path of their hostnames, so it is
// meant for a listener of its own (`dyno router --metrics`).
func (r *Router) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		r.writeMetrics(bw)
		bw.Flush()
	})
}

func (r *Router) writeMetrics(w *bufio.Writer) {
	type appRow struct {
		name string
		st   *appState
	}
	var apps []appRow
	for _, st := range r.registry.list() {
		if n := st.name.Load(); n != nil {
			apps = append(apps, appRow{*n, st})
		}
	}
	slices.SortFunc(apps, func(a, b appRow) int { return cmp.Compare(a.name, b.name) })

	w.WriteString("# HELP dyno_router_requests_total Requests answered, by app, status and router error code (empty: the dyno answered).\n")
	w.WriteString("# TYPE dyno_router_requests_total counter\n")
	for _, a := range apps {
		type row struct {
			k reqKey
			n uint64
		}
		var rows []row
		a.st.metrics.requests.Range(func(k, v any) bool {
			rows = append(rows, row{k.(reqKey), v.(*atomic.Uint64).Load()})
			return true
		})
		slices.SortFunc(rows, func(x, y row) int {
			return cmp.Or(cmp.Compare(x.k.status, y.k.status), cmp.Compare(codeName(x.k.code), codeName(y.k.code)))
		})
		for _, r := range rows {
			w.WriteString(`dyno_router_requests_total{app="`)
			w.WriteString(a.name)
			w.WriteString(`",status="`)
			w.WriteString(strconv.Itoa(r.k.status))
			w.WriteString(`",code="`)
			w.WriteString(codeName(r.k.code))
			w.WriteString(`"} `)
			w.WriteString(strconv.FormatUint(r.n, 10))
			w.WriteByte('\n')
		}
	}

	w.WriteString("# HELP dyno_router_request_duration_seconds Time from the request's arrival to its end, by app.\n")
	w.WriteString("# TYPE dyno_router_request_duration_seconds histogram\n")
	for _, a := range apps {
		m := &a.st.metrics
		var cum uint64
		for i := range m.buckets {
			cum += m.buckets[i].Load()
			le := "+Inf"
			if i < len(latencyBuckets) {
				le = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
			}
			w.WriteString(`dyno_router_request_duration_seconds_bucket{app="` + a.name + `",le="` + le + `"} `)
			w.WriteString(strconv.FormatUint(cum, 10))
			w.WriteByte('\n')
		}
		w.WriteString(`dyno_router_request_duration_seconds_sum{app="` + a.name + `"} `)
		w.WriteString(strconv.FormatFloat(time.Duration(m.sumNanos.Load()).Seconds(), 'g', -1, 64))
		w.WriteString("\n" + `dyno_router_request_duration_seconds_count{app="` + a.name + `"} `)
		w.WriteString(strconv.FormatUint(cum, 10))
		w.WriteByte('\n')
	}

	w.WriteString("# HELP dyno_router_requests_in_flight Requests in this router now, by app (the H11 backlog).\n")
	w.WriteString("# TYPE dyno_router_requests_in_flight gauge\n")
	for _, a := range apps {
		w.WriteString(`dyno_router_requests_in_flight{app="` + a.name + `"} ` + strconv.FormatInt(a.st.inflight.Load(), 10) + "\n")
	}
	w.WriteString("# HELP dyno_router_app_connections Client connections tied to an app by their first request (the H22 limit).\n")
	w.WriteString("# TYPE dyno_router_app_connections gauge\n")
	for _, a := range apps {
		w.WriteString(`dyno_router_app_connections{app="` + a.name + `"} ` + strconv.FormatInt(a.st.conns.Load(), 10) + "\n")
	}
	w.WriteString("# HELP dyno_router_client_connections Open client connections.\n")
	w.WriteString("# TYPE dyno_router_client_connections gauge\n")
	w.WriteString("dyno_router_client_connections " + strconv.FormatInt(r.metrics.clientConns.Load(), 10) + "\n")
	w.WriteString("# HELP dyno_router_unknown_host_requests_total Requests for a host that is no app (404).\n")
	w.WriteString("# TYPE dyno_router_unknown_host_requests_total counter\n")
	w.WriteString("dyno_router_unknown_host_requests_total " + strconv.FormatUint(r.metrics.unknownHost.Load(), 10) + "\n")
}

func codeName(c *hcode) string {
	if c == nil {
		return ""
	}
	return c.code
}
