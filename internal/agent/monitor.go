package agent

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/runtime"
)

// statser is what a runtime's dyno offers for sampling; both runtimes'
// dynos have it.
type statser interface {
	Stats() (runtime.Stats, error)
}

// MetricsVar is the config var that turns on runtime metrics lines, as the
// log-runtime-metrics labs feature does on Heroku.
const MetricsVar = "DYNO_RUNTIME_METRICS"

// monitor samples a running dyno: it logs R14 while the dyno is over its
// memory quota (the kernel kills it at twice the quota: R15), and, when the
// app asks for it, Heroku's runtime metrics lines.
type monitor struct {
	r        *runner
	quotaMB  int
	metrics  bool
	lastR14  time.Time
	lastLine time.Time
	load     [3]float64 // 1, 5 and 15 minute averages
	started  bool
}

func newMonitor(r *runner, quotaMB int) *monitor {
	v := strings.ToLower(r.as.Env[MetricsVar])
	return &monitor{r: r, quotaMB: quotaMB, metrics: v != "" && v != "0" && v != "false" && v != "off"}
}

// run samples every interval until done is closed.
func (m *monitor) run(d runtime.Dyno, done <-chan struct{}) {
	s, ok := d.(statser)
	if !ok {
		return
	}
	interval := m.r.a.cfg.MonitorInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			st, err := s.Stats()
			if err != nil {
				continue // the dyno is ending; its exit says why
			}
			m.sample(st, interval)
		}
	}
}

// sample folds one sample in: load averages decay as Linux's do.
func (m *monitor) sample(st runtime.Stats, interval time.Duration) {
	now := m.r.a.cfg.Now()
	for i, window := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute} {
		if !m.started {
			m.load[i] = float64(st.Runnable)
			continue
		}
		decay := math.Exp(-interval.Seconds() / window.Seconds())
		m.load[i] = m.load[i]*decay + float64(st.Runnable)*(1-decay)
	}
	m.started = true
	usedMB := float64(st.RSSBytes+st.SwapBytes) / (1 << 20)
	quota := float64(m.quotaMB)
	if usedMB > quota && now.Sub(m.lastR14) >= m.r.a.cfg.MetricsPeriod {
		m.lastR14 = now
		m.r.logDyno("Process running mem=%.0fM(%.1f%%)", usedMB, 100*usedMB/quota)
		m.r.logDyno("Error R14 (Memory quota exceeded)")
	}
	if m.metrics && now.Sub(m.lastLine) >= m.r.a.cfg.MetricsPeriod {
		m.lastLine = now
		id := fmt.Sprintf("source=%s dyno=heroku.%s.%s", m.r.as.Name, m.r.as.AppID, m.r.as.ID)
		m.r.logDyno("%s sample#load_avg_1m=%.2f sample#load_avg_5m=%.2f sample#load_avg_15m=%.2f", id, m.load[0], m.load[1], m.load[2])
		mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
		m.r.logDyno("%s sample#memory_total=%.2fMB sample#memory_rss=%.2fMB sample#memory_cache=%.2fMB sample#memory_swap=%.2fMB sample#memory_pgpgin=%dpages sample#memory_pgpgout=%dpages sample#memory_quota=%.2fMB",
			id, mb(st.RSSBytes+st.CacheBytes+st.SwapBytes), mb(st.RSSBytes), mb(st.CacheBytes), mb(st.SwapBytes), st.PgpgIn, st.PgpgOut, quota)
	}
}
