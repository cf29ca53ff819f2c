package router

import "time"

// Busy polling (Config.BusyPoll). Under steady load, an event loop that
// runs out of events is given more within microseconds. Sleeping in
// between costs a trip through Go's scheduler and a wake-up across CPUs,
// which is dear in a VM (in bench/router's VM, a proxy answering one
// request at a time spends about 70 µs of CPU per request, nginx as much
// as the router, most of it in two sleeps and wake-ups), and it delays
// the events that end it. So a loop polls its set for a while before it
// sleeps (evloop.wait), giving way at each turn to what else waits for
// its P (Gosched) or its CPU (sched_yield); when the CPU turns out to be
// wanted, it stops polling. With four connections (bench/router's "low"
// run) and a CPU of its own, the router served 8-20% more requests per
// second, sooner, for about 10% more CPU per request; with the CPUs
// shared with its load it lost up to 8%, so it is off by default.
//
// A loop polls only while its recent idle periods were short: while,
// by an exponentially weighted average over about the last 16, nine in
// ten of them ended within BusyPoll. Polling that fails costs the whole
// window, more than the sleep it could not spare, so it pays only when it
// nearly always succeeds: under a steady load. A loop with moderate or
// little traffic sleeps at once and burns no CPU polling.

const (
	// pollWhen is the share of short idle periods (of 1<<16) above
	// which a loop polls.
	pollWhen = 9 << 16 / 10
	// parkEvery bounds how long a loop that keeps finding events while
	// it polls goes without sleeping in Go's poller: its sleeps are when
	// its P polls the network for the connections goroutines serve.
	parkEvery = time.Millisecond
	// yieldBusy is the longest a turn of busy polling (Gosched,
	// sched_yield, epoll_wait) takes when nothing else runs: a longer one
	// gave the CPU or the P to something that wanted it.
	yieldBusy = 5 * time.Microsecond
)

// busyPoll is a loop's busy-polling state; the loop's goroutine owns it.
type busyPoll struct {
	limit time.Duration // Config.BusyPoll
	// short is the weighted share of recent idle periods that ended
	// within limit, of 1<<16.
	short  uint32
	parked int64 // when the loop last woke from a sleep, unix ns
}

// spinFor is how long a loop that ran out of events at now polls before
// it sleeps.
func (b *busyPoll) spinFor(now int64) time.Duration {
	if b.limit <= 0 || b.short < pollWhen || now-b.parked >= int64(parkEvery) {
		return 0
	}
	return b.limit
}

// ended records an idle period of d that ended with events, polling or
// asleep.
func (b *busyPoll) ended(d time.Duration) {
	var x uint32
	if d <= b.limit {
		x = 1 << 16
	}
	// short += (x - short) / 16, in unsigned arithmetic.
	b.short = b.short - b.short/16 + x/16
}

// slept records a sleep in Go's poller that ended at woke (unix ns), after
// an idle period of d; contended if the loop stopped polling because
// another thread wanted the CPU or the P, which makes it start over.
func (b *busyPoll) slept(d time.Duration, woke int64, contended bool) {
	b.parked = woke
	if contended {
		b.short = 0
		return
	}
	b.ended(d)
}
