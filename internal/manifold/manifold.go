// Package manifold is Dyno's scheduler: it turns each app's desired state
// (current release and formation) into assignments, the records that tell a
// host agent which dynos to run, and keeps them true as dynos crash, apps
// are released, scaled and restarted, and hosts come and go. It is the only
// writer of the Assignments bucket.
//
// The decision is the pure function Reconcile over a State snapshot; the
// Manifold loop keeps that snapshot from store watches and applies each
// Plan with writes conditional on KV revisions, so a stale plan fails
// rather than overwriting newer state.
//
// Memory is reserved: a dyno goes only to a live host with its size's
// memory free; when none has room it is written, unplaced, under
// "pending.<id>" with the reason, and placed once room appears. Crashed
// dynos wait out Heroku's back-off (HerokuBackoff); running ones are
// cycled after 24 h plus a jitter fixed by their ID.
package manifold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Config configures a Manifold. Zero fields take the defaults given.
type Config struct {
	// Logger receives plans and failures; default slog.Default().
	Logger *slog.Logger
	// Now is the clock decisions are made with; default time.Now. The loop
	// still sleeps in real time.
	Now func() time.Time
	// Backoff is the crash policy; default HerokuBackoff(BackoffScale,
	// rand.Float64).
	Backoff Backoff
	// BackoffScale scales Heroku's cool-offs when Backoff is nil: 1 (the
	// default) is Heroku's, 0.001 turns 20 minutes into 1.2 s.
	BackoffScale float64
	// CyclePeriod is how long a dyno runs before daily cycling replaces
	// it, plus up to CycleJitter; defaults 24 h and 216 min (Heroku's). A
	// negative period turns cycling off; a negative jitter means none.
	CyclePeriod, CycleJitter time.Duration
	// LogSink, if set, receives the platform's log lines about dynos
	// ("heroku[web.1]: Cycling"); the server passes logplex.
	LogSink LogSink
	// HostTTL is how old a host's heartbeat may be for it to count as
	// live; older, the host is lost and its dynos are replaced elsewhere
	// (placement.go). Default model.DefaultHostTTL (5 s, agents heartbeat
	// every second).
	HostTTL time.Duration
	// Workers bounds the store writes a plan makes at once; default 16.
	Workers int
	// RetryDelay is how long the loop waits before trying again after a
	// failed write; default 1 s.
	RetryDelay time.Duration
	// OneOffRetention is how long an ended one-off's status stays; 5 min.
	OneOffRetention time.Duration
	// Metrics, if set, counts plans and decisions (metrics.go).
	Metrics *Metrics
}

// LogSink publishes a line to an app's log stream.
type LogSink interface {
	Publish(appID string, line model.LogLine)
}

// Manifold is the scheduling loop. Run it on exactly one node (the leader).
type Manifold struct {
	cfg    Config
	st     *store.Store
	log    *slog.Logger
	synced chan struct{}
	once   sync.Once
}

// New makes a Manifold that schedules with st.
func New(cfg Config, st *store.Store) *Manifold {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backoff == nil {
		cfg.Backoff = HerokuBackoff(cfg.BackoffScale, rand.Float64)
	}
	if cfg.CyclePeriod == 0 {
		cfg.CyclePeriod = DefaultCyclePeriod
	}
	if cfg.CycleJitter == 0 {
		cfg.CycleJitter = DefaultCycleJitter
	}
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = model.DefaultHostTTL
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	return &Manifold{cfg: cfg, st: st, log: cfg.Logger.With("role", "manifold"), synced: make(chan struct{})}
}

// Synced is closed once the loop has loaded every bucket and applied its
// first plan.
func (m *Manifold) Synced() <-chan struct{} { return m.synced }

// view is the loop's in-memory copy of the buckets it watches.
type view struct {
	ready      int // watches that delivered their initial values
	apps       map[string]model.App
	releases   map[string]map[int]model.Release // app ID → version → release
	formations map[string]model.Formation
	assigns    map[string]AssignmentEntry
	// tombs are assignments this loop deleted whose delete the watch has
	// not echoed yet: a queued older put must not bring them back.
	tombs     map[string]uint64
	statuses  map[string]model.DynoStatus // by dyno ID
	statusIDs map[string]string           // status key → dyno ID
	hosts     map[string]model.Host
	oneoffs   map[string]OneOffEntry // by dyno ID
	// oneoffTombs are requests this loop deleted (by store key), like tombs.
	oneoffTombs map[string]uint64
	settings    map[string]model.HostSettings // control-plane host records (drains), by host ID
	since       time.Time                     // when the loop started: hosts get one TTL from it (hosts.go)
	// dirty says an event since the last reconcile may change the plan;
	// quiet is set by an event that cannot (a live host's heartbeat).
	dirty, quiet bool
	ttl          time.Duration
	now          func() time.Time
}

func newView() *view {
	return &view{
		apps: map[string]model.App{}, releases: map[string]map[int]model.Release{},
		formations: map[string]model.Formation{}, assigns: map[string]AssignmentEntry{},
		tombs: map[string]uint64{}, statuses: map[string]model.DynoStatus{},
		statusIDs: map[string]string{}, hosts: map[string]model.Host{},
		oneoffs: map[string]OneOffEntry{}, oneoffTombs: map[string]uint64{},
		settings: map[string]model.HostSettings{},
	}
}

// update applies one watch event to the view; nil means a watch closed.
type update func(v *view)

// forward turns the events of one watch into updates on out until the
// watch closes or ctx ends.
func forward[T any](ctx context.Context, ch <-chan store.Event[T], out chan<- update, apply func(*view, store.Event[T])) {
	for ev := range ch {
		select {
		case out <- func(v *view) { apply(v, ev) }:
		case <-ctx.Done():
			return
		}
	}
	select {
	case out <- nil:
	case <-ctx.Done():
	}
}

// buckets is how many watches must deliver their initial values before the
// loop trusts its view.
const buckets = 8

// Run watches the buckets and reconciles after every burst of changes and
// whenever a back-off ends, a dyno is due for cycling or a host's heartbeat
// expires, until ctx ends.
func (m *Manifold) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stops the watches and the forwarders, before wg.Wait
	events := make(chan update, 256)
	if err := m.watch(ctx, &wg, events); err != nil {
		return fmt.Errorf("manifold: %w: is NATS reachable?", err)
	}
	m.cfg.Metrics.running(true)
	defer m.cfg.Metrics.running(false)
	v := newView()
	v.since, v.ttl, v.now = m.cfg.Now(), m.cfg.HostTTL, m.cfg.Now
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	closed := errors.New("manifold: a store watch closed: the NATS connection is gone; restart the manifold")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			v.dirty = true
		case u := <-events:
			if u == nil {
				return closed
			}
			fold(v, u)
		}
		// Drain whatever else is queued so a burst costs one reconcile.
	drain:
		for {
			select {
			case u := <-events:
				if u == nil {
					return closed
				}
				fold(v, u)
			default:
				break drain
			}
		}
		if v.ready < buckets || !v.dirty {
			continue // a partial view would stop the dynos of apps not loaded yet
		}
		v.dirty = false
		wake := m.reconcile(ctx, v)
		if ctx.Err() != nil {
			return nil
		}
		m.once.Do(func() { close(m.synced) })
		timer.Stop()
		if !wake.IsZero() {
			timer.Reset(max(wake.Sub(m.cfg.Now()), time.Millisecond))
		}
	}
}

// watch starts the six watches, each forwarded into events by a goroutine
// that wg tracks.
func (m *Manifold) watch(ctx context.Context, wg *sync.WaitGroup, events chan<- update) error {
	apps, err := m.st.Apps.Watch(ctx, ">")
	if err != nil {
		return err
	}
	releases, err := m.st.Releases.Watch(ctx, ">")
	if err != nil {
		return err
	}
	formations, err := m.st.Formations.Watch(ctx, ">")
	if err != nil {
		return err
	}
	assigns, err := m.st.Assignments.Watch(ctx, ">")
	if err != nil {
		return err
	}
	statuses, err := m.st.Statuses.Watch(ctx, ">")
	if err != nil {
		return err
	}
	hosts, err := m.st.Hosts.Watch(ctx, ">")
	if err != nil {
		return err
	}
	oneoffs, err := m.st.OneOffs.Watch(ctx, ">")
	if err != nil {
		return err
	}
	settings, err := m.st.HostSettings.Watch(ctx, ">")
	if err != nil {
		return err
	}
	wg.Go(func() { forward(ctx, settings, events, onHostSetting) })
	wg.Go(func() { forward(ctx, oneoffs, events, onOneOff) })
	wg.Go(func() { forward(ctx, apps, events, onApp) })
	wg.Go(func() { forward(ctx, releases, events, onRelease) })
	wg.Go(func() {
		forward(ctx, formations, events, func(v *view, ev store.Event[model.Formation]) { onSimple(v, v.formations, ev) })
	})
	wg.Go(func() { forward(ctx, assigns, events, onAssignment) })
	wg.Go(func() { forward(ctx, statuses, events, onStatus) })
	wg.Go(func() {
		forward(ctx, hosts, events, onHostRecord)
	})
	return nil
}

// onSimple keeps a bucket keyed by ID in a map.
func onSimple[T any](v *view, dst map[string]T, ev store.Event[T]) {
	switch {
	case ev.Ready:
		v.ready++
	case ev.Deleted:
		delete(dst, ev.Key)
	default:
		dst[ev.Key] = ev.Value
	}
}

func onApp(v *view, ev store.Event[model.App]) {
	onSimple(v, v.apps, ev)
	if ev.Ready {
		return
	}
	if ev.Deleted {
		delete(v.releases, ev.Key)
		return
	}
	pruneReleases(v.releases[ev.Key], ev.Value.ReleaseVersion)
}

// pruneReleases forgets releases older than the current one: only the
// current release (and newer ones about to become current) matter.
func pruneReleases(rels map[int]model.Release, current int) {
	for ver := range rels {
		if ver < current {
			delete(rels, ver)
		}
	}
}

func onRelease(v *view, ev store.Event[model.Release]) {
	if ev.Ready {
		v.ready++
		return
	}
	appID, verStr, _ := strings.Cut(ev.Key, ".")
	if ev.Deleted {
		var ver int
		if _, err := fmt.Sscanf(verStr, "%d", &ver); err == nil {
			delete(v.releases[appID], ver)
		}
		return
	}
	if app, ok := v.apps[appID]; ok && ev.Value.Version < app.ReleaseVersion {
		return
	}
	if v.releases[appID] == nil {
		v.releases[appID] = map[int]model.Release{}
	}
	v.releases[appID][ev.Value.Version] = ev.Value
}

func onAssignment(v *view, ev store.Event[model.Assignment]) {
	switch {
	case ev.Ready:
		v.ready++
	case ev.Deleted:
		delete(v.assigns, ev.Key)
		delete(v.tombs, ev.Key)
	default:
		if rev, dead := v.tombs[ev.Key]; dead && ev.Revision <= rev {
			return // an echo from before our own delete
		}
		if cur, ok := v.assigns[ev.Key]; ok && cur.Revision > ev.Revision {
			return // an echo from before our own write
		}
		v.assigns[ev.Key] = AssignmentEntry{Assignment: ev.Value, Revision: ev.Revision}
	}
}

func onOneOff(v *view, ev store.Event[model.OneOff]) {
	_, id, _ := strings.Cut(ev.Key, ".")
	switch {
	case ev.Ready:
		v.ready++
	case ev.Deleted:
		delete(v.oneoffs, id)
		delete(v.oneoffTombs, ev.Key)
	default:
		if rev, dead := v.oneoffTombs[ev.Key]; dead && ev.Revision <= rev {
			return
		}
		v.oneoffs[id] = OneOffEntry{OneOff: ev.Value, Revision: ev.Revision}
	}
}

func onStatus(v *view, ev store.Event[model.DynoStatus]) {
	switch {
	case ev.Ready:
		v.ready++
	case ev.Deleted:
		if id, ok := v.statusIDs[ev.Key]; ok {
			delete(v.statuses, id)
			delete(v.statusIDs, ev.Key)
		}
	default:
		v.statuses[ev.Value.ID] = ev.Value
		v.statusIDs[ev.Key] = ev.Value.ID
	}
}

// state builds Reconcile's snapshot. It shares the view's maps: Reconcile
// does not write them and nothing else runs meanwhile. It also returns when
// the first live host's heartbeat expires, a moment to reconcile again.
func (m *Manifold) state(v *view, now time.Time) (State, time.Time) {
	s := State{
		Apps: v.apps, Releases: make(map[string]model.Release, len(v.apps)),
		Formations: v.formations, Assignments: v.assigns, Statuses: v.statuses,
		Backoff: m.cfg.Backoff, CyclePeriod: m.cfg.CyclePeriod, CycleJitter: m.cfg.CycleJitter,
		OneOffs: v.oneoffs, OneOffRetention: m.cfg.OneOffRetention,
	}
	for id, app := range v.apps {
		if rel, ok := v.releases[id][app.ReleaseVersion]; ok {
			s.Releases[id] = rel
		}
	}
	expiry := m.hostStates(v, now, &s)
	return s, expiry
}

// reconcile plans and applies the plan. It returns when to reconcile again
// even if nothing changes (zero: not before the next change).
func (m *Manifold) reconcile(ctx context.Context, v *view) time.Time {
	now := m.cfg.Now()
	m.loadMissingReleases(ctx, v)
	s, hostExpiry := m.state(v, now)
	start := time.Now()
	plan := Reconcile(s, now)
	planned := time.Since(start)
	for _, p := range plan.Pending {
		m.log.Debug("pending", "reason", p)
	}
	wake := plan.NextCheck
	for _, t := range []time.Time{plan.NextCycle, hostExpiry} {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	if plan.Empty() {
		m.cfg.Metrics.pendingDynos(v)
		return wake
	}
	for _, a := range plan.Cycled {
		m.log.Info("cycling", "app", a.AppName, "dyno", a.Name, "id", a.ID)
		if m.cfg.LogSink != nil {
			m.cfg.LogSink.Publish(a.AppID, model.LogLine{Time: now, Source: model.SourceHeroku, Dyno: a.Name, Message: "Cycling"})
		}
	}
	for _, o := range plan.Expired {
		m.log.Info("one-off expired", "app", o.AppName, "dyno", o.Name, "id", o.ID)
		if m.cfg.LogSink != nil {
			m.cfg.LogSink.Publish(o.AppID, model.LogLine{Time: now, Source: model.SourceHeroku, Dyno: o.Name,
				Message: "Stopping process: its time to live (" + o.ExpiresAt.Sub(o.CreatedAt).Round(time.Second).String() + ") lapsed"})
		}
	}
	failed := m.apply(ctx, v, plan)
	m.cfg.Metrics.applied(plan, failed, time.Since(start))
	m.cfg.Metrics.pendingDynos(v)
	m.log.Info("applied plan", "create", len(plan.Create), "oneoffs_done", len(plan.DeleteOneOffs), "cycle", len(plan.Cycled), "update", len(plan.Update), "delete", len(plan.Delete), "statuses_forgotten", len(plan.DeleteStatuses),
		"failed", failed, "plan_time", planned, "total_time", time.Since(start))
	if failed > 0 {
		retry := m.cfg.Now().Add(m.cfg.RetryDelay)
		if wake.IsZero() || retry.Before(wake) {
			wake = retry
		}
	}
	return wake
}

// loadMissingReleases reads the current release of apps whose release the
// view pruned (an app rolled back to an older version number). A release
// that is not written yet arrives through the watch instead.
func (m *Manifold) loadMissingReleases(ctx context.Context, v *view) {
	for id, app := range v.apps {
		if app.ReleaseVersion == 0 {
			continue
		}
		if _, ok := v.releases[id][app.ReleaseVersion]; ok {
			continue
		}
		rel, _, err := m.st.Releases.Get(ctx, model.ReleaseKey(id, app.ReleaseVersion))
		if err != nil {
			continue
		}
		if v.releases[id] == nil {
			v.releases[id] = map[int]model.Release{}
		}
		v.releases[id][rel.Version] = rel
	}
}

// apply writes the plan with a few writers at once and folds the results
// into the view at once, so the next plan does not repeat this one before
// the watch echoes it. It returns how many writes failed for another reason
// than a conflict (a conflict means our view is stale; the watch brings the
// news and we reconcile again).
func (m *Manifold) apply(ctx context.Context, v *view, plan Plan) int {
	type result struct {
		key     string
		entry   AssignmentEntry
		deleted bool
		oneOff  *OneOffEntry      // a one-off request, not an assignment
		status  *model.DynoStatus // a lost host's dyno status, not an assignment
		err     error
	}
	var ops []func() result
	for _, a := range plan.Create {
		ops = append(ops, func() result {
			key := a.Key()
			rev, err := m.st.Assignments.Create(ctx, key, a)
			switch {
			case err != nil && a.Pending():
				err = fmt.Errorf("record pending dyno %s of %s: %w", a.Name, a.AppName, err)
			case err != nil:
				err = fmt.Errorf("start dyno %s of %s on host %s: %w", a.Name, a.AppName, a.HostID, err)
			}
			return result{key: key, entry: AssignmentEntry{Assignment: a, Revision: rev}, err: err}
		})
	}
	for _, e := range plan.Update {
		ops = append(ops, func() result {
			rev, err := m.st.Assignments.Update(ctx, e.Key(), e.Assignment, e.Revision)
			if err != nil {
				err = fmt.Errorf("update dyno %s of %s: %w", e.Assignment.Name, e.Assignment.AppName, err)
			}
			return result{key: e.Key(), entry: AssignmentEntry{Assignment: e.Assignment, Revision: rev}, err: err}
		})
	}
	for _, e := range plan.Delete {
		ops = append(ops, func() result {
			err := m.st.Assignments.Delete(ctx, e.Key(), e.Revision)
			if err != nil {
				err = fmt.Errorf("stop dyno %s (%s) of %s: %w", e.Assignment.Name, e.Assignment.ID, e.Assignment.AppName, err)
			}
			return result{key: e.Key(), entry: e, deleted: true, err: err}
		})
	}

	for _, e := range plan.DeleteOneOffs {
		ops = append(ops, func() result {
			err := m.st.OneOffs.Delete(ctx, e.Key(), e.Revision)
			if err != nil {
				err = fmt.Errorf("forget one-off %s of %s: %w", e.OneOff.Name, e.OneOff.AppName, err)
			}
			return result{key: e.Key(), oneOff: &e, deleted: true, err: err}
		})
	}

	for _, st := range plan.DeleteStatuses {
		ops = append(ops, func() result {
			key := model.StatusKey(st.AppID, st.ID)
			err := m.st.Statuses.Delete(ctx, key, 0)
			if err != nil {
				err = fmt.Errorf("forget status of dyno %s (%s) on lost host %s: %w", st.Name, st.ID, st.HostID, err)
			}
			return result{key: key, status: &st, deleted: true, err: err}
		})
	}

	results := make([]result, len(ops))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(m.cfg.Workers, len(ops)) {
		wg.Go(func() {
			for i := range work {
				results[i] = ops[i]()
			}
		})
	}
	for i := range ops {
		work <- i
	}
	close(work)
	wg.Wait()

	failed := 0
	for _, r := range results {
		switch {
		case errors.Is(r.err, store.ErrConflict) || errors.Is(r.err, store.ErrExists):
			m.log.Debug("stale plan, will reconcile again", "key", r.key, "err", r.err)
		case r.err != nil:
			failed++
			if ctx.Err() == nil {
				m.log.Warn("write failed, will retry", "err", r.err)
			}
		case r.status != nil:
			delete(v.statuses, r.status.ID)
			delete(v.statusIDs, r.key)
		case r.oneOff != nil:
			delete(v.oneoffs, r.oneOff.OneOff.ID)
			v.oneoffTombs[r.key] = r.oneOff.Revision
		case r.deleted:
			delete(v.assigns, r.key)
			v.tombs[r.key] = r.entry.Revision
		default:
			v.assigns[r.key] = r.entry
		}
	}
	return failed
}
