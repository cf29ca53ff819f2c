package apiserver

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dyno-platform/dyno/internal/gitserver"
)

// Metrics are the API's Prometheus instruments. Labels are the route
// pattern ("/apps/{app}/dynos"), never the path, so that no app name, ID or
// secret URL token becomes a series. A nil *Metrics counts nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// NewMetrics registers the API's metrics with reg:
// dyno_api_requests_total{route,method,status},
// dyno_api_request_duration_seconds{route,method} and
// dyno_api_requests_in_flight.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dyno_api_requests_total",
			Help: "Platform API requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dyno_api_request_duration_seconds",
			Help: "Time to answer a Platform API request, by route pattern and method (streams count until they end).",
			// Up to a minute: builds' output and log tails stream for long.
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dyno_api_requests_in_flight",
			Help: "Platform API requests being answered now (open streams included).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// Observe wraps next (the API's Handler) with request metrics and one
// structured log line per request: method, route, path (never the query,
// which carries the secret URL tokens), status, duration and request ID.
// Failed requests and writes log at Info, successful reads at Debug (CLIs
// poll). m may be nil: the log lines are still written.
func (s *Server) Observe(next http.Handler, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := s.route(r)
		method := methodLabel(r.Method)
		start := time.Now()
		if m != nil {
			m.inFlight.Inc()
			defer m.inFlight.Dec()
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// A handler that panics is counted as 500 and the panic goes on
			// to net/http, which logs it and drops the connection.
			status := sw.status
			if status == 0 {
				status = http.StatusOK
				if p := recover(); p != nil {
					status = http.StatusInternalServerError
					defer panic(p)
				}
			}
			d := time.Since(start)
			if m != nil {
				m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
				m.duration.WithLabelValues(route, method).Observe(d.Seconds())
			}
			level := slog.LevelInfo
			if status < 400 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				level = slog.LevelDebug
			}
			s.log.LogAttrs(r.Context(), level, "api request",
				slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Duration("duration", d), slog.Int64("bytes", sw.bytes),
				slog.String("request_id", w.Header().Get("Request-Id")))
		}()
		next.ServeHTTP(sw, r)
	})
}

// route is the pattern of the API route r goes to, without its method:
// "/apps/{app}", "/{app}.git" for git, "unmatched" for what no pattern
// takes. It asks the mux without serving, so it does not depend on what
// wraps the mux.
func (s *Server) route(r *http.Request) string {
	if gitserver.IsGitPath(r.URL.Path) {
		return "/{app}.git"
	}
	_, pattern := s.mux.Handler(r)
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	if pattern == "" {
		return "unmatched"
	}
	return pattern
}

// methodLabel keeps the method label to the methods HTTP defines, so a
// client cannot make new series with made-up methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// statusWriter records the status and size of a response. It keeps
// streaming working: Flush and Hijack reach the connection, and Unwrap
// lets http.ResponseController find the rest (read deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx are interim answers
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
