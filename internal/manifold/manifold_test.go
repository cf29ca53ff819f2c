package manifold

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// newTestStore starts a real embedded NATS server in a temp dir.
func newTestStore(t *testing.T) *store.Store {
	t.Helper()
	st, _ := storetest.New(t)
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
	put(t, st.Hosts, "h1", model.Host{ID: "h1", MemoryMB: 64 << 10, HeartbeatAt: time.Now()})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug, Config: map[string]string{"K": "1"}})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	formation := model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: 1}, "worker": {Quantity: 1}}}
	put(t, st.Formations, "a1", formation)

	// Short waits keep the test quick; the policy's shape is the default's.
	startManifold(t, st, Config{HostTTL: time.Minute, Backoff: ExponentialBackoff(1500*time.Millisecond, 3*time.Second, 0, nil)})

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
	if waited := time.Since(crashedAt); waited < 1400*time.Millisecond {
		t.Errorf("replaced %v after crash 2, want after the 1.5s back-off", waited)
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
	byKey := waitKeys(t, st, "3 pending workers", func(m map[string]model.Assignment) bool { return len(m) == 3 })
	for key, a := range byKey {
		if !strings.HasPrefix(key, "pending.") || a.HostID != "" || a.PendingReason != noHost {
			t.Errorf("with no live host, %s = %+v, want it pending with reason %q", key, a, noHost)
		}
	}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", MemoryMB: 64 << 10, HeartbeatAt: time.Now()})
	byKey = waitKeys(t, st, "3 workers on h1", func(m map[string]model.Assignment) bool {
		for key := range m {
			if !strings.HasPrefix(key, "h1.") {
				return false
			}
		}
		return len(m) == 3
	})
	for key, a := range byKey {
		if a.HostID != "h1" || a.PendingReason != "" {
			t.Errorf("%s = %+v, want it on h1 with no pending reason", key, a)
		}
	}
}

// waitKeys polls the store until ok accepts every assignment by key.
func waitKeys(t *testing.T, st *store.Store, what string, ok func(map[string]model.Assignment) bool) map[string]model.Assignment {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := st.Assignments.List(context.Background(), ">")
		if err != nil {
			t.Fatal(err)
		}
		byKey := map[string]model.Assignment{}
		for _, e := range entries {
			byKey[e.Key] = e.Value
		}
		if ok(byKey) {
			return byKey
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; assignments: %+v", what, byKey)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestManifoldMemory checks, with real writes, that a full host leaves a
// dyno pending under "pending." with a reason, that the dyno is placed when
// a host with room joins, and that a pending dyno goes when scaled away.
func TestManifoldMemory(t *testing.T) {
	st := newTestStore(t)
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"worker": "run"}}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", MemoryMB: 1024, HeartbeatAt: time.Now()})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	formation := model.Formation{AppID: "a1", Processes: map[string]model.Process{"worker": {Quantity: 3}}}
	put(t, st.Formations, "a1", formation)
	startManifold(t, st, Config{HostTTL: time.Minute})

	hosts := func(m map[string]model.Assignment) map[string][]string {
		out := map[string][]string{}
		for key, a := range m {
			host, _, _ := strings.Cut(key, ".")
			out[host] = append(out[host], a.Name)
		}
		return out
	}
	byKey := waitKeys(t, st, "2 workers on h1 and 1 pending", func(m map[string]model.Assignment) bool {
		h := hosts(m)
		return len(h["h1"]) == 2 && len(h["pending"]) == 1
	})
	for key, a := range byKey {
		if strings.HasPrefix(key, "pending.") {
			want := "no host has 512 MB free for standard-1X (largest free: 0 MB on h1)"
			if a.Name != "worker.3" || a.HostID != "" || a.PendingReason != want {
				t.Errorf("pending %s = %+v, want worker.3 with reason %q", key, a, want)
			}
		}
	}

	put(t, st.Hosts, "h2", model.Host{ID: "h2", MemoryMB: 1024, HeartbeatAt: time.Now()})
	byKey = waitKeys(t, st, "worker.3 placed on h2", func(m map[string]model.Assignment) bool {
		h := hosts(m)
		return len(h["h1"]) == 2 && slices.Equal(h["h2"], []string{"worker.3"}) && len(h["pending"]) == 0
	})

	// Resize to standard-2X: worker.3 frees its own room on h2 and is
	// replaced there; h1 has no room for a 2X even without one of its 1X
	// workers, so those keep running while their replacements wait, and
	// worker.4 waits too.
	formation.Processes["worker"] = model.Process{Quantity: 4, Size: "standard-2X"}
	put(t, st.Formations, "a1", formation)
	byKey = waitKeys(t, st, "standard-2X workers placed and pending", func(m map[string]model.Assignment) bool {
		h := hosts(m)
		slices.Sort(h["pending"])
		return len(h["h1"]) == 2 && slices.Equal(h["pending"], []string{"worker.1", "worker.2", "worker.4"}) && len(h["h2"]) == 1
	})
	for key, a := range byKey {
		if host, _, _ := strings.Cut(key, "."); (host == "h1") != (a.Size == "standard-1X") {
			t.Errorf("%s is %s: want the old size only on h1", key, a.Size)
		}
	}

	// Scale down: pending dynos beyond the quantity are deleted.
	formation.Processes["worker"] = model.Process{Quantity: 0, Size: "standard-2X"}
	put(t, st.Formations, "a1", formation)
	waitKeys(t, st, "nothing left", func(m map[string]model.Assignment) bool { return len(m) == 0 })
}

// logSink collects the lines the manifold logs.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Publish(appID string, l model.LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, appID+" "+l.Source+"["+l.Dyno+"]: "+l.Message)
}

func (s *logSink) has(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.lines, line)
}

// TestManifoldCycles checks daily cycling with a short period: a worker is
// replaced at once, a web dyno surges, and "Cycling" is logged for each.
func TestManifoldCycles(t *testing.T) {
	st := newTestStore(t)
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"web": "run web", "worker": "run worker"}}
	put(t, st.Hosts, "h1", model.Host{ID: "h1", MemoryMB: 64 << 10, HeartbeatAt: time.Now()})
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: 1}, "worker": {Quantity: 1}}})
	sink := &logSink{}
	start := time.Now()
	startManifold(t, st, Config{HostTTL: time.Minute, CyclePeriod: 700 * time.Millisecond, CycleJitter: 200 * time.Millisecond, LogSink: sink})

	first := waitAssignments(t, st, "web.1 and worker.1", func(m map[string]model.Assignment) bool { return len(m) == 2 })
	report(t, st, first["web.1"], model.StateUp)
	report(t, st, first["worker.1"], model.StateUp)
	if n := countAssignments(t, st); n["web"] != 1 || n["worker"] != 1 {
		t.Fatalf("assignments %v before the period, want one of each", n)
	}

	second := waitAssignments(t, st, "both cycled", func(m map[string]model.Assignment) bool {
		return m["web.1"].ID != first["web.1"].ID && m["worker.1"].ID != first["worker.1"].ID
	})
	if since := time.Since(start); since < 700*time.Millisecond {
		t.Errorf("cycled after %v, before the 700ms period", since)
	}
	if n := countAssignments(t, st); n["worker"] != 1 || n["web"] != 2 {
		t.Errorf("assignments %v while the new web starts, want 1 worker and 2 web (surge)", n)
	}
	for _, line := range []string{"a1 heroku[web.1]: Cycling", "a1 heroku[worker.1]: Cycling"} {
		if !sink.has(line) {
			t.Errorf("no %q logged; got %q", line, sink.lines)
		}
	}
	report(t, st, second["web.1"], model.StateUp)
	waitAssignments(t, st, "the old web stopped once the new one is up", func(map[string]model.Assignment) bool {
		return countAssignments(t, st)["web"] == 1
	})
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
