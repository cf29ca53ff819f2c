package manifold

import (
	"cmp"
	"slices"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// fold applies one watch event to the view and notes whether it may
// change the plan. A heartbeat of a host that was live already, with the
// same capacity, changes nothing but when the host would expire (the loop
// wakes then anyway), so twenty hosts beating every second do not cost
// twenty reconciles a second.
func fold(v *view, u update) {
	v.quiet = false
	u(v)
	if !v.quiet {
		v.dirty = true
	}
}

// onHostRecord keeps the host records and marks a live host's heartbeat quiet.
func onHostRecord(v *view, ev store.Event[model.Host]) {
	prev, had := v.hosts[ev.Key]
	onSimple(v, v.hosts, ev)
	if had && !ev.Deleted && !ev.Ready {
		h := ev.Value
		h.HeartbeatAt = prev.HeartbeatAt
		v.quiet = h == prev && v.now().Sub(prev.HeartbeatAt) < v.ttl
	}
}

// onHostSetting keeps the control plane's host records (drain requests).
func onHostSetting(v *view, ev store.Event[model.HostSettings]) { onSimple(v, v.settings, ev) }

// hostStates sorts the hosts into live ones (heartbeat within HostTTL),
// lost ones and draining ones, into s. A host is lost once its heartbeat
// is HostTTL old counted from no earlier than the loop's start, so that
// a manifold that just took over (or a whole server that restarted) gives
// every agent one TTL to heartbeat before their dynos are replaced; until
// then such a host is neither live nor lost and its dynos are left alone.
// A host that assignments name but that never registered is lost alike.
// It returns the next moment a host's state changes by the clock alone.
func (m *Manifold) hostStates(v *view, now time.Time, s *State) time.Time {
	ttl := m.cfg.HostTTL
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	lostAt := func(heartbeat time.Time) time.Time {
		if heartbeat.Before(v.since) {
			heartbeat = v.since
		}
		return heartbeat.Add(ttl)
	}
	s.Lost, s.Draining = map[string]bool{}, map[string]bool{}
	for _, h := range v.hosts {
		if v.settings[h.ID].Drain {
			s.Draining[h.ID] = true
		}
		if end := h.HeartbeatAt.Add(ttl); now.Before(end) {
			s.Hosts = append(s.Hosts, h)
			soonest(end)
			continue
		}
		if at := lostAt(h.HeartbeatAt); now.Before(at) {
			soonest(at)
			continue
		}
		s.Lost[h.ID] = true
	}
	for _, e := range v.assigns {
		id := e.Assignment.HostID
		if _, known := v.hosts[id]; known || id == "" || s.Lost[id] {
			continue
		}
		if at := lostAt(time.Time{}); now.Before(at) {
			soonest(at)
			continue
		}
		s.Lost[id] = true
	}
	return next
}

// HostInfo is what `dyno hosts` shows of a host: its agent's record, the
// memory its dynos reserve, and its state.
type HostInfo struct {
	model.Host
	ReservedMB, FreeMB int
	Dynos              int    // assignments on it, running one-offs included, ended ones not
	State              string // model.HostLive, HostLost, HostDraining, HostDrained
	HeartbeatAge       time.Duration
}

// DescribeHosts reports every registered host at now, sorted by ID:
// memory reserved as placement counts it (every dyno on the host but the
// crashed ones), the dynos on it (but one-offs that ended, which stay
// listed a while only for their exit status), and the state: lost once
// its heartbeat is older than ttl, else draining while a drain is asked
// and a dyno remains, drained once none does, live otherwise. A drained
// host's running one-offs count: it is drained when nothing runs there
// any more.
func DescribeHosts(hosts []model.Host, settings map[string]model.HostSettings, assigns []model.Assignment,
	statuses map[string]model.DynoStatus, now time.Time, ttl time.Duration) []HostInfo {
	if ttl <= 0 {
		ttl = model.DefaultHostTTL
	}
	byHost := map[string]*HostInfo{}
	out := make([]HostInfo, len(hosts))
	for i, h := range hosts {
		out[i] = HostInfo{Host: h, HeartbeatAge: max(now.Sub(h.HeartbeatAt), 0)}
		byHost[h.ID] = &out[i]
	}
	for _, a := range assigns {
		h, ok := byHost[a.HostID]
		if !ok {
			continue
		}
		st := statuses[a.ID]
		if a.OneOff && model.OneOffEnded(st) {
			continue // kept a while for its exit status, but nothing runs
		}
		h.Dynos++
		if st.State != model.StateCrashed {
			h.ReservedMB += memoryMB(a.Size)
		}
	}
	for i := range out {
		h := &out[i]
		h.FreeMB = max(h.MemoryMB-h.ReservedMB, 0)
		switch {
		case h.HeartbeatAge >= ttl:
			h.State = model.HostLost
		case settings[h.ID].Drain && h.Dynos > 0:
			h.State = model.HostDraining
		case settings[h.ID].Drain:
			h.State = model.HostDrained
		default:
			h.State = model.HostLive
		}
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
