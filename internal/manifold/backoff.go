package manifold

import "time"

// Backoff says how long a dyno slot waits before its crash-th crash (1 for
// the first) is replaced. Zero means at once.
type Backoff func(crash int) time.Duration

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

// DefaultBackoff is the manifold's crash policy: 0 s, 10 s, 20 s, 40 s …
// doubling up to 20 minutes, with up to 10% jitter from rnd (nil: none).
// Heroku's waits are longer (up to 20 minutes after the second crash); a
// shorter first wait brings back a dyno that crashed on a transient fault
// sooner, and the cap keeps a crash loop cheap.
func DefaultBackoff(rnd func() float64) Backoff {
	return ExponentialBackoff(10*time.Second, 20*time.Minute, 0.1, rnd)
}
