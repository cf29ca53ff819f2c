package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestErrors(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/dynos", http.StatusNotFound, map[string]string{"id": "not_found", "message": "Couldn't find that app."})
	api.mux.HandleFunc("GET /apps/{app}/config-vars", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded", http.StatusBadGateway)
	})
	api.handle("GET /apps", http.StatusUnauthorized, map[string]string{"id": "unauthorized", "message": "Invalid credentials provided."})

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantStderr string
	}{
		{name: "API error message", args: []string{"ps", "-a", "nope"}, wantStderr: "Error: Couldn't find that app.\n"},
		{name: "not JSON", args: []string{"config", "-a", "hello"}, wantStderr: "Error: GET /apps/hello/config-vars answered 502 Bad Gateway: upstream exploded\n"},
		{name: "no app", args: []string{"ps"}, wantStderr: "Error: no app given: use -a APP or set DYNO_APP, or run it inside a git repository with a dyno remote\n"},
		{name: "no app for deploy", args: []string{"deploy", "."}, wantStderr: "Error: no app given: use -a APP or set DYNO_APP, or run it inside a git repository with a dyno remote\n"},
		{name: "unreachable", env: map[string]string{"DYNO_API_URL": dead}, args: []string{"apps"},
			wantStderr: "Error: cannot reach the Dyno API at " + dead + ": is `dyno server` running?\n"},
		{name: "unauthorized without key", env: map[string]string{"DYNO_API_KEY": ""}, args: []string{"apps"},
			wantStderr: "Error: no API key: run `dyno login` or set DYNO_API_KEY\n"},
		{name: "unauthorized with a wrong key", env: map[string]string{"DYNO_API_KEY": "wrong"}, args: []string{"apps"},
			wantStderr: "Error: the API key was refused: check DYNO_API_KEY or run `dyno login`\n"},
		{name: "unknown command", args: []string{"frobnicate"}, wantStderr: "Error: unknown command \"frobnicate\" for \"dyno\"\n"},
		{name: "destroy without confirm", args: []string{"apps:destroy", "hello"},
			wantStderr: "Error: this destroys hello with its dynos, releases and config vars, for good: to proceed, run again with --confirm hello\n"},
		{name: "destroy with wrong confirm", args: []string{"apps:destroy", "-a", "hello", "--confirm", "hallo"},
			wantStderr: "Error: --confirm hallo does not match the app hello: to destroy it, run again with --confirm hello\n"},
		{name: "config:set without =", args: []string{"config:set", "GREETING", "-a", "hello"},
			wantStderr: "Error: \"GREETING\" is not of the form KEY=VALUE: use dyno config:set KEY1=VALUE1 [KEY2=VALUE2 ...]\n"},
		{name: "logs bad source", args: []string{"logs", "-s", "router", "-a", "hello"}, wantStderr: "Error: --source \"router\" is unknown: use app or heroku\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, api, tc.env, tc.args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if r.stderr != tc.wantStderr {
				t.Errorf("stderr = %q\nwant     %q", r.stderr, tc.wantStderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	if got := api.requests(http.MethodDelete, ""); len(got) != 0 {
		t.Errorf("apps:destroy without a matching --confirm sent %v", got)
	}
}

func TestHeadersAndDestroy(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("DELETE /apps/{app}", http.StatusOK, appJSON("hello", 0))
	r := run(t, api, map[string]string{"DYNO_APP": "hello"}, "apps:destroy", "--confirm", "hello")
	wantOK(t, r)
	reqs := api.requests(http.MethodDelete, "/apps/hello")
	if len(reqs) != 1 {
		t.Fatalf("got %d DELETE /apps/hello, want 1", len(reqs))
	}
	h := reqs[0].Header
	for k, want := range map[string]string{
		"Accept":        "application/vnd.heroku+json; version=3",
		"Authorization": "Bearer test-key",
		"User-Agent":    "dyno-cli/" + Version,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if r.stderr != "Destroying hello... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestLogin(t *testing.T) {
	api := newFakeAPI(t)
	api.mux.HandleFunc("GET /apps", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"id": "unauthorized", "message": "Invalid credentials provided."})
			return
		}
		writeJSON(w, http.StatusOK, []any{appJSON("hello", 1)})
	})
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "flags", args: []string{"login", "--api-url", api.URL, "--api-key", "good"}},
		{name: "prompts", env: map[string]string{"STDIN": api.URL + "\ngood\n"}, args: []string{"login"}},
		{name: "prompt default URL", env: map[string]string{"STDIN": "\ngood\n", "DYNO_API_URL": api.URL}, args: []string{"login"}},
		{name: "bad key", args: []string{"login", "--api-url", api.URL, "--api-key", "bad"}, wantErr: "Error: the API key was refused: check DYNO_API_KEY or run `dyno login`\n"},
		{name: "no answer", env: map[string]string{"STDIN": ""}, args: []string{"login"}, wantErr: "no answer on stdin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			env := map[string]string{"HOME": home, "DYNO_API_KEY": "", "DYNO_API_URL": ""}
			for k, v := range tc.env {
				env[k] = v
			}
			r := run(t, nil, env, tc.args...)
			path := filepath.Join(home, ".config", "dyno", "credentials")
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, tc.wantErr)
				}
				if _, err := os.Stat(path); err == nil {
					t.Errorf("a failed login stored credentials")
				}
				return
			}
			wantOK(t, r)
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("credentials mode %v, want 0600", info.Mode().Perm())
			}
			data, _ := os.ReadFile(path)
			var creds credentials
			if err := json.Unmarshal(data, &creds); err != nil || creds.APIURL != api.URL || creds.APIKey != "good" {
				t.Fatalf("stored %s (%v)", data, err)
			}
			// Later commands use the stored login.
			r = run(t, nil, map[string]string{"HOME": home, "DYNO_API_KEY": "", "DYNO_API_URL": ""}, "apps")
			wantOK(t, r)
			if r.stdout != "=== Apps\nhello\n" {
				t.Errorf("apps printed %q", r.stdout)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := run(t, nil, nil, args...)
		wantOK(t, r)
		if !strings.HasPrefix(r.stdout, "dyno-cli/"+Version+" ") || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%v printed %q, want one line starting dyno-cli/%s", args, r.stdout, Version)
		}
	}
	r := run(t, nil, nil, "help")
	wantOK(t, r)
	if !regexp.MustCompile(`(?m)^  server +start the platform`).MatchString(r.stdout) {
		t.Errorf("help does not list server:\n%s", r.stdout)
	}
}

func TestApps(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps", http.StatusOK, []any{appJSON("world", 0), appJSON("hello", 2)})
	api.handle("POST /apps", http.StatusCreated, appJSON("hello", 0))
	info := appJSON("hello", 2)
	info["released_at"] = "2026-11-26T14:00:00Z"
	info["owner"] = map[string]string{"email": "admin@dyno.local"}
	api.handle("GET /apps/{app}", http.StatusOK, info)
	api.handle("GET /apps/{app}/dynos", http.StatusOK, []any{dynoJSON("web.1", "up", 2), dynoJSON("web.2", "up", 2), dynoJSON("worker.1", "up", 2)})
	tests := []struct {
		args       []string
		wantStdout string
		wantStderr string
	}{
		{[]string{"apps"}, "=== Apps\nhello\nworld\n", ""},
		{[]string{"apps:create", "hello"}, "http://hello.localhost:8080/ | http://127.0.0.1:5000/hello.git\n", "Creating hello... done\n"},
		{[]string{"apps:info", "-a", "hello"}, "=== hello\n" +
			"Dynos:       web: 2, worker: 1\nMaintenance: false\nOwner:       admin@dyno.local\nRelease:     v2\n" +
			"Released At: 2026/11/26 14:00:00 +0000 (~ 5s ago)\nWeb URL:     http://hello.localhost:8080/\n" +
			"Created At:  2026/11/26 13:00:00 +0000 (~ 1h ago)\n", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, api, nil, tc.args...)
			wantOK(t, r)
			if r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("stdout %q\nwant   %q\nstderr %q\nwant   %q", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
		})
	}
	if got := api.requests(http.MethodPost, "/apps"); len(got) != 1 || strings.TrimSpace(got[0].Body) != `{"name":"hello"}` {
		t.Errorf("apps:create sent %+v", got)
	}
	r := run(t, api, nil, "apps:info", "hello", "--json")
	wantOK(t, r)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["release_version"] != 2.0 || got["released_at"] == nil {
		t.Errorf("apps:info --json printed %q (%v)", r.stdout, err)
	}
}
