package manifold

import (
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// oneOff adds the request of a one-off run.N with the given dyno ID.
func (f *fixture) oneOff(id string, mods ...func(*model.OneOff)) *fixture {
	o := model.OneOff{ID: id, AppID: "a1", AppName: "hello", Type: "run", Name: "run.1234", Command: "bash",
		Size: model.DefaultSize, Env: map[string]string{"TERM": "xterm"}, ExpiresAt: t0.Add(time.Hour), CreatedAt: t0.Add(-time.Minute)}
	for _, m := range mods {
		m(&o)
	}
	if f.s.OneOffs == nil {
		f.s.OneOffs = map[string]OneOffEntry{}
	}
	f.rev++
	f.s.OneOffs[id] = OneOffEntry{OneOff: o, Revision: f.rev}
	return f
}

// placedOneOff adds the assignment of one-off id on h1 with a status in
// state ("" for none), updated at updated, with exit status code (if >= 0).
func (f *fixture) placedOneOff(id, state string, updated time.Time, code int) *fixture {
	rel := f.s.Releases["a1"]
	a := model.Assignment{ID: id, HostID: "h1", AppID: "a1", AppName: "hello", Type: "run", Name: "run.1234",
		Release: rel.Version, Slug: *rel.Slug, Command: "bash", Size: model.DefaultSize, OneOff: true,
		ExpiresAt: t0.Add(time.Hour), CreatedAt: t0.Add(-time.Minute)}
	f.rev++
	f.s.Assignments[a.Key()] = AssignmentEntry{Assignment: a, Revision: f.rev}
	if state != "" {
		st := model.DynoStatus{ID: id, State: state, UpdatedAt: updated}
		if code >= 0 {
			st.ExitStatus = &code
		}
		f.s.Statuses[id] = st
	}
	return f
}

func TestOneOffs(t *testing.T) {
	tests := []struct {
		name   string
		f      *fixture
		create []string // "host:name" of created assignments
		del    []string // keys of deleted assignments
		done   []string // IDs of requests deleted
		wake   time.Time
	}{
		{name: "a request is placed with its own ID, env merged",
			f: newFixture(0, 0).oneOff("o1"), create: []string{"h1:run.1234"}, wake: t0.Add(time.Hour)},
		{name: "no room: pending, with the same ID",
			f: newFixture(0, 0).hosts(256).oneOff("o1"), create: []string{":run.1234"}, wake: t0.Add(time.Hour)},
		{name: "running: left alone until its TTL",
			f: newFixture(0, 0).oneOff("o1").placedOneOff("o1", model.StateUp, t0, -1), wake: t0.Add(time.Hour)},
		{name: "crashed: never restarted, kept for the retention",
			f:    newFixture(0, 0).oneOff("o1").placedOneOff("o1", model.StateCrashed, t0.Add(-time.Minute), 3),
			wake: t0.Add(-time.Minute + DefaultOneOffRetention)},
		{name: "exited 0 (down): never restarted either",
			f:    newFixture(0, 0).oneOff("o1").placedOneOff("o1", model.StateDown, t0.Add(-time.Minute), 0),
			wake: t0.Add(-time.Minute + DefaultOneOffRetention)},
		{name: "ended past the retention: the request goes first",
			f:    newFixture(0, 0).oneOff("o1").placedOneOff("o1", model.StateCrashed, t0.Add(-10*time.Minute), 1),
			done: []string{"o1"}},
		{name: "request gone: the assignment goes",
			f: newFixture(0, 0).placedOneOff("o1", model.StateCrashed, t0.Add(-10*time.Minute), 1), del: []string{"h1.o1"}},
		{name: "time to live lapsed",
			f:    newFixture(0, 0).oneOff("o1", func(o *model.OneOff) { o.ExpiresAt = t0 }).placedOneOff("o1", model.StateUp, t0, -1),
			done: []string{"o1"}},
		{name: "stop requested",
			f:    newFixture(0, 0).oneOff("o1", func(o *model.OneOff) { o.StopRequested = t0 }).placedOneOff("o1", model.StateUp, t0, -1),
			done: []string{"o1"}},
		{name: "a stopped request is never placed",
			f: newFixture(0, 0).oneOff("o1", func(o *model.OneOff) { o.StopRequested = t0 }), done: []string{"o1"}},
		{name: "one-offs do not disturb the formation",
			f:    newFixture(1, 0).dyno("w1", "web", 1, model.StateUp).oneOff("o1").placedOneOff("o1", model.StateUp, t0, -1),
			wake: t0.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.s.CyclePeriod = -1
			p := Reconcile(tt.f.s, t0)
			var created []string
			for _, a := range p.Create {
				created = append(created, a.HostID+":"+a.Name)
				if a.ID != "o1" || !a.OneOff || a.Env["K"] != "V" || a.Env["TERM"] != "xterm" {
					t.Errorf("created %+v: want ID o1, OneOff, config and request env", a)
				}
			}
			var deleted, done []string
			for _, e := range p.Delete {
				deleted = append(deleted, e.Key())
			}
			for _, e := range p.DeleteOneOffs {
				done = append(done, e.OneOff.ID)
			}
			if !sameStrings(created, tt.create) || !sameStrings(deleted, tt.del) || !sameStrings(done, tt.done) {
				t.Fatalf("create %v delete %v done %v; want %v %v %v", created, deleted, done, tt.create, tt.del, tt.done)
			}
			if !p.NextCheck.Equal(tt.wake) {
				t.Errorf("wake at %v, want %v", p.NextCheck, tt.wake)
			}
		})
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An ended one-off reserves no memory: a new one fits where it ran.
func TestEndedOneOffFreesMemory(t *testing.T) {
	f := newFixture(0, 0).hosts(512).placedOneOff("old", model.StateCrashed, t0, 1).oneOff("old").oneOff("o1")
	p := Reconcile(f.s, t0)
	if len(p.Create) != 1 || p.Create[0].HostID != "h1" {
		t.Fatalf("plan %+v: want o1 placed on h1", p.Create)
	}
}
