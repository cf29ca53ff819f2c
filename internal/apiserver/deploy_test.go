package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

func TestDeploy(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("web-app")
	e.must(200, "PATCH", "/apps/web-app/config-vars", map[string]string{"GREETING": "hi"}, nil)

	b, out := e.deploy("web-app", tarball(t, goodSource...))
	if b.Status != "succeeded" || b.Release == nil || b.Release.Version != 2 || b.Slug == nil {
		t.Fatalf("build %+v\n%s", b, out)
	}
	for _, want := range []string{"Procfile declares types -> web, worker", "Released v2", "http://web-app.dyno.test:8080/ deployed"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	var rel releaseJSON
	e.must(200, "GET", "/apps/web-app/releases/2", nil, &rel)
	if !strings.HasPrefix(rel.Description, "Deploy ") || len(rel.Description) != len("Deploy ")+8 || rel.Slug == nil || rel.Slug.ID != b.Slug.ID || !rel.Current {
		t.Errorf("release %+v", rel)
	}
	var cfg map[string]string
	e.must(200, "GET", "/apps/web-app/config-vars", nil, &cfg)
	if cfg["GREETING"] != "hi" {
		t.Errorf("config after deploy %v", cfg)
	}
	var forms []formationJSON
	e.must(200, "GET", "/apps/web-app/formation", nil, &forms)
	if len(forms) != 2 || forms[0].Type != "web" || forms[0].Quantity != 1 || forms[1].Type != "worker" || forms[1].Quantity != 0 ||
		forms[0].Command != "python3 -m http.server $PORT" || forms[0].Size != model.DefaultSize {
		t.Errorf("formation %+v", forms)
	}

	// A config change keeps the slug; a redeploy keeps the quantities.
	e.must(200, "PATCH", "/apps/web-app/formation", map[string]any{"updates": []map[string]any{{"type": "web", "quantity": 0}}}, nil)
	e.must(200, "PATCH", "/apps/web-app/config-vars", map[string]string{"X": "y"}, nil)
	e.must(200, "GET", "/apps/web-app/releases/3", nil, &rel)
	if rel.Slug == nil || rel.Slug.ID != b.Slug.ID {
		t.Errorf("config release lost the slug: %+v", rel)
	}
	b2, _ := e.deploy("web-app", tarball(t, append(goodSource, file{"Procfile.extra", "x"})...))
	if b2.Status != "succeeded" || b2.Release.Version != 4 {
		t.Fatalf("second build %+v", b2)
	}
	var web formationJSON
	e.must(200, "GET", "/apps/web-app/formation/web", nil, &web)
	if web.Quantity != 0 {
		t.Errorf("redeploy reset web to %d", web.Quantity)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.logs.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lines, err := e.logs.Recent(ctx, b.App.ID, logplex.Filter{Dyno: "api"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, l := range lines {
		msgs = append(msgs, l.Message)
	}
	got := strings.Join(msgs, "|")
	want := "Release v1 created by admin@dyno.local|Build started by admin@dyno.local|Release v2 created by admin@dyno.local|Build succeeded"
	if !strings.HasPrefix(got, want) {
		t.Errorf("api log lines %q, want them to start with %q", got, want)
	}
}

func TestBadBuilds(t *testing.T) {
	e := newEnv(t, 64<<10)
	e.createApp("bad")
	garbage := make([]byte, 1000)
	rand.Read(garbage)
	tests := []struct {
		name string
		src  []byte
		want string
	}{
		{"no Procfile", tarball(t, file{"lib.py", "x"}), "no Procfile found"},
		{"malformed Procfile", tarball(t, file{"Procfile", "web python3 app.py\n"}), "Procfile line 1"},
		{"garbage", garbage, "not a gzipped tarball"},
		{"dotdot", tarball(t, append(goodSource, file{"../evil", "x"})...), "leaves the app root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, out := e.deploy("bad", tc.src)
			if b.Status != "failed" || b.Release != nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "Build failed") {
				t.Errorf("build %+v, output %q, want failed with %q", b, out, tc.want)
			}
		})
	}
	var rels []releaseJSON
	e.must(200, "GET", "/apps/bad/releases", nil, &rels)
	if len(rels) != 0 || countSlugs(t, e) != 0 {
		t.Errorf("failed builds left %d releases, %d slugs", len(rels), countSlugs(t, e))
	}

	big := make([]byte, 100<<10)
	rand.Read(big)
	var s map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &s)
	u := s["source_blob"].PutURL
	for name, body := range map[string]io.Reader{"with length": bytes.NewReader(big), "chunked": io.MultiReader(bytes.NewReader(big))} {
		resp := e.raw("PUT", u, body)
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(data), "payload_too_large") {
			t.Errorf("oversize upload %s: status %d %s, want 413", name, resp.StatusCode, data)
		}
	}
	id := strings.TrimPrefix(strings.Split(u, "?")[0], e.url+"/sources/")
	if _, err := e.st.Sources.Get(context.Background(), id); err != store.ErrNotFound {
		t.Errorf("oversize source was stored: %v", err)
	}
	bad := strings.Replace(u, "token=", "token=x", 1)
	if resp := e.raw("PUT", bad, "x"); resp.StatusCode != 404 {
		t.Errorf("PUT with a bad token: status %d, want 404", resp.StatusCode)
	}
	// The put_url writes, the get_url reads: a build is made from the latter.
	e.must(422, "POST", "/apps/bad/builds", map[string]any{"source_blob": map[string]string{"url": u}}, nil)
	// A build of a source that was never uploaded fails clearly.
	b := buildJSON{}
	e.must(201, "POST", "/apps/bad/builds", map[string]any{"source_blob": map[string]string{"url": s["source_blob"].GetURL}}, &b)
	resp := e.raw("GET", b.OutputStreamURL, nil)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), "never uploaded") {
		t.Errorf("output %q", out)
	}
	e.must(422, "POST", "/apps/bad/builds", map[string]any{"source_blob": map[string]string{"url": "http://example.com/x.tgz"}}, nil)
}

func TestFormation(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("fresh")
	e.must(422, "PATCH", "/apps/fresh/formation", map[string]any{"updates": []map[string]any{{"type": "web", "quantity": 1}}}, nil)
	e.createApp("scale")
	e.deploy("scale", tarball(t, goodSource...))
	type upd = map[string]any
	tests := []struct {
		name       string
		updates    []upd
		want       int
		wantWeb    int
		wantWorker int
		wantSize   string // of web
		wantMsg    string
	}{
		{name: "absolute", updates: []upd{{"type": "web", "quantity": 2}}, want: 200, wantWeb: 2, wantSize: "standard-1X"},
		{name: "string", updates: []upd{{"type": "web", "quantity": "3"}}, want: 200, wantWeb: 3, wantSize: "standard-1X"},
		{name: "relative", updates: []upd{{"type": "web", "quantity": "+1"}, {"type": "worker", "quantity": "+2"}}, want: 200, wantWeb: 4, wantWorker: 2, wantSize: "standard-1X"},
		{name: "minus", updates: []upd{{"type": "worker", "quantity": "-1"}}, want: 200, wantWeb: 4, wantWorker: 1, wantSize: "standard-1X"},
		{name: "size", updates: []upd{{"type": "web", "quantity": "2", "size": "Standard-2x"}}, want: 200, wantWeb: 2, wantWorker: 1, wantSize: "standard-2X"},
		{name: "dyno_size", updates: []upd{{"type": "web", "dyno_size": upd{"name": "performance-m"}}}, want: 200, wantWeb: 2, wantWorker: 1, wantSize: "performance-M"},
		{name: "unknown type", updates: []upd{{"type": "web", "quantity": 9}, {"type": "clock", "quantity": 1}}, want: 422, wantWeb: 2, wantWorker: 1, wantSize: "performance-M",
			wantMsg: "Couldn't find that process type (clock). Process types in this release: web, worker"},
		{name: "negative", updates: []upd{{"type": "worker", "quantity": "-5"}}, want: 422, wantWeb: 2, wantWorker: 1, wantSize: "performance-M"},
		{name: "bad size", updates: []upd{{"type": "web", "size": "huge"}}, want: 422, wantWeb: 2, wantWorker: 1, wantSize: "performance-M", wantMsg: "Unknown dyno size"},
		{name: "bad quantity", updates: []upd{{"type": "web", "quantity": "lots"}}, want: 422, wantWeb: 2, wantWorker: 1, wantSize: "performance-M"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, data := e.call("PATCH", "/apps/scale/formation", map[string]any{"updates": tc.updates})
			if status != tc.want || !strings.Contains(string(data), tc.wantMsg) {
				t.Fatalf("status %d %s, want %d with %q", status, data, tc.want, tc.wantMsg)
			}
			f, _, err := e.st.Formations.Get(context.Background(), mustApp(t, e, "scale").ID)
			if err != nil {
				t.Fatal(err)
			}
			if w := f.Processes["web"]; w.Quantity != tc.wantWeb || w.Size != tc.wantSize || f.Processes["worker"].Quantity != tc.wantWorker {
				t.Errorf("formation %+v, want web=%d (%s) worker=%d", f.Processes, tc.wantWeb, tc.wantSize, tc.wantWorker)
			}
		})
	}
	var web formationJSON
	e.must(200, "PATCH", "/apps/scale/formation/web", map[string]any{"quantity": 1}, &web)
	if web.Quantity != 1 || web.DynoSize.Name != "performance-M" {
		t.Errorf("single PATCH %+v", web)
	}
	e.must(404, "GET", "/apps/scale/formation/clock", nil, nil)

	// One app[api] line per accepted PATCH, naming the updated types.
	want := []string{
		"Scaled to web@2:Standard-1X by user admin@dyno.local",
		"Scaled to web@3:Standard-1X by user admin@dyno.local",
		"Scaled to web@4:Standard-1X worker@2:Standard-1X by user admin@dyno.local",
		"Scaled to worker@1:Standard-1X by user admin@dyno.local",
		"Scaled to web@2:Standard-2X by user admin@dyno.local",
		"Scaled to web@2:Performance-M by user admin@dyno.local",
		"Scaled to web@1:Performance-M by user admin@dyno.local",
	}
	if got := apiLines(t, e, mustApp(t, e, "scale").ID, "Scaled "); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("api lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// apiLines returns the messages of the app's app[api] log lines that start
// with prefix, oldest first.
func apiLines(t *testing.T, e *env, appID, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.logs.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lines, err := e.logs.Recent(ctx, appID, logplex.Filter{Dyno: "api", Source: model.SourceApp}, 1500)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l.Message, prefix) {
			out = append(out, l.Message)
		}
	}
	return out
}

func mustApp(t *testing.T, e *env, name string) appJSON {
	t.Helper()
	var a appJSON
	e.must(200, "GET", "/apps/"+name, nil, &a)
	return a
}

func TestDynosAndRestarts(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("ps-app")
	e.deploy("ps-app", tarball(t, goodSource...))
	app := mustApp(t, e, "ps-app")
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	exit3 := 3
	statuses := []model.DynoStatus{
		{ID: "d-web2", AppID: app.ID, Type: "web", Name: "web.2", Release: 1, Size: "standard-1X", Command: "x", State: model.StateUp, StartedAt: now, UpdatedAt: now},
		{ID: "d-worker1", AppID: app.ID, Type: "worker", Name: "worker.1", Release: 1, State: model.StateCrashed, ExitStatus: &exit3, StartedAt: now, UpdatedAt: now},
		{ID: "d-web10", AppID: app.ID, Type: "web", Name: "web.10", Release: 1, State: model.StateUp, StartedAt: now, UpdatedAt: now},
	}
	for _, s := range statuses {
		if _, err := e.st.Statuses.Put(ctx, model.StatusKey(app.ID, s.ID), s); err != nil {
			t.Fatal(err)
		}
	}
	assignments := []model.Assignment{
		{ID: "d-web2", HostID: "h1", AppID: app.ID, Type: "web", Name: "web.2", Index: 2, Release: 1},
		{ID: "d-web1", HostID: "h1", AppID: app.ID, Type: "web", Name: "web.1", Index: 1, Release: 1, Command: "python3", CreatedAt: now},
		{ID: "other", HostID: "h1", AppID: "some-other-app", Type: "web", Name: "web.1", Index: 1},
		{ID: "d-web3", AppID: app.ID, Type: "web", Name: "web.3", Index: 3, Release: 1, Size: "standard-2X",
			PendingReason: "no host has 1024 MB free for standard-2X (largest free: 512 MB on h1)", CreatedAt: now},
	}
	for _, a := range assignments {
		if _, err := e.st.Assignments.Put(ctx, a.Key(), a); err != nil {
			t.Fatal(err)
		}
	}
	var dynos []dynoJSON
	e.must(200, "GET", "/apps/ps-app/dynos", nil, &dynos)
	var got []string
	for _, d := range dynos {
		got = append(got, d.Name+":"+d.State)
	}
	if want := "web.1:starting web.2:up web.3:starting web.10:up worker.1:crashed"; strings.Join(got, " ") != want {
		t.Errorf("dynos %q, want %q", strings.Join(got, " "), want)
	}
	for _, d := range dynos {
		wantReason := ""
		if d.Name == "web.3" {
			wantReason = assignments[3].PendingReason
		}
		if d.PendingReason != wantReason {
			t.Errorf("%s: pending_reason %q, want %q", d.Name, d.PendingReason, wantReason)
		}
		if crashed := d.Name == "worker.1"; crashed != (d.ExitStatus != nil) || crashed && *d.ExitStatus != 3 {
			t.Errorf("%s: exit_status %v, want 3 on worker.1 only", d.Name, d.ExitStatus)
		}
	}
	if _, data := e.call("GET", "/apps/ps-app/dynos/web.1", nil); strings.Contains(string(data), "pending_reason") {
		t.Errorf("a dyno with a host shows a pending_reason: %s", data)
	}
	if dynos[0].Release.ID == "" || dynos[0].App.Name != "ps-app" {
		t.Errorf("dyno %+v lacks its release or app", dynos[0])
	}
	var d dynoJSON
	e.must(200, "GET", "/apps/ps-app/dynos/web.2", nil, &d)
	e.must(200, "GET", "/apps/ps-app/dynos/d-web2", nil, &d)
	e.must(404, "GET", "/apps/ps-app/dynos/web.9", nil, nil)

	tests := []struct {
		method, path string
		want         int
		check        func(model.Restarts) bool
	}{
		{"DELETE", "/apps/ps-app/dynos", 202, func(r model.Restarts) bool { return r.All == 1 }},
		{"DELETE", "/apps/ps-app/formations/web", 202, func(r model.Restarts) bool { return r.Types["web"] == 1 }},
		{"POST", "/apps/ps-app/formations/worker/actions/stop", 202, func(r model.Restarts) bool { return r.Types["worker"] == 1 }},
		{"DELETE", "/apps/ps-app/dynos/web.2", 202, func(r model.Restarts) bool { return r.Dynos["web.2"] == 1 }},
		{"POST", "/apps/ps-app/dynos/web.2/actions/stop", 202, func(r model.Restarts) bool { return r.Dynos["web.2"] == 2 }},
		{"DELETE", "/apps/ps-app/dynos/web.9", 404, nil},
		{"DELETE", "/apps/ps-app/formations/clock", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			status, data := e.call(tc.method, tc.path, nil)
			if status != tc.want {
				t.Fatalf("status %d %s, want %d", status, data, tc.want)
			}
			if tc.check == nil {
				return
			}
			f, _, err := e.st.Formations.Get(ctx, app.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(f.Restarts) {
				t.Errorf("restarts %+v", f.Restarts)
			}
			if g := f.Restarts.Generation("web", "web.2"); g < 1 {
				t.Errorf("generation of web.2 = %d", g)
			}
		})
	}
	want := []string{
		"Restart all dynos by user admin@dyno.local",
		"Restart web dynos by user admin@dyno.local",
		"Stop worker dynos by user admin@dyno.local",
		"Restart web.2 by user admin@dyno.local",
		"Stop web.2 by user admin@dyno.local",
	}
	var lines []string
	for _, prefix := range []string{"Restart ", "Stop "} {
		lines = append(lines, apiLines(t, e, app.ID, prefix)...)
	}
	slices.Sort(lines)
	slices.Sort(want)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("api lines\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestLogSessions(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("logs")
	app := mustApp(t, e, "logs")
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, l := range []struct{ dyno, msg string }{{"web.1", "one"}, {"worker.1", "two"}, {"web.2", "three"}} {
		e.logs.Publish(app.ID, model.LogLine{Time: base.Add(time.Duration(i) * time.Second), Source: model.SourceApp, Dyno: l.dyno, Message: l.msg})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.logs.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body map[string]any
		want []string
	}{
		{"all", nil, []string{"one", "two", "three"}},
		{"lines", map[string]any{"lines": 2}, []string{"two", "three"}},
		{"type", map[string]any{"type": "web"}, []string{"one", "three"}},
		{"dyno", map[string]any{"dyno": "worker.1"}, []string{"two"}},
		{"source", map[string]any{"source": "heroku"}, nil},
		{"more than the limit is the limit", map[string]any{"lines": 5000}, []string{"one", "two", "three"}},
		{"zero lines", map[string]any{"lines": 0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ls map[string]any
			e.must(201, "POST", "/apps/logs/log-sessions", tc.body, &ls)
			resp := e.raw("GET", ls["logplex_url"].(string), nil)
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("content type %q", ct)
			}
			data, _ := io.ReadAll(resp.Body) // ends after the backlog
			var got []string
			for _, line := range strings.Split(string(data), "\n") {
				if rest, ok := strings.CutPrefix(line, "data: "); ok {
					got = append(got, rest[strings.LastIndex(rest, ": ")+2:])
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("lines %q, want %q\n%s", got, tc.want, data)
			}
			if len(tc.want) > 0 && !strings.Contains(string(data), "id: 1\ndata: 2026-01-02T03:0") {
				t.Errorf("SSE framing wrong:\n%s", data)
			}
		})
	}
	e.must(422, "POST", "/apps/logs/log-sessions", map[string]any{"source": "nope"}, nil)
	e.must(422, "POST", "/apps/logs/log-sessions", map[string]any{"lines": -1}, nil)

	t.Run("tail", func(t *testing.T) {
		var ls map[string]any
		e.must(201, "POST", "/apps/logs/log-sessions", map[string]any{"tail": true, "lines": 1}, &ls)
		req := e.raw("GET", ls["logplex_url"].(string), nil)
		defer req.Body.Close()
		sc := bufio.NewScanner(req.Body)
		next := func() string {
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					return rest
				}
			}
			t.Fatalf("stream ended: %v", sc.Err())
			return ""
		}
		if l := next(); !strings.HasSuffix(l, "app[web.2]: three") {
			t.Fatalf("history line %q", l)
		}
		e.logs.Publish(app.ID, model.LogLine{Time: base, Source: model.SourceHeroku, Dyno: "router", Message: "live"})
		if l := next(); !strings.HasSuffix(l, "heroku[router]: live") {
			t.Fatalf("live line %q", l)
		}
	})

	t.Run("tail with zero lines shows only new ones", func(t *testing.T) {
		var ls map[string]any
		e.must(201, "POST", "/apps/logs/log-sessions", map[string]any{"tail": true, "lines": 0}, &ls)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", ls["logplex_url"].(string), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The tail takes its backlog after the headers are out: publish
		// until a line arrives; the first must be new, not history.
		stopped := make(chan struct{})
		defer func() { cancel(); <-stopped }()
		go func() {
			defer close(stopped)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					e.logs.Publish(app.ID, model.LogLine{Time: base, Source: model.SourceHeroku, Dyno: "router", Message: "fresh"})
				}
			}
		}()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				if !strings.HasSuffix(rest, "heroku[router]: fresh") {
					t.Fatalf("first line %q, want only new lines", rest)
				}
				return
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
	})

	t.Run("expiry and token", func(t *testing.T) {
		var ls map[string]any
		e.must(201, "POST", "/apps/logs/log-sessions", nil, &ls)
		u := ls["logplex_url"].(string)
		if resp := e.raw("GET", strings.Replace(u, "token=", "token=x", 1), nil); resp.StatusCode != 404 {
			t.Errorf("bad token: status %d", resp.StatusCode)
		}
		e.advance(6 * time.Minute)
		resp := e.raw("GET", u, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var apiErr map[string]string
		json.Unmarshal(body, &apiErr)
		if resp.StatusCode != 404 || apiErr["id"] != "not_found" {
			t.Errorf("expired session: status %d %s", resp.StatusCode, body)
		}
	})
}

func TestCloseEndsTails(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("closing")
	var ls map[string]any
	e.must(201, "POST", "/apps/closing/log-sessions", map[string]any{"tail": true}, &ls)
	resp := e.raw("GET", ls["logplex_url"].(string), nil)
	defer resp.Body.Close()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	e.srv.Close()
	e.srv.Close() // idempotent
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the tail")
	}
}

// TestFormationSizeLimit checks a size no live host could hold is refused,
// and that stale hosts and requests naming no size are not judged.
func TestFormationSizeLimit(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("big")
	e.deploy("big", tarball(t, goodSource...))
	ctx := context.Background()
	hosts := []model.Host{
		{ID: "small", MemoryMB: 1024, HeartbeatAt: e.clock().Add(-time.Second)},
		{ID: "gone", MemoryMB: 64 << 10, HeartbeatAt: e.clock().Add(-time.Hour)},
	}
	for _, h := range hosts {
		if _, err := e.st.Hosts.Put(ctx, h.ID, h); err != nil {
			t.Fatal(err)
		}
	}
	type upd = map[string]any
	tests := []struct {
		name     string
		updates  []upd
		want     int
		wantMsg  string
		wantSize string // of web afterwards
	}{
		{name: "fits", updates: []upd{{"type": "web", "quantity": 2, "size": "standard-2X"}}, want: 200, wantSize: "standard-2X"},
		{name: "too big", updates: []upd{{"type": "web", "size": "performance-M"}}, want: 422, wantSize: "standard-2X",
			wantMsg: "performance-M dynos need 2560 MB of memory, more than any host has (the largest, small, has 1024 MB)"},
		{name: "too big by dyno_size, all or nothing", updates: []upd{{"type": "worker", "quantity": 1}, {"type": "web", "dyno_size": upd{"name": "performance-l"}}},
			want: 422, wantSize: "standard-2X", wantMsg: "performance-L dynos need 14336 MB"},
		{name: "quantity only", updates: []upd{{"type": "web", "quantity": 3}}, want: 200, wantSize: "standard-2X"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, data := e.call("PATCH", "/apps/big/formation", upd{"updates": tc.updates})
			if status != tc.want || !strings.Contains(string(data), tc.wantMsg) {
				t.Fatalf("status %d %s, want %d with %q", status, data, tc.want, tc.wantMsg)
			}
			if tc.want == 422 && !strings.Contains(string(data), `"invalid_params"`) {
				t.Errorf("error id in %s, want invalid_params", data)
			}
			f, _, err := e.st.Formations.Get(ctx, mustApp(t, e, "big").ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Processes["web"].Size; got != tc.wantSize {
				t.Errorf("web size %q, want %q", got, tc.wantSize)
			}
			if tc.want == 422 && f.Processes["worker"].Quantity != 0 {
				t.Errorf("a refused batch scaled worker to %d", f.Processes["worker"].Quantity)
			}
		})
	}
}

func TestDynoSizes(t *testing.T) {
	e := newEnv(t, 0)
	var sizes []struct {
		ID        string  `json:"id"`
		Name      string  `json:"name"`
		Memory    float64 `json:"memory"`
		MemoryMB  int     `json:"memory_mb"`
		Compute   int     `json:"compute"`
		CPUShares int     `json:"cpu_shares"`
		Dedicated bool    `json:"dedicated"`
	}
	e.must(200, "GET", "/dyno-sizes", nil, &sizes)
	want := []struct {
		name     string
		memoryGB float64
		compute  int
	}{{"eco", 0.5, 1}, {"basic", 0.5, 1}, {"standard-1X", 0.5, 1}, {"standard-2X", 1, 2}, {"performance-M", 2.5, 12}, {"performance-L", 14, 50}}
	if len(sizes) != len(want) {
		t.Fatalf("%d sizes, want %d: %+v", len(sizes), len(want), sizes)
	}
	for i, w := range want {
		s := sizes[i]
		if s.Name != w.name || s.Memory != w.memoryGB || s.MemoryMB != int(w.memoryGB*1024) || s.Compute != w.compute || s.ID == "" {
			t.Errorf("size %d = %+v, want %s with %v GB and compute %d", i, s, w.name, w.memoryGB, w.compute)
		}
		if i > 0 && s.CPUShares < sizes[i-1].CPUShares {
			t.Errorf("%s has %d CPU shares, fewer than %s's %d", s.Name, s.CPUShares, sizes[i-1].Name, sizes[i-1].CPUShares)
		}
	}
}

// TestBuildRecordsOutliveTheServer: builds stay listed, with their status
// and release, after the API server restarts; a build the restart cut
// short reads as failed; deleting the app deletes its records.
func TestBuildRecordsOutliveTheServer(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("kept")
	good, _ := e.deploy("kept", tarball(t, goodSource...))
	bad, _ := e.deploy("kept", tarball(t, file{"lib.py", "x"}))
	if good.Status != "succeeded" || bad.Status != "failed" {
		t.Fatalf("builds %s and %s, want succeeded and failed", good.Status, bad.Status)
	}
	// A build this node was running when it stopped, and one another node runs.
	ctx := context.Background()
	cut := model.Build{ID: "cut-short", AppID: good.App.ID, User: "admin@dyno.local", Status: "pending",
		Node: e.cfg.NodeID, Boot: e.srv.boot, Source: json.RawMessage(`{}`), CreatedAt: e.clock(), UpdatedAt: e.clock()}
	other := cut
	other.ID, other.Node, other.APIURL = "elsewhere", "host-other", "http://other-node:5000"
	for _, b := range []model.Build{cut, other} {
		if _, err := e.st.Builds.Put(ctx, model.BuildKey(b.AppID, b.ID), b); err != nil {
			t.Fatal(err)
		}
	}

	e.restart()

	var got buildJSON
	e.must(200, "GET", "/apps/kept/builds/"+good.ID, nil, &got)
	if got.Status != "succeeded" || got.Release == nil || got.Release.Version != good.Release.Version || got.Slug == nil || got.Slug.ID != good.Slug.ID {
		t.Errorf("after a restart the good build is %+v, want it as it was: %+v", got, good)
	}
	var list []buildJSON
	e.must(200, "GET", "/apps/kept/builds", nil, &list)
	status := map[string]string{}
	for _, b := range list {
		status[b.ID] = b.Status
	}
	want := map[string]string{good.ID: "succeeded", bad.ID: "failed", "cut-short": "failed", "elsewhere": "pending"}
	for id, st := range want {
		if status[id] != st {
			t.Errorf("build %s listed as %q after a restart, want %q (all: %v)", id, status[id], st, status)
		}
	}
	if rec, _, err := e.st.Builds.Get(ctx, model.BuildKey(good.App.ID, "cut-short")); err != nil || rec.Status != "failed" || !strings.Contains(rec.Failure, "stopped during the build") {
		t.Errorf("the cut-short build's record is %+v (%v), want it rewritten as failed", rec, err)
	}
	// Another node's running build streams its output from that node.
	if e.must(200, "GET", "/apps/kept/builds/elsewhere", nil, &got); !strings.HasPrefix(got.OutputStreamURL, "http://other-node:5000/build-output/elsewhere?") {
		t.Errorf("output URL of another node's running build: %s, want one on that node", got.OutputStreamURL)
	}
	// Another node's build that outlived every bound lost its node.
	e.advance(abandonedAfter - time.Minute)
	if e.must(200, "GET", "/apps/kept/builds/elsewhere", nil, &got); got.Status != "pending" {
		t.Errorf("another node's build %v old reads %q, want pending", abandonedAfter-time.Minute, got.Status)
	}
	e.advance(2 * time.Minute)
	if e.must(200, "GET", "/apps/kept/builds/elsewhere", nil, &got); got.Status != "failed" {
		t.Errorf("another node's build %v old reads %q, want failed", abandonedAfter+time.Minute, got.Status)
	}
	if rec, _, err := e.st.Builds.Get(ctx, model.BuildKey(good.App.ID, "elsewhere")); err != nil || rec.Status != "failed" || !strings.Contains(rec.Failure, "host-other") {
		t.Errorf("the abandoned build's record is %+v (%v), want it rewritten as failed, naming its node", rec, err)
	}
	// The output of a finished build was stored: a fresh output URL (the
	// old one was signed by the old process) gives it whole; a build cut
	// short has none.
	oldURL := got.OutputStreamURL
	e.must(200, "GET", "/apps/kept/builds/"+good.ID, nil, &got)
	resp := e.raw("GET", got.OutputStreamURL, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Released v") || !strings.Contains(string(body), "deployed to Dyno") {
		t.Errorf("stored output of a finished build after a restart: %d %q, want 200 with the whole output", resp.StatusCode, body)
	}
	if resp := e.raw("GET", oldURL, nil); resp.StatusCode != 404 {
		t.Errorf("an output URL signed before the restart: %d, want 404", resp.StatusCode)
	}
	e.must(200, "GET", "/apps/kept/builds/cut-short", nil, &got)
	resp = e.raw("GET", got.OutputStreamURL, nil)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "dyno builds") {
		t.Errorf("output of a build cut short: %d %s, want 404 saying where the record is", resp.StatusCode, body)
	}

	e.must(200, "DELETE", "/apps/kept", nil, nil)
	if left, err := e.st.Builds.List(ctx, good.App.ID+".>"); err != nil || len(left) != 0 {
		t.Errorf("%d build records left after the app's deletion (%v)", len(left), err)
	}
	if _, err := e.st.BuildOutput.Get(ctx, good.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the build output after the app's deletion: %v, want ErrNotFound", err)
	}
}

// TestSignedURLsOutliveTheServer: with a URLSecret (dyno server derives it
// from the NATS password every node shares), a build's output URL signed
// before a restart still works after it, from the stored output.
func TestSignedURLsOutliveTheServer(t *testing.T) {
	e := newEnv(t, 0, func(c *Config) { c.URLSecret = []byte("shared by the cluster's nodes") })
	e.createApp("kept")
	good, _ := e.deploy("kept", tarball(t, goodSource...))
	if good.Status != "succeeded" {
		t.Fatalf("build %s, want succeeded", good.Status)
	}
	e.restart()
	resp := e.raw("GET", good.OutputStreamURL, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "deployed to Dyno") {
		t.Errorf("an output URL signed before the restart: %d %q, want 200 with the output", resp.StatusCode, body)
	}
}

// TestSourceURLs: a put_url uploads once and for an hour; a get_url builds
// for 24 hours; build output and slug URLs last an hour.
func TestSourceURLs(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("urls")
	var s map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &s)
	blob := s["source_blob"]
	if blob.PutURL == blob.GetURL {
		t.Fatal("put_url and get_url are the same URL: whoever may build from a source could also replace it")
	}
	src := tarball(t, goodSource...)
	if resp := e.raw("PUT", blob.PutURL, string(src)); resp.StatusCode != 200 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	if resp := e.raw("PUT", blob.PutURL, "replacement"); resp.StatusCode != 409 {
		t.Errorf("a second upload to the same put_url: %d, want 409", resp.StatusCode)
	}
	if resp := e.raw("GET", blob.GetURL, nil); resp.StatusCode != 200 {
		t.Errorf("GET get_url: %d, want 200", resp.StatusCode)
	}
	var b buildJSON
	e.must(201, "POST", "/apps/urls/builds", map[string]any{"source_blob": map[string]string{"url": blob.GetURL}}, &b)
	output := b.OutputStreamURL

	e.advance(urlTTL + time.Minute)
	var again map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &again)
	e.advance(urlTTL + time.Minute)
	if resp := e.raw("PUT", again["source_blob"].PutURL, string(src)); resp.StatusCode != 404 {
		t.Errorf("a put_url used after an hour: %d, want 404", resp.StatusCode)
	}
	if resp := e.raw("GET", output, nil); resp.StatusCode != 404 {
		t.Errorf("an output URL used after an hour: %d, want 404", resp.StatusCode)
	}
	if resp := e.raw("GET", blob.GetURL, nil); resp.StatusCode != 200 {
		t.Errorf("a get_url within 24 h: %d, want 200", resp.StatusCode)
	}
	e.advance(sourceGetTTL)
	e.must(422, "POST", "/apps/urls/builds", map[string]any{"source_blob": map[string]string{"url": blob.GetURL}}, nil)
}

func TestStoredOutputText(t *testing.T) {
	o := newOutput()
	for i := 0; i < maxOutputLines+5; i++ {
		fmt.Fprintf(o, "line %d\n", i)
	}
	o.close()
	tests := []struct {
		name      string
		max       int
		wantFirst string // the first line of the text
		wantLast  string
	}{
		{"everything kept fits", 1 << 20, "(the first 5 lines of this output were not kept)", fmt.Sprintf("line %d", maxOutputLines+4)},
		{"a byte cap keeps the end", 20, fmt.Sprintf("(the first %d lines of this output were not kept)", maxOutputLines+4), fmt.Sprintf("line %d", maxOutputLines+4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := strings.Split(strings.TrimSuffix(o.text(tt.max), "\n"), "\n")
			if lines[0] != tt.wantFirst || lines[len(lines)-1] != tt.wantLast {
				t.Errorf("text starts %q and ends %q, want %q ... %q", lines[0], lines[len(lines)-1], tt.wantFirst, tt.wantLast)
			}
		})
	}
}
