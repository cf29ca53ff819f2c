package cli

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

func gitConfig(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"config"}, args...)...)
	cmd.Dir = dir
	out, _ := cmd.Output()
	return strings.TrimRight(string(out), "\n")
}

func TestGitRemote(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	api := newFakeAPI(t)
	api.handle("POST /apps", http.StatusCreated, appJSON("hello", 0))
	api.handle("GET /apps/{app}", http.StatusOK, appJSON("hello", 0))
	repo := t.TempDir()
	if out, err := exec.Command("git", "init", "--quiet", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	const gitURL = "http://127.0.0.1:5000/hello.git"
	helperKey := "credential.http://127.0.0.1:5000.helper"

	tests := []struct {
		args       []string
		remote     string
		wantStdout string
		wantStderr string
	}{
		{[]string{"apps:create", "hello"}, "dyno", "http://hello.localhost:8080/ | " + gitURL + "\n", "Creating hello... done\nGit remote dyno added\n"},
		{[]string{"git:remote", "-a", "hello"}, "dyno", "set git remote dyno to " + gitURL + "\n", ""},
		{[]string{"git:remote", "-a", "hello", "-r", "prod"}, "prod", "set git remote prod to " + gitURL + "\n", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, api, map[string]string{"DIR": repo}, tc.args...)
			wantOK(t, r)
			if r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("stdout %q\nwant   %q\nstderr %q\nwant   %q", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
			if got := gitConfig(t, repo, "--get", "remote."+tc.remote+".url"); got != gitURL {
				t.Errorf("remote %s is %q", tc.remote, got)
			}
			// The list reset, then ours, once however often it is set.
			helpers := strings.Split(gitConfig(t, repo, "--get-all", helperKey), "\n")
			if len(helpers) != 2 || helpers[0] != "" || !strings.HasSuffix(helpers[1], " git:credentials") {
				t.Errorf("credential helpers %q", helpers)
			}
		})
	}

	// A repository whose dyno remote is another app's (an unrelated parent
	// repository, say): apps:create leaves it and says how to repoint it;
	// git:remote repoints it and says so.
	const other = "http://127.0.0.1:5000/other.git"
	parent := t.TempDir()
	for _, args := range [][]string{{"init", "--quiet", parent}, {"-C", parent, "remote", "add", "dyno", other}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	r := run(t, api, map[string]string{"DIR": parent}, "apps:create", "hello")
	wantOK(t, r)
	if want := "Creating hello... done\nGit remote dyno already points to " + other + ": run dyno git:remote -a hello to point it here\n"; r.stderr != want {
		t.Errorf("apps:create with another dyno remote: stderr %q\nwant %q", r.stderr, want)
	}
	if got := gitConfig(t, parent, "--get", "remote.dyno.url"); got != other {
		t.Errorf("apps:create repointed the dyno remote to %q", got)
	}
	r = run(t, api, map[string]string{"DIR": parent}, "git:remote", "-a", "hello")
	wantOK(t, r)
	if want := "updated git remote dyno to " + gitURL + " (was " + other + ")\n"; r.stdout != want {
		t.Errorf("git:remote over another remote: stdout %q\nwant %q", r.stdout, want)
	}
	if got := gitConfig(t, parent, "--get", "remote.dyno.url"); got != gitURL {
		t.Errorf("git:remote left the dyno remote at %q", got)
	}

	// Outside a repository: git:remote says what to do; apps:create adds none.
	r = run(t, api, nil, "git:remote", "-a", "hello")
	if r.code == 0 || !strings.Contains(r.stderr, "not inside a git repository") {
		t.Errorf("git:remote outside a repository: %+v", r)
	}
	r = run(t, api, nil, "apps:create", "hello")
	wantOK(t, r)
	if strings.Contains(r.stderr, "Git remote") {
		t.Errorf("apps:create outside a repository: %+v", r)
	}
}

func TestGitCredentials(t *testing.T) {
	tests := []struct {
		name, stdin, arg string
		env              map[string]string
		wantStdout       string
		wantStderr       string
	}{
		{"the API's host", "protocol=http\nhost=127.0.0.1:5000\n\n", "get",
			map[string]string{"DYNO_API_URL": "http://127.0.0.1:5000/"}, "username=dyno\npassword=test-key\n", ""},
		{"another host", "protocol=http\nhost=example.com\n", "get",
			map[string]string{"DYNO_API_URL": "http://127.0.0.1:5000"}, "", "is not the Dyno API"},
		{"no key", "protocol=http\nhost=127.0.0.1:5000\n", "get",
			map[string]string{"DYNO_API_URL": "http://127.0.0.1:5000", "DYNO_API_KEY": ""}, "", "no API key"},
		{"store", "protocol=http\nhost=127.0.0.1:5000\npassword=x\n", "store",
			map[string]string{"DYNO_API_URL": "http://127.0.0.1:5000"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["STDIN"] = tc.stdin
			r := run(t, nil, tc.env, "git:credentials", tc.arg)
			wantOK(t, r)
			if r.stdout != tc.wantStdout || !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stdout %q, want %q; stderr %q, want %q", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
		})
	}
}
