package scheduler

import "time"

// Clock is the scheduler's time: the wall clock in production, a clock the
// test moves in tests.
type Clock interface {
	Now() time.Time
	// After sends the time once d has passed (at once if d <= 0).
	After(d time.Duration) <-chan time.Time
}

// WallClock is the real time.
type WallClock struct{}

// Now is time.Now.
func (WallClock) Now() time.Time { return time.Now() }

// After is time.After.
func (WallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ScaledClock runs Scale times faster than the wall clock from Start on:
// with Scale 30, a cron minute passes in 2 s. It exists for end-to-end
// tests of the platform (`dyno server --scheduler-time-scale`, hidden);
// run times it records are in its own time, not the wall clock's.
type ScaledClock struct {
	Start time.Time // wall time at which both clocks agree
	Scale float64
}

// Now is Start plus Scale times the wall time since Start.
func (c ScaledClock) Now() time.Time {
	return c.Start.Add(time.Duration(float64(time.Since(c.Start)) * c.Scale))
}

// After waits d of this clock's time.
func (c ScaledClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	time.AfterFunc(time.Duration(float64(d)/c.Scale), func() { ch <- c.Now() })
	return ch
}
