package agent

import (
	"context"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// UsageSink receives the usage segments of the dynos this agent runs;
// store.Usage implements it. Append must be idempotent per segment ID.
type UsageSink interface {
	Append(ctx context.Context, seg model.UsageSegment) error
}

// usageRecorder records one dyno process's wall-clock time as disjoint
// segments: a checkpoint every UsageCheckpoint (its host's proof of life:
// a host that dies is billed to its last one) and a final segment when the
// process ends. Segments that cannot be written yet (NATS away) are kept
// and written again, under the same IDs, with the next checkpoint.
type usageRecorder struct {
	a       *Agent
	base    model.UsageSegment
	endCh   chan time.Time
	done    chan struct{}
	last    time.Time // end of the last segment
	index   int
	pending []model.UsageSegment
}

// startUsage begins recording a process that started at start. end must
// be called once when it ends; wait returns when the final segment is
// written (or given up on).
func (r *runner) startUsage(start time.Time) *usageRecorder {
	start = start.UTC()
	u := &usageRecorder{
		a: r.a,
		base: model.UsageSegment{
			DynoID: r.as.ID, AppID: r.as.AppID, AppName: r.as.AppName, Type: r.as.Type, Name: r.as.Name,
			Size: r.as.Size, Host: r.a.cfg.HostID, ProcessStart: start,
		},
		endCh: make(chan time.Time, 1),
		done:  make(chan struct{}),
		last:  start,
	}
	if u.base.Size == "" {
		u.base.Size = model.DefaultSize
	}
	go u.run()
	return u
}

// end records that the process ended at t.
func (u *usageRecorder) end(t time.Time) {
	select {
	case u.endCh <- t.UTC():
	default: // already ended
	}
}

// wait returns once the recorder is done.
func (u *usageRecorder) wait() { <-u.done }

func (u *usageRecorder) run() {
	defer close(u.done)
	tick := time.NewTicker(u.a.cfg.UsageCheckpoint)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			u.cut(u.a.cfg.Now().UTC(), false)
			u.flush()
		case t := <-u.endCh:
			u.cut(t, true)
			// The final segment is worth waiting for: without it the run
			// is billed only to its last checkpoint.
			deadline := time.Now().Add(u.a.cfg.UsageFlushTimeout)
			for u.flush() && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
			}
			if len(u.pending) > 0 {
				u.a.log.Warn("usage segments not recorded: this time is not billed", "dyno", u.base.Name, "id", u.base.DynoID, "segments", len(u.pending))
			}
			return
		}
	}
}

// cut closes the open segment at t.
func (u *usageRecorder) cut(t time.Time, final bool) {
	if t.Before(u.last) {
		t = u.last // a clock that stepped back bills nothing twice
	}
	seg := u.base
	seg.ID = model.UsageSegmentID(seg.DynoID, seg.ProcessStart, u.index)
	seg.Index, seg.Start, seg.End, seg.Final = u.index, u.last, t, final
	u.index++
	u.last = t
	u.pending = append(u.pending, seg)
}

// flush writes the pending segments in order and reports whether some are
// still pending.
func (u *usageRecorder) flush() bool {
	for len(u.pending) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := u.a.usage.Append(ctx, u.pending[0])
		cancel()
		if err != nil {
			u.a.log.Warn("record dyno usage (will retry)", "dyno", u.base.Name, "id", u.base.DynoID, "err", err)
			return true
		}
		u.pending = u.pending[1:]
	}
	return false
}
