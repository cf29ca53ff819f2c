package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// TestBusyPollGate follows whether a loop polls through its idle periods.
func TestBusyPollGate(t *testing.T) {
	const (
		limit = 50 * time.Microsecond
		short = 10 * time.Microsecond
		long  = time.Millisecond
	)
	type step struct {
		n     int           // idle periods like this one
		d     time.Duration // each one's length
		sleep bool          // it ended in a sleep (else polling ended it)
		cont  bool          // polling stopped for another thread
		poll  bool          // whether the loop polls after them
	}
	tests := []struct {
		name    string
		limit   time.Duration
		polling bool // the loop polls already
		steps   []step
	}{
		{"a new loop sleeps until its idle periods are short", limit, false, []step{
			{1, short, true, false, false}, {30, short, true, false, false}, {10, short, true, false, true},
		}},
		{"an idle period of the limit is short", limit, false, []step{{40, limit, true, false, true}}},
		{"two long idle periods in a row stop it", limit, true, []step{
			{1, long, true, false, true}, {1, long, true, false, false}, {40, short, false, false, true},
		}},
		{"one long idle period among short ones does not", limit, true, []step{
			{1, long, true, false, true}, {20, short, false, false, true}, {1, long, true, false, true},
		}},
		{"moderate traffic, one long idle period in four, never polls", limit, false, []step{
			{3, short, true, false, false}, {1, long, true, false, false}, {3, short, true, false, false},
			{1, long, true, false, false}, {3, short, true, false, false}, {1, long, true, false, false},
		}},
		{"another thread that wants the CPU stops it at once", limit, true, []step{
			{1, short, true, true, false}, {30, short, true, false, false}, {10, short, true, false, true},
		}},
		{"off", -1, true, []step{{1, 0, true, false, false}, {40, 0, false, false, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := busyPoll{limit: tt.limit}
			if tt.polling {
				b.short = 1 << 16
			}
			now := int64(time.Hour)
			for i, s := range tt.steps {
				for range s.n {
					now += int64(s.d)
					if s.sleep {
						b.slept(s.d, now, s.cont)
					} else {
						b.ended(s.d)
					}
				}
				if got := b.spinFor(now) > 0; got != s.poll {
					t.Fatalf("after step %d (%d idle periods of %v, asleep %v, contended %v): polls %v, want %v",
						i, s.n, s.d, s.sleep, s.cont, got, s.poll)
				}
			}
		})
	}
}

// TestBusyPollParkEvery: a loop that has not slept for parkEvery sleeps
// at once, so that its P polls the network for the goroutines.
func TestBusyPollParkEvery(t *testing.T) {
	b := busyPoll{limit: 50 * time.Microsecond, short: 1 << 16}
	woke := int64(time.Hour)
	b.slept(time.Microsecond, woke, false)
	for _, tt := range []struct {
		after time.Duration
		want  time.Duration
	}{{0, b.limit}, {parkEvery - 1, b.limit}, {parkEvery, 0}, {time.Hour, 0}} {
		if got := b.spinFor(woke + int64(tt.after)); got != tt.want {
			t.Errorf("%v after a sleep: polls %v, want %v", tt.after, got, tt.want)
		}
	}
	fresh := busyPoll{limit: 50 * time.Microsecond, short: 1 << 16} // never slept
	if got := fresh.spinFor(int64(time.Hour)); got != 0 {
		t.Errorf("a loop that never slept: polls %v, want 0", got)
	}
}

// TestLoopBusyPoll checks that loops under steady traffic busy-poll, and
// serve every request while they do; and that with busy polling off they
// never poll.
func TestLoopBusyPoll(t *testing.T) {
	tests := []struct {
		name     string
		busyPoll time.Duration
		poll     bool
	}{
		// A long limit: under the race detector idle periods are long.
		{"on", 5 * time.Millisecond, true},
		{"off", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHelloEnv(t, Config{BusyPoll: tt.busyPoll})
			ed := e.server.edge
			const clients, requests = 8, 300
			helloLoad(t, e, clients, func(i int) bool { return i < requests }, 0)
			ed.loopsMu.Lock()
			loops := slices.Clone(ed.loops)
			ed.loopsMu.Unlock()
			if len(loops) == 0 {
				t.Fatal("no event loop served the requests")
			}
			ed.stopLoops() // after which the loops' fields are the test's to read
			polls := 0
			for _, l := range loops {
				polls += l.polls
			}
			t.Logf("%d loops polled %d times over %d requests", len(loops), polls, clients*requests)
			if tt.poll && polls == 0 {
				t.Error("busy polling on: the loops never polled")
			}
			if !tt.poll && polls != 0 {
				t.Errorf("busy polling off: the loops polled %d times", polls)
			}
		})
	}
}

// TestLoopWakes checks that no request waits on a loop that slept through
// its events: a loop whose wake-up was lost sleeps until something else
// wakes it (its sweeper, each second), and every request in it waits.
// With busy polling on and off, clients keep the loops busy for a while;
// none of their requests may take 300 ms. The race it looks for is rare:
// with a wait that skipped its first epoll_wait (and so lost the
// readiness the poller forgets as a wait begins), one run in eight failed.
func TestLoopWakes(t *testing.T) {
	if testing.Short() {
		t.Skip("a load of a few seconds")
	}
	for _, busyPoll := range []time.Duration{5 * time.Millisecond, 0} {
		t.Run(fmt.Sprintf("busy-poll=%v", busyPoll), func(t *testing.T) {
			e := newHelloEnv(t, Config{BusyPoll: busyPoll})
			end := time.Now().Add(2 * time.Second)
			helloLoad(t, e, 16, func(int) bool { return time.Now().Before(end) }, 300*time.Millisecond)
		})
	}
}

// newHelloEnv is newEnvOver (plain HTTP) with app "hello" on one up dyno
// that answers "hi", and the router's log lines drained: a full channel
// would block it.
func newHelloEnv(t *testing.T, cfg Config) *env {
	e := newEnvOver(t, cfg, false)
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, says(t, "hi"))
	e.waitTable("hello", upCount(1))
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-e.logs.ch:
			case <-done:
				return
			}
		}
	}()
	return e
}

// helloLoad runs clients keep-alive connections to app "hello" of e, each
// sending its requests one at a time while more(i) holds for its i-th,
// and fails t unless every answer is 200 "hi" and, if slow is set, takes
// less than slow (a loop that slept through its events).
func helloLoad(t *testing.T, e *env, clients int, more func(i int) bool, slow time.Duration) {
	t.Helper()
	errs := make(chan error, clients)
	for range clients {
		go func() {
			errs <- helloClient(e.front.Listener.Addr().String(), more, slow)
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// helloClient is one connection of helloLoad.
func helloClient(addr string, more func(i int) bool, slow time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; more(i); i++ {
		start := time.Now()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "hi" {
			return fmt.Errorf("request %d: %d %q %v, want 200 \"hi\"", i, resp.StatusCode, body, err)
		}
		if took := time.Since(start); slow > 0 && took >= slow {
			return fmt.Errorf("request %d took %v: a loop slept through its events", i, took)
		}
	}
	return nil
}
