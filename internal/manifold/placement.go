package manifold

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/dyno-platform/dyno/internal/model"
)

// Placement, lost hosts and drains.
//
// A dyno goes to a live, non-draining host with its size's memory free.
// Among those, the host running the fewest dynos of the same app and
// process type wins (two web dynos share a host only when no other host
// has room, as Cloud Foundry's auction scores it), then the one with the
// most free memory, then the lowest ID, so a plan is deterministic.
//
// A lost host's dynos are suspects (Cloud Foundry's word): their
// assignments and statuses stay, so routers keep them as endpoints, while
// replacements start elsewhere; once a slot's replacement is up the
// suspect's assignment and status are deleted. The manifold deletes the
// status because the agent that would have is gone. A draining host's
// dynos are moved like outdated ones: web dynos keep serving until their
// replacements are up (the deploy surge), others are replaced as soon as
// the replacement has a host.

// spreadKey counts the dynos of one process type of one app on one host.
type spreadKey struct{ host, app, typ string }

// hostRoom is what placement knows of the live hosts: how much of each
// one's memory is not reserved and how many dynos of each app and type
// each runs. Draining hosts are counted but take nothing new.
type hostRoom struct {
	hosts    []model.Host // sorted by ID
	free     map[string]int
	spread   map[spreadKey]int
	draining map[string]bool
}

func newHostRoom(hosts []model.Host, draining map[string]bool) *hostRoom {
	h := &hostRoom{
		hosts: slices.SortedFunc(slices.Values(hosts), func(a, b model.Host) int { return cmp.Compare(a.ID, b.ID) }),
		free:  make(map[string]int, len(hosts)), spread: map[spreadKey]int{}, draining: draining,
	}
	for _, host := range h.hosts {
		h.free[host.ID] = host.MemoryMB
	}
	return h
}

// reserve adds (n = 1) or removes (n = -1) dyno a on host.
func (h *hostRoom) reserve(host string, a model.Assignment, n int) {
	if _, live := h.free[host]; live {
		h.spread[spreadKey{host, a.AppID, a.Type}] += n
		h.free[host] -= n * memoryMB(a.Size)
	}
}

// pick chooses the host for dyno a needing mb: among the live hosts that
// are not draining and have room, counting extra (memory the same plan
// frees on a host), the one with the fewest dynos of a's app and type,
// then the most free memory, then the lowest ID.
func (h *hostRoom) pick(a model.Assignment, mb int, extra map[string]int) (string, bool) {
	best, bestFree, bestSame, found := "", 0, 0, false
	for _, host := range h.hosts {
		free := h.free[host.ID] + extra[host.ID]
		if h.draining[host.ID] || free < mb {
			continue
		}
		same := h.spread[spreadKey{host.ID, a.AppID, a.Type}]
		if !found || same < bestSame || (same == bestSame && free > bestFree) {
			best, bestFree, bestSame, found = host.ID, free, same, true
		}
	}
	return best, found
}

// why says why no host has room for a dyno of size.
func (h *hostRoom) why(size string) string {
	most, where, open := 0, "", 0
	for _, host := range h.hosts {
		if h.draining[host.ID] {
			continue
		}
		open++
		if f := h.free[host.ID]; where == "" || f > most {
			most, where = f, host.ID
		}
	}
	switch {
	case len(h.hosts) == 0:
		return "no live host: start a host agent (dyno agent)"
	case open == 0:
		return "every live host is draining: undrain one (dyno hosts:undrain HOST) or start a host agent"
	}
	return fmt.Sprintf("no host has %d MB free for %s (largest free: %d MB on %s)", memoryMB(size), size, max(most, 0), where)
}

// retireSuspects deletes a slot's dynos on lost hosts, with their
// statuses, once the slot's current dyno is up; a crashed suspect serves
// nothing and goes at once. The others stay routable meanwhile.
func (r *reconciler) retireSuspects(keep *AssignmentEntry, suspects []AssignmentEntry) {
	replaced := keep != nil && r.state(keep.Assignment) == model.StateUp
	for _, e := range suspects {
		if replaced || r.state(e.Assignment) == model.StateCrashed {
			r.plan.Delete = append(r.plan.Delete, e)
			if st, ok := r.s.Statuses[e.Assignment.ID]; ok {
				r.plan.DeleteStatuses = append(r.plan.DeleteStatuses, st)
			}
		}
	}
}

// sweepLostStatuses deletes the statuses lost hosts left for dynos that
// have no assignment any more (a status delete that failed, a one-off
// that ended with its host): no agent is there to do it.
func (r *reconciler) sweepLostStatuses() {
	if len(r.s.Lost) == 0 {
		return
	}
	assigned := make(map[string]bool, len(r.s.Assignments))
	for _, e := range r.s.Assignments {
		assigned[e.Assignment.ID] = true
	}
	for _, id := range slices.Sorted(maps.Keys(r.s.Statuses)) {
		st := r.s.Statuses[id]
		if r.s.Lost[st.HostID] && !assigned[id] {
			r.plan.DeleteStatuses = append(r.plan.DeleteStatuses, st)
		}
	}
}
