package manifold

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// beats refreshes host records every period as agents do, until stopped
// one by one or the test ends.
type beats struct {
	mu      sync.Mutex
	stopped map[string]bool
}

func heartbeat(t *testing.T, st *store.Store, period time.Duration, ids ...string) *beats {
	t.Helper()
	b := &beats{stopped: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	beat := func() {
		for _, id := range ids {
			b.mu.Lock()
			stopped := b.stopped[id]
			b.mu.Unlock()
			if !stopped {
				st.Hosts.Put(ctx, id, model.Host{ID: id, MemoryMB: 8192, HeartbeatAt: time.Now()})
			}
		}
	}
	beat()
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat()
			}
		}
	})
	return b
}

func (b *beats) set(id string, stopped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped[id] = stopped
}

// webApp writes app a1 with a web process type scaled to n.
func webApp(t *testing.T, st *store.Store, n int) {
	t.Helper()
	slug := &model.Slug{ID: "s1", ProcessTypes: map[string]string{"web": "run web"}}
	put(t, st.Releases, model.ReleaseKey("a1", 1), model.Release{AppID: "a1", Version: 1, Slug: slug})
	put(t, st.Apps, "a1", model.App{ID: "a1", Name: "hello", ReleaseVersion: 1})
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: n}}})
}

// webOn returns the web dynos' assignments by host.
func webOn(t *testing.T, st *store.Store) map[string][]model.Assignment {
	t.Helper()
	entries, err := st.Assignments.List(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]model.Assignment{}
	for _, e := range entries {
		out[e.Value.HostID] = append(out[e.Value.HostID], e.Value)
	}
	return out
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestManifoldLostHost: a host stops heartbeating; within its TTL plus a
// reconcile its dynos have replacements on the other host, while the lost
// ones keep their assignments and statuses (routable) until the
// replacements are up; then the manifold deletes both. The host comes back
// and takes dynos again.
func TestManifoldLostHost(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	const ttl = time.Second
	hb := heartbeat(t, st, 100*time.Millisecond, "h1", "h2")
	webApp(t, st, 2)
	startManifold(t, st, Config{HostTTL: ttl})

	var lost model.Assignment
	waitFor(t, "web.1 and web.2 on distinct hosts", 10*time.Second, func() bool {
		on := webOn(t, st)
		if len(on["h1"]) == 1 && len(on["h2"]) == 1 {
			lost = on["h2"][0]
			return true
		}
		return false
	})
	for _, as := range webOn(t, st) {
		report(t, st, as[0], model.StateUp)
	}

	hb.set("h2", true)
	died := time.Now()
	var repl model.Assignment
	took := waitFor(t, "a replacement of "+lost.Name+" on h1", ttl+5*time.Second, func() bool {
		for _, a := range webOn(t, st)["h1"] {
			if a.Name == lost.Name {
				repl = a
				return true
			}
		}
		return false
	})
	t.Logf("replacement placed %s after the last heartbeat (TTL %s)", took, ttl)
	if took > ttl+time.Second {
		t.Errorf("replacement placed %s after the host stopped, want within TTL %s plus a reconcile", took, ttl)
	}
	if time.Since(died) < ttl-200*time.Millisecond {
		t.Errorf("replacement placed %s after the host stopped, before its TTL %s", time.Since(died), ttl)
	}
	// The suspect stays, routable, while its replacement starts.
	time.Sleep(200 * time.Millisecond)
	if _, _, err := st.Assignments.Get(ctx, lost.Key()); err != nil {
		t.Fatalf("the lost dyno's assignment went before its replacement was up: %v", err)
	}
	if _, _, err := st.Statuses.Get(ctx, model.StatusKey(lost.AppID, lost.ID)); err != nil {
		t.Fatalf("the lost dyno's status went before its replacement was up: %v", err)
	}

	report(t, st, repl, model.StateUp)
	waitFor(t, "the lost dyno's assignment and status deleted", 5*time.Second, func() bool {
		_, _, errA := st.Assignments.Get(ctx, lost.Key())
		_, _, errS := st.Statuses.Get(ctx, model.StatusKey(lost.AppID, lost.ID))
		return errA == store.ErrNotFound && errS == store.ErrNotFound
	})

	// The host returns: nothing of it runs any more, and it takes the
	// next web dyno (fewest of the type).
	hb.set("h2", false)
	time.Sleep(300 * time.Millisecond)
	if n := len(webOn(t, st)["h2"]); n != 0 {
		t.Fatalf("the returned host has %d assignments, want 0", n)
	}
	put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: 3}}})
	waitFor(t, "web.3 on the returned host", 5*time.Second, func() bool { return len(webOn(t, st)["h2"]) == 1 })
}

// TestManifoldDrain: a draining host's web dyno is replaced elsewhere and
// keeps serving until the replacement is up; undrained, the host takes
// dynos again.
func TestManifoldDrain(t *testing.T) {
	st := newTestStore(t)
	ctx := context.Background()
	heartbeat(t, st, 100*time.Millisecond, "h1", "h2")
	webApp(t, st, 2)
	startManifold(t, st, Config{HostTTL: time.Minute})
	var old model.Assignment
	waitFor(t, "web.1 and web.2 on distinct hosts", 10*time.Second, func() bool {
		on := webOn(t, st)
		if len(on["h1"]) == 1 && len(on["h2"]) == 1 {
			old = on["h1"][0]
			return true
		}
		return false
	})
	for _, as := range webOn(t, st) {
		report(t, st, as[0], model.StateUp)
	}
	put(t, st.HostSettings, "h1", model.HostSettings{HostID: "h1", Drain: true, DrainAt: time.Now()})
	var repl model.Assignment
	waitFor(t, "a replacement of "+old.Name+" on h2", 5*time.Second, func() bool {
		for _, a := range webOn(t, st)["h2"] {
			if a.Name == old.Name {
				repl = a
				return true
			}
		}
		return false
	})
	if _, _, err := st.Assignments.Get(ctx, old.Key()); err != nil {
		t.Fatalf("the draining host's web dyno stopped before its replacement was up: %v", err)
	}
	report(t, st, repl, model.StateUp)
	waitFor(t, "the drained host empty", 5*time.Second, func() bool { return len(webOn(t, st)["h1"]) == 0 })

	put(t, st.HostSettings, "h1", model.HostSettings{HostID: "h1"})
	// The manifold watches each bucket on its own: the scale-up may reach
	// it before the undrain does, and web.3 then goes to h2 (where it
	// stays). Long before web.3 is placed the undrain has arrived: a
	// web.4 must then go to h1.
	for n := 3; n <= 4; n++ {
		put(t, st.Formations, "a1", model.Formation{AppID: "a1", Processes: map[string]model.Process{"web": {Quantity: n}}})
		waitFor(t, fmt.Sprintf("web.%d placed", n), 5*time.Second, func() bool { return len(webOn(t, st)["h1"])+len(webOn(t, st)["h2"]) == n })
		if len(webOn(t, st)["h1"]) == 1 {
			return
		}
	}
	t.Fatalf("no new web dyno on the undrained host: %v", webOn(t, st))
}
