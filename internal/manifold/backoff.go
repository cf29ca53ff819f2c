package manifold

import "time"

// Backoff says how long a dyno slot waits before its crash-th crash (1 for
// the first) is replaced. Zero means at once.
type Backoff func(crash int) time.Duration

// HerokuCoolOffs are Heroku's cool-off windows after the 2nd, 3rd, 4th, 5th
// and 6th crash; every later crash waits the last one again.
var HerokuCoolOffs = []time.Duration{20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 180 * time.Minute, 320 * time.Minute}

// HerokuBackoff is Heroku's crash policy (heroku.md §1.2): the first crash
// is replaced at once, then the cool-offs are "up to" 20, 40, 60, 180 and
// 320 minutes, then every 320 minutes. "Up to" is a wait drawn between
// half the window and the window with rnd (a number in [0, 1)), so that
// dynos that crashed together do not all restart together; a nil rnd waits
// the whole window. scale multiplies every window (0.001 turns 20 minutes
// into 1.2 s, for tests and impatient operators); scale <= 0 means 1.
func HerokuBackoff(scale float64, rnd func() float64) Backoff {
	if scale <= 0 {
		scale = 1
	}
	return func(crash int) time.Duration {
		if crash <= 1 {
			return 0
		}
		window := HerokuCoolOffs[min(crash-2, len(HerokuCoolOffs)-1)]
		d := time.Duration(float64(window) * scale)
		if rnd != nil {
			d = d/2 + time.Duration(float64(d/2)*rnd())
		}
		return d
	}
}

// ExponentialBackoff replaces the first crash at once, waits first after the
// second, then doubles the wait for every further crash up to max. Each wait
// is shortened by up to jitter (0.1 = 10%) times rnd(), a number in [0, 1),
// so that dynos that crashed together do not all restart together; a nil
// rnd means no jitter.
func ExponentialBackoff(first, max time.Duration, jitter float64, rnd func() float64) Backoff {
	return func(crash int) time.Duration {
		if crash <= 1 {
			return 0
		}
		d := first
		for i := 2; i < crash && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		if rnd != nil && jitter > 0 {
			d -= time.Duration(float64(d) * jitter * rnd())
		}
		return d
	}
}

// DefaultBackoff is the manifold's crash policy: Heroku's, at full scale,
// with its "up to" drawn from rnd (nil: the whole window).
func DefaultBackoff(rnd func() float64) Backoff { return HerokuBackoff(1, rnd) }
