package manifold

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dyno-platform/dyno/internal/metricstest"
	"github.com/dyno-platform/dyno/internal/model"
)

// TestManifoldMetrics: three workers, room for two. The plans' creates,
// the pending dyno and the loop itself show on a real /metrics.
func TestManifoldMetrics(t *testing.T) {
	st := newTestStore(t)
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"worker": "run"}}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", MemoryMB: 1024, HeartbeatAt: time.Now()})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug,
		Config: map[string]string{"SECRET": "config-value-not-a-label"}})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"worker": {Quantity: 3}}})

	reg := prometheus.NewRegistry()
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	startManifold(t, st, Config{HostTTL: time.Minute, Metrics: NewMetrics(reg)})
	waitKeys(t, st, "2 placed, 1 pending", func(m map[string]model.Assignment) bool { return len(m) == 3 })

	k := metricstest.Key
	var got metricstest.Series
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, text = metricstest.Scrape(t, ms.URL+"/metrics")
		if got[k("dyno_manifold_pending_dynos")] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		series string
		min    float64
	}{
		{k("dyno_manifold_running"), 1},
		{k("dyno_manifold_pending_dynos"), 1},
		{k("dyno_manifold_plans_applied_total"), 1},
		{k("dyno_manifold_decisions_total", "action", "create"), 3},
		{k("dyno_manifold_decisions_total", "action", "delete"), 0},
		{k("dyno_manifold_reconcile_duration_seconds_count"), 1},
		{k("dyno_manifold_write_failures_total"), 0},
	} {
		if v, ok := got[c.series]; !ok || v < c.min {
			t.Errorf("%s = %v (present %v), want at least %v\n%s", c.series, v, ok, c.min, text)
		}
	}
	if strings.Contains(text, "config-value-not-a-label") || strings.Contains(text, "hello") {
		t.Errorf("a config value or app name is in the metrics:\n%s", text)
	}
	if v := got[k("dyno_manifold_pending_dynos")]; v != 1 {
		t.Errorf("pending dynos = %v, want 1", v)
	}

	// Scaling to zero deletes all three: the decisions say so.
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"worker": {Quantity: 0}}})
	waitKeys(t, st, "nothing left", func(m map[string]model.Assignment) bool { return len(m) == 0 })
	deadline = time.Now().Add(10 * time.Second)
	for {
		got, text = metricstest.Scrape(t, ms.URL+"/metrics")
		if got[k("dyno_manifold_decisions_total", "action", "delete")] >= 3 && got[k("dyno_manifold_pending_dynos")] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deletes counted after scaling to 0:\n%s", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNilMetrics: a manifold without metrics works (the hooks are nil-safe).
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.running(true)
	m.applied(Plan{Create: make([]model.Assignment, 2)}, 1, time.Second)
	m.pendingDynos(newView())
}
