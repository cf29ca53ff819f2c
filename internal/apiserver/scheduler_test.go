package apiserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/scheduler"
)

func TestSchedulerJobs(t *testing.T) {
	e := newEnv(t, 0) // now: 2026-01-02 03:04:05 UTC
	app := e.createApp("sched")
	var daily schedulerJobJSON
	e.must(http.StatusCreated, "POST", "/apps/sched/scheduler/jobs",
		map[string]any{"command": "bin/report --all", "every": "1d", "at": "09:30", "size": "standard-2x"}, &daily)
	if daily.Command != "bin/report --all" || daily.Cron != "30 9 * * *" || daily.Schedule != "every day at 09:30 UTC" ||
		daily.DynoSize != "standard-2X" || daily.NextDueAt == nil || *daily.NextDueAt != "2026-01-02T09:30:00Z" ||
		daily.App.Name != "sched" || daily.LastRun != nil || daily.AllowOverlap || daily.CreatedAt != "2026-01-02T03:04:05Z" {
		t.Fatalf("created job %+v", daily)
	}
	var minutely schedulerJobJSON
	e.must(http.StatusCreated, "POST", "/apps/sched/scheduler/jobs",
		map[string]any{"command": "bin/tick", "cron": "* * * * *", "allow_overlap": true}, &minutely)
	if minutely.Every != nil || minutely.Cron != "* * * * *" || minutely.DynoSize != model.DefaultSize || !minutely.AllowOverlap {
		t.Fatalf("cron job %+v", minutely)
	}

	tests := []struct {
		name    string
		body    map[string]any
		want    int
		wantMsg string
	}{
		{"no command", map[string]any{"every": "1h"}, 422, "No command"},
		{"no schedule", map[string]any{"command": "x"}, 422, "Give a schedule"},
		{"bad interval", map[string]any{"command": "x", "every": "5m"}, 422, "10m, 1h and 1d"},
		{"bad at", map[string]any{"command": "x", "every": "1d", "at": "25:00"}, 422, "HH:MM"},
		{"both", map[string]any{"command": "x", "every": "1h", "cron": "* * * * *"}, 422, "not both"},
		{"bad cron", map[string]any{"command": "x", "cron": "61 * * * *"}, 422, "minute hour"},
		{"never due", map[string]any{"command": "x", "cron": "0 0 31 2 *"}, 422, "never due"},
		{"bad size", map[string]any{"command": "x", "every": "1h", "size": "huge"}, 422, "Unknown dyno size"},
		{"unknown field", map[string]any{"command": "x", "every": "1h", "frequency": "daily"}, 400, "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call("POST", "/apps/sched/scheduler/jobs", tc.body)
			if status != tc.want || !strings.Contains(string(body), tc.wantMsg) {
				t.Fatalf("status %d %s, want %d with %q", status, body, tc.want, tc.wantMsg)
			}
		})
	}

	// Runs as the schedulers record them.
	due := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	exit := 2
	for i, r := range []model.SchedulerRun{
		{State: model.RunMissed, DueAt: due.Add(-2 * time.Minute)},
		{State: model.RunEnded, DueAt: due.Add(-time.Minute), DynoID: "d1", DynoName: "scheduler.1234", StartedAt: due.Add(-time.Minute), EndedAt: due, ExitStatus: &exit},
		{State: model.RunRunning, DueAt: due, DynoID: "d2", DynoName: "scheduler.5678", StartedAt: due},
	} {
		r.JobID, r.AppID, r.ClaimedBy = minutely.ID, app.ID, "node-1"
		if _, err := e.st.SchedulerRuns.Create(t.Context(), model.SchedulerRunKey(app.ID, minutely.ID, r.DueAt), r); err != nil {
			t.Fatal(i, err)
		}
	}
	var runs []schedulerRunJSON
	e.must(http.StatusOK, "GET", "/apps/sched/scheduler/jobs/"+minutely.ID[:8]+"/runs", nil, &runs)
	if len(runs) != 3 || runs[0].State != "running" || runs[0].Dyno == nil || runs[0].Dyno.Name != "scheduler.5678" ||
		runs[1].ExitStatus == nil || *runs[1].ExitStatus != 2 || runs[1].EndedAt == nil || runs[2].State != "missed" ||
		runs[2].Dyno != nil || runs[0].DueAt != "2026-01-02T03:04:00Z" || runs[0].Job.ID != minutely.ID {
		t.Fatalf("runs %+v", runs)
	}
	var list []schedulerJobJSON
	e.must(http.StatusOK, "GET", "/apps/sched/scheduler/jobs", nil, &list)
	if len(list) != 2 || list[0].ID != daily.ID || list[0].LastRun != nil || list[1].LastRun == nil || list[1].LastRun.State != "running" {
		t.Fatalf("list %+v", list)
	}
	var one schedulerJobJSON
	e.must(http.StatusOK, "GET", "/apps/sched/scheduler/jobs/"+daily.ID, nil, &one)
	if one.ID != daily.ID {
		t.Fatalf("get %+v", one)
	}
	for _, ref := range []string{"nope-nope", "abc", strings.Repeat("0", 36)} {
		if status, _ := e.call("GET", "/apps/sched/scheduler/jobs/"+ref, nil); status != 404 {
			t.Errorf("GET job %q: %d, want 404", ref, status)
		}
	}

	e.must(http.StatusOK, "DELETE", "/apps/sched/scheduler/jobs/"+daily.ID[:8], nil, nil)
	e.must(http.StatusOK, "GET", "/apps/sched/scheduler/jobs", nil, &list)
	if len(list) != 1 || list[0].ID != minutely.ID {
		t.Fatalf("after remove: %+v", list)
	}
	// Jobs go with their app.
	e.must(http.StatusOK, "DELETE", "/apps/sched", nil, nil)
	left, err := e.st.SchedulerJobs.List(t.Context(), ">")
	if err != nil || len(left) != 0 {
		t.Fatalf("jobs left after the app was deleted: %v %v", left, err)
	}
}

func TestSchedulerLauncher(t *testing.T) {
	e := newEnv(t, 0)
	app := e.createApp("sched-run")
	l := e.srv.SchedulerLauncher()
	req := scheduler.LaunchRequest{AppID: app.ID, Command: "worker --once", NamePrefix: "scheduler"}
	if _, err := l.Launch(t.Context(), req); err == nil || !strings.Contains(err.Error(), "deploy") {
		t.Fatalf("launch without a release: %v", err)
	}
	e.deploy("sched-run", tarball(t, goodSource...))
	d, err := l.Launch(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Name, "scheduler.") || d.ID == "" {
		t.Fatalf("launched %+v", d)
	}
	key := model.StatusKey(app.ID, d.ID)
	o, _, err := e.st.OneOffs.Get(t.Context(), key)
	if err != nil || o.Command != "sh -c 'sleep 1000' --once" || o.Type != "scheduler" {
		t.Fatalf("one-off request %+v %v", o, err)
	}
	check := func(wantStatus int, wantOK bool) {
		t.Helper()
		status, ok, err := l.Exited(t.Context(), app.ID, d.ID)
		if err != nil || ok != wantOK || (ok && status != wantStatus) {
			t.Fatalf("Exited = %d %v %v, want %d %v", status, ok, err, wantStatus, wantOK)
		}
	}
	check(0, false) // waiting for a host
	st := model.DynoStatus{ID: d.ID, AppID: app.ID, Name: d.Name, Type: "scheduler", State: model.StateUp}
	if _, err := e.st.Statuses.Put(t.Context(), key, st); err != nil {
		t.Fatal(err)
	}
	check(0, false) // running
	three := 3
	st.State, st.ExitStatus = model.StateCrashed, &three
	if _, err := e.st.Statuses.Put(t.Context(), key, st); err != nil {
		t.Fatal(err)
	}
	check(3, true)
	_ = e.st.Statuses.Delete(t.Context(), key, 0)
	_ = e.st.OneOffs.Delete(t.Context(), key, 0)
	check(-1, true) // gone: ended, status unknown
}
