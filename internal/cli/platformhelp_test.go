package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpListsPlatformVerbs: the verbs the dyno binary runs itself are in
// the CLI's help, and running one through the CLI says what to do.
func TestHelpListsPlatformVerbs(t *testing.T) {
	r := run(t, nil, nil, "help")
	wantOK(t, r)
	for _, verb := range []string{"server", "agent", "router"} {
		if !strings.Contains(r.stdout, "\n  "+verb+" ") {
			t.Errorf("help does not list %s:\n%s", verb, r.stdout)
		}
	}
	for _, verb := range []string{"agent", "router"} {
		r := run(t, nil, nil, "help", verb)
		if wantOK(t, r); !strings.Contains(r.stdout, "`dyno "+verb+" --help` lists all its flags") {
			t.Errorf("help %s printed %q", verb, r.stdout)
		}
		r = run(t, nil, nil, verb, "--credentials", "x")
		if r.code == 0 || !strings.Contains(r.stderr, "`dyno "+verb+"` is run by the dyno binary itself") {
			t.Errorf("%s through the CLI: exit %d stderr %q", verb, r.code, r.stderr)
		}
	}
}

// TestLogoutWhenNotLoggedIn: with no stored login, logout says so.
func TestLogoutWhenNotLoggedIn(t *testing.T) {
	home := t.TempDir()
	r := run(t, nil, map[string]string{"HOME": home}, "logout")
	wantOK(t, r)
	if r.stdout != "Not logged in.\n" {
		t.Errorf("logout printed %q, want %q", r.stdout, "Not logged in.\n")
	}
	// A stored login (even one without a key the login made) is forgotten.
	path := filepath.Join(home, ".config", "dyno", "credentials")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"api_url":"http://127.0.0.1:1","api_key":"k"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, map[string]string{"HOME": home}, "logout")
	if wantOK(t, r); r.stdout != "Logged out\n" {
		t.Errorf("logout printed %q", r.stdout)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("logout left the credentials: %v", err)
	}
}
