package server

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/metricstest"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/router"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// TestPlatformMetrics: dynos by state and type, and hosts' capacity and
// state, as the store has them, on one /metrics with the router's series.
func TestPlatformMetrics(t *testing.T) {
	st, _ := storetest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	put := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []model.Host{
		{ID: "h1", MemoryMB: 4096, HeartbeatAt: now.Add(-time.Second)},
		{ID: "h2", MemoryMB: 2048, HeartbeatAt: now.Add(-time.Minute)}, // lost
		{ID: "h3", MemoryMB: 1024, HeartbeatAt: now},                   // draining, no dynos: drained
	} {
		_, err := st.Hosts.Put(ctx, h.ID, h)
		put(err)
	}
	_, err := st.HostSettings.Put(ctx, "h3", model.HostSettings{HostID: "h3", Drain: true})
	put(err)
	dyno := func(id, host, typ, size, state string) {
		a := model.Assignment{ID: id, HostID: host, AppID: "app1", AppName: "secret-app-name", Type: typ, Name: typ + ".1",
			Size: size, Env: map[string]string{"TOKEN": "env-value-9f2"}}
		if host == "" {
			a.PendingReason = "no room"
		}
		_, err := st.Assignments.Put(ctx, a.Key(), a)
		put(err)
		if state != "" {
			_, err := st.Statuses.Put(ctx, model.StatusKey("app1", id), model.DynoStatus{ID: id, HostID: host, AppID: "app1", Type: typ, State: state})
			put(err)
		}
	}
	dyno("d1", "h1", "web", "standard-1X", model.StateUp)
	dyno("d2", "h1", "web", "standard-2X", model.StateUp)
	dyno("d3", "h1", "worker", "standard-1X", "") // not reported yet: starting
	dyno("d4", "h1", "worker", "standard-1X", model.StateCrashed)
	dyno("d5", "", "web", "standard-1X", "") // pending
	dyno("d6", "h2", "web", "standard-1X", model.StateUp)

	obs := newServerObservability()
	obs.Registry.MustRegister(PlatformCollector(st, 5*time.Second, func() time.Time { return now }))
	obs.AddText(router.New(router.Config{}, st).MetricsHandler())
	ms := httptest.NewServer(obs.Handler())
	defer ms.Close()

	got, text := metricstest.Scrape(t, ms.URL+"/metrics")
	k := metricstest.Key
	const mb = 1 << 20
	for _, c := range []struct {
		series string
		want   float64
	}{
		{k("dyno_dynos", "state", "up", "type", "web"), 3},
		{k("dyno_dynos", "state", "starting", "type", "worker"), 1},
		{k("dyno_dynos", "state", "crashed", "type", "worker"), 1},
		{k("dyno_dynos", "state", "pending", "type", "web"), 1},
		{k("dyno_hosts", "state", "live"), 1},
		{k("dyno_hosts", "state", "lost"), 1},
		{k("dyno_hosts", "state", "drained"), 1},
		{k("dyno_hosts", "state", "draining"), 0},
		{k("dyno_host_state", "host", "h1", "state", "live"), 1},
		{k("dyno_host_state", "host", "h1", "state", "lost"), 0},
		{k("dyno_host_state", "host", "h2", "state", "lost"), 1},
		{k("dyno_host_memory_bytes", "host", "h1"), 4096 * mb},
		// 1X + 2X + the starting 1X; the crashed worker reserves nothing.
		{k("dyno_host_memory_reserved_bytes", "host", "h1"), (512 + 1024 + 512) * mb},
		{k("dyno_host_dynos", "host", "h1"), 4},
		{k("dyno_host_dynos", "host", "h2"), 1},
		{k("dyno_host_heartbeat_age_seconds", "host", "h2"), 60},
		// The router's hand-written exposition rides along.
		{k("dyno_router_client_connections"), 0},
		{k("dyno_router_unknown_host_requests_total"), 0},
		// And the manifold's series exist from the start.
		{k("dyno_manifold_running"), 0},
	} {
		if v, ok := got[c.series]; !ok || v != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, v, ok, c.want)
		}
	}
	if !got.Has("go_goroutines") || !got.Has("dyno_agent_heartbeats_total", "result", "ok") {
		t.Errorf("the Go runtime's or the agent's series are missing:\n%s", text)
	}
	if strings.Contains(text, "env-value-9f2") || strings.Contains(text, "secret-app-name") {
		t.Errorf("an env value or app name is in the metrics:\n%s", text)
	}
}

// TestObservabilityServe serves /metrics on a port of its own and stops.
func TestObservabilityServe(t *testing.T) {
	obs := newAgentObservability()
	var out strings.Builder
	stop, err := obs.Serve(context.Background(), "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, url, ok := strings.Cut(strings.TrimSpace(out.String()), "Metrics: ")
	if !ok {
		t.Fatalf("no metrics URL printed: %q", out.String())
	}
	got, text := metricstest.Scrape(t, url)
	if !got.Has("dyno_agent_heartbeats_total") || got.Has("dyno_api_requests_in_flight") || got.Has("dyno_manifold_running") {
		t.Errorf("an agent's /metrics should have the agent's series only:\n%s", text)
	}
	stop()
	stop2, err := obs.Serve(context.Background(), "", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stop2()
}
