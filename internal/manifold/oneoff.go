package manifold

import (
	"maps"
	"slices"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// DefaultOneOffRetention is how long an ended one-off's status (and exit
// status) stays queryable.
const DefaultOneOffRetention = 5 * time.Minute

// OneOffEntry is a one-off request with the KV revision it was read at.
type OneOffEntry struct {
	OneOff   model.OneOff
	Revision uint64
}

// Key is the request's store key.
func (e OneOffEntry) Key() string { return model.StatusKey(e.OneOff.AppID, e.OneOff.ID) }

// oneOffs reconciles the one-off dynos: a request without an assignment
// gets one (placed like any dyno, with the request's ID); an ended one is
// never restarted and, after the retention, its request goes; a stopped,
// expired or orphaned one goes at once. Assignments whose request is gone
// are deleted.
func (r *reconciler) oneOffs(assigned []AssignmentEntry) {
	retention := r.s.OneOffRetention
	if retention <= 0 {
		retention = DefaultOneOffRetention
	}
	byID := map[string][]AssignmentEntry{}
	for _, e := range assigned {
		if _, ok := r.s.OneOffs[e.Assignment.ID]; !ok {
			r.plan.Delete = append(r.plan.Delete, e) // its request is done
			continue
		}
		byID[e.Assignment.ID] = append(byID[e.Assignment.ID], e)
	}
	for _, id := range slices.Sorted(maps.Keys(r.s.OneOffs)) {
		req := r.s.OneOffs[id]
		o := req.OneOff
		app, appOK := r.s.Apps[o.AppID]
		switch {
		case !appOK, !o.StopRequested.IsZero():
			r.plan.DeleteOneOffs = append(r.plan.DeleteOneOffs, req)
			continue
		case !r.now.Before(o.ExpiresAt):
			r.plan.DeleteOneOffs = append(r.plan.DeleteOneOffs, req)
			r.plan.Expired = append(r.plan.Expired, o)
			continue
		}
		var placed, pending []AssignmentEntry
		for _, e := range byID[id] {
			if e.Assignment.Pending() {
				pending = append(pending, e)
			} else {
				placed = append(placed, e)
			}
		}
		if len(placed) > 0 {
			// Running or ended: never started again.
			r.plan.Delete = append(r.plan.Delete, pending...)
			if st, ok := r.s.Statuses[id]; ok && model.OneOffEnded(st) {
				forget := st.UpdatedAt.Add(retention)
				if !r.now.Before(forget) {
					r.plan.DeleteOneOffs = append(r.plan.DeleteOneOffs, req)
					continue
				}
				r.wakeAt(forget)
				continue
			}
			r.wakeAt(o.ExpiresAt)
			continue
		}
		rel, ok := r.s.Releases[o.AppID]
		if o.Pinned != nil && o.Pinned.Slug != nil { // a release phase: the release not yet live
			rel, ok = *o.Pinned, true
		} else if !ok || rel.Version != app.ReleaseVersion || rel.Slug == nil {
			r.pend("app %s: one-off %s waits for the app's release", app.Name, o.Name)
			continue
		}
		env := maps.Clone(rel.Config)
		if env == nil {
			env = map[string]string{}
		}
		maps.Copy(env, o.Env)
		want := model.Assignment{
			ID: o.ID, AppID: o.AppID, AppName: app.Name, Type: o.Type, Name: o.Name,
			Release: rel.Version, Slug: *rel.Slug, Command: o.Command, Env: env, Size: sizeName(o.Size),
			OneOff: true, ExpiresAt: o.ExpiresAt, Attach: o.Attach,
		}
		r.intents = append(r.intents, intent{a: want, pending: pending, keepID: true})
		r.wakeAt(o.ExpiresAt)
	}
}
