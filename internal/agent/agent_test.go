package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// recordingLogs keeps every published line for assertions.
type recordingLogs struct {
	mu    sync.Mutex
	lines []model.LogLine
}

func (r *recordingLogs) Publish(appID string, l model.LogLine) {
	r.mu.Lock()
	r.lines = append(r.lines, l)
	r.mu.Unlock()
}

func (r *recordingLogs) has(dyno, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if l.Dyno == dyno && strings.Contains(l.Message, text) {
			return true
		}
	}
	return false
}

type env struct {
	st   *store.Store
	logs *recordingLogs
	slug model.Slug
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, _ := storetest.New(t)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	body := "web: python3 -m http.server $PORT\n"
	tw.WriteHeader(&tar.Header{Name: "Procfile", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	gz.Close()
	size, sum, err := st.Slugs.Put(context.Background(), "slug1", &buf)
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, logs: &recordingLogs{}, slug: model.Slug{ID: "slug1", Checksum: sum, Size: size}}
}

func (e *env) startAgent(t *testing.T, tweak func(*Config)) func() {
	t.Helper()
	rt, err := runtime.NewProcessRuntime(runtime.ProcessConfig{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HostID: "h1", DataDir: t.TempDir(), Runtime: rt, Logs: e.logs, PortMin: 31000, PortMax: 31999, DrainDelay: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	a := New(cfg, e.st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("agent did not stop in 20 s")
		}
	})
	t.Cleanup(stop)
	return stop
}

func (e *env) assign(t *testing.T, id, typ, command string) model.Assignment {
	t.Helper()
	as := model.Assignment{
		ID: id, HostID: "h1", AppID: "app1", AppName: "demo", Type: typ, Name: typ + ".1", Index: 1,
		Release: 1, Slug: e.slug, Command: command, Env: map[string]string{"GREETING": "hi"}, Size: "standard-1X",
	}
	if _, err := e.st.Assignments.Create(context.Background(), model.AssignmentKey("h1", id), as); err != nil {
		t.Fatal(err)
	}
	return as
}

func (e *env) awaitState(t *testing.T, id, state string) model.DynoStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last model.DynoStatus
	for time.Now().Before(deadline) {
		st, _, err := e.st.Statuses.Get(context.Background(), model.StatusKey("app1", id))
		if err == nil && st.State == state {
			return st
		}
		last = st
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("dyno %s never reached %s (last status %+v)", id, state, last)
	return last
}

func await(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebDynoLifecycle(t *testing.T) {
	e := newEnv(t)
	e.startAgent(t, nil)
	e.assign(t, "d1", "web", "python3 -m http.server $PORT")
	st := e.awaitState(t, "d1", model.StateUp)
	if st.Endpoint == "" || st.HostID != "h1" || st.Name != "web.1" {
		t.Fatalf("up status %+v lacks endpoint, host or name", st)
	}
	resp, err := http.Get("http://" + st.Endpoint + "/Procfile")
	if err != nil {
		t.Fatalf("the dyno's endpoint does not answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /Procfile from the dyno = %d, want 200 (the slug is its working dir)", resp.StatusCode)
	}
	if !e.logs.has("web.1", "Starting process with command `python3 -m http.server $PORT`") || !e.logs.has("web.1", "State changed from starting to up") {
		t.Errorf("missing start lines in %v", e.logs.lines)
	}
	// Deleting the assignment stops the dyno and removes its status.
	if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", "d1"), 0); err != nil {
		t.Fatal(err)
	}
	await(t, "status removed", func() bool {
		_, _, err := e.st.Statuses.Get(context.Background(), model.StatusKey("app1", "d1"))
		return errors.Is(err, store.ErrNotFound)
	})
	if !e.logs.has("web.1", "Stopping all processes with SIGTERM") || !e.logs.has("web.1", "State changed from up to down") {
		t.Errorf("missing stop lines in %v", e.logs.lines)
	}
	if _, err := http.Get("http://" + st.Endpoint + "/"); err == nil {
		t.Errorf("the stopped dyno still answers")
	}
}

func TestCrashesAndTimeouts(t *testing.T) {
	tests := []struct {
		name, typ, command string
		wantLines          []string
		wantExit           int
	}{
		{"exit on its own", "worker", "echo bye; exit 3", []string{"bye", "Process exited with status 3", "State changed from up to crashed"}, 3},
		{"web never binds its port", "web", "sleep 60", []string{"Error R10 (Boot timeout)", "State changed from starting to crashed"}, 137},
	}
	e := newEnv(t)
	e.startAgent(t, func(c *Config) { c.BootTimeout = 700 * time.Millisecond })
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("c%d", i)
			as := e.assign(t, id, tc.typ, tc.command)
			st := e.awaitState(t, id, model.StateCrashed)
			if st.ExitStatus == nil || *st.ExitStatus != tc.wantExit {
				t.Errorf("exit status %v, want %d", st.ExitStatus, tc.wantExit)
			}
			for _, l := range tc.wantLines {
				await(t, "log line "+l, func() bool { return e.logs.has(as.Name, l) })
			}
		})
	}
}

func TestStopTimeoutEscalatesToSIGKILL(t *testing.T) {
	e := newEnv(t)
	e.startAgent(t, func(c *Config) { c.StopTimeout = 500 * time.Millisecond })
	e.assign(t, "s1", "worker", `trap "" TERM; while true; do sleep 0.1; done`)
	e.awaitState(t, "s1", model.StateUp)
	if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", "s1"), 0); err != nil {
		t.Fatal(err)
	}
	await(t, "R12 then SIGKILL", func() bool {
		return e.logs.has("worker.1", "Error R12 (Exit timeout)") && e.logs.has("worker.1", "Process exited with status 137")
	})
}

func TestShutdownLeavesDynosDownAndRestartBringsThemBack(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	stop := e.startAgent(t, func(c *Config) { c.DataDir = dataDir })
	e.assign(t, "r1", "web", "python3 -m http.server $PORT")
	e.awaitState(t, "r1", model.StateUp)
	stop()
	if st := e.awaitState(t, "r1", model.StateDown); st.Endpoint != "" {
		t.Errorf("a stopped dyno keeps its endpoint %q", st.Endpoint)
	}
	e.startAgent(t, func(c *Config) { c.DataDir = dataDir })
	e.awaitState(t, "r1", model.StateUp)
}

func TestCrashedDynoStatusGoesWithItsAssignmentAfterARestart(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	stop := e.startAgent(t, func(c *Config) { c.DataDir = dataDir })
	e.assign(t, "x1", "worker", "exit 1")
	e.awaitState(t, "x1", model.StateCrashed)
	stop()
	// The agent comes back while the manifold still waits out a back-off;
	// then the manifold replaces the dyno.
	e.startAgent(t, func(c *Config) { c.DataDir = dataDir })
	time.Sleep(200 * time.Millisecond)
	if st := e.awaitState(t, "x1", model.StateCrashed); st.ExitStatus == nil {
		t.Fatalf("crashed status lost its exit status: %+v", st)
	}
	if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", "x1"), 0); err != nil {
		t.Fatal(err)
	}
	await(t, "the crashed dyno's status removed", func() bool {
		_, _, err := e.st.Statuses.Get(context.Background(), model.StatusKey("app1", "x1"))
		return errors.Is(err, store.ErrNotFound)
	})
}

// TestStatusWritesOutlastAStoreThatRefuses checks that a dyno's status
// reaches the store even when the store refuses writes for a while, as
// JetStream does while its cluster elects a leader: a lost "up" would
// keep the dyno out of every route table.
func TestStatusWritesOutlastAStoreThatRefuses(t *testing.T) {
	e := newEnv(t)
	var refused, downs atomic.Int64
	e.startAgent(t, func(c *Config) {
		c.putStatus = func(ctx context.Context, key string, s model.DynoStatus) error {
			if s.State == model.StateUp && refused.Add(1) <= 3 {
				return errors.New("nats: no response from stream")
			}
			if s.State == model.StateDown {
				downs.Add(1)
				return errors.New("nats: no response from stream")
			}
			_, err := e.st.Statuses.Put(ctx, key, s)
			return err
		}
	})
	e.assign(t, "d1", "web", "python3 -m http.server $PORT")
	e.awaitState(t, "d1", model.StateUp)
	if n := refused.Load(); n != 4 {
		t.Fatalf("%d writes of the up status, want 3 refused and 1 stored", n)
	}
	// A dyno being stopped tries once: a node whose cluster is gone must
	// still stop in time.
	if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", "d1"), 0); err != nil {
		t.Fatal(err)
	}
	await(t, "the stopped dyno's down status tried", func() bool { return downs.Load() > 0 })
	time.Sleep(time.Second) // a retry would come within 100 ms
	if n := downs.Load(); n != 1 {
		t.Fatalf("%d writes of the down status of a stopping dyno, want 1", n)
	}
}
