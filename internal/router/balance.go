package router

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// PolicyVar is the config var that selects an app's balancing policy:
// "least-outstanding" (the default: the less busy of two random dynos),
// "random" (Heroku's documented behaviour) or "round-robin". Anything
// else means the default. It takes effect with the release that sets it.
const PolicyVar = "DYNO_ROUTING_POLICY"

// policy is how a request's dyno is chosen among the app's up dynos.
type policy uint8

const (
	policyP2C policy = iota // least outstanding of two random choices
	policyRandom
	policyRoundRobin
)

func parsePolicy(s string) policy {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "random":
		return policyRandom
	case "round-robin", "roundrobin", "rr":
		return policyRoundRobin
	}
	return policyP2C
}

func (p policy) String() string {
	switch p {
	case policyRandom:
		return "random"
	case policyRoundRobin:
		return "round-robin"
	}
	return "least-outstanding"
}

// appState is one app's traffic counters in this router, shared by every
// route table (the routes change, the counters go on).
type appState struct {
	name     atomic.Pointer[string] // current name, for metrics labels
	inflight atomic.Int64           // requests in this router (H11 backlog)
	conns    atomic.Int64           // client connections attributed to the app (H22)
	rr       atomic.Uint64          // round-robin cursor
	metrics  appMetrics
}

// eligible reports whether d may be tried: not tried yet by this request
// and not in quarantine. now is read only when a quarantine is set.
func eligible(d *dyno, tried []*dyno, now func() int64) bool {
	if q := d.quarantine.Load(); q != 0 && now() < q {
		return false
	}
	return !slices.Contains(tried, d)
}

func nanotime() int64 { return time.Now().UnixNano() }

// pick chooses the dyno for an attempt by the app's policy among the
// eligible dynos, or nil when none is.
func (a *app) pick(tried []*dyno) *dyno {
	up := a.up
	n := len(up)
	switch {
	case n == 0:
		return nil
	case n == 1:
		if eligible(up[0], tried, nanotime) {
			return up[0]
		}
		return nil
	}
	var start int
	switch a.policy {
	case policyP2C:
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		x, y := up[i], up[j]
		okx, oky := eligible(x, tried, nanotime), eligible(y, tried, nanotime)
		switch {
		case okx && oky:
			if y.outstanding.Load() < x.outstanding.Load() {
				return y
			}
			return x
		case okx:
			return x
		case oky:
			return y
		}
		// Both out (retries, quarantine): the least busy of the rest.
		var best *dyno
		for k := range n {
			d := up[(i+k)%n]
			if eligible(d, tried, nanotime) && (best == nil || d.outstanding.Load() < best.outstanding.Load()) {
				best = d
			}
		}
		return best
	case policyRoundRobin:
		start = int(a.state.rr.Add(1) % uint64(n))
	default:
		start = rand.IntN(n)
	}
	for k := range n {
		if d := up[(start+k)%n]; eligible(d, tried, nanotime) {
			return d
		}
	}
	return nil
}

// quarantineEnd is the earliest end of quarantine among the dynos not
// tried yet (0 if one of them is not quarantined, or none is left).
func (a *app) quarantineEnd(tried []*dyno) (end int64, any bool) {
	for _, d := range a.up {
		if slices.Contains(tried, d) {
			continue
		}
		q := d.quarantine.Load()
		if !any || q < end {
			end = q
		}
		any = true
	}
	return end, any
}
