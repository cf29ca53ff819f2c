package manifold

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/dyno-platform/dyno/internal/model"
)

// StableUpTime is how long a dyno must have been up before it crashes for
// the crash to count as a first one again: it "started correctly".
const StableUpTime = 10 * time.Minute

// State is a snapshot of everything the manifold schedules from. Reconcile
// only reads it.
type State struct {
	Apps        map[string]model.App        // by app ID
	Releases    map[string]model.Release    // current release of each app, by app ID (absent if none)
	Formations  map[string]model.Formation  // by app ID
	Assignments map[string]AssignmentEntry  // by assignment key, with its KV revision
	Statuses    map[string]model.DynoStatus // by dyno ID
	Hosts       []model.Host                // live hosts
	// Backoff is the crash policy; nil means DefaultBackoff(nil).
	Backoff Backoff
}

// AssignmentEntry is an assignment with the KV revision it was read at; a
// write to it is conditional on that revision.
type AssignmentEntry struct {
	Assignment model.Assignment
	Revision   uint64
}

// Key is the store key of the assignment.
func (e AssignmentEntry) Key() string {
	return model.AssignmentKey(e.Assignment.HostID, e.Assignment.ID)
}

// Plan is what Reconcile decided: writes to the Assignments bucket.
type Plan struct {
	Create []model.Assignment // new assignments, with new IDs and a HostID
	Update []AssignmentEntry  // changed assignments (RestartAt set), CAS on Revision
	Delete []AssignmentEntry  // dynos to stop, CAS on Revision
	// NextCheck is the earliest time a crash back-off ends (zero: none);
	// the loop reconciles again then even if nothing changed.
	NextCheck time.Time
	// Pending says why some dynos are not running and will not be started
	// by this plan (no live host, release not loaded yet).
	Pending []string
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Create)+len(p.Update)+len(p.Delete) == 0 }

// intent is a dyno to create; replaces are deleted in the same plan, but
// only if the new dyno finds a host, so that a non-web dyno keeps running
// (and a crashed one keeps its crash count) while nothing can replace it.
type intent struct {
	a        model.Assignment
	replaces []AssignmentEntry
}

type reconciler struct {
	s       State
	now     time.Time
	backoff Backoff
	plan    Plan
	intents []intent
}

// Reconcile compares the desired state of every app (current release and
// formation) with the assignments and dyno statuses, and returns the writes
// that bring them together. It does no I/O; the same State and now give the
// same Plan apart from the IDs of new assignments. Backoff is called in a
// deterministic order, so a seeded jitter source gives a repeatable plan.
func Reconcile(s State, now time.Time) Plan {
	r := &reconciler{s: s, now: now, backoff: s.Backoff}
	if r.backoff == nil {
		r.backoff = DefaultBackoff(nil)
	}
	byApp := map[string][]AssignmentEntry{}
	for _, e := range s.Assignments {
		byApp[e.Assignment.AppID] = append(byApp[e.Assignment.AppID], e)
	}
	appIDs := slices.Sorted(maps.Keys(s.Apps))
	for id := range byApp {
		if _, ok := s.Apps[id]; !ok {
			appIDs = append(appIDs, id)
		}
	}
	slices.Sort(appIDs)
	for _, id := range appIDs {
		r.app(id, byApp[id])
	}
	r.place()
	slices.SortFunc(r.plan.Create, func(a, b model.Assignment) int {
		return cmp.Or(cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Index, b.Index))
	})
	byKey := func(a, b AssignmentEntry) int { return cmp.Compare(a.Key(), b.Key()) }
	slices.SortFunc(r.plan.Update, byKey)
	slices.SortFunc(r.plan.Delete, byKey)
	return r.plan
}

// procSpec is what one process type of an app should run.
type procSpec struct {
	quantity int
	size     string
	command  string
}

// app reconciles one app's dynos.
func (r *reconciler) app(appID string, entries []AssignmentEntry) {
	app, ok := r.s.Apps[appID]
	if !ok { // app deleted: stop everything it ran
		r.plan.Delete = append(r.plan.Delete, entries...)
		return
	}
	desired := map[string]procSpec{}
	var rel model.Release
	if app.ReleaseVersion > 0 {
		rel, ok = r.s.Releases[appID]
		if !ok || rel.Version != app.ReleaseVersion {
			// The app may have been written before its release reached us:
			// leave its dynos alone rather than stop them on a race.
			r.pend("app %s: release v%d is not loaded yet; its dynos are left as they are", app.Name, app.ReleaseVersion)
			return
		}
		if rel.Slug != nil {
			f := r.s.Formations[appID]
			for typ, p := range f.Processes {
				cmd, inSlug := rel.Slug.ProcessTypes[typ]
				if p.Quantity > 0 && inSlug {
					desired[typ] = procSpec{quantity: p.Quantity, size: sizeName(p.Size), command: cmd}
				}
			}
		}
	}
	slots := map[string]map[int][]AssignmentEntry{}
	for _, e := range entries {
		a := e.Assignment
		spec, ok := desired[a.Type]
		if !ok || a.Index < 1 || a.Index > spec.quantity { // scaled down or type removed
			r.plan.Delete = append(r.plan.Delete, e)
			continue
		}
		if slots[a.Type] == nil {
			slots[a.Type] = map[int][]AssignmentEntry{}
		}
		slots[a.Type][a.Index] = append(slots[a.Type][a.Index], e)
	}
	f := r.s.Formations[appID]
	for _, typ := range slices.Sorted(maps.Keys(desired)) {
		spec := desired[typ]
		for i := 1; i <= spec.quantity; i++ {
			name := model.DynoName(typ, i)
			want := model.Assignment{
				AppID: app.ID, AppName: app.Name, Type: typ, Name: name, Index: i,
				Release: rel.Version, Slug: *rel.Slug, Command: spec.command,
				Env: rel.Config, Size: spec.size,
				Generation: f.Restarts.Generation(typ, name),
			}
			r.slot(want, slots[typ][i])
		}
	}
}

// sizeName canonicalises a formation's size ("standard-2x" → "standard-2X").
func sizeName(s string) string {
	if s == "" {
		return model.DefaultSize
	}
	if sz, err := model.LookupSize(s); err == nil {
		return sz.Name
	}
	return s // the API validates sizes; pass an unknown one on for the agent to report
}

// isCurrent reports whether a runs what want describes.
func isCurrent(a, want model.Assignment) bool {
	return a.Release == want.Release && a.Generation == want.Generation &&
		a.Command == want.Command && a.Size == want.Size && a.Slug.ID == want.Slug.ID
}

func (r *reconciler) state(a model.Assignment) string { return r.s.Statuses[a.ID].State }

// slot reconciles one dyno slot (web.2) given the assignments that hold it.
func (r *reconciler) slot(want model.Assignment, entries []AssignmentEntry) {
	var cur, old []AssignmentEntry
	for _, e := range entries {
		if isCurrent(e.Assignment, want) {
			cur = append(cur, e)
		} else {
			old = append(old, e)
		}
	}
	// Normally at most one current assignment holds a slot; if a retried
	// plan left two, keep the healthiest and newest.
	slices.SortFunc(cur, func(a, b AssignmentEntry) int {
		return cmp.Or(
			-cmp.Compare(rank(r.state(a.Assignment)), rank(r.state(b.Assignment))),
			b.Assignment.CreatedAt.Compare(a.Assignment.CreatedAt),
			cmp.Compare(a.Assignment.ID, b.Assignment.ID))
	})
	var keep *AssignmentEntry
	if len(cur) > 0 {
		keep = &cur[0]
		r.plan.Delete = append(r.plan.Delete, cur[1:]...)
	}

	// Outdated dynos. A web dyno keeps serving until its replacement is up,
	// so a deploy or restart never leaves the slot without traffic.
	keepUp := keep != nil && r.state(keep.Assignment) == model.StateUp
	var replaces []AssignmentEntry
	for _, o := range old {
		switch {
		case r.state(o.Assignment) == model.StateCrashed, keepUp:
			r.plan.Delete = append(r.plan.Delete, o)
		case want.Type == "web":
			// keep it running until the replacement is up
		case keep != nil: // the replacement already exists
			r.plan.Delete = append(r.plan.Delete, o)
		default:
			replaces = append(replaces, o)
		}
	}

	switch {
	case keep == nil: // a fresh dyno: crash count 0
		r.intents = append(r.intents, intent{a: want, replaces: replaces})
	case r.state(keep.Assignment) == model.StateCrashed:
		r.crashed(want, *keep)
	}
}

// rank orders states by how useful a dyno in them is.
func rank(state string) int {
	switch state {
	case model.StateUp:
		return 3
	case model.StateStarting:
		return 2
	case "":
		return 1 // not reported yet: probably starting
	}
	return 0
}

// crashed applies the crash policy to the current dyno of a slot.
func (r *reconciler) crashed(want model.Assignment, e AssignmentEntry) {
	a := e.Assignment
	n := a.CrashCount + 1
	if st := r.s.Statuses[a.ID]; !st.UpAt.IsZero() {
		end := st.UpdatedAt // when it crashed
		if end.IsZero() || end.Before(st.UpAt) {
			end = r.now
		}
		if end.Sub(st.UpAt) >= StableUpTime {
			n = 1 // it had started correctly: this is a first crash again
		}
	}
	due := a.RestartAt
	if due.IsZero() {
		if d := r.backoff(n); d > 0 {
			a.RestartAt = r.now.Add(d)
			r.plan.Update = append(r.plan.Update, AssignmentEntry{Assignment: a, Revision: e.Revision})
			r.wakeAt(a.RestartAt)
			return
		}
		due = r.now
	}
	if r.now.Before(due) {
		r.wakeAt(due)
		return
	}
	want.CrashCount = n
	r.intents = append(r.intents, intent{a: want, replaces: []AssignmentEntry{e}})
}

func (r *reconciler) wakeAt(t time.Time) {
	if r.plan.NextCheck.IsZero() || t.Before(r.plan.NextCheck) {
		r.plan.NextCheck = t
	}
}

func (r *reconciler) pend(format string, args ...any) {
	r.plan.Pending = append(r.plan.Pending, fmt.Sprintf(format, args...))
}

// place gives every intent a host and an ID and turns it into a Create.
func (r *reconciler) place() {
	if len(r.intents) == 0 {
		return
	}
	load := make(map[string]int, len(r.s.Hosts))
	for _, h := range r.s.Hosts {
		load[h.ID] = 0
	}
	deleted := make(map[string]bool, len(r.plan.Delete))
	for _, e := range r.plan.Delete {
		deleted[e.Assignment.ID] = true
	}
	for _, e := range r.s.Assignments {
		if _, live := load[e.Assignment.HostID]; live && !deleted[e.Assignment.ID] {
			load[e.Assignment.HostID]++
		}
	}
	waiting := map[string]int{}
	for _, in := range r.intents {
		host, ok := pickHost(r.s.Hosts, load, in.a)
		if !ok {
			waiting[in.a.AppName]++
			continue
		}
		load[host]++
		a := in.a
		a.ID = uuid.NewString()
		a.HostID = host
		a.Env = maps.Clone(a.Env)
		a.CreatedAt = r.now
		r.plan.Create = append(r.plan.Create, a)
		r.plan.Delete = append(r.plan.Delete, in.replaces...)
	}
	for _, name := range slices.Sorted(maps.Keys(waiting)) {
		r.pend("app %s: %d dynos wait for a live host: start a host agent (dyno agent)", name, waiting[name])
	}
}

// pickHost chooses the host for a new dyno: the live host running the
// fewest dynos, ties broken by ID. Memory reservation and spreading a
// type's dynos across hosts belong here.
func pickHost(hosts []model.Host, load map[string]int, _ model.Assignment) (string, bool) {
	best, found := "", false
	for _, h := range hosts {
		if !found || load[h.ID] < load[best] || (load[h.ID] == load[best] && h.ID < best) {
			best, found = h.ID, true
		}
	}
	return best, found
}
