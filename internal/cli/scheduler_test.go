package cli

import (
	"net/http"
	"strings"
	"testing"
)

func TestScheduler(t *testing.T) {
	exit1 := 1
	run1 := map[string]any{"id": "6f1c2b3a.1", "job": map[string]string{"id": "6f1c2b3a-0000-4000-8000-000000000001"},
		"due_at": "2026-11-26T13:00:00Z", "state": "ended", "dyno": map[string]string{"id": "d1", "name": "scheduler.4821"},
		"claimed_by": "host-1", "started_at": "2026-11-26T13:00:00Z", "ended_at": "2026-11-26T13:00:07Z", "exit_status": exit1, "error": nil}
	missed := map[string]any{"id": "6f1c2b3a.0", "job": map[string]string{"id": "6f1c2b3a-0000-4000-8000-000000000001"},
		"due_at": "2026-11-26T12:00:00Z", "state": "missed", "dyno": nil, "claimed_by": "host-1", "started_at": nil,
		"ended_at": nil, "exit_status": nil, "error": "no scheduler was running at the due time"}
	skipped := map[string]any{"id": "6f1c2b3a.2", "job": map[string]string{"id": "6f1c2b3a-0000-4000-8000-000000000001"},
		"due_at": "2026-11-26T14:00:00Z", "state": "skipped", "dyno": nil, "claimed_by": "host-1", "started_at": nil,
		"ended_at": nil, "exit_status": nil, "error": "the previous run (scheduler.4821) was still running"}
	job := map[string]any{"id": "6f1c2b3a-0000-4000-8000-000000000001", "app": map[string]string{"id": "app-id", "name": "hello"},
		"command": "bin/report --all", "schedule": "every hour at :00", "every": "1h", "at": nil, "cron": "0 * * * *",
		"dyno_size": "basic", "allow_overlap": false, "next_due_at": "2026-11-26T15:00:00Z", "last_run": run1,
		"created_at": "2026-11-26T12:00:00Z", "updated_at": "2026-11-26T12:00:00Z"}
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/scheduler/jobs", http.StatusOK, []any{job})
	api.handle("POST /apps/{app}/scheduler/jobs", http.StatusCreated, job)
	api.handle("DELETE /apps/{app}/scheduler/jobs/{id}", http.StatusOK, job)
	api.handle("GET /apps/{app}/scheduler/jobs/{id}/runs", http.StatusOK, []any{skipped, run1, missed})
	tests := []struct {
		args                 []string
		wantStdout           []string
		wantMethod, wantPath string
		wantBody             string
	}{
		{[]string{"scheduler"}, []string{"=== Scheduled jobs (UTC)", "6f1c2b3a  every hour at :00  bin/report --all  2026-11-26 15:00Z  2026-11-26 13:00Z scheduler.4821  exit 1"}, "GET", "/apps/hello/scheduler/jobs", ""},
		{[]string{"scheduler", "--json"}, []string{`"cron": "0 * * * *"`}, "GET", "/apps/hello/scheduler/jobs", ""},
		{[]string{"scheduler:add", "--every", "1h", "--at", ":30", "bin/report", "--all"}, []string{"Scheduled job 6f1c2b3a on hello: bin/report --all, every hour at :00. First run 2026-11-26 15:00Z."},
			"POST", "/apps/hello/scheduler/jobs", `{"command":"bin/report --all","every":"1h","at":":30"}`},
		{[]string{"scheduler:add", "--cron", "*/5 * * * *", "--size", "basic", "--allow-overlap", "--", "bin/x"}, []string{"Scheduled job"},
			"POST", "/apps/hello/scheduler/jobs", `{"command":"bin/x","cron":"*/5 * * * *","size":"basic","allow_overlap":true}`},
		{[]string{"scheduler:remove", "6f1c2b3a"}, []string{"Removed job 6f1c2b3a (bin/report --all, every hour at :00) from hello."}, "DELETE", "/apps/hello/scheduler/jobs/6f1c2b3a", ""},
		{[]string{"scheduler:runs", "6f1c2b3a"}, []string{
			"2026-11-26 14:00Z  -               -          -          skipped: still running",
			"2026-11-26 13:00Z  scheduler.4821  13:00:00Z  13:00:07Z  exit 1",
			"2026-11-26 12:00Z  -               -          -          missed"}, "GET", "/apps/hello/scheduler/jobs/6f1c2b3a/runs", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(api.requests(tc.wantMethod, tc.wantPath))
			r := run(t, api, map[string]string{"DYNO_APP": "hello"}, tc.args...)
			wantOK(t, r)
			for _, w := range tc.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout %q\nlacks %q", r.stdout, w)
				}
			}
			reqs := api.requests(tc.wantMethod, tc.wantPath)[before:]
			if len(reqs) != 1 {
				t.Fatalf("sent %d %s %s requests, want 1", len(reqs), tc.wantMethod, tc.wantPath)
			}
			if tc.wantBody != "" && strings.TrimSpace(reqs[0].Body) != tc.wantBody {
				t.Errorf("body %s, want %s", reqs[0].Body, tc.wantBody)
			}
		})
	}
	r := run(t, api, map[string]string{"DYNO_APP": "hello"}, "scheduler:add", "bin/x")
	if r.code == 0 || !strings.Contains(r.stderr, "no schedule given") {
		t.Errorf("scheduler:add without a schedule: %+v", r)
	}
}
