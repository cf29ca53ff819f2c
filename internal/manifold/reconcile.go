package manifold

import (
	"cmp"
	"fmt"
	"hash/fnv"
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
	// Lost are the hosts whose heartbeat lapsed, by ID: their dynos are
	// suspects, replaced elsewhere and deleted once the replacement is up.
	Lost map[string]bool
	// Draining are the hosts being drained, by ID: live ones take no new
	// dynos and theirs are moved (placement.go).
	Draining map[string]bool
	// Backoff is the crash policy; nil means DefaultBackoff(nil).
	Backoff Backoff
	// CyclePeriod is how long a dyno runs before it is cycled (replaced as
	// a restart replaces it), plus a jitter of up to CycleJitter derived
	// from its ID. Zero means Heroku's 24 h and 216 min; a negative period
	// turns cycling off, a negative jitter means none.
	CyclePeriod, CycleJitter time.Duration
	// OneOffs are the one-off dyno requests, by dyno ID (oneoff.go).
	OneOffs map[string]OneOffEntry
	// OneOffRetention is how long an ended one-off's status stays before
	// the dyno is forgotten; zero means DefaultOneOffRetention.
	OneOffRetention time.Duration
}

// Defaults of daily cycling, Heroku's (heroku.md §1.3).
const (
	DefaultCyclePeriod = 24 * time.Hour
	DefaultCycleJitter = 216 * time.Minute
)

// AssignmentEntry is an assignment with the KV revision it was read at; a
// write to it is conditional on that revision.
type AssignmentEntry struct {
	Assignment model.Assignment
	Revision   uint64
}

// Key is the store key of the assignment (under "pending." if it has no host).
func (e AssignmentEntry) Key() string { return e.Assignment.Key() }

// Plan is what Reconcile decided: writes to the Assignments bucket.
type Plan struct {
	// Create holds new assignments with new IDs: placed ones with a
	// HostID, pending ones without and with a PendingReason.
	Create []model.Assignment
	Update []AssignmentEntry // changed assignments (RestartAt, PendingReason), CAS on Revision
	Delete []AssignmentEntry // dynos to stop, pending ones no longer wanted, CAS on Revision
	// NextCheck is the earliest time a crash back-off ends (zero: none);
	// the loop reconciles again then even if nothing changed.
	NextCheck time.Time
	// NextCycle is the earliest time a running dyno is due for daily
	// cycling (zero: none); the loop reconciles again then too.
	NextCycle time.Time
	// Cycled are the dynos this plan cycles, for the "Cycling" log line.
	Cycled []model.Assignment
	// Pending says why some dynos are not running and will not be started
	// by this plan (no host with room, release not loaded yet).
	Pending []string
	// DeleteOneOffs are one-off requests that are done (ended and kept
	// long enough, stopped, expired, app deleted); their assignments go
	// in a later plan, once the requests are gone, so that a failed write
	// never starts a finished one-off again.
	DeleteOneOffs []OneOffEntry
	// Expired are the one-offs whose time to live lapsed, for the log.
	Expired []model.OneOff
	// DeleteStatuses are statuses of dynos on lost hosts that are gone:
	// the manifold deletes them because their agent cannot.
	DeleteStatuses []model.DynoStatus
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool {
	return len(p.Create)+len(p.Update)+len(p.Delete)+len(p.DeleteOneOffs)+len(p.DeleteStatuses) == 0
}

// intent is a dyno to create. Replaces are deleted in the same plan, but
// only if the new dyno finds a host, so that a non-web dyno keeps running
// (and a crashed one keeps its crash count) while nothing can replace it.
// Surge are old web dynos that keep serving until the new one is up; when
// no host has room for both, the new one takes their place at once.
// Pending are the slot's pending assignments, which the intent supersedes.
type intent struct {
	a        model.Assignment
	replaces []AssignmentEntry
	surge    []AssignmentEntry
	pending  []AssignmentEntry
	cycled   []model.Assignment
	keepID   bool // a one-off keeps its request's ID
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
// that bring them together: it starts missing dynos on live hosts with room
// for their size (or records them as pending), replaces outdated, crashed
// (after their back-off) and long-running (daily cycling) ones, and stops
// the rest. It does no I/O; the same State and now give the
// same Plan apart from the IDs of new assignments. Backoff is called in a
// deterministic order, so a seeded jitter source gives a repeatable plan.
func Reconcile(s State, now time.Time) Plan {
	r := &reconciler{s: s, now: now, backoff: s.Backoff}
	if r.backoff == nil {
		r.backoff = DefaultBackoff(nil)
	}
	byApp := map[string][]AssignmentEntry{}
	var oneOffs []AssignmentEntry
	for _, e := range s.Assignments {
		if e.Assignment.OneOff {
			oneOffs = append(oneOffs, e)
			continue
		}
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
	r.oneOffs(oneOffs)
	r.place()
	r.sweepLostStatuses()
	slices.SortFunc(r.plan.Create, func(a, b model.Assignment) int {
		return cmp.Or(cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Index, b.Index))
	})
	byKey := func(a, b AssignmentEntry) int { return cmp.Compare(a.Key(), b.Key()) }
	slices.SortFunc(r.plan.Update, byKey)
	slices.SortFunc(r.plan.Delete, byKey)
	slices.SortFunc(r.plan.DeleteOneOffs, func(a, b OneOffEntry) int { return cmp.Compare(a.Key(), b.Key()) })
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
	var cur, old, pending, suspects []AssignmentEntry
	var cycled []model.Assignment
	for _, e := range entries {
		switch {
		case e.Assignment.Pending(): // runs nowhere: never capacity
			pending = append(pending, e)
		case r.s.Lost[e.Assignment.HostID]: // serves until a replacement is up
			suspects = append(suspects, e)
		case r.s.Draining[e.Assignment.HostID]: // moved like an outdated dyno
			old = append(old, e)
		case !isCurrent(e.Assignment, want):
			old = append(old, e)
		case r.dueForCycle(e.Assignment):
			old = append(old, e) // replaced as a restart replaces it
			cycled = append(cycled, e.Assignment)
		default:
			cur = append(cur, e)
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
	r.retireSuspects(keep, suspects)

	// Outdated dynos. A web dyno keeps serving until its replacement is up,
	// so a deploy, restart or cycle never leaves the slot without traffic.
	keepUp := keep != nil && r.state(keep.Assignment) == model.StateUp
	var replaces, surge []AssignmentEntry
	for _, o := range old {
		switch {
		case r.state(o.Assignment) == model.StateCrashed, keepUp:
			r.plan.Delete = append(r.plan.Delete, o)
		case want.Type == "web":
			surge = append(surge, o) // keep it running until the replacement is up
		case keep != nil: // the replacement already exists
			r.plan.Delete = append(r.plan.Delete, o)
		default:
			replaces = append(replaces, o)
		}
	}

	switch {
	case keep == nil: // a fresh dyno: crash count 0
		r.intents = append(r.intents, intent{a: want, replaces: replaces, surge: surge, pending: pending, cycled: cycled})
	case r.state(keep.Assignment) == model.StateCrashed:
		r.crashed(want, *keep, pending)
	default:
		r.plan.Delete = append(r.plan.Delete, pending...)
		if at, ok := r.cycleAt(keep.Assignment); ok {
			r.wakeCycle(at)
		}
	}
}

// cycleAt is when a running dyno is due for daily cycling: its creation
// plus the period plus a jitter of up to CycleJitter that its ID fixes, so
// that every reconcile agrees and an app's dynos do not cycle together.
func (r *reconciler) cycleAt(a model.Assignment) (time.Time, bool) {
	period, jitter := r.s.CyclePeriod, r.s.CycleJitter
	if period == 0 {
		period = DefaultCyclePeriod
	}
	if jitter == 0 {
		jitter = DefaultCycleJitter
	}
	if period < 0 || a.CreatedAt.IsZero() || r.state(a) == model.StateCrashed {
		return time.Time{}, false // crashed dynos follow the crash policy
	}
	return a.CreatedAt.Add(period + CycleJitter(a.ID, jitter)), true
}

// dueForCycle reports whether a running dyno has run its period out.
func (r *reconciler) dueForCycle(a model.Assignment) bool {
	at, ok := r.cycleAt(a)
	return ok && !r.now.Before(at)
}

// CycleJitter is the part of max (exclusive) a dyno's ID adds to its cycle
// period: a hash, so the same dyno always gets the same jitter.
func CycleJitter(id string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return time.Duration(h.Sum64() % uint64(max))
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
// A pending replacement is kept only while the back-off is over.
func (r *reconciler) crashed(want model.Assignment, e AssignmentEntry, pending []AssignmentEntry) {
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
			r.plan.Delete = append(r.plan.Delete, pending...)
			r.wakeAt(a.RestartAt)
			return
		}
		due = r.now
	}
	if r.now.Before(due) {
		r.plan.Delete = append(r.plan.Delete, pending...)
		r.wakeAt(due)
		return
	}
	want.CrashCount = n
	r.intents = append(r.intents, intent{a: want, replaces: []AssignmentEntry{e}, pending: pending})
}

func (r *reconciler) wakeAt(t time.Time) {
	if r.plan.NextCheck.IsZero() || t.Before(r.plan.NextCheck) {
		r.plan.NextCheck = t
	}
}

func (r *reconciler) wakeCycle(t time.Time) {
	if r.plan.NextCycle.IsZero() || t.Before(r.plan.NextCycle) {
		r.plan.NextCycle = t
	}
}

func (r *reconciler) pend(format string, args ...any) {
	r.plan.Pending = append(r.plan.Pending, fmt.Sprintf(format, args...))
}

// memoryMB is the memory a dyno of the named size reserves; an unknown
// size (the API validates sizes) reserves the default size's.
func memoryMB(size string) int {
	sz, err := model.LookupSize(size)
	if err != nil {
		sz, _ = model.LookupSize(model.DefaultSize)
	}
	return sz.MemoryMB
}

// place gives every intent a host with room for its size and an ID and
// turns it into a Create; an intent no host has room for becomes (or
// stays) a pending assignment with the reason.
func (r *reconciler) place() {
	if len(r.intents) == 0 {
		return
	}
	room := newHostRoom(r.s.Hosts, r.s.Draining)
	deleted := make(map[string]bool, len(r.plan.Delete))
	for _, e := range r.plan.Delete {
		deleted[e.Assignment.ID] = true
	}
	for _, e := range r.s.Assignments {
		a := e.Assignment
		if deleted[a.ID] || a.Pending() {
			continue
		}
		room.reserve(a.HostID, a, 1)
		if r.state(a) == model.StateCrashed || (a.OneOff && model.OneOffEnded(r.s.Statuses[a.ID])) { // runs nothing: counts for spreading, not for memory
			room.free[a.HostID] += memoryMB(a.Size)
		}
	}
	// freed is the memory stopping entries gives back, by host.
	freed := func(entries ...[]AssignmentEntry) map[string]int {
		out := map[string]int{}
		for _, list := range entries {
			for _, e := range list {
				if r.state(e.Assignment) != model.StateCrashed {
					out[e.Assignment.HostID] += memoryMB(e.Assignment.Size)
				}
			}
		}
		return out
	}
	waiting := map[string][]string{}
	for _, in := range r.intents {
		need := memoryMB(in.a.Size)
		stop := in.replaces
		host, ok := room.pick(in.a, need, freed(in.replaces))
		if !ok && len(in.surge) > 0 { // no room to surge: replace at once
			stop = append(slices.Clone(in.replaces), in.surge...)
			host, ok = room.pick(in.a, need, freed(stop))
		}
		if !ok {
			reason := room.why(in.a.Size)
			waiting[in.a.AppName] = append(waiting[in.a.AppName], reason)
			r.pendingDyno(in, reason)
			continue
		}
		a := in.a
		if !in.keepID {
			a.ID = uuid.NewString()
		}
		a.HostID = host
		a.Env = maps.Clone(a.Env)
		a.CreatedAt = r.now
		room.reserve(host, a, 1)
		for _, e := range stop {
			room.reserve(e.Assignment.HostID, e.Assignment, -1)
			if r.state(e.Assignment) == model.StateCrashed { // it reserved no memory
				room.free[e.Assignment.HostID] -= memoryMB(e.Assignment.Size)
			}
		}
		r.plan.Create = append(r.plan.Create, a)
		r.plan.Delete = append(r.plan.Delete, stop...)
		r.plan.Delete = append(r.plan.Delete, in.pending...)
		r.plan.Cycled = append(r.plan.Cycled, in.cycled...)
	}
	for _, name := range slices.Sorted(maps.Keys(waiting)) {
		r.pend("app %s: %d dynos pending: %s", name, len(waiting[name]), waiting[name][0])
	}
}

// pendingDyno records in the store that in waits for room: it creates the
// slot's pending assignment, or updates the one there if it changed.
func (r *reconciler) pendingDyno(in intent, reason string) {
	p := in.a
	p.HostID = ""
	p.PendingReason = reason
	p.Env = maps.Clone(p.Env)
	if len(in.pending) == 0 {
		if !in.keepID {
			p.ID = uuid.NewString()
		}
		p.CreatedAt = r.now
		r.plan.Create = append(r.plan.Create, p)
		return
	}
	e := in.pending[0]
	r.plan.Delete = append(r.plan.Delete, in.pending[1:]...)
	cur := e.Assignment
	if isCurrent(cur, p) && cur.CrashCount == p.CrashCount && cur.PendingReason == reason {
		return
	}
	p.ID, p.CreatedAt = cur.ID, cur.CreatedAt
	r.plan.Update = append(r.plan.Update, AssignmentEntry{Assignment: p, Revision: e.Revision})
}
