package router

import (
	"testing"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

func web(app, name, state, endpoint string) model.DynoStatus {
	return model.DynoStatus{AppID: app, Type: "web", Name: name, State: state, Endpoint: endpoint}
}

func TestBuilder(t *testing.T) {
	b := newBuilder()
	b.putName("hello", "a1")
	b.putName("other", "a2")
	b.putStatus("a1.d1", web("a1", "web.1", model.StateUp, "127.0.0.1:1"))
	b.putStatus("a1.d2", web("a1", "web.2", model.StateStarting, ""))
	b.putStatus("a1.d3", web("a1", "web.3", model.StateUp, "")) // up without endpoint: not routable yet
	b.putStatus("a1.w1", model.DynoStatus{AppID: "a1", Type: "worker", Name: "worker.1", State: model.StateUp})
	b.putStatus("a2.d1", web("a2", "web.1", model.StateCrashed, ""))
	t1 := b.build()

	tests := []struct {
		name                string
		up, starting, crash int
	}{
		{"hello", 1, 2, 0},
		{"other", 0, 0, 1},
	}
	for _, tt := range tests {
		a := t1.apps[tt.name]
		if a == nil || len(a.up) != tt.up || a.starting != tt.starting || a.crashed != tt.crash {
			t.Fatalf("%s: %+v, want up=%d starting=%d crashed=%d", tt.name, a, tt.up, tt.starting, tt.crash)
		}
	}

	// A change to one app leaves the other's routes untouched (shared, immutable).
	b.putStatus("a1.d2", web("a1", "web.2", model.StateUp, "127.0.0.1:2"))
	t2 := b.build()
	if t2.apps["other"] != t1.apps["other"] {
		t.Error("unchanged app was rebuilt")
	}
	if got := t2.apps["hello"]; len(got.up) != 2 || got.up[0].name != "web.1" || got.up[1].name != "web.2" {
		t.Errorf("hello after web.2 up: %+v", got)
	}
	if len(t1.apps["hello"].up) != 1 {
		t.Error("a published table was mutated")
	}

	// Deletes, and a resync that drops what the new watch no longer has.
	b.deleteStatus("a1.d1")
	b.deleteName("other")
	t3 := b.build()
	if t3.apps["other"] != nil || len(t3.apps["hello"].up) != 1 {
		t.Errorf("after deletes: %+v", t3.apps)
	}
	b.setStatuses(map[string]model.DynoStatus{"a2.d9": web("a2", "web.9", model.StateUp, "127.0.0.1:9")})
	b.setNames(map[string]string{"other": "a2", "hello": "a1"})
	t4 := b.build()
	if a := t4.apps["hello"]; a == nil || len(a.up)+a.starting+a.crashed != 0 {
		t.Errorf("hello after resync: %+v, want no dynos", a)
	}
	if a := t4.apps["other"]; a == nil || len(a.up) != 1 || a.up[0].endpoint != "127.0.0.1:9" {
		t.Errorf("other after resync: %+v", a)
	}
}

func TestFeedResync(t *testing.T) {
	f := &feed[int]{initial: map[string]int{}}
	live := map[string]int{}
	put := func(k string, v int) { live[k] = v }
	del := func(k string) { delete(live, k) }
	steps := []struct {
		ev        store.Event[int]
		wantReady bool
		wantInit  int // size of the initial state when ready
	}{
		{store.Event[int]{Entry: store.Entry[int]{Key: "a", Value: 1}}, false, 0},
		{store.Event[int]{Entry: store.Entry[int]{Key: "b", Value: 2}}, false, 0},
		{store.Event[int]{Entry: store.Entry[int]{Key: "a"}, Deleted: true}, false, 0},
		{store.Event[int]{Ready: true}, true, 1},
		{store.Event[int]{Entry: store.Entry[int]{Key: "c", Value: 3}}, false, 0},
		{store.Event[int]{Entry: store.Entry[int]{Key: "c"}, Deleted: true}, false, 0},
		{store.Event[int]{Entry: store.Entry[int]{Key: "d", Value: 4}}, false, 0},
	}
	for i, s := range steps {
		init, ready := f.handle(s.ev, put, del)
		if ready != s.wantReady || len(init) != s.wantInit {
			t.Fatalf("step %d: ready=%v init=%v, want %v and %d entries", i, ready, init, s.wantReady, s.wantInit)
		}
	}
	if !f.synced || len(live) != 1 || live["d"] != 4 {
		t.Fatalf("synced=%v live=%v, want live events applied after Ready", f.synced, live)
	}
}
