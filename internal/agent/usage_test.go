package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// flakySink fails its first `fail` appends (NATS away), then writes to the
// store's usage stream.
type flakySink struct {
	st   *store.Store
	mu   sync.Mutex
	fail int
}

func (f *flakySink) Append(ctx context.Context, seg model.UsageSegment) error {
	f.mu.Lock()
	failing := f.fail > 0
	if failing {
		f.fail--
	}
	f.mu.Unlock()
	if failing {
		return errors.New("nats: no responders available")
	}
	return f.st.Usage.Append(ctx, seg)
}

// segmentsOf reads the usage stream and returns dynoID's segments.
func segmentsOf(t *testing.T, st *store.Store, dynoID string) []model.UsageSegment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := st.Usage.Follow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []model.UsageSegment
	for ev := range events {
		if ev.Ready {
			break
		}
		if ev.Segment.DynoID == dynoID {
			out = append(out, ev.Segment)
		}
	}
	return out
}

func TestUsageSegmentsCoverTheProcessRunOnce(t *testing.T) {
	removeAssignment := func(t *testing.T, e *env, id string) {
		if err := e.st.Assignments.Delete(context.Background(), model.AssignmentKey("h1", id), 0); err != nil {
			t.Fatal(err)
		}
		await(t, "status removed", func() bool {
			_, _, err := e.st.Statuses.Get(context.Background(), model.StatusKey("app1", id))
			return errors.Is(err, store.ErrNotFound)
		})
	}
	tests := []struct {
		name    string
		command string
		end     func(t *testing.T, e *env, id string, stopAgent func())
		flaky   int // appends that fail before NATS "comes back"
	}{
		{"stopped by its assignment's removal", "sleep 60", func(t *testing.T, e *env, id string, _ func()) {
			time.Sleep(700 * time.Millisecond)
			removeAssignment(t, e, id)
		}, 0},
		{"crashed on its own", "sleep 0.7; exit 3", func(t *testing.T, e *env, id string, _ func()) {
			e.awaitState(t, id, model.StateCrashed)
		}, 0},
		{"agent shut down", "sleep 60", func(t *testing.T, e *env, id string, stop func()) {
			time.Sleep(700 * time.Millisecond)
			stop()
		}, 0},
		{"NATS away for a while", "sleep 60", func(t *testing.T, e *env, id string, _ func()) {
			time.Sleep(900 * time.Millisecond)
			removeAssignment(t, e, id)
		}, 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			sink := &flakySink{st: e.st, fail: tc.flaky}
			stop := e.startAgent(t, func(c *Config) {
				c.UsageCheckpoint = 150 * time.Millisecond
				c.UsageFlushTimeout = 5 * time.Second
				c.Usage = sink
			})
			id := "u" + string(rune('a'+i))
			before := time.Now()
			e.assign(t, id, "worker", tc.command)
			e.awaitState(t, id, model.StateUp)
			tc.end(t, e, id, stop)
			after := time.Now()
			var segs []model.UsageSegment
			await(t, "the final segment", func() bool {
				segs = segmentsOf(t, e.st, id)
				return len(segs) > 0 && segs[len(segs)-1].Final
			})
			if len(segs) < 4 {
				t.Fatalf("%d segments for a run of ~0.7 s with 150 ms checkpoints, want ≥ 4: %+v", len(segs), segs)
			}
			start := segs[0].ProcessStart
			if start.Before(before) || segs[0].Start != start {
				t.Errorf("first segment starts at %v (process start %v), want the process start, after %v", segs[0].Start, start, before)
			}
			seen := map[string]bool{}
			for j, s := range segs {
				if s.Index != j || s.ID != model.UsageSegmentID(id, start, j) || seen[s.ID] {
					t.Errorf("segment %d: index %d, ID %s: want index %d, stable unique ID", j, s.Index, s.ID, j)
				}
				seen[s.ID] = true
				if j > 0 && !s.Start.Equal(segs[j-1].End) {
					t.Errorf("segment %d starts at %v, the previous ended at %v: segments must be contiguous", j, s.Start, segs[j-1].End)
				}
				if s.Final != (j == len(segs)-1) {
					t.Errorf("segment %d: final=%v", j, s.Final)
				}
				if s.AppID != "app1" || s.AppName != "demo" || s.Type != "worker" || s.Name != "worker.1" || s.Size != "standard-1X" || s.Host != "h1" {
					t.Errorf("segment %d misdescribes the dyno: %+v", j, s)
				}
			}
			end := segs[len(segs)-1].End
			if end.After(after) || end.Sub(start) < 600*time.Millisecond {
				t.Errorf("run covered %v → %v (%v); want ≥ 0.6 s, ending by %v", start, end, end.Sub(start), after)
			}
		})
	}
}
