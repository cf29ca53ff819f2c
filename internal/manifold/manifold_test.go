package manifold

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// newTestStore starts a real embedded NATS server in a temp dir.
func newTestStore(t *testing.T) *store.Store {
	t.Helper()
	srv, err := store.StartServer(store.ServerConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startManifold runs a manifold until the test ends and waits until it has
// loaded the store.
func startManifold(t *testing.T, st *store.Store, cfg Config) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := New(cfg, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context ending")
		}
	})
	select {
	case <-m.Synced():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("manifold did not sync within 10 s")
	}
}

// waitAssignments polls the store until ok accepts the assignments of a1.
func waitAssignments(t *testing.T, st *store.Store, what string, ok func(map[string]model.Assignment) bool) map[string]model.Assignment {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := st.Assignments.List(context.Background(), ">")
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]model.Assignment{}
		for _, e := range entries {
			if prev, dup := byName[e.Value.Name]; dup && prev.CreatedAt.After(e.Value.CreatedAt) {
				continue // keep the newest per name; tests look at the old one by ID
			}
			byName[e.Value.Name] = e.Value
		}
		if ok(byName) {
			return byName
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; assignments: %+v", what, byName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countAssignments(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	entries, err := st.Assignments.List(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range entries {
		n[e.Value.Type]++
	}
	return n
}

// report writes a dyno status as the fake agent.
func report(t *testing.T, st *store.Store, a model.Assignment, state string) {
	t.Helper()
	now := time.Now()
	s := model.DynoStatus{ID: a.ID, HostID: a.HostID, AppID: a.AppID, Name: a.Name, Type: a.Type, Release: a.Release,
		State: state, StartedAt: now, UpdatedAt: now}
	if state == model.StateUp || state == model.StateCrashed {
		s.UpAt = now
	}
	if _, err := st.Statuses.Put(context.Background(), model.StatusKey(a.AppID, a.ID), s); err != nil {
		t.Fatal(err)
	}
}

func put[T any](t *testing.T, b store.Bucket[T], key string, v T) {
	t.Helper()
	if _, err := b.Put(context.Background(), key, v); err != nil {
		t.Fatal(err)
	}
}

func TestManifoldLoop(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"web": "run web", "worker": "run worker"}}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", HeartbeatAt: time.Now()})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug, Config: map[string]string{"K": "1"}})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	formation := model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: 1}, "worker": {Quantity: 1}}}
	put(t, st.Formations, "a1", formation)

	// Short waits keep the test quick; the policy's shape is the default's.
	startManifold(t, st, Config{HostTTL: time.Minute, Backoff: ExponentialBackoff(300*time.Millisecond, time.Second, 0, nil)})

	dynos := waitAssignments(t, st, "web.1 and worker.1", func(m map[string]model.Assignment) bool { return len(m) == 2 })
	web, worker := dynos["web.1"], dynos["worker.1"]
	if web.HostID != "h1" || web.Command != "run web" || web.Env["K"] != "1" {
		t.Fatalf("web.1 = %+v", web)
	}
	report(t, st, web, model.StateUp)
	report(t, st, worker, model.StateUp)

	// Crash #1: replaced at once.
	report(t, st, worker, model.StateCrashed)
	dynos = waitAssignments(t, st, "worker.1 replaced after crash 1", func(m map[string]model.Assignment) bool {
		return m["worker.1"].ID != worker.ID && countAssignments(t, st)["worker"] == 1
	})
	worker = dynos["worker.1"]
	if worker.CrashCount != 1 {
		t.Fatalf("worker.1 after crash 1 has CrashCount %d, want 1", worker.CrashCount)
	}

	// Crash #2: a back-off, recorded in RestartAt, then a replacement.
	report(t, st, worker, model.StateCrashed)
	crashedAt := time.Now()
	dynos = waitAssignments(t, st, "RestartAt after crash 2", func(m map[string]model.Assignment) bool {
		return !m["worker.1"].RestartAt.IsZero() || m["worker.1"].ID != worker.ID
	})
	if dynos["worker.1"].ID != worker.ID {
		t.Fatal("worker.1 was replaced after crash 2 without a back-off")
	}
	dynos = waitAssignments(t, st, "worker.1 replaced after its back-off", func(m map[string]model.Assignment) bool {
		return m["worker.1"].ID != worker.ID && countAssignments(t, st)["worker"] == 1
	})
	if waited := time.Since(crashedAt); waited < 250*time.Millisecond {
		t.Errorf("replaced %v after crash 2, want after the 300ms back-off", waited)
	}
	if dynos["worker.1"].CrashCount != 2 {
		t.Errorf("worker.1 after crash 2 has CrashCount %d, want 2", dynos["worker.1"].CrashCount)
	}
	worker = dynos["worker.1"]

	// A new release: the worker is replaced at once, web surges.
	put(t, st.Releases, model.ReleaseKey("a1", 2), model.Release{AppID: "a1", Version: 2, Slug: slug, Config: map[string]string{"K": "2"}})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 2})
	dynos = waitAssignments(t, st, "release 2 dynos", func(m map[string]model.Assignment) bool {
		return m["web.1"].Release == 2 && m["worker.1"].Release == 2 && countAssignments(t, st)["worker"] == 1
	})
	if dynos["worker.1"].CrashCount != 0 || dynos["worker.1"].Env["K"] != "2" {
		t.Errorf("release 2 worker = %+v, want CrashCount 0 and K=2", dynos["worker.1"])
	}
	if n := countAssignments(t, st)["web"]; n != 2 {
		t.Fatalf("%d web assignments while the new one starts, want 2 (old keeps serving)", n)
	}
	report(t, st, dynos["web.1"], model.StateUp)
	waitAssignments(t, st, "old web.1 stopped once the new one is up", func(map[string]model.Assignment) bool {
		return countAssignments(t, st)["web"] == 1
	})

	// Scale web to 50.
	formation.Processes["web"] = model.Process{Quantity: 50}
	start := time.Now()
	put(t, st.Formations, "a1", formation)
	waitAssignments(t, st, "50 web dynos", func(map[string]model.Assignment) bool { return countAssignments(t, st)["web"] == 50 })
	t.Logf("scaled web 1 → 50 in %v", time.Since(start))

	// Scale to 0 and delete the app.
	formation.Processes["web"] = model.Process{Quantity: 0}
	put(t, st.Formations, "a1", formation)
	waitAssignments(t, st, "web scaled to 0", func(map[string]model.Assignment) bool { return countAssignments(t, st)["web"] == 0 })
	if err := st.Apps.Delete(ctx, "a1", 0); err != nil {
		t.Fatal(err)
	}
	waitAssignments(t, st, "every dyno of the deleted app stopped", func(map[string]model.Assignment) bool {
		return len(countAssignments(t, st)) == 0
	})
}

// TestManifoldWaitsForHost checks dynos are placed once a host appears and
// not on a host whose heartbeat is stale.
func TestManifoldWaitsForHost(t *testing.T) {
	st := newTestStore(t)
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"worker": "run"}}
	put(t, st.Hosts, "old", model.Host{ID: "old", HeartbeatAt: time.Now().Add(-time.Hour)})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"worker": {Quantity: 3}}})
	startManifold(t, st, Config{HostTTL: time.Minute})
	time.Sleep(100 * time.Millisecond) // give a wrong plan the chance to show
	if n := len(countAssignments(t, st)); n != 0 {
		t.Fatalf("%d assignments with no live host, want 0", n)
	}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", HeartbeatAt: time.Now()})
	dynos := waitAssignments(t, st, "3 workers on h1", func(m map[string]model.Assignment) bool { return len(m) == 3 })
	for name, a := range dynos {
		if a.HostID != "h1" {
			t.Errorf("%s placed on %s, want h1", name, a.HostID)
		}
	}
}

// TestManifoldStaleRevision checks a write at a stale revision changes
// nothing, is not counted as a failure to retry, and is not folded into the
// loop's view.
func TestManifoldStaleRevision(t *testing.T) {
	st := newTestStore(t)
	m := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	v := newView()
	a := model.Assignment{ID: "d1", HostID: "h1", AppID: "gone", Name: "web.1"}
	rev, err := st.Assignments.Create(context.Background(), "h1.d1", a)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else changed it since we read it: our delete must not win.
	if _, err := st.Assignments.Update(context.Background(), "h1.d1", a, rev); err != nil {
		t.Fatal(err)
	}
	plan := Plan{Delete: []AssignmentEntry{{Assignment: a, Revision: rev}}}
	if failed := m.apply(context.Background(), v, plan); failed != 0 {
		t.Fatalf("apply counted a conflict as %d failures, want 0", failed)
	}
	if _, _, err := st.Assignments.Get(context.Background(), "h1.d1"); errors.Is(err, store.ErrNotFound) {
		t.Fatal("a delete at a stale revision removed the assignment")
	}
	if _, dead := v.tombs["h1.d1"]; dead {
		t.Fatal("a failed delete was recorded as done")
	}
}
