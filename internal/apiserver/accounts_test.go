package apiserver

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// as returns headers that make e.call act with key.
func as(key string) []string { return []string{"Authorization", "Bearer " + key} }

// mustAs is e.must with another API key.
func (e *env) mustAs(key string, want int, method, path string, body, out any) {
	e.t.Helper()
	e.must(want, method, path, body, out, as(key)...)
}

// login logs in with a password as the CLI does: Basic email:password on
// POST /oauth/authorizations. It returns the new key.
func (e *env) login(email, password string) authorizationJSON {
	e.t.Helper()
	var a authorizationJSON
	e.must(201, "POST", "/oauth/authorizations", map[string]any{"description": "test login", "scope": []string{"global"}, "expires_in": 3600}, &a,
		"Authorization", "Basic "+basic(email, password))
	if a.AccessToken == nil || !strings.HasPrefix(a.AccessToken.Token, "dyno_") || a.User.Email != email {
		e.t.Fatalf("login answered %+v", a)
	}
	return a
}

// newUser has the admin create a user and returns a key of theirs.
func (e *env) newUser(email string) string {
	e.t.Helper()
	var acc accountJSON
	e.must(201, "POST", "/users", map[string]string{"email": email, "password": "pw-" + email}, &acc)
	if acc.Email != email || acc.ID != userID(email) {
		e.t.Fatalf("created user %+v", acc)
	}
	return e.login(email, "pw-"+email).AccessToken.Token
}

func appNames(apps []appJSON) string {
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	return strings.Join(names, ",")
}

// appRoutes reads every app route the server registers (from its source,
// so that routes added later are covered too), with placeholders filled.
func appRoutes(t *testing.T, app string) [][2]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`api\("([A-Z]+) (/apps/\{app\}[^"]*)"`)
	ph := regexp.MustCompile(`\{[a-z]+(\.\.\.)?\}`)
	var out [][2]string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			path := strings.Replace(m[2], "{app}", app, 1)
			out = append(out, [2]string{m[1], ph.ReplaceAllString(path, "x")})
		}
	}
	if len(out) < 40 {
		t.Fatalf("found only %d app routes in the source: has routes() changed shape?", len(out))
	}
	return out
}

func TestUsersSeeOnlyTheirApps(t *testing.T) {
	e := newEnv(t, 0)
	alice, bob := e.newUser("alice@example.com"), e.newUser("bob@example.com")
	e.mustAs(alice, 201, "POST", "/apps", map[string]string{"name": "alice-app"}, nil)
	e.mustAs(bob, 201, "POST", "/apps", map[string]string{"name": "bob-app"}, nil)
	e.createApp("admin-app")

	for _, tc := range []struct {
		key, want string
	}{{alice, "alice-app"}, {bob, "bob-app"}, {testKey, "admin-app,alice-app,bob-app"}} {
		var apps []appJSON
		e.mustAs(tc.key, 200, "GET", "/apps", nil, &apps)
		if got := appNames(apps); got != tc.want {
			t.Errorf("GET /apps lists %s, want %s", got, tc.want)
		}
	}
	var app appJSON
	e.mustAs(alice, 200, "GET", "/apps/alice-app", nil, &app)
	if app.Owner.Email != "alice@example.com" || app.Owner.ID != userID("alice@example.com") {
		t.Errorf("owner %+v", app.Owner)
	}
	var acc accountJSON
	e.mustAs(bob, 200, "GET", "/account", nil, &acc)
	if acc.Email != "bob@example.com" || acc.ID != userID("bob@example.com") {
		t.Errorf("bob's account %+v", acc)
	}

	// Every app route: 404 for another user's app, by name and by ID,
	// exactly as for an app that does not exist.
	for _, ref := range []string{"alice-app", app.ID} {
		for _, rt := range appRoutes(t, ref) {
			var body any
			if rt[0] != "GET" && rt[0] != "DELETE" {
				body = map[string]any{}
			}
			status, data := e.call(rt[0], rt[1], body, as(bob)...)
			if status != 404 || !strings.Contains(string(data), "Couldn't find that app.") {
				t.Errorf("bob: %s %s: %d %s, want 404 Couldn't find that app.", rt[0], rt[1], status, data)
			}
		}
	}
	// Alice's app is untouched, and the admin sees it.
	e.mustAs(alice, 200, "GET", "/apps/alice-app/config-vars", nil, nil)
	e.mustAs(testKey, 200, "GET", "/apps/alice-app", nil, nil)
}

func TestCollaborators(t *testing.T) {
	e := newEnv(t, 0)
	alice, bob := e.newUser("alice@example.com"), e.newUser("bob@example.com")
	e.newUser("carol@example.com")
	e.mustAs(alice, 201, "POST", "/apps", map[string]string{"name": "shared"}, nil)

	var c collaboratorJSON
	e.mustAs(alice, 201, "POST", "/apps/shared/collaborators", map[string]string{"user": "Bob@Example.com"}, &c)
	if c.User.Email != "bob@example.com" || c.Role != "collaborator" || c.App.Name != "shared" {
		t.Errorf("collaborator %+v", c)
	}
	e.mustAs(alice, 422, "POST", "/apps/shared/collaborators", map[string]string{"user": "bob@example.com"}, nil)
	e.mustAs(alice, 404, "POST", "/apps/shared/collaborators", map[string]string{"user": "nobody@example.com"}, nil)
	var list []collaboratorJSON
	e.mustAs(bob, 200, "GET", "/apps/shared/collaborators", nil, &list)
	if len(list) != 2 || list[0].Role != "owner" || list[0].User.Email != "alice@example.com" || list[1].User.Email != "bob@example.com" {
		t.Errorf("collaborators %+v", list)
	}
	var apps []appJSON
	e.mustAs(bob, 200, "GET", "/apps", nil, &apps)
	if appNames(apps) != "shared" {
		t.Errorf("bob lists %s", appNames(apps))
	}

	// Bob deploys, sets config, scales, restarts: as himself.
	b, out := e.deployAs(bob, "shared", tarball(t, goodSource...))
	if b.Status != "succeeded" || b.User.Email != "bob@example.com" {
		t.Fatalf("bob's build %+v\n%s", b, out)
	}
	e.mustAs(bob, 200, "PATCH", "/apps/shared/config-vars", map[string]string{"COLOR": "red"}, nil)
	var rels []releaseJSON
	e.mustAs(bob, 200, "GET", "/apps/shared/releases", nil, &rels)
	if len(rels) != 2 || rels[0].User.Email != "bob@example.com" || rels[1].User.Email != "bob@example.com" {
		t.Errorf("releases %+v", rels)
	}
	e.mustAs(bob, 200, "PATCH", "/apps/shared/formation", map[string]any{"updates": []map[string]any{{"type": "worker", "quantity": 1}}}, nil)
	e.mustAs(bob, 202, "DELETE", "/apps/shared/dynos", nil, nil)
	e.mustAs(bob, 200, "PATCH", "/apps/shared", map[string]any{"maintenance": true}, nil)

	// ...but cannot destroy it nor manage its collaborators: 403, since he sees it.
	for _, rt := range [][3]string{
		{"DELETE", "/apps/shared", ""},
		{"POST", "/apps/shared/collaborators", `{"user":"carol@example.com"}`},
		{"DELETE", "/apps/shared/collaborators/bob@example.com", ""},
		{"DELETE", "/apps/shared/collaborators/alice@example.com", ""},
	} {
		var body any
		if rt[2] != "" {
			body = rt[2]
		}
		status, data := e.call(rt[0], rt[1], body, as(bob)...)
		var ae struct{ ID, Message string }
		_ = json.Unmarshal(data, &ae)
		if status != 403 || ae.ID != "forbidden" || !strings.Contains(ae.Message, "alice@example.com") {
			t.Errorf("bob: %s %s: %d %s, want 403 forbidden naming the owner", rt[0], rt[1], status, data)
		}
	}
	e.mustAs(alice, 422, "DELETE", "/apps/shared/collaborators/alice@example.com", nil, nil)

	// Removed, Bob loses the app at once.
	e.mustAs(alice, 200, "DELETE", "/apps/shared/collaborators/"+userID("bob@example.com"), nil, nil)
	e.mustAs(bob, 404, "GET", "/apps/shared", nil, nil)
	e.mustAs(alice, 200, "DELETE", "/apps/shared", nil, nil)
}

// deployAs is env.deploy with another API key.
func (e *env) deployAs(key, app string, src []byte) (buildJSON, string) {
	e.t.Helper()
	var s map[string]sourceBlob
	e.mustAs(key, 201, "POST", "/apps/"+app+"/sources", nil, &s)
	put := e.raw("PUT", s["source_blob"].PutURL, src)
	put.Body.Close()
	var b buildJSON
	e.mustAs(key, 201, "POST", "/apps/"+app+"/builds", map[string]any{"source_blob": map[string]string{"url": s["source_blob"].GetURL}}, &b)
	resp := e.raw("GET", b.OutputStreamURL, nil)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e.mustAs(key, 200, "GET", "/apps/"+app+"/builds/"+b.ID, nil, &b)
	return b, string(out)
}

func TestAuthorizations(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.newUser("alice@example.com")

	for _, tc := range []struct{ name, auth string }{
		{"wrong password", "Basic " + basic("alice@example.com", "wrong-password")},
		{"no such user", "Basic " + basic("nobody@example.com", "pw-alice@example.com")},
		{"no credentials", ""},
		{"unknown key", "Bearer dyno_0000"},
	} {
		status, data := e.call("POST", "/oauth/authorizations", map[string]any{}, "Authorization", tc.auth)
		if status != 401 || !strings.Contains(string(data), `"unauthorized"`) {
			t.Errorf("%s: %d %s, want 401", tc.name, status, data)
		}
	}
	// A password is good for logging in only.
	if status, _ := e.call("GET", "/apps", nil, "Authorization", "Basic "+basic("alice@example.com", "pw-alice@example.com")); status != 401 {
		t.Errorf("GET /apps with a password: %d, want 401", status)
	}
	// Basic with a key as password works everywhere, as on Heroku.
	if status, _ := e.call("GET", "/apps", nil, "Authorization", "Basic "+basic("", alice)); status != 200 {
		t.Errorf("GET /apps with Basic key: %d, want 200", status)
	}

	// A key made with a key, listed without its token, revoked at once.
	var second authorizationJSON
	e.mustAs(alice, 201, "POST", "/oauth/authorizations", map[string]string{"description": "ci"}, &second)
	key2 := second.AccessToken.Token
	e.mustAs(key2, 200, "GET", "/apps", nil, nil)
	var list []authorizationJSON
	e.mustAs(alice, 200, "GET", "/oauth/authorizations", nil, &list)
	if len(list) != 2 || list[1].ID != second.ID || list[1].Description != "ci" || list[0].AccessToken != nil || list[1].AccessToken != nil {
		t.Errorf("authorizations %+v", list)
	}
	e.mustAs(testKey, 404, "DELETE", "/oauth/authorizations/"+second.ID, nil, nil) // not the admin's
	e.mustAs(alice, 200, "DELETE", "/oauth/authorizations/"+second.ID, nil, nil)
	status, data := e.call("GET", "/apps", nil, as(key2)...)
	if status != 401 {
		t.Errorf("revoked key: %d %s, want 401", status, data)
	}
	e.mustAs(alice, 200, "GET", "/apps", nil, nil) // the other key still works

	// Keys expire.
	e.advance(2 * time.Hour) // login keys last expires_in = 1 h
	e.mustAs(alice, 401, "GET", "/apps", nil, nil)

	// The stored key is a hash, never the key.
	entries, err := e.st.APIKeys.List(t.Context(), ">")
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Key == alice || en.Key == key2 || strings.Contains(en.Key, "dyno_") {
			t.Errorf("a key is stored in clear: %q", en.Key)
		}
	}
}

func TestAdminOnly(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.newUser("alice@example.com")
	for _, rt := range [][2]string{
		{"GET", "/hosts"}, {"POST", "/hosts/h1/actions/drain"}, {"POST", "/hosts/h1/actions/undrain"},
		{"GET", "/users"}, {"POST", "/users"}, {"GET", "/account/invoices"}, {"GET", "/account/invoices/2026-01"},
	} {
		status, data := e.call(rt[0], rt[1], nil, as(alice)...)
		if status != 403 || !strings.Contains(string(data), `"forbidden"`) {
			t.Errorf("alice: %s %s: %d %s, want 403", rt[0], rt[1], status, data)
		}
	}
	var users []accountJSON
	e.must(200, "GET", "/users", nil, &users)
	if len(users) != 2 || users[0].Email != adminUser || users[1].Email != "alice@example.com" {
		t.Errorf("users %+v", users)
	}
	e.must(200, "GET", "/hosts", nil, nil)
	for _, body := range []map[string]string{
		{"email": "alice@example.com", "password": "long-enough"},
		{"email": adminUser, "password": "long-enough"},
	} {
		e.must(409, "POST", "/users", body, nil)
	}
	for _, body := range []map[string]string{
		{"email": "not-an-email", "password": "long-enough"},
		{"email": "x@example.com", "password": "short"},
	} {
		e.must(422, "POST", "/users", body, nil)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, 0, func(c *Config) { c.RateLimitPerHour, c.RateLimitBurst = 3600, 3 })
	alice := e.newUser("alice@example.com") // spends 1 of the admin's 3
	e.advance(time.Second)                  // and 1 s gives it back
	for i, want := range []string{"2", "1", "0"} {
		resp := e.raw("GET", "/apps", nil, as(testKey)...)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Remaining") != want {
			t.Fatalf("request %d: %d, RateLimit-Remaining %q, want 200 and %s", i, resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), want)
		}
	}
	resp := e.raw("GET", "/apps", nil, as(testKey)...)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("RateLimit-Remaining") != "0" || !strings.Contains(string(data), `"rate_limit"`) {
		t.Fatalf("beyond the burst: %d %q %s, want 429 rate_limit with RateLimit-Remaining: 0", resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), data)
	}
	// Rate-limits are read for free.
	for range 2 {
		var rl map[string]int
		e.must(200, "GET", "/account/rate-limits", nil, &rl)
		if rl["remaining"] != 0 {
			t.Errorf("rate-limits %v", rl)
		}
	}
	// Another key has its own budget; time refills (1 a second here).
	e.mustAs(alice, 200, "GET", "/apps", nil, nil)
	e.advance(time.Second)
	e.must(200, "GET", "/apps", nil, nil)
	e.must(429, "GET", "/apps", nil, nil)

	// Password guesses spend the email's budget (full again: 3).
	for i, want := range []int{401, 401, 401, 429} {
		if status, _ := e.call("POST", "/oauth/authorizations", nil, "Authorization", "Basic "+basic("alice@example.com", "guess")); status != want {
			t.Errorf("guess %d: %d, want %d", i, status, want)
		}
	}
}

// Passwords, keys and config values never reach the server's log.
func TestSecretsNotLogged(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, 0, func(c *Config) { c.Logger = logger })
	alice := e.newUser("alice@example.com")
	e.mustAs(alice, 201, "POST", "/apps", map[string]string{"name": "secretive"}, nil)
	e.mustAs(alice, 200, "PATCH", "/apps/secretive/config-vars", map[string]string{"DATABASE_URL": "postgres://u:hunter2@db/x"}, nil)
	e.mustAs(alice, 200, "DELETE", "/apps/secretive", nil, nil)
	e.call("GET", "/apps", nil, "Authorization", "Bearer wrong-"+alice)
	e.call("POST", "/oauth/authorizations", nil, "Authorization", "Basic "+basic("alice@example.com", "wrong-pw-alice"))
	for _, secret := range []string{alice, testKey, "pw-alice@example.com", "wrong-pw-alice", "hunter2"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds the secret %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "API key created") {
		t.Errorf("the log lacks the key's creation:\n%s", logs.String())
	}
}

func TestPasswordHash(t *testing.T) {
	h := hashPassword("correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h, "correct") {
		t.Fatalf("hash %q", h)
	}
	if h == hashPassword("correct horse") {
		t.Error("two hashes of one password are equal: no salt?")
	}
	for _, tc := range []struct {
		hash, password string
		want           bool
	}{
		{h, "correct horse", true},
		{h, "correct horse ", false},
		{h, "", false},
		{dummyHash, "", false},
		{"", "correct horse", false},
		{"$argon2id$v=19$m=19456,t=0,p=1$AAAA$AAAA", "x", false},
		{"$bcrypt$whatever$$$", "x", false},
	} {
		if got := checkPassword(tc.hash, tc.password); got != tc.want {
			t.Errorf("checkPassword(%q, %q) = %v, want %v", tc.hash, tc.password, got, tc.want)
		}
	}
}

// Git remotes answer a user's key as the API does: 404 for others' apps.
func TestGitRespectsAccess(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git (apt-get install git)")
	}
	e := newEnv(t, 0, func(c *Config) {
		c.Git = &GitConfig{ReposDir: t.TempDir(), HookCommand: "/bin/true", InternalURL: c.PublicURL}
	})
	alice, bob := e.newUser("alice@example.com"), e.newUser("bob@example.com")
	e.mustAs(alice, 201, "POST", "/apps", map[string]string{"name": "alices"}, nil)
	get := func(key string) (int, string) {
		resp := e.raw("GET", "/alices.git/info/refs?service=git-upload-pack", nil, "Authorization", "Basic "+basic("git", key))
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	if status, body := get(alice); status != 200 {
		t.Errorf("alice fetches her app: %d %s", status, body)
	}
	if status, body := get(bob); status != 404 || !strings.Contains(body, "No such app as alices") {
		t.Errorf("bob fetches alice's app: %d %s, want 404", status, body)
	}
	if status, _ := get("wrong"); status != 401 {
		t.Errorf("a wrong key: %d, want 401", status)
	}
	e.mustAs(alice, 201, "POST", "/apps/alices/collaborators", map[string]string{"user": "bob@example.com"}, nil)
	if status, body := get(bob); status != 200 {
		t.Errorf("bob, a collaborator, fetches: %d %s", status, body)
	}
}
