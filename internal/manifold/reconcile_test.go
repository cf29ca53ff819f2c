package manifold

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/dyno-platform/dyno/internal/model"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fixture is a State under construction: app a1 "hello" at release 1 with
// web and worker process types, on hosts h1 and h2.
type fixture struct {
	s   State
	rev uint64
}

func newFixture(web, worker int) *fixture {
	f := &fixture{s: State{
		Apps: map[string]model.App{"a1": {ID: "a1", Name: "hello", ReleaseVersion: 1}},
		Releases: map[string]model.Release{"a1": {AppID: "a1", Version: 1, Config: map[string]string{"K": "V"},
			Slug: &model.Slug{ID: "s1", ProcessTypes: map[string]string{"web": "run web", "worker": "run worker"}}}},
		Formations: map[string]model.Formation{"a1": {AppID: "a1", Processes: map[string]model.Process{
			"web": {Quantity: web}, "worker": {Quantity: worker}}}},
		Assignments: map[string]AssignmentEntry{},
		Statuses:    map[string]model.DynoStatus{},
		Hosts:       []model.Host{{ID: "h1"}, {ID: "h2"}},
	}}
	return f
}

// release makes release v the app's current one.
func (f *fixture) release(v int) *fixture {
	app := f.s.Apps["a1"]
	app.ReleaseVersion = v
	f.s.Apps["a1"] = app
	rel := f.s.Releases["a1"]
	rel.Version = v
	f.s.Releases["a1"] = rel
	return f
}

// dyno adds a current assignment id for typ.i on host h1 in the given state
// ("" for no status), then lets mods change it.
func (f *fixture) dyno(id, typ string, i int, state string, mods ...func(*model.Assignment)) *fixture {
	rel := f.s.Releases["a1"]
	name := model.DynoName(typ, i)
	a := model.Assignment{ID: id, HostID: "h1", AppID: "a1", AppName: "hello", Type: typ, Name: name, Index: i,
		Release: rel.Version, Slug: *rel.Slug, Command: rel.Slug.ProcessTypes[typ], Env: rel.Config,
		Size: model.DefaultSize, Generation: f.s.Formations["a1"].Restarts.Generation(typ, name), CreatedAt: t0.Add(-time.Hour)}
	for _, m := range mods {
		m(&a)
	}
	f.rev++
	f.s.Assignments[model.AssignmentKey(a.HostID, a.ID)] = AssignmentEntry{Assignment: a, Revision: f.rev}
	if state != "" {
		f.s.Statuses[id] = model.DynoStatus{ID: id, State: state, UpdatedAt: t0.Add(-time.Second)}
	}
	return f
}

func (f *fixture) status(id string, mod func(*model.DynoStatus)) *fixture {
	st := f.s.Statuses[id]
	mod(&st)
	f.s.Statuses[id] = st
	return f
}

func (f *fixture) formation(mod func(*model.Formation)) *fixture {
	fm := f.s.Formations["a1"]
	mod(&fm)
	f.s.Formations["a1"] = fm
	return f
}

func release(v int) func(*model.Assignment) { return func(a *model.Assignment) { a.Release = v } }
func crashes(n int) func(*model.Assignment) { return func(a *model.Assignment) { a.CrashCount = n } }
func restartAt(t time.Time) func(*model.Assignment) {
	return func(a *model.Assignment) { a.RestartAt = t }
}

// summary renders a plan as sorted lines a table can state.
func summary(p Plan) []string {
	var out []string
	for _, a := range p.Create {
		out = append(out, fmt.Sprintf("create %s v%d gen%d crash%d on %s", a.Name, a.Release, a.Generation, a.CrashCount, a.HostID))
	}
	for _, e := range p.Update {
		out = append(out, fmt.Sprintf("update %s restart +%s", e.Assignment.ID, e.Assignment.RestartAt.Sub(t0)))
	}
	for _, e := range p.Delete {
		out = append(out, "delete "+e.Assignment.ID)
	}
	slices.Sort(out)
	return out
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name        string
		state       *fixture
		now         time.Time // t0 if zero
		want        []string
		nextCheck   time.Duration // after t0; 0 = none
		wantPending bool
	}{
		{name: "scale up from 0 spreads over hosts", state: newFixture(2, 1),
			want: []string{"create web.1 v1 gen0 crash0 on h1", "create web.2 v1 gen0 crash0 on h2", "create worker.1 v1 gen0 crash0 on h1"}},
		{name: "steady state does nothing", state: newFixture(1, 1).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "up")},
		{name: "scale down removes the highest", state: newFixture(1, 0).
			dyno("w1", "web", 1, "up").dyno("w2", "web", 2, "up").dyno("w3", "web", 3, "starting"),
			want: []string{"delete w2", "delete w3"}},
		{name: "quantity 0 deletes the type", state: newFixture(1, 0).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "crashed"),
			want: []string{"delete k1"}},
		{name: "type removed from the formation", state: newFixture(1, 1).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "up").
			formation(func(f *model.Formation) { delete(f.Processes, "worker") }),
			want: []string{"delete k1"}},
		{name: "type missing from the slug runs nothing", state: newFixture(0, 0).
			formation(func(f *model.Formation) { f.Processes["clock"] = model.Process{Quantity: 1} })},
		{name: "deleted app loses every dyno", state: newFixture(1, 0).dyno("w1", "web", 1, "up").
			dyno("x1", "web", 1, "up", func(a *model.Assignment) { a.AppID = "gone" }),
			want: []string{"delete x1"}},
		{name: "release without a slug runs nothing", state: func() *fixture {
			f := newFixture(1, 0).dyno("w1", "web", 1, "up")
			rel := f.s.Releases["a1"]
			rel.Slug = nil
			f.s.Releases["a1"] = rel
			return f
		}(), want: []string{"delete w1"}},
		{name: "release not loaded yet leaves dynos alone", state: func() *fixture {
			f := newFixture(1, 0).dyno("w1", "web", 1, "up")
			app := f.s.Apps["a1"]
			app.ReleaseVersion = 2
			f.s.Apps["a1"] = app
			return f
		}(), wantPending: true},
		{name: "new release surges web: replacement first", state: newFixture(1, 0).dyno("w1", "web", 1, "up").release(2),
			want: []string{"create web.1 v2 gen0 crash0 on h2"}},
		{name: "new release: old web waits while replacement starts", state: newFixture(1, 0).
			dyno("w1", "web", 1, "up", release(1)).release(2).dyno("w2", "web", 1, "starting")},
		{name: "new release: old web stops once replacement is up", state: newFixture(1, 0).
			dyno("w1", "web", 1, "up", release(1)).release(2).dyno("w2", "web", 1, "up"),
			want: []string{"delete w1"}},
		{name: "new release: crashed replacement keeps old web", state: newFixture(1, 0).
			dyno("w1", "web", 1, "up", release(1)).release(2).dyno("w2", "web", 1, "crashed"),
			want: []string{"create web.1 v2 gen0 crash1 on h2", "delete w2"}},
		{name: "new release replaces a worker at once", state: newFixture(0, 1).dyno("k1", "worker", 1, "up").release(2),
			want: []string{"create worker.1 v2 gen0 crash0 on h2", "delete k1"}},
		{name: "new release resets the crash count", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(4)).release(2),
			// the crashed dyno runs nothing, so h1 counts as empty
			want: []string{"create worker.1 v2 gen0 crash0 on h1", "delete k1"}},
		{name: "changed size replaces", state: newFixture(0, 1).dyno("k1", "worker", 1, "up").
			formation(func(f *model.Formation) { f.Processes["worker"] = model.Process{Quantity: 1, Size: "standard-2x"} }),
			want: []string{"create worker.1 v1 gen0 crash0 on h2", "delete k1"}},
		{name: "restart one dyno by name", state: newFixture(2, 0).dyno("w1", "web", 1, "up").dyno("w2", "web", 2, "up").
			formation(func(f *model.Formation) { f.Restarts.Dynos = map[string]int64{"web.2": 1} }),
			want: []string{"create web.2 v1 gen1 crash0 on h2"}},
		{name: "restart a type", state: newFixture(1, 2).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "up").dyno("k2", "worker", 2, "up").
			formation(func(f *model.Formation) { f.Restarts.Types = map[string]int64{"worker": 1} }),
			want: []string{"create worker.1 v1 gen1 crash0 on h2", "create worker.2 v1 gen1 crash0 on h2", "delete k1", "delete k2"}},
		{name: "restart all", state: newFixture(1, 1).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "up").
			formation(func(f *model.Formation) { f.Restarts.All = 1 }),
			want: []string{"create web.1 v1 gen1 crash0 on h2", "create worker.1 v1 gen1 crash0 on h2", "delete k1"}},
		{name: "crash #1 is replaced at once", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed"),
			want: []string{"create worker.1 v1 gen0 crash1 on h2", "delete k1"}},
		{name: "crash #2 sets RestartAt", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1)),
			want: []string{"update k1 restart +10s"}, nextCheck: 10 * time.Second},
		{name: "crash #4 waits 40s", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(3)).
			status("k1", func(s *model.DynoStatus) { s.UpAt = t0.Add(-time.Minute) }),
			want: []string{"update k1 restart +40s"}, nextCheck: 40 * time.Second},
		{name: "crash #2 waits out its back-off", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1), restartAt(t0.Add(5*time.Second))),
			nextCheck: 5 * time.Second},
		{name: "crash #2 is replaced after its back-off", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1), restartAt(t0.Add(-time.Second))),
			want: []string{"create worker.1 v1 gen0 crash2 on h2", "delete k1"}},
		{name: "long up resets the crash count", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(3)).
			status("k1", func(s *model.DynoStatus) { s.UpAt = t0.Add(-15 * time.Minute) }),
			want: []string{"create worker.1 v1 gen0 crash1 on h2", "delete k1"}},
		{name: "no hosts creates nothing", state: func() *fixture { f := newFixture(2, 0); f.s.Hosts = nil; return f }(),
			wantPending: true},
		{name: "no hosts keeps the old worker", state: func() *fixture {
			f := newFixture(0, 1).dyno("k1", "worker", 1, "up").release(2)
			f.s.Hosts = nil
			return f
		}(), wantPending: true},
		{name: "duplicate slot keeps the healthiest", state: newFixture(1, 0).dyno("w1", "web", 1, "starting").dyno("w2", "web", 1, "up"),
			want: []string{"delete w1"}},
		{name: "placement prefers the emptier host", state: func() *fixture {
			f := newFixture(3, 0).dyno("w1", "web", 1, "up").dyno("w2", "web", 2, "up")
			return f
		}(), want: []string{"create web.3 v1 gen0 crash0 on h2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			if !tt.now.IsZero() {
				now = tt.now
			}
			p := Reconcile(tt.state.s, now)
			if got := summary(p); !slices.Equal(got, tt.want) {
				t.Errorf("plan:\n  got  %q\n  want %q", got, tt.want)
			}
			var wantNext time.Time
			if tt.nextCheck > 0 {
				wantNext = t0.Add(tt.nextCheck)
			}
			if !p.NextCheck.Equal(wantNext) {
				t.Errorf("NextCheck = %v, want %v", p.NextCheck, wantNext)
			}
			if got := len(p.Pending) > 0; got != tt.wantPending {
				t.Errorf("Pending = %q, want some: %v", p.Pending, tt.wantPending)
			}
		})
	}
}

// TestReconcileAssignmentFields checks a new assignment carries all an agent needs.
func TestReconcileAssignmentFields(t *testing.T) {
	f := newFixture(0, 1)
	p := Reconcile(f.s, t0)
	if len(p.Create) != 1 {
		t.Fatalf("Create = %d assignments, want 1", len(p.Create))
	}
	a := p.Create[0]
	if _, err := uuid.Parse(a.ID); err != nil {
		t.Errorf("ID %q is not a uuid: %v", a.ID, err)
	}
	checks := []struct{ field, got, want string }{
		{"HostID", a.HostID, "h1"}, {"AppID", a.AppID, "a1"}, {"AppName", a.AppName, "hello"},
		{"Type", a.Type, "worker"}, {"Name", a.Name, "worker.1"}, {"Index", fmt.Sprint(a.Index), "1"},
		{"Release", fmt.Sprint(a.Release), "1"}, {"Slug", a.Slug.ID, "s1"}, {"Command", a.Command, "run worker"},
		{"Env", fmt.Sprint(a.Env), "map[K:V]"}, {"Size", a.Size, model.DefaultSize},
		{"CreatedAt", a.CreatedAt.String(), t0.String()}, {"CrashCount", fmt.Sprint(a.CrashCount), "0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	a.Env["K"] = "changed"
	if f.s.Releases["a1"].Config["K"] != "V" {
		t.Error("the assignment's Env aliases the release's Config")
	}
}

func TestReconcileDeterministic(t *testing.T) {
	f := newFixture(3, 2).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "crashed", crashes(2)).release(2)
	f.s.Backoff = DefaultBackoff(func() float64 { return 0.5 })
	strip := func(p Plan) string {
		for i := range p.Create {
			p.Create[i].ID = ""
		}
		return fmt.Sprintf("%+v", p)
	}
	first := strip(Reconcile(f.s, t0))
	for range 20 {
		if got := strip(Reconcile(f.s, t0)); got != first {
			t.Fatalf("plans differ:\n%s\n%s", first, got)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := DefaultBackoff(nil)
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 320 * time.Second, 640 * time.Second, 20 * time.Minute, 20 * time.Minute}
	for i, w := range want {
		if got := b(i + 1); got != w {
			t.Errorf("crash %d: back-off %v, want %v", i+1, got, w)
		}
	}
	if got := b(1000); got != 20*time.Minute {
		t.Errorf("crash 1000: back-off %v, want the 20m cap", got)
	}
	jittered := DefaultBackoff(func() float64 { return 0.999 })
	for n := 2; n < 12; n++ {
		plain, got := b(n), jittered(n)
		if got > plain || got < plain-plain/10 {
			t.Errorf("crash %d: jittered back-off %v is not within 10%% below %v", n, got, plain)
		}
	}
}

// benchState is 100 apps with 5 web and 5 worker dynos each on 10 hosts.
func benchState(withDynos bool) State {
	s := State{Apps: map[string]model.App{}, Releases: map[string]model.Release{}, Formations: map[string]model.Formation{},
		Assignments: map[string]AssignmentEntry{}, Statuses: map[string]model.DynoStatus{}}
	for h := range 10 {
		s.Hosts = append(s.Hosts, model.Host{ID: fmt.Sprintf("h%02d", h)})
	}
	slug := &model.Slug{ID: "s", ProcessTypes: map[string]string{"web": "w", "worker": "k"}}
	rev := uint64(0)
	for i := range 100 {
		id := fmt.Sprintf("app%03d", i)
		s.Apps[id] = model.App{ID: id, Name: id, ReleaseVersion: 3}
		s.Releases[id] = model.Release{AppID: id, Version: 3, Slug: slug, Config: map[string]string{"A": "1", "B": "2"}}
		s.Formations[id] = model.Formation{AppID: id, Processes: map[string]model.Process{"web": {Quantity: 5}, "worker": {Quantity: 5}}}
		if !withDynos {
			continue
		}
		for _, typ := range []string{"web", "worker"} {
			for n := 1; n <= 5; n++ {
				rev++
				a := model.Assignment{ID: fmt.Sprintf("%s-%s-%d", id, typ, n), HostID: s.Hosts[int(rev)%10].ID, AppID: id,
					AppName: id, Type: typ, Name: model.DynoName(typ, n), Index: n, Release: 3, Slug: *slug,
					Command: slug.ProcessTypes[typ], Size: model.DefaultSize}
				s.Assignments[model.AssignmentKey(a.HostID, a.ID)] = AssignmentEntry{Assignment: a, Revision: rev}
				s.Statuses[a.ID] = model.DynoStatus{ID: a.ID, State: model.StateUp}
			}
		}
	}
	return s
}

// BenchmarkReconcile plans 1,000 dynos across 100 apps: steady (nothing to
// do), from scratch (1,000 creates) and after a restart of all (1,000
// creates and 500 deletes).
func BenchmarkReconcile(b *testing.B) {
	restarted := benchState(true)
	for id, f := range restarted.Formations {
		f.Restarts.All = 1
		restarted.Formations[id] = f
	}
	cases := []struct {
		name  string
		s     State
		wantC int
	}{{"steady", benchState(true), 0}, {"from-scratch", benchState(false), 1000}, {"restart-all", restarted, 1000}}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if p := Reconcile(c.s, t0); len(p.Create) != c.wantC {
					b.Fatalf("%d creates, want %d: %s", len(p.Create), c.wantC, strings.Join(p.Pending, "; "))
				}
			}
		})
	}
}
