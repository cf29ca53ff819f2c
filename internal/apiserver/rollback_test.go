package apiserver

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

func TestRollback(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("back")
	e.must(200, "PATCH", "/apps/back/config-vars", map[string]any{"A": "1"}, nil) // v1: config, no slug
	e.deploy("back", tarball(t, goodSource...))                                   // v2
	e.must(200, "PATCH", "/apps/back/config-vars", map[string]any{"A": "2"}, nil) // v3
	e.deploy("back", tarball(t, file{"Procfile", "web: python3 -m http.server $PORT\n"}))
	var v2, v4 releaseJSON
	e.must(200, "GET", "/apps/back/releases/2", nil, &v2)
	e.must(200, "GET", "/apps/back/releases/4", nil, &v4)

	tests := []struct {
		name     string
		body     any
		want     int
		wantMsg  string
		wantSlug string
		wantA    string
	}{
		{name: "by version", body: map[string]string{"release": "2"}, want: 201, wantSlug: v2.Slug.ID, wantA: "1"},
		{name: "by v-version", body: map[string]string{"release": "v4"}, want: 201, wantSlug: v4.Slug.ID, wantA: "2"},
		{name: "by id", body: map[string]string{"release": v2.ID}, want: 201, wantSlug: v2.Slug.ID, wantA: "1"},
		{name: "no slug", body: map[string]string{"release": "1"}, want: 422, wantMsg: "has no slug"},
		{name: "unknown", body: map[string]string{"release": "99"}, want: 404, wantMsg: "dyno releases -a back"},
		{name: "missing", body: map[string]string{}, want: 422, wantMsg: "release is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call("POST", "/apps/back/releases", tc.body)
			if status != tc.want || !strings.Contains(string(body), tc.wantMsg) {
				t.Fatalf("status %d body %s; want %d with %q", status, body, tc.want, tc.wantMsg)
			}
			if tc.want != 201 {
				return
			}
			var rel releaseJSON
			e.must(200, "GET", "/apps/back/releases", nil, nil)
			app := mustApp(t, e, "back")
			e.must(200, "GET", "/apps/back/releases/"+strconv.Itoa(app.ReleaseVersion), nil, &rel)
			if rel.Slug == nil || rel.Slug.ID != tc.wantSlug || !rel.Current || !strings.HasPrefix(rel.Description, "Rollback to v") {
				t.Errorf("current release after rollback: %+v", rel)
			}
			var cfg map[string]string
			e.must(200, "GET", "/apps/back/config-vars", nil, &cfg)
			if cfg["A"] != tc.wantA {
				t.Errorf("config after rollback: %v, want A=%s", cfg, tc.wantA)
			}
		})
	}
}

// fakeHost plays an agent for the deploy check: it keeps a host live and
// reports each new release's web.1 as up, or crashed when the Procfile's
// web command says "crash", or not at all when it says "hang".
func fakeHost(t *testing.T, e *env, appID string) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	put := func() {
		h := model.Host{ID: "h1", MemoryMB: 8192, HeartbeatAt: e.clock()}
		if _, err := e.st.Hosts.Put(ctx, h.ID, h); err != nil && ctx.Err() == nil {
			t.Error(err)
		}
	}
	put()
	apps, err := e.st.Apps.Watch(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range apps {
			if ev.Ready || ev.Deleted || ev.Value.ReleaseVersion == 0 {
				continue
			}
			rel, _, err := e.st.Releases.Get(ctx, model.ReleaseKey(appID, ev.Value.ReleaseVersion))
			if err != nil || rel.Slug == nil {
				continue
			}
			cmd := rel.Slug.ProcessTypes["web"]
			st := model.DynoStatus{ID: "d" + strconv.Itoa(rel.Version), AppID: appID, Type: "web", Name: "web.1", Release: rel.Version, State: model.StateUp}
			switch {
			case strings.Contains(cmd, "hang"):
				continue
			case strings.Contains(cmd, "crash"):
				one := 1
				st.State, st.ExitStatus = model.StateCrashed, &one
			}
			e.st.Statuses.Put(ctx, model.StatusKey(appID, st.ID), st)
		}
	}()
}

func TestDeployRollsBackWhenDynosFail(t *testing.T) {
	e := newEnv(t, 0, func(c *Config) { c.DeployTimeout = 2 * time.Second })
	app := e.createApp("safe")
	fakeHost(t, e, app.ID)

	b, out := e.deploy("safe", tarball(t, file{"Procfile", "web: good $PORT\n"}))
	if b.Status != "succeeded" || !strings.Contains(out, "All up in") {
		t.Fatalf("good first deploy: %s\n%s", b.Status, out)
	}
	tests := []struct {
		name, procfile, wantOut string
	}{
		{"crash at boot", "web: crash $PORT\n", "Deploy of v2 failed: web.1 crashed at boot (exit status 1)"},
		{"never up", "web: hang $PORT\n", "its dynos were not all up within 2s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := mustApp(t, e, "safe").ReleaseVersion
			b, out := e.deploy("safe", tarball(t, file{"Procfile", tc.procfile}))
			if b.Status != "failed" || !strings.Contains(out, strings.ReplaceAll(tc.wantOut, "v2", "v"+strconv.Itoa(before+1))) || !strings.Contains(out, "Rolled back to v") {
				t.Fatalf("deploy: status %s, output:\n%s", b.Status, out)
			}
			after := mustApp(t, e, "safe")
			if after.ReleaseVersion != before+2 {
				t.Fatalf("release after rollback v%d, want v%d", after.ReleaseVersion, before+2)
			}
			var rel releaseJSON
			e.must(200, "GET", "/apps/safe/releases/"+strconv.Itoa(after.ReleaseVersion), nil, &rel)
			var first releaseJSON
			e.must(200, "GET", "/apps/safe/releases/1", nil, &first)
			if rel.Slug == nil || rel.Slug.ID != first.Slug.ID || !strings.HasPrefix(rel.Description, "Rollback to v") {
				t.Errorf("rollback release %+v; want v1's slug %s", rel, first.Slug.ID)
			}
			if lines := apiLines(t, e, app.ID, "deploy of v"); len(lines) == 0 {
				t.Errorf("no app[api] line tells why the deploy was rolled back")
			}
		})
	}
}

// TestOutputOfABuildOfADeletedApp: an app deleted while its build runs
// leaves no stored output once the build ends.
func TestOutputOfABuildOfADeletedApp(t *testing.T) {
	e := newEnv(t, 0, func(c *Config) { c.DeployTimeout = 2 * time.Second })
	app := e.createApp("gone")
	fakeHost(t, e, app.ID)
	var s map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &s)
	if put := e.raw("PUT", s["source_blob"].PutURL, string(tarball(t, file{"Procfile", "web: hang $PORT\n"}))); put.StatusCode != 200 {
		t.Fatalf("upload: %d", put.StatusCode)
	}
	var b buildJSON
	e.must(201, "POST", "/apps/gone/builds", map[string]any{"source_blob": map[string]string{"url": s["source_blob"].GetURL}}, &b)
	resp := e.raw("GET", b.OutputStreamURL, nil)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), "Waiting for the dynos") {
	}
	e.must(200, "DELETE", "/apps/gone", nil, nil) // while the build waits for its dynos
	for sc.Scan() {
	}
	e.srv.wg.Wait() // the build's goroutine, to its very end
	if _, err := e.st.BuildOutput.Get(context.Background(), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the output of a deleted app's build is still stored after the build ended (%v)", err)
	}
}
