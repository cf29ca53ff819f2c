package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// fakeReleaseRunner plays the manifold and an agent for release phases: it
// ends every release.N one-off at once, with status 1 when its command
// says "fail" and 0 otherwise, and records the releases they ran.
func fakeReleaseRunner(t *testing.T, e *env, appID string) <-chan int {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reqs, err := e.st.OneOffs.Watch(ctx, appID+".>")
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan int, 16)
	go func() {
		for ev := range reqs {
			if ev.Ready || ev.Deleted || ev.Value.Type != ReleaseType {
				continue
			}
			o := ev.Value
			code, state := 0, model.StateDown
			if strings.Contains(o.Command, "fail") {
				code, state = 1, model.StateCrashed
			}
			version := 0
			if o.Pinned != nil {
				version = o.Pinned.Version
			}
			st := model.DynoStatus{ID: o.ID, AppID: appID, Type: o.Type, Name: o.Name, Release: version, State: state, ExitStatus: &code}
			e.st.Statuses.Put(ctx, model.StatusKey(appID, o.ID), st)
			ran <- version
		}
	}()
	return ran
}

func TestReleasePhase(t *testing.T) {
	e := newEnv(t, 0)
	app := e.createApp("phased")
	ran := fakeReleaseRunner(t, e, app.ID)

	b, out := e.deploy("phased", tarball(t, file{"Procfile", "web: python3 -m http.server $PORT\nrelease: ./migrate ok\n"}))
	if b.Status != "succeeded" || !strings.Contains(out, "Running release command `./migrate ok` for v1") || !strings.Contains(out, "Release command succeeded") {
		t.Fatalf("deploy with a passing release phase: %s\n%s", b.Status, out)
	}
	if v := <-ran; v != 1 {
		t.Errorf("release phase ran v%d, want v1", v)
	}
	var f []map[string]any
	e.must(200, "GET", "/apps/phased/formation", nil, &f)
	for _, p := range f {
		if p["type"] == ReleaseType {
			t.Errorf("the release type is in the formation: %v", f)
		}
	}
	if status, body := e.call("PATCH", "/apps/phased/formation/release", map[string]any{"quantity": 1}); status != 422 && status != 404 {
		t.Errorf("scaling the release type: %d %s", status, body)
	}

	b, out = e.deploy("phased", tarball(t, file{"Procfile", "web: python3 -m http.server $PORT\nrelease: ./migrate fail\n"}))
	if b.Status != "failed" || !strings.Contains(out, "exited with status 1") || !strings.Contains(out, "Release v2 failed") {
		t.Fatalf("deploy with a failing release phase: %s\n%s", b.Status, out)
	}
	<-ran
	if v := mustApp(t, e, "phased").ReleaseVersion; v != 1 {
		t.Fatalf("current release v%d after a failed release phase, want v1", v)
	}
	var v2 releaseJSON
	e.must(200, "GET", "/apps/phased/releases/2", nil, &v2)
	if v2.Status != "failed" || v2.Current {
		t.Errorf("v2 = %+v, want failed and not current", v2)
	}

	if status, body := e.call("POST", "/apps/phased/releases", map[string]string{"release": "2"}); status != 422 || !strings.Contains(string(body), "never ran") {
		t.Errorf("rollback to the failed v2: %d %s; want 422", status, body)
	}

	// A config change builds on v1, not on the failed v2, and goes live
	// once its own release phase passed.
	e.must(200, "PATCH", "/apps/phased/config-vars", map[string]any{"A": "1"}, nil)
	if v := <-ran; v != 3 {
		t.Errorf("release phase ran v%d, want v3", v)
	}
	deadline := time.Now().Add(10 * time.Second)
	for mustApp(t, e, "phased").ReleaseVersion != 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var v1, v3 releaseJSON
	e.must(200, "GET", "/apps/phased/releases/1", nil, &v1)
	e.must(200, "GET", "/apps/phased/releases/3", nil, &v3)
	if v3.Status != "succeeded" || !v3.Current || v3.Slug == nil || v3.Slug.ID != v1.Slug.ID {
		t.Errorf("v3 = %+v, want succeeded, current, with v1's slug %s", v3, v1.Slug.ID)
	}
}
