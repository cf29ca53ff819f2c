package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// host is a simulated host: a heartbeat and an agent with a fake runtime.
type host struct {
	id       string
	kill     context.CancelFunc
	lastBeat atomic.Int64 // unix nanoseconds of the last heartbeat written
}

// startHost heartbeats the host record every period and reports every
// dyno assigned to it up (and deletes the status of a dyno whose
// assignment goes) until killed or ctx ends. A killed host leaves its
// record and statuses behind, as a host that dies does.
func startHost(ctx context.Context, wg *sync.WaitGroup, st *store.Store, id string, period time.Duration) *host {
	ctx, cancel := context.WithCancel(ctx)
	started := time.Now()
	self := &host{id: id, kill: cancel}
	beat := func() {
		h := model.Host{ID: id, Address: "127.0.0.1", MemoryMB: 64 << 10, CPUs: 8, HeartbeatAt: time.Now(), StartedAt: started}
		if _, err := st.Hosts.Put(ctx, id, h); err == nil {
			self.lastBeat.Store(h.HeartbeatAt.UnixNano())
		}
	}
	beat()
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				beat()
			}
		}
	})
	events, err := st.Assignments.Watch(ctx, id+".>")
	if err != nil {
		panic(fmt.Sprintf("watch assignments of %s: %v", id, err))
	}
	wg.Go(func() {
		apps := map[string]string{} // dyno ID → app ID
		for ev := range events {
			switch {
			case ev.Ready:
			case ev.Deleted:
				_, dyno, _ := strings.Cut(ev.Key, ".")
				if app, ok := apps[dyno]; ok {
					delete(apps, dyno)
					st.Statuses.Delete(ctx, model.StatusKey(app, dyno), 0)
				}
			default:
				a := ev.Value
				if _, ok := apps[a.ID]; ok {
					continue
				}
				apps[a.ID] = a.AppID
				now := time.Now()
				s := model.DynoStatus{ID: a.ID, HostID: id, AppID: a.AppID, AppName: a.AppName, Type: a.Type, Name: a.Name,
					Release: a.Release, Size: a.Size, Command: a.Command, State: model.StateUp, StartedAt: now, UpAt: now, UpdatedAt: now}
				st.Statuses.Put(ctx, model.StatusKey(a.AppID, a.ID), s)
			}
		}
	})
	return self
}

// observer follows assignments and statuses through watches.
type observer struct {
	mu       sync.Mutex
	assigns  map[string]model.Assignment // by key
	statuses map[string]model.DynoStatus // by key
}

func newObserver() *observer {
	return &observer{assigns: map[string]model.Assignment{}, statuses: map[string]model.DynoStatus{}}
}

func (o *observer) watch(ctx context.Context, wg *sync.WaitGroup, st *store.Store) error {
	assigns, err := st.Assignments.Watch(ctx, ">")
	if err != nil {
		return err
	}
	statuses, err := st.Statuses.Watch(ctx, ">")
	if err != nil {
		return err
	}
	wg.Go(func() { follow(o, assigns, o.assigns) })
	wg.Go(func() { follow(o, statuses, o.statuses) })
	return nil
}

func follow[T any](o *observer, events <-chan store.Event[T], dst map[string]T) {
	for ev := range events {
		o.mu.Lock()
		switch {
		case ev.Ready:
		case ev.Deleted:
			delete(dst, ev.Key)
		default:
			dst[ev.Key] = ev.Value
		}
		o.mu.Unlock()
	}
}

// snapshot is what the observer counts at one moment.
type snapshot struct {
	assigned, placed, up, statuses int
	assignedTo, statusOn           map[string]int
	upSlots                        map[string]map[string]bool // host → app/dyno names with an up dyno there
}

// upElsewhere counts the dyno slots (app and name) with an up dyno on a
// host other than lost.
func (s snapshot) upElsewhere(lost string) int {
	slots := map[string]bool{}
	for h, names := range s.upSlots {
		if h == lost {
			continue
		}
		for n := range names {
			slots[n] = true
		}
	}
	return len(slots)
}

func (o *observer) snapshot() snapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := snapshot{assigned: len(o.assigns), statuses: len(o.statuses), assignedTo: map[string]int{}, statusOn: map[string]int{},
		upSlots: map[string]map[string]bool{}}
	placed := make(map[string]bool, len(o.assigns))
	for _, a := range o.assigns {
		if !a.Pending() {
			s.placed++
			s.assignedTo[a.HostID]++
			placed[a.ID] = true
		}
	}
	for _, st := range o.statuses {
		s.statusOn[st.HostID]++
		if st.State == model.StateUp && placed[st.ID] {
			s.up++
			if s.upSlots[st.HostID] == nil {
				s.upSlots[st.HostID] = map[string]bool{}
			}
			s.upSlots[st.HostID][st.AppID+"/"+st.Name] = true
		}
	}
	return s
}

// on counts the dynos assigned to a host.
func (o *observer) on(hostID string) int { return o.snapshot().assignedTo[hostID] }

// spread summarises how many dynos each host runs and the most dynos of
// one app's process type on a single host.
func (o *observer) spread() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	perHost := map[string]int{}
	perType := map[string]int{}
	for _, a := range o.assigns {
		perHost[a.HostID]++
		perType[a.HostID+"/"+a.AppID+"/"+a.Type]++
	}
	counts := make([]int, 0, len(perHost))
	for _, n := range perHost {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	most := 0
	for _, n := range perType {
		most = max(most, n)
	}
	if len(counts) == 0 {
		return "no dynos"
	}
	return fmt.Sprintf("%d to %d dynos per host; at most %d dynos of one app's process type on one host", counts[0], counts[len(counts)-1], most)
}

// wait polls until cond holds and returns when it first did.
func (o *observer) wait(ctx context.Context, timeout time.Duration, cond func(snapshot) bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if cond(o.snapshot()) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			s := o.snapshot()
			return time.Time{}, fmt.Errorf("timed out after %s: %d assigned, %d placed, %d up, %d statuses", timeout, s.assigned, s.placed, s.up, s.statuses)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
