package cli

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func authorizationJSON(id, token string) map[string]any {
	a := map[string]any{"id": id, "description": "dyno login", "user": map[string]string{"id": "u1", "email": "alice@example.com"}}
	if token != "" {
		a["access_token"] = map[string]any{"id": id, "token": token}
	}
	return a
}

func TestPasswordLoginAndLogout(t *testing.T) {
	api := newFakeAPI(t)
	api.mux.HandleFunc("POST /oauth/authorizations", func(w http.ResponseWriter, r *http.Request) {
		if email, pw, ok := r.BasicAuth(); !ok || email != "alice@example.com" || pw != "s3cret pw" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"id": "unauthorized", "message": "Invalid credentials provided."})
			return
		}
		writeJSON(w, http.StatusCreated, authorizationJSON("auth-1", "dyno_new"))
	})
	api.mux.HandleFunc("GET /apps", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer dyno_new" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"id": "unauthorized", "message": "Invalid credentials provided."})
			return
		}
		writeJSON(w, http.StatusOK, []any{})
	})
	api.handle("DELETE /oauth/authorizations/auth-1", http.StatusOK, authorizationJSON("auth-1", ""))

	tests := []struct {
		name    string
		stdin   string
		args    []string
		envURL  bool // DYNO_API_URL set instead of --api-url
		wantErr string
	}{
		{name: "password on stdin, URL from the environment", stdin: "s3cret pw\n", envURL: true,
			args: []string{"login", "--email", "alice@example.com", "--password-stdin"}},
		{name: "prompts", stdin: api.URL + "\nalice@example.com\ns3cret pw\n", args: []string{"login"}},
		{name: "flags", stdin: "s3cret pw\n", args: []string{"login", "--api-url", api.URL, "--email", "alice@example.com", "--password-stdin"}},
		{name: "wrong password", stdin: "guess\n", args: []string{"login", "--api-url", api.URL, "--email", "alice@example.com", "--password-stdin"},
			wantErr: "Error: wrong email or password"},
		{name: "no password", stdin: "", args: []string{"login", "--api-url", api.URL, "--email", "alice@example.com", "--password-stdin"},
			wantErr: "no password on stdin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			env := map[string]string{"HOME": home, "DYNO_API_KEY": "", "DYNO_API_URL": "", "STDIN": tc.stdin}
			if tc.envURL {
				env["DYNO_API_URL"] = api.URL
			}
			r := run(t, nil, env, tc.args...)
			path := filepath.Join(home, ".config", "dyno", "credentials")
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want %q", r.code, r.stderr, tc.wantErr)
				}
				if _, err := os.Stat(path); err == nil {
					t.Error("a failed login stored credentials")
				}
				return
			}
			wantOK(t, r)
			if strings.Contains(r.stderr, "s3cret") || strings.Contains(r.stdout, "s3cret") {
				t.Errorf("the password was printed: %q %q", r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "as alice@example.com") {
				t.Errorf("stdout %q", r.stdout)
			}
			data, _ := os.ReadFile(path)
			var creds credentials
			if err := json.Unmarshal(data, &creds); err != nil || creds != (credentials{APIURL: api.URL, APIKey: "dyno_new", Email: "alice@example.com", AuthorizationID: "auth-1"}) {
				t.Fatalf("stored %s (%v)", data, err)
			}
			env = map[string]string{"HOME": home, "DYNO_API_KEY": "", "DYNO_API_URL": ""}
			r = run(t, nil, env, "auth:token")
			if wantOK(t, r); r.stdout != "dyno_new\n" {
				t.Errorf("auth:token printed %q", r.stdout)
			}
			before := len(api.requests("DELETE", "/oauth/authorizations/auth-1"))
			wantOK(t, run(t, nil, env, "logout"))
			revokes := api.requests("DELETE", "/oauth/authorizations/auth-1")
			if len(revokes) != before+1 || revokes[len(revokes)-1].Header.Get("Authorization") != "Bearer dyno_new" {
				t.Errorf("logout did not revoke its key: %+v", revokes)
			}
			if _, err := os.Stat(path); err == nil {
				t.Error("logout left the credentials")
			}
		})
	}
	// The login sent the password as Basic auth, to that endpoint only.
	for _, req := range api.requests("", "") {
		auth := req.Header.Get("Authorization")
		if b, ok := strings.CutPrefix(auth, "Basic "); ok {
			dec, _ := base64.StdEncoding.DecodeString(b)
			if req.Path != "/oauth/authorizations" || !strings.HasPrefix(string(dec), "alice@example.com:") {
				t.Errorf("Basic auth sent to %s %s", req.Method, req.Path)
			}
		}
	}
}

func TestAccountCommands(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/shared/collaborators", http.StatusOK, []any{
		map[string]any{"id": "c1", "role": "owner", "user": map[string]string{"email": "alice@example.com"}},
		map[string]any{"id": "c2", "role": "collaborator", "user": map[string]string{"email": "bob@example.com"}},
	})
	api.handle("POST /apps/shared/collaborators", http.StatusCreated, map[string]any{"id": "c2", "role": "collaborator"})
	api.handle("DELETE /apps/shared/collaborators/{who}", http.StatusOK, map[string]any{"id": "c2"})
	api.handle("POST /apps/theirs/collaborators", http.StatusForbidden, map[string]string{"id": "forbidden", "message": "Only the owner of theirs (carol@example.com) can add collaborators to it: you are a collaborator."})
	api.handle("POST /users", http.StatusCreated, map[string]any{"id": "u2", "email": "bob@example.com"})
	api.handle("GET /users", http.StatusOK, []any{map[string]any{"email": "admin@dyno.local"}, map[string]any{"email": "bob@example.com"}})
	api.handle("GET /oauth/authorizations", http.StatusOK, []any{map[string]any{"id": "auth-1", "description": "laptop", "created_at": testNow}})
	api.handle("POST /oauth/authorizations", http.StatusCreated, authorizationJSON("auth-2", "dyno_ci"))
	api.handle("DELETE /oauth/authorizations/{id}", http.StatusOK, authorizationJSON("auth-1", ""))
	api.handle("GET /account", http.StatusOK, map[string]any{"id": "u1", "email": "alice@example.com"})

	tests := []struct {
		name, stdin       string
		args              []string
		wantOut, wantErr  string
		wantMethod, wantP string
		wantBody          string
	}{
		{name: "access", args: []string{"access", "-a", "shared"}, wantOut: "=== shared Access List\nalice@example.com  owner\nbob@example.com    collaborator\n"},
		{name: "access:add", args: []string{"access:add", "bob@example.com", "-a", "shared"}, wantMethod: "POST", wantP: "/apps/shared/collaborators", wantBody: `{"user":"bob@example.com"}`},
		{name: "access:remove", args: []string{"access:remove", "bob@example.com", "-a", "shared"}, wantMethod: "DELETE", wantP: "/apps/shared/collaborators/bob@example.com"},
		{name: "access:add forbidden", args: []string{"access:add", "dan@example.com", "-a", "theirs"}, wantErr: "Error: Only the owner of theirs (carol@example.com) can add collaborators"},
		{name: "users:create", stdin: "long password\n", args: []string{"users:create", "bob@example.com", "--password-stdin"},
			wantOut: "Created user bob@example.com", wantMethod: "POST", wantP: "/users", wantBody: `{"email":"bob@example.com","password":"long password"}`},
		{name: "users:create prompts twice", stdin: "long password\nlong password\n", args: []string{"users:create", "bob@example.com"}, wantOut: "Created user bob@example.com"},
		{name: "users:create mismatch", stdin: "long password\nother\n", args: []string{"users:create", "bob@example.com"}, wantErr: "the passwords differ"},
		{name: "users", args: []string{"users"}, wantOut: "=== Users\nadmin@dyno.local\nbob@example.com\n"},
		{name: "authorizations", args: []string{"authorizations"}, wantOut: "auth-1  laptop"},
		{name: "authorizations:create", args: []string{"authorizations:create", "-d", "ci"}, wantOut: "dyno_ci\n", wantBody: `{"description":"ci","scope":["global"]}`, wantMethod: "POST", wantP: "/oauth/authorizations"},
		{name: "authorizations:revoke", args: []string{"authorizations:revoke", "auth-1"}, wantOut: "Revoked API key auth-1\n", wantMethod: "DELETE", wantP: "/oauth/authorizations/auth-1"},
		{name: "auth:whoami", args: []string{"auth:whoami"}, wantOut: "alice@example.com\n"},
		{name: "auth:token", args: []string{"auth:token"}, wantOut: "test-key\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, api, map[string]string{"STDIN": tc.stdin}, tc.args...)
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want %q", r.code, r.stderr, tc.wantErr)
				}
				return
			}
			wantOK(t, r)
			if !strings.Contains(r.stdout, tc.wantOut) {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantOut)
			}
			if tc.wantMethod != "" {
				reqs := api.requests(tc.wantMethod, tc.wantP)
				if len(reqs) == 0 {
					t.Fatalf("no %s %s", tc.wantMethod, tc.wantP)
				}
				if got := strings.TrimSpace(reqs[len(reqs)-1].Body); tc.wantBody != "" && got != tc.wantBody {
					t.Errorf("body %s, want %s", got, tc.wantBody)
				}
			}
		})
	}
}
