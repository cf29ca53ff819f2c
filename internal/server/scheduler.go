package server

import (
	"time"

	"github.com/dyno-platform/dyno/internal/scheduler"
)

// schedulerClock is the wall clock, or for end-to-end tests one that runs
// scale times faster from start on (Config.SchedulerTimeScale and
// SchedulerTimeStart).
func schedulerClock(scale float64, start time.Time) scheduler.Clock {
	if scale <= 1 {
		return scheduler.WallClock{}
	}
	if start.IsZero() {
		start = time.Now()
	}
	return scheduler.ScaledClock{Start: start, Scale: scale}
}
