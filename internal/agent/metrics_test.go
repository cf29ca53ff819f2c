package agent

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dyno-platform/dyno/internal/metricstest"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
)

// TestAgentMetrics runs a worker dyno on a real agent and reads its
// counters and gauges from a real /metrics, then stops it.
func TestAgentMetrics(t *testing.T) {
	e := newEnv(t)
	rt, err := runtime.NewProcessRuntime(runtime.ProcessConfig{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := New(Config{HostID: "h1", DataDir: t.TempDir(), Runtime: rt, Logs: e.logs, PortMin: 32000, PortMax: 32999,
		MemoryMB: 2048, StopTimeout: time.Second, Metrics: NewMetrics(reg)}, e.st)
	reg.MustRegister(a.Collector())
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	}()

	e.assign(t, "d1", "worker", "sleep 60")
	e.awaitState(t, "d1", model.StateUp)
	k := metricstest.Key
	got, text := metricstest.Scrape(t, ms.URL+"/metrics")
	for _, c := range []struct {
		series   string
		min, max float64
	}{
		{k("dyno_agent_dynos", "type", "worker"), 1, 1},
		{k("dyno_agent_memory_bytes"), 2048 << 20, 2048 << 20},
		{k("dyno_agent_memory_reserved_bytes"), 512 << 20, 512 << 20},
		{k("dyno_agent_fenced"), 0, 0},
		{k("dyno_agent_dyno_state_changes_total", "state", "starting"), 1, 1},
		{k("dyno_agent_dyno_state_changes_total", "state", "up"), 1, 1},
		{k("dyno_agent_dyno_state_changes_total", "state", "crashed"), 0, 0},
		{k("dyno_agent_heartbeats_total", "result", "ok"), 1, 1e9},
		{k("dyno_agent_heartbeat_age_seconds"), 0, 5},
	} {
		if v, ok := got[c.series]; !ok || v < c.min || v > c.max {
			t.Errorf("%s = %v (present %v), want %v..%v\n%s", c.series, v, ok, c.min, c.max, text)
		}
	}
	if strings.Contains(text, "GREETING") || strings.Contains(text, "demo") {
		t.Errorf("the dyno's env or app name is in the metrics:\n%s", text)
	}

	if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", "d1"), 0); err != nil {
		t.Fatal(err)
	}
	await(t, "the dyno stopped and counted", func() bool {
		got, _ := metricstest.Scrape(t, ms.URL+"/metrics")
		return got[k("dyno_agent_dyno_state_changes_total", "state", "down")] == 1 && !got.Has("dyno_agent_dynos")
	})
}
