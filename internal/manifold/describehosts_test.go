package manifold

import (
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// TestDescribeHostsEndedOneOffs: one-offs that ended stay assigned a while
// for their exit status, but a host's dyno count, reservation and drain
// state see only what runs.
func TestDescribeHostsEndedOneOffs(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exit := func(code int) *int { return &code }
	hosts := []model.Host{{ID: "h1", MemoryMB: 4096, HeartbeatAt: now}}
	web := model.Assignment{ID: "w1", HostID: "h1", Type: "web", Name: "web.1", Size: "standard-1X"}
	run := func(id string) model.Assignment {
		return model.Assignment{ID: id, HostID: "h1", Type: "run", Name: "run." + id, Size: "standard-1X", OneOff: true}
	}
	size := memoryMB("standard-1X")

	tests := []struct {
		name         string
		assigns      []model.Assignment
		statuses     map[string]model.DynoStatus
		drain        bool
		wantDynos    int
		wantReserved int
		wantState    string
	}{
		{name: "running one-off counts", assigns: []model.Assignment{web, run("r1")},
			statuses:  map[string]model.DynoStatus{"w1": {State: model.StateUp}, "r1": {State: model.StateUp}},
			wantDynos: 2, wantReserved: 2 * size, wantState: model.HostLive},
		{name: "ended one-offs do not", assigns: []model.Assignment{web, run("r1"), run("r2"), run("r3")},
			statuses: map[string]model.DynoStatus{"w1": {State: model.StateUp},
				"r1": {State: model.StateDown, ExitStatus: exit(0)}, "r2": {State: model.StateCrashed, ExitStatus: exit(1)},
				"r3": {State: model.StateDown}}, // stopping, not yet ended
			wantDynos: 2, wantReserved: 2 * size, wantState: model.HostLive},
		{name: "a crashed formation dyno counts but reserves nothing", assigns: []model.Assignment{web},
			statuses:  map[string]model.DynoStatus{"w1": {State: model.StateCrashed, ExitStatus: exit(1)}},
			wantDynos: 1, wantReserved: 0, wantState: model.HostLive},
		{name: "drained when only ended one-offs remain", assigns: []model.Assignment{run("r1")}, drain: true,
			statuses:  map[string]model.DynoStatus{"r1": {State: model.StateDown, ExitStatus: exit(0)}},
			wantDynos: 0, wantReserved: 0, wantState: model.HostDrained},
		{name: "draining while a one-off runs", assigns: []model.Assignment{run("r1")}, drain: true,
			statuses:  map[string]model.DynoStatus{"r1": {State: model.StateUp}},
			wantDynos: 1, wantReserved: size, wantState: model.HostDraining},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			settings := map[string]model.HostSettings{"h1": {HostID: "h1", Drain: tc.drain}}
			got := DescribeHosts(hosts, settings, tc.assigns, tc.statuses, now, time.Minute)
			if len(got) != 1 {
				t.Fatalf("got %d hosts", len(got))
			}
			h := got[0]
			if h.Dynos != tc.wantDynos || h.ReservedMB != tc.wantReserved || h.State != tc.wantState {
				t.Errorf("dynos %d reserved %d state %s, want %d %d %s", h.Dynos, h.ReservedMB, h.State, tc.wantDynos, tc.wantReserved, tc.wantState)
			}
		})
	}
}
