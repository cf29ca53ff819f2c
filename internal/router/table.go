package router

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// table is one immutable snapshot of the routes. The watch loop builds a
// new one on every change and swaps it in atomically; requests read it
// without a lock. Nothing reachable from a published table is ever mutated.
type table struct {
	apps map[string]*app // by app name (lower case)
	// changed is closed when a newer table replaces this one, which wakes
	// the requests that wait for a starting dyno without polling.
	changed chan struct{}
}

func newTable(apps map[string]*app) *table {
	return &table{apps: apps, changed: make(chan struct{})}
}

// app is the routing view of one app's web dynos.
type app struct {
	id       string
	up       []backend // routable web dynos, sorted by name
	starting int       // web dynos booting (or up but without an endpoint yet)
	crashed  int       // web dynos that crashed
}

// backend is one routable web dyno.
type backend struct {
	name     string // web.1
	endpoint string // ip:port
}

// routesOf computes the routing view of an app from its web dyno statuses.
func routesOf(id string, dynos map[string]model.DynoStatus) *app {
	a := &app{id: id}
	for _, d := range dynos {
		switch {
		case d.State == model.StateUp && d.Endpoint != "":
			a.up = append(a.up, backend{name: d.Name, endpoint: d.Endpoint})
		case d.State == model.StateUp, d.State == model.StateStarting:
			a.starting++
		case d.State == model.StateCrashed:
			a.crashed++
		}
		// down: being stopped on purpose; it takes no traffic and is not
		// a reason to wait.
	}
	slices.SortFunc(a.up, func(x, y backend) int { return cmp.Compare(x.name, y.name) })
	return a
}

// builder holds the mirrored store state the tables are built from. It is
// owned by the Run goroutine alone.
type builder struct {
	names  map[string]string                      // app name → app ID
	dynos  map[string]map[string]model.DynoStatus // app ID → status key → web dyno
	keyApp map[string]string                      // status key → app ID, for deletes
	routes map[string]*app                        // app ID → routes, reused across tables
	dirty  map[string]struct{}                    // app IDs whose routes must be recomputed
}

func newBuilder() *builder {
	return &builder{
		names:  map[string]string{},
		dynos:  map[string]map[string]model.DynoStatus{},
		keyApp: map[string]string{},
		routes: map[string]*app{},
		dirty:  map[string]struct{}{},
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

// build returns a new table. Only the apps marked dirty are recomputed; the
// others keep their (immutable) routes from the previous table.
func (b *builder) build() *table {
	for id := range b.dirty {
		if d := b.dynos[id]; len(d) > 0 {
			b.routes[id] = routesOf(id, d)
		} else {
			delete(b.routes, id) // recreated below if a name still points at it
		}
	}
	clear(b.dirty)
	apps := make(map[string]*app, len(b.names))
	for name, id := range b.names {
		a := b.routes[id]
		if a == nil {
			a = &app{id: id}
			b.routes[id] = a
		}
		apps[name] = a
	}
	return newTable(apps)
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

// Run mirrors the app names and web dyno statuses of the store into the
// route table: list-then-watch of both buckets, no polling. If a watch
// closes, the last known table stays in use while the watch is
// re-established with back-off, and at once after a reconnection to NATS.
// Run returns nil when ctx ends.
func (r *Router) Run(ctx context.Context) error {
	defer r.transport.CloseIdleConnections()
	b := newBuilder()
	names := newFeed("app-names", r.store.AppNames)
	stats := newFeed("statuses", r.store.Statuses)
	defer names.close()
	defer stats.close()
	defer names.retry.Stop()
	defer stats.retry.Stop()

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
		case <-names.retry.C:
			names.open(ctx, r)
		case <-stats.retry.C:
			stats.open(ctx, r)
		case ev, ok := <-names.events:
			if !ok {
				names.lost(r)
				continue
			}
			init, ready := names.handle(ev,
				func(k string, v model.AppName) { b.putName(k, v.ID); changed = true },
				func(k string) { b.deleteName(k); changed = true })
			if ready {
				m := make(map[string]string, len(init))
				for k, v := range init {
					m[k] = v.ID
				}
				b.setNames(m)
				changed = true
			}
		case ev, ok := <-stats.events:
			if !ok {
				stats.lost(r)
				continue
			}
			init, ready := stats.handle(ev,
				func(k string, v model.DynoStatus) { b.putStatus(k, v); changed = true },
				func(k string) { b.deleteStatus(k); changed = true })
			if ready {
				b.setStatuses(init)
				changed = true
			}
		}
		// Publish once both buckets are known and the burst of queued
		// events is drained, so a deploy of many dynos builds few tables.
		if changed && names.synced && stats.synced && len(names.events) == 0 && len(stats.events) == 0 {
			r.publish(b.build())
			changed = false
		}
	}
}

// publish swaps in t and wakes everything waiting on the previous table.
func (r *Router) publish(t *table) {
	old := r.table.Swap(t)
	close(old.changed)
	r.readyOnce.Do(func() { close(r.ready) })
}
