package dynotest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// user is one person at their own terminal: their own HOME (so their own
// stored login) and no DYNO_API_KEY, or the admin's key for the admin.
type user struct {
	t    *testing.T
	p    *Platform
	home string
	key  string // DYNO_API_KEY; empty: the stored login
}

func (p *Platform) user(t *testing.T, key string) *user {
	return &user{t: t, p: p, home: t.TempDir(), key: key}
}

// cli runs the real CLI as u, with stdin.
func (u *user) cli(stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.p.Bin, args...)
	cmd.Env = append(os.Environ(), "DYNO_API_URL="+u.p.APIURL, "DYNO_API_KEY="+u.key, "HOME="+u.home)
	cmd.Dir = u.t.TempDir()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (u *user) must(stdin string, args ...string) string {
	u.t.Helper()
	out, errOut, err := u.cli(stdin, args...)
	if err != nil {
		u.t.Fatalf("dyno %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs a command that must fail saying want.
func (u *user) fails(want string, args ...string) {
	u.t.Helper()
	out, errOut, err := u.cli("", args...)
	if err == nil || !strings.Contains(errOut, want) {
		u.t.Fatalf("dyno %s: %v, stdout %q, stderr %q; want a failure saying %q", strings.Join(args, " "), err, out, errOut, want)
	}
}

// TestAccountsEndToEnd: two users through the real CLI. Bob cannot see
// Alice's app until she makes him a collaborator; then he deploys it but
// cannot destroy it; removed, he loses it; his revoked key is refused.
func TestAccountsEndToEnd(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	admin := p.user(t, p.APIKey)
	admin.must("alice-password\n", "users:create", "alice@example.com", "--password-stdin")
	admin.must("bob-password\n", "users:create", "bob@example.com", "--password-stdin")
	if out := admin.must("", "users"); !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "bob@example.com") {
		t.Fatalf("users lists %q", out)
	}

	alice, bob := p.user(t, ""), p.user(t, "")
	alice.must("alice@example.com\nalice-password\n", "login", "--api-url", p.APIURL)
	bob.must("bob-password\n", "login", "--api-url", p.APIURL, "--email", "bob@example.com", "--password-stdin")
	if out := bob.must("", "auth:whoami"); out != "bob@example.com\n" {
		t.Fatalf("bob is %q", out)
	}
	if _, errOut, err := bob.cli("guess\n", "login", "--api-url", p.APIURL, "--email", "bob@example.com", "--password-stdin"); err == nil || !strings.Contains(errOut, "wrong email or password") {
		t.Fatalf("a wrong password: %v %q", err, errOut)
	}
	bob.fails("Only the platform's admin", "hosts")

	const app = "alices-app"
	alice.must("", "apps:create", app)
	if out := bob.must("", "apps"); strings.Contains(out, app) {
		t.Fatalf("bob's apps list alice's: %q", out)
	}
	bob.fails("Couldn't find that app.", "apps:info", "-a", app)
	bob.fails("Couldn't find that app.", "config:set", "X=1", "-a", app)
	bob.fails("Couldn't find that app.", "deploy", versionApp(t, "bob", ""), "-a", app)

	alice.must("", "access:add", "bob@example.com", "-a", app)
	if out := bob.must("", "access", "-a", app); !strings.Contains(out, "alice@example.com  owner") || !strings.Contains(out, "bob@example.com    collaborator") {
		t.Fatalf("access lists %q", out)
	}
	if out := bob.must("", "apps"); !strings.Contains(out, app) {
		t.Fatalf("bob's apps lack the shared one: %q", out)
	}
	bob.must("", "config:set", "GREETING=hi", "-a", app)
	bob.must("", "deploy", versionApp(t, "bob", ""), "-a", app)
	Eventually(t, 60*time.Second, "bob's release answers", func() error {
		if code, body, _, err := p.Get(app, "/"); err != nil || code != 200 || body != "version bob" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if out := alice.must("", "releases", "-a", app); !strings.Contains(out, "bob@example.com") {
		t.Errorf("releases do not name bob: %q", out)
	}
	bob.must("", "ps:scale", "web=0", "-a", app)
	bob.fails("Only the owner of "+app+" (alice@example.com) can destroy it", "apps:destroy", app, "--confirm", app)
	bob.fails("can add collaborators", "access:add", "bob@example.com", "-a", app)

	// Removed, Bob loses the app at once.
	alice.must("", "access:remove", "bob@example.com", "-a", app)
	bob.fails("Couldn't find that app.", "apps:info", "-a", app)

	// Bob's key, revoked by his logout, is refused at once.
	bobKey := strings.TrimSpace(bob.must("", "auth:token"))
	bob.must("", "logout")
	stale := p.user(t, bobKey)
	stale.fails("the API key was refused", "apps")
	alice.must("", "apps:destroy", app, "--confirm", app)
}
