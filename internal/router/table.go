package router

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// table is one immutable snapshot of the routes. The watch loop builds a
// new one on every change and swaps it in atomically; requests read it
// without a lock. Nothing reachable from a published table is mutated,
// except the atomic counters of appState and dyno, which are shared across
// tables on purpose (they describe traffic, not routes).
type table struct {
	apps map[string]*app // by app name (lower case)
	// changed is closed when a newer table replaces this one, which wakes
	// the requests that wait for a starting dyno without polling.
	changed chan struct{}
}

func newTable(apps map[string]*app) *table {
	return &table{apps: apps, changed: make(chan struct{})}
}

// app is the routing view of one app: its web dynos and settings.
type app struct {
	id          string
	state       *appState // counters, shared by every table
	up          []*dyno   // routable web dynos, sorted by name
	starting    int       // web dynos booting (or up but without an endpoint yet)
	crashed     int       // web dynos that crashed
	policy      policy
	maintenance bool
	blank       bool // the app has no release with a slug: H81
}

// dyno is one routable web dyno. The router keeps the same *dyno while
// the dyno stays up, so its outstanding count and quarantine survive table
// swaps; it gets its own connection pool so the idle connections of a
// dyno that left the table can be closed without touching the others.
type dyno struct {
	key       string    // status key + endpoint
	name      string    // web.1
	endpoint  string    // ip:port
	transport *upstream // nil in the builder's own tests

	outstanding atomic.Int64 // requests this router has sent it and not finished
	quarantine  atomic.Int64 // unix ns until which connects are not tried
	gone        atomic.Bool  // left the table: close idle connections when done
}

// release ends one request's claim on d.
func (d *dyno) release() {
	if d.outstanding.Add(-1) == 0 && d.gone.Load() && d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// retire takes d out of service: no new requests pick it (it is in no new
// table); the ones under way finish on their connections, then the pool
// is closed (release).
func (d *dyno) retire() {
	d.gone.Store(true)
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// appMeta is what the router needs of an App record.
type appMeta struct {
	maintenance bool
	version     int
}

// relMeta is what the router needs of a release.
type relMeta struct {
	policy  policy
	hasSlug bool
}

// builder holds the mirrored store state the tables are built from. It is
// owned by the Run goroutine alone.
type builder struct {
	names  map[string]string                      // app name → app ID
	dynos  map[string]map[string]model.DynoStatus // app ID → status key → web dyno
	keyApp map[string]string                      // status key → app ID, for deletes
	meta   map[string]appMeta                     // app ID → app record (absent: not known, routes anyway)
	rels   map[string]map[int]relMeta             // app ID → version → release
	routes map[string]*app                        // app ID → routes, reused across tables
	states map[string]*appState                   // app ID → counters
	dirty  map[string]struct{}                    // app IDs whose routes must be recomputed

	// newDyno makes the state of a dyno that came up; newState registers
	// the counters of an app seen for the first time.
	newDyno  func(key, name, endpoint string) *dyno
	newState func(id string) *appState
}

func newBuilder() *builder {
	return &builder{
		names:  map[string]string{},
		dynos:  map[string]map[string]model.DynoStatus{},
		keyApp: map[string]string{},
		meta:   map[string]appMeta{},
		rels:   map[string]map[int]relMeta{},
		routes: map[string]*app{},
		states: map[string]*appState{},
		dirty:  map[string]struct{}{},
		newDyno: func(key, name, endpoint string) *dyno {
			return &dyno{key: key, name: name, endpoint: endpoint}
		},
		newState: func(string) *appState { return &appState{} },
	}
}

func (b *builder) putName(name, id string) {
	if old, ok := b.names[name]; ok && old != id {
		b.dirty[old] = struct{}{}
	}
	b.names[name] = id
	b.dirty[id] = struct{}{}
}

func (b *builder) deleteName(name string) {
	if id, ok := b.names[name]; ok {
		delete(b.names, name)
		b.dirty[id] = struct{}{}
	}
}

// setNames replaces every name after a (re)started watch delivered its
// initial values.
func (b *builder) setNames(names map[string]string) {
	for _, id := range b.names {
		b.dirty[id] = struct{}{}
	}
	for _, id := range names {
		b.dirty[id] = struct{}{}
	}
	b.names = names
}

func (b *builder) putStatus(key string, s model.DynoStatus) {
	if s.Type != "web" {
		return
	}
	if old, ok := b.keyApp[key]; ok && old != s.AppID {
		b.deleteStatus(key)
	}
	m := b.dynos[s.AppID]
	if m == nil {
		m = map[string]model.DynoStatus{}
		b.dynos[s.AppID] = m
	}
	m[key] = s
	b.keyApp[key] = s.AppID
	b.dirty[s.AppID] = struct{}{}
}

func (b *builder) deleteStatus(key string) {
	id, ok := b.keyApp[key]
	if !ok {
		return
	}
	delete(b.keyApp, key)
	delete(b.dynos[id], key)
	if len(b.dynos[id]) == 0 {
		delete(b.dynos, id)
	}
	b.dirty[id] = struct{}{}
}

// setStatuses replaces every status after a (re)started watch delivered
// its initial values.
func (b *builder) setStatuses(all map[string]model.DynoStatus) {
	for id := range b.dynos {
		b.dirty[id] = struct{}{}
	}
	b.dynos = map[string]map[string]model.DynoStatus{}
	b.keyApp = map[string]string{}
	for k, s := range all {
		b.putStatus(k, s)
	}
}

func (b *builder) putApp(id string, a model.App) {
	b.meta[id] = appMeta{maintenance: a.Maintenance, version: a.ReleaseVersion}
	b.dirty[id] = struct{}{}
}

func (b *builder) deleteApp(id string) {
	delete(b.meta, id)
	delete(b.rels, id)
	b.dirty[id] = struct{}{}
}

func (b *builder) setApps(all map[string]model.App) {
	for id := range b.meta {
		b.dirty[id] = struct{}{}
	}
	b.meta = map[string]appMeta{}
	for id, a := range all {
		b.putApp(id, a)
	}
}

func (b *builder) putRelease(r model.Release) {
	m := b.rels[r.AppID]
	if m == nil {
		m = map[int]relMeta{}
		b.rels[r.AppID] = m
	}
	m[r.Version] = relMeta{policy: parsePolicy(r.Config[PolicyVar]), hasSlug: r.Slug != nil}
	b.dirty[r.AppID] = struct{}{}
}

// deleteRelease parses the key (model.ReleaseKey: "<appID>.<version>").
func (b *builder) deleteRelease(key string) {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return
	}
	id := key[:i]
	v, err := strconv.Atoi(key[i+1:])
	if err != nil {
		return
	}
	delete(b.rels[id], v)
	b.dirty[id] = struct{}{}
}

func (b *builder) setReleases(all map[string]model.Release) {
	for id := range b.rels {
		b.dirty[id] = struct{}{}
	}
	b.rels = map[string]map[int]relMeta{}
	for _, r := range all {
		b.putRelease(r)
	}
}

// routesOf computes the routing view of an app, reusing the *dyno of the
// previous view for dynos still up.
func (b *builder) routesOf(id string, old *app) *app {
	st := b.states[id]
	if st == nil {
		st = b.newState(id)
		b.states[id] = st
	}
	a := &app{id: id, state: st}
	if m, ok := b.meta[id]; ok {
		a.maintenance = m.maintenance
		rel, ok := b.rels[id][m.version]
		a.blank = m.version == 0 || ok && !rel.hasSlug
		a.policy = rel.policy
	}
	var prev map[string]*dyno
	if old != nil && len(old.up) > 0 {
		prev = make(map[string]*dyno, len(old.up))
		for _, d := range old.up {
			prev[d.key] = d
		}
	}
	for key, s := range b.dynos[id] {
		switch {
		case s.State == model.StateUp && s.Endpoint != "":
			k := key + "|" + s.Endpoint
			d := prev[k]
			if d == nil || d.name != s.Name {
				d = b.newDyno(k, s.Name, s.Endpoint)
			}
			delete(prev, k)
			a.up = append(a.up, d)
		case s.State == model.StateUp, s.State == model.StateStarting:
			a.starting++
		case s.State == model.StateCrashed:
			a.crashed++
		}
		// down: being stopped on purpose; it takes no traffic and is not
		// a reason to wait (a restart starts the replacement first).
	}
	for _, d := range prev {
		d.retire() // left the table: status down, deleted, or moved
	}
	slices.SortFunc(a.up, func(x, y *dyno) int { return cmp.Compare(x.name, y.name) })
	return a
}

// build returns a new table. Only the apps marked dirty are recomputed; the
// others keep their (immutable) routes from the previous table.
func (b *builder) build() *table {
	named := make(map[string]bool, len(b.names))
	for _, id := range b.names {
		named[id] = true
	}
	for id := range b.dirty {
		old := b.routes[id]
		if named[id] {
			b.routes[id] = b.routesOf(id, old)
			continue
		}
		if old != nil {
			for _, d := range old.up {
				d.retire()
			}
		}
		delete(b.routes, id)
	}
	clear(b.dirty)
	apps := make(map[string]*app, len(b.names))
	for name, id := range b.names {
		a := b.routes[id]
		if a == nil {
			a = b.routesOf(id, nil)
			b.routes[id] = a
		}
		if a.state.name.Load() == nil || *a.state.name.Load() != name {
			a.state.name.Store(&name)
		}
		apps[name] = a
	}
	return newTable(apps)
}

// retireAll closes the pools of every dyno, when the router stops.
func (b *builder) retireAll() {
	for _, a := range b.routes {
		for _, d := range a.up {
			d.retire()
		}
	}
}

// feed is one watched bucket: its current watch and the back-off that
// re-establishes it when the watch channel closes.
type feed[T any] struct {
	what    string
	bucket  store.Bucket[T]
	events  <-chan store.Event[T] // nil while no watch is open
	cancel  context.CancelFunc
	retry   *time.Timer // fires when the watch should be reopened
	backoff time.Duration
	// initial collects the values a new watch sends before Ready; the last
	// known state stays in use until the new one is complete.
	initial map[string]T
	synced  bool // the first watch delivered Ready at least once
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

func newFeed[T any](what string, bucket store.Bucket[T]) *feed[T] {
	t := time.NewTimer(0) // first open right away
	return &feed[T]{what: what, bucket: bucket, retry: t, backoff: minBackoff}
}

// open starts a watch; on failure it schedules another attempt.
func (f *feed[T]) open(ctx context.Context, r *Router) {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := f.bucket.Watch(wctx, ">")
	if err != nil {
		cancel()
		r.log.Warn("route table: cannot watch the store; keeping the last known routes and retrying",
			"bucket", f.what, "retry_in", f.backoff, "err", err)
		f.schedule()
		return
	}
	f.events, f.cancel, f.initial = ch, cancel, map[string]T{}
}

// lost closes the current watch and schedules a new one with back-off.
func (f *feed[T]) lost(r *Router) {
	f.close()
	r.log.Warn("route table: store watch closed; keeping the last known routes and retrying",
		"bucket", f.what, "retry_in", f.backoff)
	f.schedule()
}

// reopen replaces the watch at once: after a reconnection to NATS a fresh
// watch resyncs in milliseconds, where the old one would notice the lost
// consumer only after missed heartbeats (tens of seconds).
func (f *feed[T]) reopen(ctx context.Context, r *Router) {
	f.close()
	f.retry.Stop()
	f.backoff = minBackoff
	f.open(ctx, r)
}

func (f *feed[T]) schedule() {
	f.retry.Reset(f.backoff)
	f.backoff = min(f.backoff*2, maxBackoff)
}

func (f *feed[T]) close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.events, f.cancel, f.initial = nil, nil, nil
}

// handle applies one event. It returns the complete initial state when ev
// ends the initial values of a watch (ready), else applies ev through put
// and del once the feed is live.
func (f *feed[T]) handle(ev store.Event[T], put func(string, T), del func(string)) (initial map[string]T, ready bool) {
	if f.initial != nil {
		switch {
		case ev.Ready:
			initial = f.initial
			f.initial = nil
			f.synced = true
			f.backoff = minBackoff
			return initial, true
		case ev.Deleted:
			delete(f.initial, ev.Key)
		default:
			f.initial[ev.Key] = ev.Value
		}
		return nil, false
	}
	if ev.Ready {
		return nil, false
	}
	if ev.Deleted {
		del(ev.Key)
	} else {
		put(ev.Key, ev.Value)
	}
	return nil, false
}

// Run mirrors the store into the route table: app names, web dyno
// statuses, apps (maintenance mode, current release) and releases (the
// routing policy config var, whether a slug exists). List-then-watch of
// each bucket, no polling. If a watch closes, the last known table stays
// in use while the watch is re-established with back-off, and at once
// after a reconnection to NATS. Run returns nil when ctx ends.
func (r *Router) Run(ctx context.Context) error {
	customDone := make(chan struct{})
	go func() { defer close(customDone); r.runCustomDomains(ctx) }()
	defer func() { <-customDone }() // ctx is done when Run returns
	b := newBuilder()
	b.newDyno = r.newDyno
	b.newState = r.newAppState
	defer b.retireAll()
	names := newFeed("app-names", r.store.AppNames)
	stats := newFeed("statuses", r.store.Statuses)
	apps := newFeed("apps", r.store.Apps)
	rels := newFeed("releases", r.store.Releases)
	for _, f := range []interface {
		close()
		stop()
	}{names, stats, apps, rels} {
		defer f.stop()
		defer f.close()
	}

	reconnected := r.store.Conn().StatusChanged(nats.CONNECTED)
	defer r.store.Conn().RemoveStatusListener(reconnected)

	changed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			r.log.Info("route table: reconnected to the store; resyncing the routes")
			names.reopen(ctx, r)
			stats.reopen(ctx, r)
			apps.reopen(ctx, r)
			rels.reopen(ctx, r)
		case <-names.retry.C:
			names.open(ctx, r)
		case <-stats.retry.C:
			stats.open(ctx, r)
		case <-apps.retry.C:
			apps.open(ctx, r)
		case <-rels.retry.C:
			rels.open(ctx, r)
		case ev, ok := <-names.events:
			if !ok {
				names.lost(r)
				continue
			}
			init, ready := names.handle(ev,
				func(k string, v model.AppName) { b.putName(k, v.ID) },
				b.deleteName)
			if ready {
				m := make(map[string]string, len(init))
				for k, v := range init {
					m[k] = v.ID
				}
				b.setNames(m)
			}
			changed = true
		case ev, ok := <-stats.events:
			if !ok {
				stats.lost(r)
				continue
			}
			if init, ready := stats.handle(ev, b.putStatus, b.deleteStatus); ready {
				b.setStatuses(init)
			}
			changed = true
		case ev, ok := <-apps.events:
			if !ok {
				apps.lost(r)
				continue
			}
			if init, ready := apps.handle(ev, b.putApp, b.deleteApp); ready {
				b.setApps(init)
			}
			changed = true
		case ev, ok := <-rels.events:
			if !ok {
				rels.lost(r)
				continue
			}
			init, ready := rels.handle(ev, func(_ string, v model.Release) { b.putRelease(v) }, b.deleteRelease)
			if ready {
				b.setReleases(init)
			}
			changed = true
		}
		// Publish once every bucket is known and the burst of queued
		// events is drained, so a deploy of many dynos builds few tables.
		if changed && names.synced && stats.synced && apps.synced && rels.synced &&
			len(names.events) == 0 && len(stats.events) == 0 && len(apps.events) == 0 && len(rels.events) == 0 {
			r.publish(b.build())
			changed = false
		}
	}
}

func (f *feed[T]) stop() { f.retry.Stop() }

// publish swaps in t and wakes everything waiting on the previous table.
func (r *Router) publish(t *table) {
	old := r.table.Swap(t)
	close(old.changed)
	r.readyOnce.Do(func() { close(r.ready) })
}

// appRegistry lists the apps' counters for /metrics; the Run goroutine
// adds to it, the metrics handler reads it.
type appRegistry struct {
	mu   sync.Mutex
	apps []*appState
}

func (g *appRegistry) add(s *appState) {
	g.mu.Lock()
	g.apps = append(g.apps, s)
	g.mu.Unlock()
}

func (g *appRegistry) list() []*appState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.apps)
}
