package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the clock of every test: output times read "(~ 5s ago)" for
// testNow minus 5 seconds.
var testNow = time.Date(2026, 11, 26, 14, 0, 5, 0, time.UTC)

// request is what the fake API saw of one request.
type request struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// fakeAPI is the other side of the wire: an httptest server answering the
// shapes of docs/CONTRACTS.md for the routes a test registers, recording
// every request.
type fakeAPI struct {
	*httptest.Server
	mux  *http.ServeMux
	mu   sync.Mutex
	reqs []request
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{mux: http.NewServeMux()}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Bodies of uploads are read by their handler; record the rest.
		var body []byte
		if r.Method != http.MethodPut {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		f.mu.Unlock()
		if _, pattern := f.mux.Handler(r); pattern == "" {
			writeJSON(w, http.StatusNotFound, map[string]string{"id": "not_found", "message": "no such route in the fake: " + r.Method + " " + r.URL.Path})
			return
		}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// handle registers a route ("GET /apps/{app}") answering status and v as JSON.
func (f *fakeAPI) handle(pattern string, status int, v any) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, status, v) })
}

// requests returns the recorded requests matching method and path ("" = any).
func (f *fakeAPI) requests(method, path string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.reqs {
		if (method == "" || r.Method == method) && (path == "" || r.Path == path) {
			out = append(out, r)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// result is what one CLI run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the CLI against api with env on top of DYNO_API_URL, DYNO_API_KEY
// and a private HOME.
func run(t *testing.T, api *fakeAPI, env map[string]string, args ...string) result {
	t.Helper()
	return runCtx(t, context.Background(), api, env, nil, args...)
}

func runCtx(t *testing.T, ctx context.Context, api *fakeAPI, env map[string]string, stdout io.Writer, args ...string) result {
	t.Helper()
	vars := map[string]string{"DYNO_API_KEY": "test-key", "HOME": t.TempDir()}
	if api != nil {
		vars["DYNO_API_URL"] = api.URL
	}
	for k, v := range env {
		vars[k] = v
	}
	var out, errb bytes.Buffer
	var w io.Writer = &out
	if stdout != nil {
		w = io.MultiWriter(&out, stdout)
	}
	s := &session{
		stdin:  strings.NewReader(vars["STDIN"]),
		stdout: w,
		stderr: &errb,
		env:    func(k string) string { return vars[k] },
		hc:     &http.Client{Timeout: 10 * time.Second},
		now:    func() time.Time { return testNow },
		dir:    vars["DIR"], // never the source tree: apps:create adds git remotes
	}
	if s.dir == "" {
		s.dir = t.TempDir()
	}
	code := s.run(ctx, args)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// wantOK fails the test unless the run succeeded.
func wantOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
}

// appJSON is an app as the API shows it.
func appJSON(name string, release int) map[string]any {
	return map[string]any{
		"id": "app-id-" + name, "name": name, "maintenance": false,
		"git_url": "http://127.0.0.1:5000/" + name + ".git", "web_url": "http://" + name + ".localhost:8080/",
		"release_version": release, "created_at": "2026-11-26T13:00:00Z", "updated_at": "2026-11-26T13:00:00Z",
	}
}

// dynoJSON is a dyno as the API shows it.
func dynoJSON(name, state string, release int) map[string]any {
	typ, _, _ := strings.Cut(name, ".")
	return map[string]any{
		"id": "dyno-" + name, "name": name, "type": typ, "command": "python3 app.py", "size": "standard-1X",
		"state": state, "release": map[string]any{"id": "rel", "version": release},
		"app": map[string]any{"id": "app-id", "name": "hello"}, "attach_url": nil,
		"created_at": "2026-11-26T14:00:00Z", "updated_at": "2026-11-26T14:00:00Z",
	}
}

// formationJSON is one process type as the API shows it.
func formationJSON(typ string, quantity int) map[string]any {
	return map[string]any{
		"id": "f-" + typ, "app": map[string]any{"id": "app-id", "name": "hello"}, "type": typ,
		"command": "python3 app.py", "quantity": quantity, "size": "standard-1X",
		"created_at": "2026-11-26T14:00:00Z", "updated_at": "2026-11-26T14:00:00Z",
	}
}
