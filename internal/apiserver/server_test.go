package apiserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/build"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

const testKey = "sekrit"

// env is a real API server on a real embedded NATS, behind httptest.
type env struct {
	t    *testing.T
	st   *store.Store
	logs *logplex.Logplex
	srv  *Server
	url  string

	mu      sync.Mutex
	now     time.Time
	handler http.Handler // e.srv's, swapped by restart
	cfg     Config
}

func newEnv(t *testing.T, maxSource int64, opts ...func(*Config)) *env {
	t.Helper()
	st, _ := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	lp, err := logplex.New(ctx, st.JetStream(), logplex.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, logs: lp, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		h := e.handler
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	e.url = ts.URL
	cfg := Config{Domain: "dyno.test", RouterURLPort: "8080", PublicURL: ts.URL, AdminKey: testKey,
		MaxSourceBytes: maxSource, Logger: logger, Now: e.clock}
	for _, o := range opts {
		o(&cfg)
	}
	e.cfg = cfg
	e.srv = New(cfg, st, lp, build.New(st, lp, logger))
	t.Cleanup(func() { e.srv.Close() })
	e.handler = e.srv.Handler()
	return e
}

// restart replaces the API server with a new one on the same store and
// URL, as a restarted node: what was only in memory is gone.
func (e *env) restart() {
	e.t.Helper()
	e.srv.Close()
	srv := New(e.cfg, e.st, e.logs, build.New(e.st, e.logs, e.cfg.Logger))
	e.t.Cleanup(func() { srv.Close() })
	e.mu.Lock()
	e.srv, e.handler = srv, srv.Handler()
	e.mu.Unlock()
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

// call makes an authorised API request; body is JSON-encoded unless it is
// a string. It returns the status and the body.
func (e *env) call(method, path string, body any, hdr ...string) (int, []byte) {
	e.t.Helper()
	resp := e.raw(method, path, body, append([]string{"Authorization", "Bearer " + testKey, "Accept", "application/vnd.heroku+json; version=3"}, hdr...)...)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, data
}

func (e *env) raw(method, path string, body any, hdr ...string) *http.Response {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = e.url + path
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// must calls and decodes, failing unless the status is want.
func (e *env) must(want int, method, path string, body any, out any, hdr ...string) {
	e.t.Helper()
	status, data := e.call(method, path, body, hdr...)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

func (e *env) createApp(name string) appJSON {
	e.t.Helper()
	var a appJSON
	e.must(201, "POST", "/apps", map[string]string{"name": name}, &a)
	return a
}

type file struct{ name, body string }

func tarball(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deploy uploads src, builds it, follows the output to its end and
// returns the finished build and its output.
func (e *env) deploy(app string, src []byte) (buildJSON, string) {
	e.t.Helper()
	var s map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &s)
	blob := s["source_blob"]
	put := e.raw("PUT", blob.PutURL, src) // no Authorization: the URL is the secret
	put.Body.Close()
	if put.StatusCode != 200 {
		e.t.Fatalf("PUT source: status %d", put.StatusCode)
	}
	var b buildJSON
	e.must(201, "POST", "/apps/"+app+"/builds", map[string]any{"source_blob": map[string]string{"url": blob.GetURL}}, &b)
	if b.Status != "pending" || b.Release != nil || b.OutputStreamURL == "" {
		e.t.Fatalf("new build %+v", b)
	}
	resp := e.raw("GET", b.OutputStreamURL, nil)
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		e.t.Fatalf("output stream: %d %v", resp.StatusCode, err)
	}
	// The stream ends when the build does; the record follows at once.
	e.must(200, "GET", "/apps/"+app+"/builds/"+b.ID, nil, &b)
	return b, string(out)
}

var goodSource = []file{{"Procfile", "web: python3 -m http.server $PORT\nworker: sh -c 'sleep 1000'\n"}, {"app.py", "print('hi')\n"}}

func TestApps(t *testing.T) {
	e := newEnv(t, 0)
	hello := e.createApp("hello")
	if hello.WebURL != "http://hello.dyno.test:8080/" || hello.ReleaseVersion != 0 || hello.ReleasedAt != nil {
		t.Errorf("created app %+v", hello)
	}
	auth := []string{"Authorization", "Bearer " + testKey}
	tests := []struct {
		name, method, path string
		body               any
		hdr                []string
		noAuth             bool
		want               int
		wantID, wantIn     string
	}{
		{name: "get by name", method: "GET", path: "/apps/hello", want: 200, wantIn: `"name": "hello"`},
		{name: "get by id", method: "GET", path: "/apps/" + hello.ID, want: 200, wantIn: `"release_version": 0`},
		{name: "list", method: "GET", path: "/apps", want: 200, wantIn: `"hello"`},
		{name: "bad name", method: "POST", path: "/apps", body: map[string]string{"name": "Bad_Name"}, want: 422, wantID: "invalid_params"},
		{name: "taken", method: "POST", path: "/apps", body: map[string]string{"name": "hello"}, want: 409, wantID: "conflict", wantIn: "Name hello is already taken"},
		{name: "random name", method: "POST", path: "/apps", body: "", want: 201, wantIn: `"web_url"`},
		{name: "heroku cli fields", method: "POST", path: "/apps", body: `{"name":"cli-app","region":null,"stack":null}`, want: 201},
		{name: "unknown app", method: "GET", path: "/apps/nope", want: 404, wantID: "not_found", wantIn: "Couldn't find that app."},
		{name: "unknown id", method: "GET", path: "/apps/00000000-0000-4000-8000-000000000000", want: 404, wantID: "not_found"},
		{name: "no auth", method: "GET", path: "/apps", noAuth: true, want: 401, wantID: "unauthorized"},
		{name: "wrong key", method: "GET", path: "/apps", noAuth: true, hdr: []string{"Authorization", "Bearer nope"}, want: 401},
		{name: "basic auth", method: "GET", path: "/apps/hello", noAuth: true, hdr: []string{"Authorization", "Basic " + basic("x", testKey)}, want: 200},
		{name: "bad accept", method: "GET", path: "/apps", hdr: []string{"Accept", "application/vnd.heroku+json; version=2"}, want: 406, wantID: "not_acceptable"},
		{name: "sdk accept", method: "GET", path: "/apps", hdr: []string{"Accept", "application/vnd.heroku+json; version=3.sdk"}, want: 200},
		{name: "malformed json", method: "POST", path: "/apps", body: `{"name":`, want: 400, wantID: "bad_request"},
		{name: "unknown field", method: "POST", path: "/apps", body: `{"nam":"x"}`, want: 400, wantIn: "unknown field"},
		{name: "trailing data", method: "POST", path: "/apps", body: `{"name":"abc"} {}`, want: 400},
		{name: "too large", method: "POST", path: "/apps", body: `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, want: 413, wantID: "payload_too_large"},
		{name: "maintenance", method: "PATCH", path: "/apps/hello", body: map[string]bool{"maintenance": true}, want: 200, wantIn: `"maintenance": true`},
		{name: "unknown endpoint", method: "GET", path: "/nope", want: 404, wantID: "not_found"},
		{name: "dyno sizes", method: "GET", path: "/dyno-sizes", want: 200, wantIn: `"standard-2X"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{"Accept", "application/vnd.heroku+json; version=3", "Request-Id", "req-" + tc.name}
			if !tc.noAuth {
				hdr = append(hdr, auth...)
			}
			resp := e.raw(tc.method, tc.path, tc.body, append(hdr, tc.hdr...)...)
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, data)
			}
			if got := resp.Header.Get("Request-Id"); got != "req-"+tc.name {
				t.Errorf("Request-Id %q not echoed", got)
			}
			if tc.wantID != "" {
				var apiErr struct{ ID, Message string }
				if err := json.Unmarshal(data, &apiErr); err != nil || apiErr.ID != tc.wantID || apiErr.Message == "" {
					t.Errorf("error body %s, want id %s", data, tc.wantID)
				}
			}
			if !strings.Contains(string(data), tc.wantIn) {
				t.Errorf("body %s lacks %q", data, tc.wantIn)
			}
		})
	}

	t.Run("destroy", func(t *testing.T) {
		e.must(200, "PATCH", "/apps/hello/config-vars", map[string]string{"A": "1"}, nil)
		e.deploy("hello", tarball(t, goodSource...))
		e.must(200, "DELETE", "/apps/hello", nil, nil)
		e.must(404, "GET", "/apps/hello", nil, nil)
		e.must(404, "GET", "/apps/"+hello.ID, nil, nil)
		ctx := context.Background()
		if _, _, err := e.st.Formations.Get(ctx, hello.ID); err != store.ErrNotFound {
			t.Errorf("formation after destroy: %v", err)
		}
		if rels, _ := e.st.Releases.List(ctx, hello.ID+".>"); len(rels) != 0 {
			t.Errorf("%d releases left after destroy", len(rels))
		}
		if n := countSlugs(t, e); n != 0 {
			t.Errorf("%d slugs left after destroy", n)
		}
		again := e.createApp("hello") // the name is free again
		if again.ID == hello.ID {
			t.Error("re-created app reuses the old ID")
		}
	})
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func countSlugs(t *testing.T, e *env) int {
	t.Helper()
	ctx := context.Background()
	os, err := e.st.JetStream().ObjectStore(ctx, "slugs")
	if err != nil {
		t.Fatal(err)
	}
	list, err := os.List(ctx)
	if err != nil {
		return 0 // jetstream.ErrNoObjectsFound
	}
	return len(list)
}

func TestConfigVarsAndReleases(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("cfg")
	steps := []struct {
		name     string
		patch    any
		want     int
		wantCfg  map[string]string
		wantDesc string // of the newest release; "" = no new release
		version  int
	}{
		{name: "set", patch: map[string]string{"FOO": "bar", "BAZ": "1"}, want: 200, wantCfg: map[string]string{"FOO": "bar", "BAZ": "1"}, wantDesc: "Set BAZ, FOO config vars", version: 1},
		{name: "unset", patch: map[string]any{"FOO": nil}, want: 200, wantCfg: map[string]string{"BAZ": "1"}, wantDesc: "Remove FOO config vars", version: 2},
		{name: "no change", patch: map[string]any{"BAZ": "1", "GONE": nil}, want: 200, wantCfg: map[string]string{"BAZ": "1"}, version: 2},
		{name: "bad key", patch: map[string]string{"1BAD": "x"}, want: 422, version: 2},
		{name: "bad value", patch: map[string]any{"N": 5}, want: 422, version: 2},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			status, data := e.call("PATCH", "/apps/cfg/config-vars", tc.patch)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, data)
			}
			if tc.wantCfg != nil {
				var got map[string]string
				e.must(200, "GET", "/apps/cfg/config-vars", nil, &got)
				if !equalMaps(got, tc.wantCfg) {
					t.Errorf("config %v, want %v", got, tc.wantCfg)
				}
			}
			var rels []releaseJSON
			e.must(200, "GET", "/apps/cfg/releases", nil, &rels)
			if len(rels) != tc.version {
				t.Fatalf("%d releases, want %d", len(rels), tc.version)
			}
			last := rels[len(rels)-1]
			if tc.wantDesc != "" && (last.Description != tc.wantDesc || last.Version != tc.version || !last.Current || last.Slug != nil || last.User.Email != adminUser) {
				t.Errorf("newest release %+v, want v%d %q", last, tc.version, tc.wantDesc)
			}
		})
	}

	var app appJSON
	e.must(200, "GET", "/apps/cfg", nil, &app)
	if app.ReleaseVersion != 2 || app.ReleasedAt == nil {
		t.Errorf("app %+v, want release_version 2", app)
	}
	ranges := []struct {
		rng      string
		want     []int
		status   int
		nextPart string
	}{
		{rng: "version ..; max=1, order=desc", want: []int{2}, status: 206, nextPart: "version ]2..; max=1, order=desc"},
		{rng: "version ..; order=desc,max=1", want: []int{2}, status: 206},
		{rng: "version ]2..; max=1, order=desc", want: []int{1}, status: 200},
		{rng: "version ..; max=15, order=desc", want: []int{2, 1}, status: 200},
		{rng: "", want: []int{1, 2}, status: 200},
		{rng: "version 2..", want: []int{2}, status: 200},
		{rng: "name ..", status: 400},
	}
	for _, tc := range ranges {
		t.Run("range "+tc.rng, func(t *testing.T) {
			resp := e.raw("GET", "/apps/cfg/releases", nil, "Authorization", "Bearer "+testKey, "Range", tc.rng)
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status >= 400 {
				return
			}
			var rels []releaseJSON
			if err := json.NewDecoder(resp.Body).Decode(&rels); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, r := range rels {
				got = append(got, r.Version)
			}
			if !equalInts(got, tc.want) {
				t.Errorf("versions %v, want %v", got, tc.want)
			}
			if tc.nextPart != "" && resp.Header.Get("Next-Range") != tc.nextPart {
				t.Errorf("Next-Range %q, want %q", resp.Header.Get("Next-Range"), tc.nextPart)
			}
		})
	}
	var v1 releaseJSON
	e.must(200, "GET", "/apps/cfg/releases/1", nil, &v1)
	var byID releaseJSON
	e.must(200, "GET", "/apps/cfg/releases/"+v1.ID, nil, &byID)
	if byID.Version != 1 || v1.Current {
		t.Errorf("release by id %+v, v1 %+v", byID, v1)
	}
	e.must(404, "GET", "/apps/cfg/releases/9", nil, nil)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
