package apiserver

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Heroku's API rate limit: a pool of 4,500 requests per token, refilled
// continuously at 4,500 an hour.
const (
	defaultRateLimitPerHour = 4500
	// maxRateBuckets bounds the limiter's memory; full buckets, which
	// hold nothing worth keeping, are dropped first.
	maxRateBuckets = 10000
)

// rateLimiter is a token bucket per API token. It lives in the memory of
// one API node: on a cluster each node counts its own requests, so a
// client spreading requests over n nodes gets up to n times the limit.
type rateLimiter struct {
	perSecond float64 // refill rate
	capacity  float64 // the burst: a full bucket
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newRateLimiter(perHour, burst int, now func() time.Time) *rateLimiter {
	if perHour <= 0 {
		perHour = defaultRateLimitPerHour
	}
	if burst <= 0 {
		burst = perHour
	}
	return &rateLimiter{perSecond: float64(perHour) / 3600, capacity: float64(burst), now: now, buckets: map[string]*tokenBucket{}}
}

// refillLocked returns key's bucket brought up to now.
func (l *rateLimiter) refillLocked(key string, now time.Time) *tokenBucket {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxRateBuckets {
			l.evictLocked(now)
		}
		b = &tokenBucket{tokens: l.capacity, at: now}
		l.buckets[key] = b
		return b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.capacity, b.tokens+d.Seconds()*l.perSecond)
		b.at = now
	}
	return b
}

// evictLocked forgets the buckets that are full again: a new bucket for
// their key would be the same.
func (l *rateLimiter) evictLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.perSecond >= l.capacity {
			delete(l.buckets, k)
		}
	}
}

// take spends one request of key's budget; ok is false when none is left.
// remaining is what is left after it.
func (l *rateLimiter) take(key string) (remaining int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refillLocked(key, l.now())
	if b.tokens < 1 {
		return 0, false
	}
	b.tokens--
	return int(b.tokens), true
}

// remaining is key's budget without spending any.
func (l *rateLimiter) remaining(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.refillLocked(key, l.now()).tokens)
}

// limit spends one request of the principal's budget, setting
// RateLimit-Remaining; it returns the 429 error when the budget is spent.
func (s *Server) limit(w http.ResponseWriter, p *principal) error {
	remaining, ok := s.limiter.take(p.limitKey)
	w.Header().Set("RateLimit-Remaining", strconv.Itoa(remaining))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(1/s.limiter.perSecond)+1))
		return &apiError{http.StatusTooManyRequests, "rate_limit", "Your account reached the API rate limit: please wait a few minutes before making new requests."}
	}
	return nil
}

// getRateLimits answers GET /account/rate-limits, which does not count.
func (s *Server) getRateLimits(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]int{"remaining": s.limiter.remaining(mustPrincipal(r).limitKey)})
}
