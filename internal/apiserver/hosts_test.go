package apiserver

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

func TestHosts(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	now := e.clock()
	for _, h := range []model.Host{
		{ID: "h1", Address: "10.0.0.1", MemoryMB: 2048, CPUs: 4, HeartbeatAt: now.Add(-time.Second), StartedAt: now.Add(-time.Hour)},
		{ID: "h2", Address: "10.0.0.2", MemoryMB: 1024, CPUs: 2, HeartbeatAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Hour)},
		{ID: "h3", Address: "10.0.0.3", MemoryMB: 1024, CPUs: 2, HeartbeatAt: now, StartedAt: now},
	} {
		if _, err := e.st.Hosts.Put(ctx, h.ID, h); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []model.Assignment{
		{ID: "d1", HostID: "h1", AppID: "a1", Type: "web", Name: "web.1", Size: "standard-2X"},
		{ID: "d2", HostID: "h1", AppID: "a1", Type: "worker", Name: "worker.1", Size: "standard-1X"},
		{ID: "d3", HostID: "h1", AppID: "a1", Type: "worker", Name: "worker.2", Size: "standard-1X"}, // crashed: reserves nothing
		{ID: "d4", HostID: "h2", AppID: "a1", Type: "web", Name: "web.2", Size: "standard-1X"},
	} {
		if _, err := e.st.Assignments.Put(ctx, a.Key(), a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.Statuses.Put(ctx, model.StatusKey("a1", "d3"), model.DynoStatus{ID: "d3", AppID: "a1", HostID: "h1", State: model.StateCrashed}); err != nil {
		t.Fatal(err)
	}

	var hosts []hostJSON
	e.must(http.StatusOK, "GET", "/hosts", nil, &hosts)
	if len(hosts) != 3 {
		t.Fatalf("hosts = %+v", hosts)
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	if h1.ID != "h1" || h1.State != "live" || h1.MemoryMB != 2048 || h1.MemoryReservedMB != 1536 || h1.MemoryFreeMB != 512 ||
		h1.Dynos != 3 || h1.CPUs != 4 || h1.Address != "10.0.0.1" || h1.HeartbeatAge != 1 || h1.StartedAt != "2026-01-02T02:04:05Z" || h1.Drain {
		t.Errorf("h1 = %+v", h1)
	}
	if h2.State != "lost" || h2.Dynos != 1 || h2.HeartbeatAge != 60 {
		t.Errorf("h2 = %+v, want lost (a minute without heartbeat)", h2)
	}
	if h3.State != "live" || h3.Dynos != 0 || h3.MemoryFreeMB != 1024 {
		t.Errorf("h3 = %+v", h3)
	}

	tests := []struct {
		name, method, path string
		wantStatus         int
		wantState          string
		wantDrain          bool
	}{
		{"drain a host with dynos", "POST", "/hosts/h1/actions/drain", 200, "draining", true},
		{"draining again changes nothing", "POST", "/hosts/h1/actions/drain", 200, "draining", true},
		{"an empty host is drained at once", "POST", "/hosts/h3/actions/drain", 200, "drained", true},
		{"undrain", "POST", "/hosts/h3/actions/undrain", 200, "live", false},
		{"a lost host stays lost while draining", "POST", "/hosts/h2/actions/drain", 200, "lost", true},
		{"unknown host", "POST", "/hosts/nope/actions/drain", 404, "", false},
		{"unknown action", "POST", "/hosts/h1/actions/reboot", 404, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantStatus != http.StatusOK {
				status, body := e.call(tc.method, tc.path, nil)
				if status != tc.wantStatus || !strings.Contains(string(body), "not_found") {
					t.Fatalf("status %d %s, want %d not_found", status, body, tc.wantStatus)
				}
				return
			}
			var h hostJSON
			e.must(http.StatusOK, tc.method, tc.path, nil, &h)
			if h.State != tc.wantState || h.Drain != tc.wantDrain || (h.DrainRequestedAt != nil) != tc.wantDrain {
				t.Fatalf("host = %+v, want state %s drain %v", h, tc.wantState, tc.wantDrain)
			}
		})
	}
	// The request is in the control plane's record, not the agent's.
	set, _, err := e.st.HostSettings.Get(ctx, "h1")
	if err != nil || !set.Drain || set.HostID != "h1" || !set.DrainAt.Equal(now) {
		t.Fatalf("host-settings h1 = %+v, %v", set, err)
	}
	if h, _, _ := e.st.Hosts.Get(ctx, "h1"); h.MemoryMB != 2048 {
		t.Fatalf("the agent's host record changed: %+v", h)
	}
}
