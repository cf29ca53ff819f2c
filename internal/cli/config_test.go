package cli

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func configAPI(t *testing.T) *fakeAPI {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/config-vars", http.StatusOK, map[string]string{"GREETING": "hi there", "DATABASE_URL": "postgres://db/x", "Q": "it's"})
	api.handle("PATCH /apps/{app}/config-vars", http.StatusOK, map[string]string{"GREETING": "hi", "DATABASE_URL": "postgres://db/x"})
	rel := func(v int, desc string, current bool) map[string]any {
		return map[string]any{
			"id": "r", "version": v, "description": desc, "status": "succeeded", "current": current,
			"user": map[string]string{"email": "admin@dyno.local"}, "slug": map[string]string{"id": "slug-1"},
			"created_at": "2026-11-26T13:59:00Z", "updated_at": "2026-11-26T13:59:00Z",
		}
	}
	api.handle("GET /apps/{app}/releases", http.StatusOK, []any{
		rel(3, "Set GREETING config vars", true), rel(2, "Deploy 1a2b3c4d", false), rel(1, "Initial release", false),
	})
	api.handle("GET /apps/{app}/releases/{v}", http.StatusOK, rel(3, "Set GREETING config vars", true))
	api.handle("GET /apps/{app}/builds", http.StatusOK, []any{
		map[string]any{"id": "b-2", "status": "failed", "release": nil, "user": map[string]string{"email": "admin@dyno.local"},
			"created_at": "2026-11-26T13:59:00Z", "output_stream_url": "/build-output/b-2?token=t"},
		map[string]any{"id": "b-1", "status": "succeeded", "release": map[string]any{"id": "r", "version": 2},
			"user": map[string]string{"email": "admin@dyno.local"}, "created_at": "2026-11-26T13:59:00Z"},
	})
	output := func(id string) map[string]any {
		return map[string]any{"id": id, "status": "succeeded", "output_stream_url": "/build-output/" + id + "?token=t",
			"user": map[string]string{"email": "admin@dyno.local"}, "created_at": "2026-11-26T13:59:00Z"}
	}
	api.handle("GET /apps/{app}/builds/b-1", http.StatusOK, output("b-1"))
	api.mux.HandleFunc("GET /build-output/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "t" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "-----> Building "+r.PathValue("id")+"\n       done\n")
	})
	return api
}

func TestConfigAndReleases(t *testing.T) {
	tests := []struct {
		args       []string
		wantStdout string
		wantStderr string
	}{
		{[]string{"config"}, "=== hello Config Vars\nDATABASE_URL: postgres://db/x\nGREETING:     hi there\nQ:            it's\n", ""},
		{[]string{"config", "--shell"}, "DATABASE_URL=postgres://db/x\nGREETING='hi there'\nQ='it'\\''s'\n", ""},
		{[]string{"config", "--json"}, "{\n  \"DATABASE_URL\": \"postgres://db/x\",\n  \"GREETING\": \"hi there\",\n  \"Q\": \"it's\"\n}\n", ""},
		{[]string{"config:get", "GREETING"}, "hi there\n", ""},
		{[]string{"config:get", "NOPE"}, "\n", ""},
		{[]string{"config:set", "GREETING=hi"}, "GREETING: hi\n", "Setting GREETING and restarting hello... done, v3\n"},
		{[]string{"config:unset", "GREETING"}, "", "Unsetting GREETING and restarting hello... done, v3\n"},
		{[]string{"config:unset", "GREETING", "NOPE"}, "", "Unsetting GREETING and restarting hello... done, v3\n"},
		{[]string{"config:unset", "NOPE"}, "", "NOPE is not set on hello; nothing changed\n"},
		{[]string{"config:unset", "NOPE", "NADA"}, "", "NOPE, NADA are not set on hello; nothing changed\n"},
		{[]string{"config:set", "GREETING=hi there"}, "GREETING: hi there\n", "GREETING already has that value on hello; nothing changed\n"},
		{[]string{"config:set", "GREETING=hi there", "Q=it's"}, "GREETING: hi there\nQ:        it's\n", "GREETING, Q already have those values on hello; nothing changed\n"},
		{[]string{"releases"}, "=== hello Releases - Current: v3\n" +
			"v3  Set GREETING config vars  admin@dyno.local  2026/11/26 13:59:00 +0000 (~ 1m ago)\n" +
			"v2  Deploy 1a2b3c4d           admin@dyno.local  2026/11/26 13:59:00 +0000 (~ 1m ago)\n" +
			"v1  Initial release           admin@dyno.local  2026/11/26 13:59:00 +0000 (~ 1m ago)\n", ""},
		{[]string{"builds"}, "=== hello Builds\n" +
			"b-2  failed     -   admin@dyno.local  2026/11/26 13:59:00 +0000 (~ 1m ago)\n" +
			"b-1  succeeded  v2  admin@dyno.local  2026/11/26 13:59:00 +0000 (~ 1m ago)\n", ""},
		{[]string{"builds:output", "b-1"}, "-----> Building b-1\n       done\n", ""},
		{[]string{"builds:output"}, "-----> Building b-2\n       done\n", ""}, // the newest
		{[]string{"releases:info", "v3"}, "=== Release v3\nBy:      admin@dyno.local\nChange:  Set GREETING config vars\n" +
			"Current: true\nSlug:    slug-1\nStatus:  succeeded\nWhen:    2026/11/26 13:59:00 +0000 (~ 1m ago)\n", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api := configAPI(t)
			r := run(t, api, map[string]string{"DYNO_APP": "hello"}, tc.args...)
			wantOK(t, r)
			if r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("stdout %q\nwant   %q\nstderr %q\nwant   %q", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
			// Nothing to change, nothing sent: the API would make no release.
			changing := tc.args[0] == "config:set" || tc.args[0] == "config:unset"
			nothing := strings.Contains(tc.wantStderr, "nothing changed")
			if patches := api.requests(http.MethodPatch, ""); changing && nothing != (len(patches) == 0) {
				t.Errorf("sent %d PATCH requests; nothing to change: %v", len(patches), nothing)
			}
		})
	}
}

func TestConfigRequests(t *testing.T) {
	tests := []struct {
		args      []string
		wantBody  string
		wantRange string
	}{
		{[]string{"config:set", "GREETING=hi", "EMPTY=", "EQ=a=b"}, `{"EMPTY":"","EQ":"a=b","GREETING":"hi"}`, "version ..; max=1, order=desc"},
		{[]string{"config:unset", "GREETING", "OLD"}, `{"GREETING":null,"OLD":null}`, "version ..; max=1, order=desc"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api := configAPI(t)
			wantOK(t, run(t, api, nil, append(tc.args, "-a", "hello")...))
			patch := api.requests(http.MethodPatch, "/apps/hello/config-vars")
			if len(patch) != 1 || strings.TrimSpace(patch[0].Body) != tc.wantBody {
				t.Errorf("PATCH %+v, want body %s", patch, tc.wantBody)
			}
			rels := api.requests(http.MethodGet, "/apps/hello/releases")
			if len(rels) != 1 || rels[0].Header.Get("Range") != tc.wantRange {
				t.Errorf("releases requests %+v, want Range %q", rels, tc.wantRange)
			}
		})
	}
	api := configAPI(t)
	wantOK(t, run(t, api, nil, "releases", "-a", "hello"))
	if got := api.requests(http.MethodGet, "/apps/hello/releases")[0].Header.Get("Range"); got != "version ..; max=15, order=desc" {
		t.Errorf("releases Range %q", got)
	}
}

// TestConfigEmpty: an app without config vars says so, as heroku's does.
func TestConfigEmpty(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/config-vars", http.StatusOK, map[string]string{})
	r := run(t, api, nil, "config", "-a", "hello")
	wantOK(t, r)
	if want := "hello has no config vars.\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}
