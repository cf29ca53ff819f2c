package cli

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo makes a git work tree in a temporary directory with remotes
// (name → URL) and returns its path.
func gitRepo(t *testing.T, remotes map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	repo := t.TempDir()
	gitIn(t, repo, "init", "--quiet")
	for name, u := range remotes {
		gitIn(t, repo, "remote", "add", name, u)
	}
	return repo
}

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v %s", strings.Join(args, " "), err, out)
	}
}

func TestAppFromGitRemote(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/dynos", http.StatusOK, []any{})
	on := func(app string) string { return api.URL + "/" + app + ".git" }

	tests := []struct {
		name       string
		remotes    map[string]string
		subdir     bool // run in a subdirectory of the work tree
		env        map[string]string
		wantApp    string // the app whose dynos ps asks for; "" = an error
		wantStderr string // part of the error
	}{
		{name: "dyno remote", remotes: map[string]string{"dyno": on("hello"), "origin": "https://github.com/x/y.git"}, wantApp: "hello"},
		{name: "in a subdirectory", remotes: map[string]string{"dyno": on("hello")}, subdir: true, wantApp: "hello"},
		{name: "dyno remote wins over others", remotes: map[string]string{"dyno": on("hello"), "staging": on("hello-staging")}, wantApp: "hello"},
		{name: "the one remote on the API", remotes: map[string]string{"prod": on("shop"), "origin": "https://github.com/x/y.git"}, wantApp: "shop"},
		{name: "two remotes of one app", remotes: map[string]string{"a": on("shop"), "b": on("shop")}, wantApp: "shop"},
		{name: "flag wins", remotes: map[string]string{"dyno": on("hello")}, env: map[string]string{"FLAG": "other"}, wantApp: "other"},
		{name: "DYNO_APP wins", remotes: map[string]string{"dyno": on("hello")}, env: map[string]string{"DYNO_APP": "other"}, wantApp: "other"},
		{name: "several", remotes: map[string]string{"prod": on("shop"), "staging": on("shop-staging")},
			wantStderr: "Error: no app given, and the git remotes name several apps (prod → shop; staging → shop-staging): use -a APP"},
		{name: "dyno remote of another server", remotes: map[string]string{"dyno": "http://dyno.example.com/hello.git"},
			wantStderr: "Error: no app given, and the git remote dyno points to http://dyno.example.com/hello.git, not to an app of the Dyno API at " + api.URL},
		{name: "no remote on the API", remotes: map[string]string{"origin": "https://github.com/x/y.git"},
			wantStderr: "Error: no app given: use -a APP or set DYNO_APP, or run it inside a git repository with a dyno remote\n"},
		{name: "a path under the app", remotes: map[string]string{"dyno": api.URL + "/x/hello.git"},
			wantStderr: "not to an app of the Dyno API"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := gitRepo(t, tc.remotes)
			if tc.subdir {
				dir = filepath.Join(dir, "src", "deep")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"DIR": dir}
			args := []string{"ps"}
			for k, v := range tc.env {
				if k == "FLAG" {
					args = append(args, "-a", v)
					continue
				}
				env[k] = v
			}
			before := len(api.requests("", ""))
			r := run(t, api, env, args...)
			if tc.wantApp == "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantStderr) {
					t.Errorf("exit %d stderr %q, want an error with %q", r.code, r.stderr, tc.wantStderr)
				}
				return
			}
			wantOK(t, r)
			reqs := api.requests("", "")[before:]
			if len(reqs) == 0 || reqs[0].Path != "/apps/"+tc.wantApp+"/dynos" {
				t.Errorf("requests %+v, want GET /apps/%s/dynos first", reqs, tc.wantApp)
			}
		})
	}
}

func TestAppOnAPI(t *testing.T) {
	tests := []struct{ gitURL, apiURL, want string }{
		{"http://127.0.0.1:5000/hello.git", "http://127.0.0.1:5000", "hello"},
		{"http://127.0.0.1:5000/hello.git", "http://127.0.0.1:5000/", "hello"},
		{"http://dyno:key@127.0.0.1:5000/hello.git", "http://127.0.0.1:5000", "hello"},
		{"HTTP://Dyno.Example.com/hello.git", "http://dyno.example.com", "hello"},
		{"https://dyno.example.com/api/hello.git", "https://dyno.example.com/api", "hello"},
		{"https://dyno.example.com/hello.git", "https://dyno.example.com/api", ""},
		{"http://127.0.0.1:5001/hello.git", "http://127.0.0.1:5000", ""},
		{"https://127.0.0.1:5000/hello.git", "http://127.0.0.1:5000", ""},
		{"http://127.0.0.1:5000/hello", "http://127.0.0.1:5000", ""},
		{"http://127.0.0.1:5000/.git", "http://127.0.0.1:5000", ""},
		{"git@github.com:x/hello.git", "http://127.0.0.1:5000", ""},
	}
	for _, tc := range tests {
		if got := appOnAPI(tc.gitURL, tc.apiURL); got != tc.want {
			t.Errorf("appOnAPI(%q, %q) = %q, want %q", tc.gitURL, tc.apiURL, got, tc.want)
		}
	}
}
