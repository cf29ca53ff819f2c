package agent

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/store"
)

// Fencing: the manifold declares a host lost once its last heartbeat is
// FenceAfter (the host TTL) old and starts its dynos elsewhere. An agent
// cut off from the control plane cannot be told, so it fences itself: once
// its last successful heartbeat is FenceAfter old, it stops every dyno at
// once (SIGTERM, FenceGrace, SIGKILL), whatever the store says. So a dyno
// and its replacement overlap at most FenceGrace plus a check interval
// after the replacement could first be placed. Once a heartbeat succeeds
// again the agent re-reads its assignments: those the manifold deleted
// meanwhile stay stopped and their statuses go, the others start again.

// fenceState is the agent's view of its own lease.
type fenceState struct {
	mu     sync.Mutex
	lastOK time.Time // HeartbeatAt of the last heartbeat the store took
	fenced bool
	// oneOffs are the one-offs the fence stopped: they are never started
	// again, their status says they ended.
	oneOffs map[string]model.Assignment
}

// noteHeartbeat records a heartbeat the store acknowledged.
func (a *Agent) noteHeartbeat(at time.Time) {
	a.fence.mu.Lock()
	if at.After(a.fence.lastOK) {
		a.fence.lastOK = at
	}
	a.fence.mu.Unlock()
}

// Fenced reports whether the agent has stopped its dynos for want of the
// control plane.
func (a *Agent) Fenced() bool {
	a.fence.mu.Lock()
	defer a.fence.mu.Unlock()
	return a.fence.fenced
}

// runFence checks the lease every FenceCheck until ctx ends: it fences the
// agent when the last heartbeat is FenceAfter old and lifts the fence once
// heartbeats succeed again.
func (a *Agent) runFence(ctx context.Context) {
	t := time.NewTicker(a.cfg.FenceCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.fence.mu.Lock()
		last, fenced := a.fence.lastOK, a.fence.fenced
		a.fence.mu.Unlock()
		age := a.cfg.Now().Sub(last)
		switch {
		case !fenced && age >= a.cfg.FenceAfter:
			a.fenceOff(age)
		case fenced && age < a.cfg.FenceAfter:
			a.unfence(ctx)
		}
	}
}

// fenceOff stops every dyno at once and marks the agent fenced, so that
// no assignment event starts one until the fence is lifted.
func (a *Agent) fenceOff(age time.Duration) {
	a.log.Warn("no heartbeat reached the control plane: stopping every dyno (fencing) so that no dyno runs twice",
		"last_heartbeat_age", age.Round(time.Millisecond), "lease", a.cfg.FenceAfter)
	a.fence.mu.Lock()
	a.fence.fenced = true
	if a.fence.oneOffs == nil {
		a.fence.oneOffs = map[string]model.Assignment{}
	}
	a.fence.mu.Unlock()
	a.mu.Lock()
	for _, r := range a.runners {
		if r.as.OneOff {
			a.fence.mu.Lock()
			a.fence.oneOffs[r.as.ID] = r.as
			a.fence.mu.Unlock()
		}
		r.mu.Lock()
		r.fenced = true
		r.mu.Unlock()
		r.stop(false)
	}
	a.mu.Unlock()
}

// unfence waits until the fenced runners are gone, then starts what is
// still assigned and drops the statuses of what is not.
func (a *Agent) unfence(ctx context.Context) {
	a.log.Info("heartbeats reach the control plane again: re-reading this host's assignments")
	for {
		a.mu.Lock()
		n := len(a.runners)
		a.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	assigns, err := a.st.Assignments.List(ctx, a.cfg.HostID+".>")
	if err != nil {
		a.log.Warn("list assignments after fencing (will retry)", "err", err)
		return // still fenced: the next check tries again
	}
	a.fence.mu.Lock()
	a.fence.fenced = false
	oneOffs := a.fence.oneOffs
	a.fence.oneOffs = nil
	a.fence.mu.Unlock()
	for _, e := range assigns {
		if as, ok := oneOffs[e.Value.ID]; ok {
			a.endFencedOneOff(ctx, as)
		}
		a.startDyno(ctx, e.Value)
	}
	a.removeOrphanStatuses(ctx)
}

// endFencedOneOff records that a one-off the fence stopped has ended, so
// that it is not run a second time.
func (a *Agent) endFencedOneOff(ctx context.Context, as model.Assignment) {
	key := model.StatusKey(as.AppID, as.ID)
	st, _, err := a.st.Statuses.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) || model.OneOffEnded(st) {
		return
	}
	status := 128 + int(syscall.SIGKILL)
	st.State, st.ExitStatus, st.Endpoint, st.UpdatedAt = model.StateDown, &status, "", a.cfg.Now()
	if _, err := a.st.Statuses.Put(ctx, key, st); err != nil {
		a.log.Warn("report a fenced one-off as ended", "dyno", as.Name, "err", err)
	}
}

func (r *runner) isFenced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fenced
}

// fenceStop is stopDyno for a fenced agent: no drain (routers are out of
// reach anyway) and a short grace, because the dyno's replacement may be
// starting elsewhere.
func (r *runner) fenceStop(dyno runtime.Dyno, exited <-chan runtime.Result) {
	prev := r.status.State
	r.status.State, r.status.Endpoint, r.status.UpdatedAt = model.StateDown, "", r.a.cfg.Now()
	r.logDyno("Stopping all processes with SIGTERM (this host lost the control plane)")
	dyno.Signal(syscall.SIGTERM)
	grace := time.NewTimer(r.a.cfg.FenceGrace)
	defer grace.Stop()
	var res runtime.Result
	select {
	case res = <-exited:
	case <-grace.C:
		r.logDyno("Stopping remaining processes with SIGKILL")
		dyno.Signal(syscall.SIGKILL)
		res = <-exited
	}
	r.ended(prev, res)
}
