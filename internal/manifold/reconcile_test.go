package manifold

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/dyno-platform/dyno/internal/model"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

const noHost = "no live host: start a host agent (dyno agent)"

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
		Hosts:       []model.Host{{ID: "h1", MemoryMB: 8192}, {ID: "h2", MemoryMB: 8192}},
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
	f.s.Assignments[a.Key()] = AssignmentEntry{Assignment: a, Revision: f.rev}
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

// hosts replaces the fixture's hosts by ones with the given memory (MB),
// called h1, h2...
func (f *fixture) hosts(mb ...int) *fixture {
	f.s.Hosts = nil
	for i, m := range mb {
		f.s.Hosts = append(f.s.Hosts, model.Host{ID: fmt.Sprintf("h%d", i+1), MemoryMB: m})
	}
	return f
}

// size sets the formation's size of typ.
func (f *fixture) size(typ, size string) *fixture {
	return f.formation(func(fm *model.Formation) {
		p := fm.Processes[typ]
		p.Size = size
		fm.Processes[typ] = p
	})
}

func release(v int) func(*model.Assignment)     { return func(a *model.Assignment) { a.Release = v } }
func onHost(h string) func(*model.Assignment)   { return func(a *model.Assignment) { a.HostID = h } }
func sized(size string) func(*model.Assignment) { return func(a *model.Assignment) { a.Size = size } }
func created(t time.Time) func(*model.Assignment) {
	return func(a *model.Assignment) { a.CreatedAt = t }
}

// pending makes the assignment a pending one with reason.
func pending(reason string) func(*model.Assignment) {
	return func(a *model.Assignment) { a.HostID, a.PendingReason = "", reason }
}
func crashes(n int) func(*model.Assignment) { return func(a *model.Assignment) { a.CrashCount = n } }
func restartAt(t time.Time) func(*model.Assignment) {
	return func(a *model.Assignment) { a.RestartAt = t }
}

// summary renders a plan as sorted lines a table can state.
func summary(p Plan) []string {
	var out []string
	for _, a := range p.Create {
		if a.Pending() {
			out = append(out, fmt.Sprintf("pending %s v%d crash%d: %s", a.Name, a.Release, a.CrashCount, a.PendingReason))
			continue
		}
		out = append(out, fmt.Sprintf("create %s v%d gen%d crash%d on %s", a.Name, a.Release, a.Generation, a.CrashCount, a.HostID))
	}
	for _, e := range p.Update {
		if e.Assignment.Pending() {
			out = append(out, fmt.Sprintf("repend %s: %s", e.Assignment.ID, e.Assignment.PendingReason))
			continue
		}
		out = append(out, fmt.Sprintf("update %s restart +%s", e.Assignment.ID, e.Assignment.RestartAt.Sub(t0)))
	}
	for _, a := range p.Cycled {
		out = append(out, "cycle "+a.ID)
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
			// Spread: worker.1 leaves h1 for h2, then each host runs one worker.
			want: []string{"create worker.1 v1 gen1 crash0 on h2", "create worker.2 v1 gen1 crash0 on h1", "delete k1", "delete k2"}},
		{name: "restart all", state: newFixture(1, 1).dyno("w1", "web", 1, "up").dyno("k1", "worker", 1, "up").
			formation(func(f *model.Formation) { f.Restarts.All = 1 }),
			want: []string{"create web.1 v1 gen1 crash0 on h2", "create worker.1 v1 gen1 crash0 on h2", "delete k1"}},
		{name: "crash #1 is replaced at once", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed"),
			want: []string{"create worker.1 v1 gen0 crash1 on h2", "delete k1"}},
		{name: "crash #2 sets RestartAt", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1)),
			want: []string{"update k1 restart +20m0s"}, nextCheck: 20 * time.Minute},
		{name: "crash #4 waits 60m", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(3)).
			status("k1", func(s *model.DynoStatus) { s.UpAt = t0.Add(-time.Minute) }),
			want: []string{"update k1 restart +1h0m0s"}, nextCheck: time.Hour},
		{name: "crash #9 waits 320m", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(8)),
			want: []string{"update k1 restart +5h20m0s"}, nextCheck: 320 * time.Minute},
		{name: "restart resets the crash count", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(5)).
			formation(func(f *model.Formation) { f.Restarts.All = 1 }),
			want: []string{"create worker.1 v1 gen1 crash0 on h1", "delete k1"}},
		{name: "scale to 0 and back resets the crash count", state: newFixture(0, 1).
			formation(func(f *model.Formation) { f.Processes["worker"] = model.Process{Quantity: 1, ScaledToZeroAt: t0} }),
			want: []string{"create worker.1 v1 gen0 crash0 on h1"}},
		{name: "crash #2 waits out its back-off", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1), restartAt(t0.Add(5*time.Second))),
			nextCheck: 5 * time.Second},
		{name: "crash #2 is replaced after its back-off", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(1), restartAt(t0.Add(-time.Second))),
			want: []string{"create worker.1 v1 gen0 crash2 on h2", "delete k1"}},
		{name: "long up resets the crash count", state: newFixture(0, 1).dyno("k1", "worker", 1, "crashed", crashes(3)).
			status("k1", func(s *model.DynoStatus) { s.UpAt = t0.Add(-15 * time.Minute) }),
			want: []string{"create worker.1 v1 gen0 crash1 on h2", "delete k1"}},
		{name: "no hosts: pending with the reason", state: newFixture(2, 0).hosts(),
			want: []string{"pending web.1 v1 crash0: " + noHost, "pending web.2 v1 crash0: " + noHost}, wantPending: true},
		{name: "no hosts keeps the old worker", state: newFixture(0, 1).dyno("k1", "worker", 1, "up").release(2).hosts(),
			want: []string{"pending worker.1 v2 crash0: " + noHost}, wantPending: true},

		// Memory.
		{name: "fills a host up to its memory and no further", state: newFixture(3, 0).hosts(1024),
			want: []string{"create web.1 v1 gen0 crash0 on h1", "create web.2 v1 gen0 crash0 on h1",
				"pending web.3 v1 crash0: no host has 512 MB free for standard-1X (largest free: 0 MB on h1)"}, wantPending: true},
		{name: "running dynos reserve their size", state: newFixture(2, 0).hosts(1536, 512).
			dyno("w1", "web", 1, "up", sized("standard-2X"), onHost("h1")).size("web", "standard-2X"),
			want: []string{"pending web.2 v1 crash0: no host has 1024 MB free for standard-2X (largest free: 512 MB on h1)"}, wantPending: true},
		{name: "size larger than any host", state: newFixture(0, 1).hosts(1024, 1024).size("worker", "performance-M"),
			want: []string{"pending worker.1 v1 crash0: no host has 2560 MB free for performance-M (largest free: 1024 MB on h1)"}, wantPending: true},
		{name: "placed on the host with room", state: newFixture(3, 0).hosts(1024, 1024).
			dyno("w1", "web", 1, "up", onHost("h1")).dyno("w2", "web", 2, "up", onHost("h1")),
			want: []string{"create web.3 v1 gen0 crash0 on h2"}},
		{name: "an unchanged pending dyno is left alone", state: newFixture(2, 0).hosts(512).dyno("w1", "web", 1, "up").
			dyno("p2", "web", 2, "", pending("no host has 512 MB free for standard-1X (largest free: 0 MB on h1)")), wantPending: true},
		{name: "a pending dyno's new reason is written", state: newFixture(2, 0).hosts(512).dyno("w1", "web", 1, "up").
			dyno("p2", "web", 2, "", pending("no live host: start a host agent (dyno agent)")),
			want: []string{"repend p2: no host has 512 MB free for standard-1X (largest free: 0 MB on h1)"}, wantPending: true},
		{name: "a pending dyno is placed when room appears", state: newFixture(2, 0).hosts(1024).dyno("w1", "web", 1, "up").
			dyno("p2", "web", 2, "", pending("no live host")),
			want: []string{"create web.2 v1 gen0 crash0 on h1", "delete p2"}},
		{name: "a pending dyno is removed when scaled down", state: newFixture(1, 0).hosts(512).dyno("w1", "web", 1, "up").
			dyno("p2", "web", 2, "", pending("no host has room")),
			want: []string{"delete p2"}},
		{name: "a pending dyno is not capacity", state: newFixture(1, 0).hosts(512).
			dyno("p1", "web", 1, "up", pending("no live host")),
			want: []string{"create web.1 v1 gen0 crash0 on h1", "delete p1"}},
		{name: "crashed dynos reserve no memory", state: newFixture(0, 2).hosts(512).
			dyno("k1", "worker", 1, "crashed", crashes(1), restartAt(t0.Add(time.Minute))),
			want: []string{"create worker.2 v1 gen0 crash0 on h1"}, nextCheck: time.Minute},
		{name: "a replaced worker frees its room", state: newFixture(0, 1).hosts(512).dyno("k1", "worker", 1, "up").release(2),
			want: []string{"create worker.1 v2 gen0 crash0 on h1", "delete k1"}},
		{name: "no room to surge: web replaced at once", state: newFixture(1, 0).hosts(512).dyno("w1", "web", 1, "up").release(2),
			want: []string{"create web.1 v2 gen0 crash0 on h1", "delete w1"}},
		{name: "room to surge: old web keeps serving", state: newFixture(1, 0).hosts(1024).dyno("w1", "web", 1, "up").release(2),
			want: []string{"create web.1 v2 gen0 crash0 on h1"}},
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
	m := time.Minute
	tests := []struct {
		name  string
		b     Backoff
		crash []int
		want  []time.Duration
	}{
		{name: "heroku's windows", b: DefaultBackoff(nil), crash: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 1000},
			want: []time.Duration{0, 0, 20 * m, 40 * m, 60 * m, 180 * m, 320 * m, 320 * m, 320 * m, 320 * m}},
		{name: "scaled", b: HerokuBackoff(0.001, nil), crash: []int{1, 2, 3, 6, 9},
			want: []time.Duration{0, 1200 * time.Millisecond, 2400 * time.Millisecond, 19200 * time.Millisecond, 19200 * time.Millisecond}},
		{name: "zero scale is heroku's", b: HerokuBackoff(0, nil), crash: []int{2}, want: []time.Duration{20 * m}},
		{name: "up to: half the window at rnd 0", b: HerokuBackoff(1, func() float64 { return 0 }), crash: []int{1, 2, 6},
			want: []time.Duration{0, 10 * m, 160 * m}},
		{name: "up to: most of the window at rnd 0.5", b: HerokuBackoff(1, func() float64 { return 0.5 }), crash: []int{2, 3},
			want: []time.Duration{15 * m, 30 * m}},
		{name: "exponential", b: ExponentialBackoff(10*time.Second, time.Minute, 0, nil), crash: []int{1, 2, 3, 4, 5},
			want: []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, n := range tc.crash {
				if got := tc.b(n); got != tc.want[i] {
					t.Errorf("crash %d: back-off %v, want %v", n, got, tc.want[i])
				}
			}
		})
	}
	// Random waits stay within [window/2, window).
	rnd := rand.New(rand.NewPCG(1, 2))
	b := HerokuBackoff(1, rnd.Float64)
	for n := 2; n < 10; n++ {
		window := HerokuCoolOffs[min(n-2, len(HerokuCoolOffs)-1)]
		for range 100 {
			if got := b(n); got < window/2 || got >= window {
				t.Fatalf("crash %d: back-off %v outside [%v, %v)", n, got, window/2, window)
			}
		}
	}
}

// benchState is 100 apps with 5 web and 5 worker dynos each on 10 hosts.
func benchState(withDynos bool) State {
	s := State{Apps: map[string]model.App{}, Releases: map[string]model.Release{}, Formations: map[string]model.Formation{},
		Assignments: map[string]AssignmentEntry{}, Statuses: map[string]model.DynoStatus{}}
	for h := range 10 {
		s.Hosts = append(s.Hosts, model.Host{ID: fmt.Sprintf("h%02d", h), MemoryMB: 64 << 10})
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

func TestCycling(t *testing.T) {
	due := func(id string) time.Time { return t0.Add(-DefaultCyclePeriod - CycleJitter(id, DefaultCycleJitter)) }
	tests := []struct {
		name      string
		state     *fixture
		want      []string
		nextCycle time.Time // zero: none
	}{
		{name: "worker cycled at once after 24h plus its jitter", state: newFixture(0, 1).dyno("k1", "worker", 1, "up", created(due("k1"))),
			want: []string{"create worker.1 v1 gen0 crash0 on h2", "cycle k1", "delete k1"}},
		{name: "worker not cycled a second early", state: newFixture(0, 1).dyno("k1", "worker", 1, "up", created(due("k1").Add(time.Second))),
			nextCycle: t0.Add(time.Second)},
		{name: "web surges: the old one keeps serving", state: newFixture(1, 0).dyno("w1", "web", 1, "up", created(due("w1"))),
			want: []string{"create web.1 v1 gen0 crash0 on h2", "cycle w1"}},
		{name: "web: old waits while the new one starts", state: newFixture(1, 0).dyno("w1", "web", 1, "up", created(due("w1").Add(-time.Minute))).
			dyno("w2", "web", 1, "starting", created(t0.Add(-time.Minute))),
			nextCycle: t0.Add(-time.Minute + DefaultCyclePeriod + CycleJitter("w2", DefaultCycleJitter))},
		{name: "web: old stops once the new one is up", state: newFixture(1, 0).dyno("w1", "web", 1, "up", created(due("w1").Add(-time.Minute))).
			dyno("w2", "web", 1, "up", created(t0.Add(-time.Minute))),
			want:      []string{"delete w1"},
			nextCycle: t0.Add(-time.Minute + DefaultCyclePeriod + CycleJitter("w2", DefaultCycleJitter))},
		{name: "a crashed dyno follows the crash policy instead", state: newFixture(0, 1).
			dyno("k1", "worker", 1, "crashed", created(due("k1")), crashes(1), restartAt(t0.Add(time.Minute)))},
		{name: "cycling off", state: func() *fixture {
			f := newFixture(0, 1).dyno("k1", "worker", 1, "up", created(t0.Add(-1000*time.Hour)))
			f.s.CyclePeriod = -1
			return f
		}()},
		{name: "short period, no jitter", state: func() *fixture {
			f := newFixture(0, 2).dyno("k1", "worker", 1, "up", created(t0.Add(-10*time.Second))).
				dyno("k2", "worker", 2, "up", created(t0.Add(-9*time.Second)))
			f.s.CyclePeriod, f.s.CycleJitter = 10*time.Second, -1
			return f
		}(), want: []string{"create worker.1 v1 gen0 crash0 on h2", "cycle k1", "delete k1"}, nextCycle: t0.Add(time.Second)},
		{name: "the next cycle of a fresh dyno", state: newFixture(1, 0).dyno("w1", "web", 1, "up", created(t0)),
			nextCycle: t0.Add(DefaultCyclePeriod + CycleJitter("w1", DefaultCycleJitter))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Reconcile(tt.state.s, t0)
			if got := summary(p); !slices.Equal(got, tt.want) {
				t.Errorf("plan:\n  got  %q\n  want %q", got, tt.want)
			}
			if !p.NextCycle.Equal(tt.nextCycle) {
				t.Errorf("NextCycle = %v, want %v", p.NextCycle, tt.nextCycle)
			}
		})
	}
}

func TestCycleJitter(t *testing.T) {
	lo, hi := DefaultCycleJitter, time.Duration(0)
	for range 2000 {
		id := uuid.NewString()
		j := CycleJitter(id, DefaultCycleJitter)
		if j < 0 || j >= DefaultCycleJitter {
			t.Fatalf("jitter of %s is %v, outside [0, %v)", id, j, DefaultCycleJitter)
		}
		if again := CycleJitter(id, DefaultCycleJitter); again != j {
			t.Fatalf("jitter of %s is %v then %v", id, j, again)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo > 5*time.Minute || hi < DefaultCycleJitter-5*time.Minute {
		t.Errorf("2000 jitters span only %v..%v of %v", lo, hi, DefaultCycleJitter)
	}
	for _, max := range []time.Duration{0, -1} {
		if j := CycleJitter("x", max); j != 0 {
			t.Errorf("CycleJitter(x, %v) = %v, want 0", max, j)
		}
	}
}
