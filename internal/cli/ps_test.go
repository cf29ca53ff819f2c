package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestScale(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantBody   string // the exact PATCH body; "" = no PATCH
		wantStdout string
		wantStderr string
		wantCode   int
	}{
		{name: "absolute", args: []string{"web=3", "worker=1"},
			wantBody:   `{"updates":[{"type":"web","quantity":"3"},{"type":"worker","quantity":"1"}]}`,
			wantStderr: "Scaling dynos on hello... done, now running web at 3:standard-1X, worker at 1:standard-1X\n"},
		{name: "size and relative", args: []string{"web=2:standard-2x", "worker+1"},
			wantBody:   `{"updates":[{"type":"web","quantity":"2","size":"standard-2x"},{"type":"worker","quantity":"+1"}]}`,
			wantStderr: "Scaling dynos on hello... done, now running web at 3:standard-1X, worker at 1:standard-1X\n"},
		{name: "minus", args: []string{"worker-1"},
			wantBody:   `{"updates":[{"type":"worker","quantity":"-1"}]}`,
			wantStderr: "Scaling dynos on hello... done, now running worker at 1:standard-1X\n"},
		{name: "show formation", args: nil, wantStdout: "web=3:standard-1X worker=1:standard-1X\n"},
		{name: "bad form", args: []string{"web"}, wantCode: 1,
			wantStderr: "Error: cannot read \"web\": use TYPE=QUANTITY[:SIZE], TYPE+N or TYPE-N, such as web=3:standard-2x worker+1\n"},
		{name: "bad size form", args: []string{"web=3:"}, wantCode: 1,
			wantStderr: "Error: cannot read \"web=3:\": use TYPE=QUANTITY[:SIZE], TYPE+N or TYPE-N, such as web=3:standard-2x worker+1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			formation := []any{formationJSON("worker", 1), formationJSON("web", 3)}
			api.handle("PATCH /apps/{app}/formation", http.StatusOK, formation)
			api.handle("GET /apps/{app}/formation", http.StatusOK, formation)
			r := run(t, api, nil, append([]string{"ps:scale", "-a", "hello"}, tc.args...)...)
			if r.code != tc.wantCode || r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("got exit %d stdout %q stderr %q\nwant exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			patches := api.requests(http.MethodPatch, "/apps/hello/formation")
			if tc.wantBody == "" {
				if len(patches) != 0 {
					t.Errorf("sent %d PATCH, want none", len(patches))
				}
				return
			}
			if len(patches) != 1 {
				t.Fatalf("sent %d PATCH, want 1", len(patches))
			}
			if got := strings.TrimSpace(patches[0].Body); got != tc.wantBody {
				t.Errorf("PATCH body %s\nwant       %s", got, tc.wantBody)
			}
			if ct := patches[0].Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestPs(t *testing.T) {
	api := newFakeAPI(t)
	worker := dynoJSON("worker.1", "crashed", 2)
	worker["command"] = "sh worker.sh"
	oneOff := dynoJSON("run.4821", "up", 2)
	oneOff["command"] = "bash"
	dynos := []any{dynoJSON("web.10", "up", 2), dynoJSON("web.2", "starting", 2), worker, dynoJSON("web.1", "up", 2), oneOff}
	api.handle("GET /apps/{app}/dynos", http.StatusOK, dynos)

	r := run(t, api, nil, "ps", "-a", "hello")
	wantOK(t, r)
	want := `=== run: one-off processes (1)
run.4821 (standard-1X): up 2026/11/26 14:00:00 +0000 (~ 5s ago): bash

=== web (standard-1X): python3 app.py (3)
web.1: up 2026/11/26 14:00:00 +0000 (~ 5s ago)
web.2: starting 2026/11/26 14:00:00 +0000 (~ 5s ago)
web.10: up 2026/11/26 14:00:00 +0000 (~ 5s ago)

=== worker (standard-1X): sh worker.sh (1)
worker.1: crashed 2026/11/26 14:00:00 +0000 (~ 5s ago)
`
	if r.stdout != want {
		t.Errorf("ps printed\n%s\nwant\n%s", r.stdout, want)
	}

	r = run(t, api, nil, "ps", "-a", "hello", "--json")
	wantOK(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 5 || got[0]["name"] != "web.10" {
		t.Errorf("ps --json printed %q (%v)", r.stdout, err)
	}
	if !strings.HasPrefix(r.stdout, "[\n  {\n    \"") {
		t.Errorf("ps --json is not indented: %q", r.stdout[:20])
	}
}

func TestRestartAndStop(t *testing.T) {
	tests := []struct {
		args       []string
		wantMethod string
		wantPath   string
		wantStderr string
	}{
		{[]string{"ps:restart", "web.2"}, "DELETE", "/apps/hello/dynos/web.2", "Restarting web.2 dyno on hello... done\n"},
		{[]string{"ps:restart", "web"}, "DELETE", "/apps/hello/formations/web", "Restarting web dynos on hello... done\n"},
		{[]string{"ps:restart", "-p", "worker"}, "DELETE", "/apps/hello/formations/worker", "Restarting worker dynos on hello... done\n"},
		{[]string{"ps:restart"}, "DELETE", "/apps/hello/dynos", "Restarting dynos on hello... done\n"},
		{[]string{"ps:stop", "web.2"}, "POST", "/apps/hello/dynos/web.2/actions/stop", "Stopping web.2 dyno on hello... done\n"},
		{[]string{"ps:stop", "web"}, "POST", "/apps/hello/formations/web/actions/stop", "Stopping web dynos on hello... done\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api := newFakeAPI(t)
			api.handle(tc.wantMethod+" "+tc.wantPath, http.StatusAccepted, map[string]any{})
			r := run(t, api, nil, append(tc.args, "-a", "hello")...)
			wantOK(t, r)
			if len(api.requests(tc.wantMethod, tc.wantPath)) != 1 || len(api.requests("", "")) != 1 {
				t.Errorf("requests %+v, want one %s %s", api.requests("", ""), tc.wantMethod, tc.wantPath)
			}
			if r.stderr != tc.wantStderr {
				t.Errorf("stderr %q, want %q", r.stderr, tc.wantStderr)
			}
		})
	}
	r := run(t, newFakeAPI(t), nil, "ps:stop", "-a", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "no dyno given") {
		t.Errorf("ps:stop with no dyno: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestPsWait(t *testing.T) {
	tests := []struct {
		name      string
		dynos     func(poll int64) []any // the dynos the nth poll sees
		args      []string
		wantCode  int
		wantInErr string
	}{
		{
			name: "dynos come up",
			dynos: func(n int64) []any {
				if n < 3 {
					return []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "starting", 3), dynoJSON("worker.1", "starting", 3)}
				}
				return []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "up", 3), dynoJSON("worker.1", "up", 3)}
			},
			wantInErr: "Waiting for every dyno to be running v3... 1 / 3\nWaiting for every dyno to be running v3... done\n",
		},
		{
			name: "old release goes away",
			dynos: func(n int64) []any {
				d := []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "up", 3), dynoJSON("worker.1", "up", 3)}
				if n < 3 {
					d = append(d, dynoJSON("web.3", "down", 2))
				}
				return d
			},
			wantInErr: "running v3... done\n",
		},
		{
			name: "a scaled-down dyno goes away",
			dynos: func(n int64) []any {
				d := []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "up", 3), dynoJSON("worker.1", "up", 3)}
				if n < 3 {
					d = append(d, dynoJSON("web.3", "down", 3))
				}
				return d
			},
			wantInErr: "running v3... 3 / 3\nWaiting for every dyno to be running v3... done\n",
		},
		{
			name: "a dyno of the old size is replaced",
			dynos: func(n int64) []any {
				web2 := dynoJSON("web.2", "up", 3)
				if n < 3 {
					web2["size"] = "standard-2X"
				}
				return []any{dynoJSON("web.1", "up", 3), web2, dynoJSON("worker.1", "up", 3)}
			},
			wantInErr: "running v3... 2 / 3\nWaiting for every dyno to be running v3... done\n",
		},
		{
			name: "crashed until the timeout",
			dynos: func(int64) []any {
				crashed := dynoJSON("web.1", "crashed", 3)
				crashed["exit_status"] = 3
				return []any{crashed, dynoJSON("web.2", "crashed", 2), dynoJSON("worker.1", "starting", 3)}
			},
			args:     []string{"--timeout", "200ms"},
			wantCode: 1,
			// Told once, though every poll sees the crash; the old
			// release's crash is not this release's problem.
			wantInErr: "Waiting for every dyno to be running v3... 0 / 3\n" +
				"web.1 crashed (exit status 3): see 'dyno logs -a hello --dyno web.1'\n" +
				"Error: timed out after 200ms waiting for every dyno to be running v3 (0 / 3 up): " +
				"web.1 crashed, web.2 crashed (v2), worker.1 starting, 1 not started yet\n",
		},
		{
			name: "a crash is told and the restarted dyno comes up",
			dynos: func(n int64) []any {
				if n < 3 {
					return []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "crashed", 3), dynoJSON("worker.1", "up", 3)}
				}
				return []any{dynoJSON("web.1", "up", 3), dynoJSON("web.2", "up", 3), dynoJSON("worker.1", "up", 3)}
			},
			wantInErr: "Waiting for every dyno to be running v3... 2 / 3\n" +
				"web.2 crashed: see 'dyno logs -a hello --dyno web.2'\n" +
				"Waiting for every dyno to be running v3... done\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			var polls atomic.Int64
			api.handle("GET /apps/{app}", http.StatusOK, appJSON("hello", 3))
			worker := formationJSON("worker", 1)
			gone := formationJSON("clock", 4) // not in the release's Procfile
			gone["command"] = ""
			api.handle("GET /apps/{app}/formation", http.StatusOK, []any{formationJSON("web", 2), worker, gone})
			api.mux.HandleFunc("GET /apps/{app}/dynos", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, tc.dynos(polls.Add(1)))
			})
			r := run(t, api, nil, append([]string{"ps:wait", "-a", "hello", "--wait-interval", "10ms"}, tc.args...)...)
			if r.code != tc.wantCode || !strings.HasSuffix(r.stderr, tc.wantInErr) {
				t.Errorf("exit %d stderr %q; want exit %d and stderr with %q", r.code, r.stderr, tc.wantCode, tc.wantInErr)
			}
		})
	}
}

func TestPsType(t *testing.T) {
	sizes := []any{
		map[string]any{"id": "s1", "name": "basic", "memory": 0.5, "memory_mb": 512, "compute": 1},
		map[string]any{"id": "s2", "name": "standard-1X", "memory": 0.5, "memory_mb": 512, "compute": 1},
		map[string]any{"id": "s3", "name": "standard-2X", "memory": 1, "memory_mb": 1024, "compute": 2},
		map[string]any{"id": "s4", "name": "performance-M", "memory": 2.5, "memory_mb": 2560, "compute": 12},
	}
	// Types sorted by name; totals by size in the order the types show them.
	table := `=== Process Types
Type    Size           Qty  Memory
clock   basic          0    512 MB
web     standard-2X    2    1 GB
worker  performance-M  1    2.5 GB

=== Dyno Totals
Size           Total
basic          0
standard-2X    2
performance-M  1
`
	tests := []struct {
		name       string
		args       []string
		patchCode  int
		wantBody   string // the exact PATCH body; "" = no PATCH
		wantStdout string
		wantStderr string
		wantCode   int
	}{
		{name: "show", wantStdout: table},
		{name: "change two types", args: []string{"web=standard-2x", "worker=basic"},
			wantBody:   `{"updates":[{"type":"web","size":"standard-2x"},{"type":"worker","size":"basic"}]}`,
			wantStdout: table, wantStderr: "Scaling dynos on hello... done\n"},
		{name: "one size for every type", args: []string{"standard-2x"},
			wantBody:   `{"updates":[{"type":"web","size":"standard-2x"},{"type":"worker","size":"standard-2x"},{"type":"clock","size":"standard-2x"}]}`,
			wantStdout: table, wantStderr: "Scaling dynos on hello... done\n"},
		{name: "refused", args: []string{"web=performance-l"}, patchCode: 422,
			wantBody: `{"updates":[{"type":"web","size":"performance-l"}]}`, wantCode: 1,
			wantStderr: "Error: performance-L dynos need 14336 MB of memory, more than any host has\n"},
		{name: "bad form", args: []string{"web=2:basic"}, wantCode: 1,
			wantStderr: "Error: cannot read \"web=2:basic\": use TYPE=SIZE, such as web=standard-2x worker=basic, or a size for every type\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			web, worker, clock := formationJSON("web", 2), formationJSON("worker", 1), formationJSON("clock", 0)
			web["size"], worker["size"], clock["size"] = "standard-2X", "performance-M", "basic"
			formation := []any{web, worker, clock}
			if tc.patchCode == 422 {
				api.handle("PATCH /apps/{app}/formation", 422, map[string]string{"id": "invalid_params", "message": "performance-L dynos need 14336 MB of memory, more than any host has"})
			} else {
				api.handle("PATCH /apps/{app}/formation", http.StatusOK, formation)
			}
			api.handle("GET /apps/{app}/formation", http.StatusOK, formation)
			api.handle("GET /dyno-sizes", http.StatusOK, sizes)
			r := run(t, api, nil, append([]string{"ps:type", "-a", "hello"}, tc.args...)...)
			if r.code != tc.wantCode || r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("got exit %d stdout %q stderr %q\nwant exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			patches := api.requests(http.MethodPatch, "/apps/hello/formation")
			if tc.wantBody == "" {
				if len(patches) != 0 {
					t.Errorf("sent %d PATCH, want none", len(patches))
				}
				return
			}
			if len(patches) != 1 || strings.TrimSpace(patches[0].Body) != tc.wantBody {
				t.Errorf("PATCH requests %+v, want one with body %s", patches, tc.wantBody)
			}
		})
	}
}

func TestPsPending(t *testing.T) {
	api := newFakeAPI(t)
	pending := dynoJSON("web.3", "starting", 2)
	pending["pending_reason"] = "no host has 512 MB free for standard-1X (largest free: 0 MB on h1)"
	api.handle("GET /apps/{app}/dynos", http.StatusOK, []any{dynoJSON("web.1", "up", 2), pending})
	r := run(t, api, nil, "ps", "-a", "hello")
	wantOK(t, r)
	want := `=== web (standard-1X): python3 app.py (2)
web.1: up 2026/11/26 14:00:00 +0000 (~ 5s ago)
web.3: starting 2026/11/26 14:00:00 +0000 (~ 5s ago) (pending: no host has 512 MB free for standard-1X (largest free: 0 MB on h1))
`
	if r.stdout != want {
		t.Errorf("ps printed\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestPsStoppingDynoNotCounted(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/dynos", http.StatusOK, []any{dynoJSON("web.1", "up", 2), dynoJSON("web.2", "down", 2), dynoJSON("web.2", "up", 2)})
	r := run(t, api, nil, "ps", "-a", "hello")
	wantOK(t, r)
	want := `=== web (standard-1X): python3 app.py (2)
web.1: up 2026/11/26 14:00:00 +0000 (~ 5s ago)
web.2: down 2026/11/26 14:00:00 +0000 (~ 5s ago) (stopping)
web.2: up 2026/11/26 14:00:00 +0000 (~ 5s ago)
`
	if r.stdout != want {
		t.Errorf("ps printed\n%s\nwant\n%s", r.stdout, want)
	}
}

// TestPsEndedOneOffs: one-offs that ended are kept a while for their exit
// status; ps hides them unless --all.
func TestPsEndedOneOffs(t *testing.T) {
	ended := func(name, state string, exit int) map[string]any {
		d := dynoJSON(name, state, 2)
		d["command"] = "rake db:migrate"
		d["exit_status"] = exit
		return d
	}
	running := dynoJSON("run.1", "up", 2)
	running["command"] = "bash"
	stopping := dynoJSON("run.5", "down", 2) // no exit status yet: still ending
	stopping["command"] = "bash"
	crashedWeb := dynoJSON("web.1", "crashed", 2)
	crashedWeb["exit_status"] = 1
	all := []any{running, ended("run.2", "down", 0), ended("scheduler.3", "crashed", 1), ended("release.4", "down", 0), stopping, crashedWeb}

	tests := []struct {
		name  string
		dynos []any
		args  []string
		want  string
	}{
		{name: "hidden by default", dynos: all, args: nil, want: `=== run: one-off processes (2)
run.1 (standard-1X): up 2026/11/26 14:00:00 +0000 (~ 5s ago): bash
run.5 (standard-1X): down 2026/11/26 14:00:00 +0000 (~ 5s ago): bash

=== web (standard-1X): python3 app.py (1)
web.1: crashed 2026/11/26 14:00:00 +0000 (~ 5s ago)
`},
		{name: "--all lists them with their exit status", dynos: all, args: []string{"--all"}, want: `=== run: one-off processes (5)
release.4 (standard-1X): down 2026/11/26 14:00:00 +0000 (~ 5s ago): rake db:migrate (exit status 0)
run.1 (standard-1X): up 2026/11/26 14:00:00 +0000 (~ 5s ago): bash
run.2 (standard-1X): down 2026/11/26 14:00:00 +0000 (~ 5s ago): rake db:migrate (exit status 0)
run.5 (standard-1X): down 2026/11/26 14:00:00 +0000 (~ 5s ago): bash
scheduler.3 (standard-1X): crashed 2026/11/26 14:00:00 +0000 (~ 5s ago): rake db:migrate (exit status 1)

=== web (standard-1X): python3 app.py (1)
web.1: crashed 2026/11/26 14:00:00 +0000 (~ 5s ago)
`},
		{name: "only ended ones", dynos: []any{ended("run.2", "down", 0)}, args: nil,
			want: "No dynos on hello (1 ended one-off dynos: `dyno ps --all` lists them)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.handle("GET /apps/{app}/dynos", http.StatusOK, tc.dynos)
			r := run(t, api, nil, append([]string{"ps", "-a", "hello"}, tc.args...)...)
			wantOK(t, r)
			if r.stdout != tc.want {
				t.Errorf("ps printed\n%s\nwant\n%s", r.stdout, tc.want)
			}
		})
	}
}
