package dynotest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// gitEnv runs git (and the CLI) as a user with the API in the environment
// and no git config of the machine's.
func gitEnv(p *Platform, home, key string) []string {
	return append(os.Environ(), "DYNO_API_URL="+p.APIURL, "DYNO_API_KEY="+key, "HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com")
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// helloRepo is a fresh repository holding examples/hello with its
// greeting set to greeting.
func helloRepo(t *testing.T, env []string, greeting string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"Procfile", "web.py", "worker.py"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "hello", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setGreeting(t, dir, greeting)
	for _, args := range [][]string{{"init", "--quiet", "--initial-branch=main"}, {"add", "-A"}, {"commit", "--quiet", "-m", "hello"}} {
		if out, err := runIn(t, dir, env, "git", args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func setGreeting(t *testing.T, dir, greeting string) {
	t.Helper()
	path := filepath.Join(dir, "web.py")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"GREETING", "[^"]*"`)
	if !re.Match(b) {
		t.Fatalf("examples/hello/web.py has no GREETING default to replace")
	}
	s := re.ReplaceAllLiteralString(string(b), fmt.Sprintf(`"GREETING", %q`, greeting))
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func commitAll(t *testing.T, dir string, env []string, msg string) {
	t.Helper()
	for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", msg}} {
		if out, err := runIn(t, dir, env, "git", args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// TestGitPush pushes a fresh repository with the real git client:
// apps:create adds the remote, the push deploys and streams the build, a
// failing build is rejected and changes nothing, a second push deploys
// v2, a wrong key is refused, and destroying the app removes its
// repository.
func TestGitPush(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git (apt-get install git)")
	}
	p := Start(t, dynoBin)
	home := t.TempDir()
	env := gitEnv(p, home, p.APIKey)
	app := "gitpush"
	dir := helloRepo(t, env, "hello from push one")

	out, err := runIn(t, dir, env, p.Bin, "apps:create", app)
	if err != nil {
		t.Fatalf("apps:create: %v\n%s", err, out)
	}
	gitURL := p.APIURL + "/" + app + ".git"
	if !strings.Contains(out, " | "+gitURL) || !strings.Contains(out, "Git remote dyno added") {
		t.Errorf("apps:create printed:\n%s", out)
	}

	answers := func(want string) func() error {
		return func() error {
			code, body, _, err := p.Get(app, "/")
			if err != nil {
				return err
			}
			if code != 200 || !strings.Contains(body, want) {
				return fmt.Errorf("router answered %d %q, want %q", code, body, want)
			}
			return nil
		}
	}
	push := func(env []string) (string, time.Duration, error) {
		start := time.Now()
		out, err := runIn(t, dir, env, "git", "push", "dyno", "main")
		return out, time.Since(start), err
	}
	releases := func() int {
		code, body := p.API("GET", "/apps/"+app+"/releases", nil)
		var rels []json.RawMessage
		if code != 200 || json.Unmarshal([]byte(body), &rels) != nil {
			t.Fatalf("releases: %d %s", code, body)
		}
		return len(rels)
	}

	start := time.Now()
	out, took, err := push(env)
	if err != nil {
		t.Fatalf("git push: %v\n%s", err, out)
	}
	for _, want := range []string{"remote: -----> ", "remote:        Released v1", "deployed to Dyno", "* [new branch]      main -> main"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	Eventually(t, 60*time.Second, "v1 through the router", answers("hello from push one"))
	t.Logf("first push:\n%s", out)
	t.Logf("push-to-live, first push of examples/hello: %s (git push itself %s)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))

	t.Run("failing build is rejected", func(t *testing.T) {
		before := releases()
		if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("this is not a Procfile\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		commitAll(t, dir, env, "break the Procfile")
		out, _, err := push(env)
		if err == nil {
			t.Fatalf("a push with a bad Procfile was accepted:\n%s", out)
		}
		for _, want := range []string{"remote:  !     ", "Push rejected to " + app, "pre-receive hook declined"} {
			if !strings.Contains(out, want) {
				t.Errorf("push output lacks %q:\n%s", want, out)
			}
		}
		if after := releases(); after != before {
			t.Errorf("releases went from %d to %d", before, after)
		}
		if err := answers("hello from push one")(); err != nil {
			t.Errorf("the app changed: %v", err)
		}
		if out, err := runIn(t, dir, env, "git", "reset", "--quiet", "--hard", "HEAD~1"); err != nil {
			t.Fatalf("git reset: %v\n%s", err, out)
		}
	})

	t.Run("second push deploys v2", func(t *testing.T) {
		setGreeting(t, dir, "hello from push two")
		commitAll(t, dir, env, "two")
		start := time.Now()
		out, took, err := push(env)
		if err != nil {
			t.Fatalf("git push: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Released v2") {
			t.Errorf("push output lacks Released v2:\n%s", out)
		}
		Eventually(t, 60*time.Second, "v2 through the router", answers("hello from push two"))
		t.Logf("push-to-live, second push of examples/hello: %s (git push itself %s)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	})

	t.Run("wrong key is refused", func(t *testing.T) {
		setGreeting(t, dir, "hello from an intruder")
		commitAll(t, dir, env, "intruder")
		before := releases()
		out, _, err := push(gitEnv(p, home, "wrong-key"))
		if err == nil || !strings.Contains(out, "Authentication failed") {
			t.Errorf("push with a wrong key: %v\n%s", err, out)
		}
		if after := releases(); after != before {
			t.Errorf("releases went from %d to %d", before, after)
		}
	})

	t.Run("destroy removes the repository", func(t *testing.T) {
		code, body := p.API("GET", "/apps/"+app, nil)
		var a struct {
			ID     string `json:"id"`
			GitURL string `json:"git_url"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.GitURL != gitURL {
			t.Fatalf("app: %d %s", code, body)
		}
		repo := filepath.Join(p.DataDir, "repos", a.ID+".git")
		if _, err := os.Stat(repo); err != nil {
			t.Fatalf("no repository at %s: %v", repo, err)
		}
		if code, body := p.API("DELETE", "/apps/"+app, nil); code != 200 {
			t.Fatalf("delete: %d %s", code, body)
		}
		if _, err := os.Stat(repo); !os.IsNotExist(err) {
			t.Errorf("repository still at %s: %v", repo, err)
		}
	})
}
