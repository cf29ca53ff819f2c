package manifold

import (
	"slices"
	"testing"

	"github.com/dyno-platform/dyno/internal/model"
)

// lost marks hosts lost: no longer live, their dynos suspects.
func (f *fixture) lost(ids ...string) *fixture {
	if f.s.Lost == nil {
		f.s.Lost = map[string]bool{}
	}
	for _, id := range ids {
		f.s.Lost[id] = true
		f.s.Hosts = slices.DeleteFunc(f.s.Hosts, func(h model.Host) bool { return h.ID == id })
	}
	return f
}

// draining marks live hosts as draining.
func (f *fixture) draining(ids ...string) *fixture {
	if f.s.Draining == nil {
		f.s.Draining = map[string]bool{}
	}
	for _, id := range ids {
		f.s.Draining[id] = true
	}
	return f
}

// orphanStatus adds a status reported from host for a dyno with no assignment.
func (f *fixture) orphanStatus(id, host string) *fixture {
	f.s.Statuses[id] = model.DynoStatus{ID: id, AppID: "a1", HostID: host, State: model.StateUp}
	return f
}

func TestPlacement(t *testing.T) {
	const draining = "every live host is draining: undrain one (dyno hosts:undrain HOST) or start a host agent"
	tests := []struct {
		name        string
		state       *fixture
		want        []string
		wantPending bool
	}{
		// Spread.
		{name: "web dynos spread over every host", state: newFixture(3, 0).hosts(8192, 8192, 8192),
			want: []string{"create web.1 v1 gen0 crash0 on h1", "create web.2 v1 gen0 crash0 on h2", "create web.3 v1 gen0 crash0 on h3"}},
		{name: "spread beats free memory", state: newFixture(2, 0).hosts(1024, 8192),
			want: []string{"create web.1 v1 gen0 crash0 on h2", "create web.2 v1 gen0 crash0 on h1"}},
		{name: "two web share a host only when the other is full", state: newFixture(3, 0).hosts(512, 8192),
			want: []string{"create web.1 v1 gen0 crash0 on h2", "create web.2 v1 gen0 crash0 on h1", "create web.3 v1 gen0 crash0 on h2"}},
		{name: "running dynos of the type count", state: newFixture(3, 0).dyno("w1", "web", 1, "up").dyno("w2", "web", 2, "up", onHost("h2")),
			want: []string{"create web.3 v1 gen0 crash0 on h1"}},
		{name: "a tie goes to the most free memory", state: newFixture(1, 1).dyno("k1", "worker", 1, "up", onHost("h1")),
			want: []string{"create web.1 v1 gen0 crash0 on h2"}},
		{name: "other apps' dynos do not count for spread", state: newFixture(1, 0).dyno("x1", "web", 1, "up", func(a *model.Assignment) {
			a.AppID = "other"
		}),
			// x1 belongs to no app of the state: it is stopped, and web.1
			// goes to h1 (same free memory after the stop, lowest ID).
			want: []string{"create web.1 v1 gen0 crash0 on h1", "delete x1"}},

		// Drains.
		{name: "a draining host takes no new dynos", state: newFixture(2, 0).draining("h1"),
			want: []string{"create web.1 v1 gen0 crash0 on h2", "create web.2 v1 gen0 crash0 on h2"}},
		{name: "draining: web surges elsewhere and keeps serving", state: newFixture(1, 0).dyno("w1", "web", 1, "up").draining("h1"),
			want: []string{"create web.1 v1 gen0 crash0 on h2"}},
		{name: "draining: old web waits while its replacement starts", state: newFixture(1, 0).dyno("w1", "web", 1, "up").
			dyno("w2", "web", 1, "starting", onHost("h2")).draining("h1")},
		{name: "draining: old web stops once its replacement is up", state: newFixture(1, 0).dyno("w1", "web", 1, "up").
			dyno("w2", "web", 1, "up", onHost("h2")).draining("h1"),
			want: []string{"delete w1"}},
		{name: "draining: a worker is moved at once", state: newFixture(0, 1).dyno("k1", "worker", 1, "up").draining("h1"),
			want: []string{"create worker.1 v1 gen0 crash0 on h2", "delete k1"}},
		{name: "draining with no room elsewhere: the dyno stays, its move waits", state: newFixture(1, 0).hosts(8192).
			dyno("w1", "web", 1, "up").draining("h1"),
			want: []string{"pending web.1 v1 crash0: " + draining}, wantPending: true},
		{name: "a drained host's idle state plans nothing", state: newFixture(1, 0).dyno("w1", "web", 1, "up", onHost("h2")).draining("h1")},

		// Lost hosts.
		{name: "lost host: suspects stay while replacements start", state: newFixture(1, 1).dyno("w1", "web", 1, "up").
			dyno("k1", "worker", 1, "up").lost("h1"),
			want: []string{"create web.1 v1 gen0 crash0 on h2", "create worker.1 v1 gen0 crash0 on h2"}},
		{name: "lost host: suspect kept while its replacement starts", state: newFixture(1, 0).dyno("w1", "web", 1, "up").
			dyno("w2", "web", 1, "starting", onHost("h2")).lost("h1")},
		{name: "lost host: suspect and its status go once the replacement is up", state: newFixture(1, 0).dyno("w1", "web", 1, "up").
			dyno("w2", "web", 1, "up", onHost("h2")).lost("h1"),
			want: []string{"delete w1", "forget status w1"}},
		{name: "lost host: an outdated suspect stays too", state: newFixture(1, 0).dyno("w1", "web", 1, "up").release(2).lost("h1"),
			want: []string{"create web.1 v2 gen0 crash0 on h2"}},
		{name: "lost host: a crashed suspect goes at once", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed").lost("h1"),
			want: []string{"create worker.1 v1 gen0 crash0 on h2", "delete k1", "forget status k1"}},
		{name: "lost host and no room: the suspect stays, its replacement waits", state: newFixture(1, 0).hosts(8192).
			dyno("w1", "web", 1, "up").lost("h1"),
			want: []string{"pending web.1 v1 crash0: " + noHost}, wantPending: true},
		{name: "lost host: suspects reserve nothing on live hosts", state: newFixture(2, 0).hosts(512, 512).
			dyno("w1", "web", 1, "up").dyno("w2", "web", 2, "up").lost("h1"),
			want:        []string{"create web.1 v1 gen0 crash0 on h2", "pending web.2 v1 crash0: no host has 512 MB free for standard-1X (largest free: 0 MB on h2)"},
			wantPending: true},
		{name: "lost host: a leftover status is deleted", state: newFixture(0, 0).orphanStatus("gone", "h1").lost("h1"),
			want: []string{"forget status gone"}},
		{name: "lost host returns before the replacement is up: the extra copy goes", state: newFixture(1, 0).
			dyno("w1", "web", 1, "up").dyno("w2", "web", 1, "starting", onHost("h2")),
			want: []string{"delete w2"}},
		{name: "lost host returns after: its status is its agent's to delete", state: newFixture(1, 0).
			dyno("w2", "web", 1, "up", onHost("h2")).orphanStatus("w1", "h1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Reconcile(tt.state.s, t0)
			got := summary(p)
			for _, st := range p.DeleteStatuses {
				got = append(got, "forget status "+st.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("plan:\n  got  %q\n  want %q", got, tt.want)
			}
			if gotPending := len(p.Pending) > 0; gotPending != tt.wantPending {
				t.Errorf("Pending = %q, want some: %v", p.Pending, tt.wantPending)
			}
		})
	}
}
