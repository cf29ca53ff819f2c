package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// fakeClock is moved by the test; timers fire when it passes them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Set moves the clock to t and fires the timers it passed.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// testLauncher stands for the platform's one-off dynos: one for the whole
// test cluster, as the store is.
type testLauncher struct {
	clock    Clock
	autoExit bool // dynos end at once with status 0

	mu       sync.Mutex
	n        int
	launches []launch
	exited   map[string]int
	failWith error
}

type launch struct {
	req  LaunchRequest
	name string
	at   time.Time
}

func newLauncher(clock Clock, autoExit bool) *testLauncher {
	return &testLauncher{clock: clock, autoExit: autoExit, exited: map[string]int{}}
}

func (l *testLauncher) Launch(_ context.Context, req LaunchRequest) (Dyno, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failWith != nil {
		return Dyno{}, l.failWith
	}
	l.n++
	name := fmt.Sprintf("%s.%d", req.NamePrefix, l.n)
	l.launches = append(l.launches, launch{req: req, name: name, at: l.clock.Now()})
	if l.autoExit {
		l.exited[name] = 0
	}
	return Dyno{ID: "id-" + name, Name: name}, nil
}

func (l *testLauncher) Exited(_ context.Context, _, dynoID string) (int, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.exited[strings.TrimPrefix(dynoID, "id-")]
	return st, ok, nil
}

func (l *testLauncher) exit(dyno string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exited[dyno] = status
}

func (l *testLauncher) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.launches)
}

func (l *testLauncher) all() []launch {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.launches)
}

// logSink keeps app log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Publish(appID string, line model.LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, appID+" "+line.Source+"["+line.Dyno+"]: "+line.Message)
}

func (s *logSink) matching(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// startScheduler runs a scheduler until the test ends (or stop is called).
func startScheduler(t *testing.T, st *store.Store, cfg Config, l Launcher) (s *Scheduler, stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s = New(cfg, st.SchedulerJobs, st.SchedulerRuns, l)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.Close()
			if err := <-done; err != nil {
				t.Errorf("scheduler %s: Run: %v", cfg.Node, err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func addJob(t *testing.T, st *store.Store, job model.SchedulerJob) model.SchedulerJob {
	t.Helper()
	if job.ID == "" {
		job.ID = fmt.Sprintf("job%d", time.Now().UnixNano())
	}
	if job.AppID == "" {
		job.AppID = "app1"
	}
	if _, err := ParseCron(job.Cron); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SchedulerJobs.Create(context.Background(), model.SchedulerJobKey(job.AppID, job.ID), job); err != nil {
		t.Fatal(err)
	}
	return job
}

// runsOf lists a job's runs by due time.
func runsOf(t *testing.T, st *store.Store, job model.SchedulerJob) []model.SchedulerRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, err := st.SchedulerRuns.List(ctx, model.SchedulerJobKey(job.AppID, job.ID)+".>")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]model.SchedulerRun, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.SchedulerRun) int { return a.DueAt.Compare(b.DueAt) })
	return out
}

// describeRuns is "10:01 running scheduler.1|10:02 skipped" for messages.
func describeRuns(runs []model.SchedulerRun) string {
	var parts []string
	for _, r := range runs {
		p := r.DueAt.Format("15:04") + " " + r.State
		if r.DynoName != "" {
			p += " " + r.DynoName
		}
		if r.ExitStatus != nil {
			p += fmt.Sprintf(" exit=%d", *r.ExitStatus)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "|")
}

// waitRuns waits (in real time: the schedulers work asynchronously) until
// the job's runs are described as want.
func waitRuns(t *testing.T, st *store.Store, job model.SchedulerJob, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = describeRuns(runsOf(t, st, job)); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("runs:\n got %s\nwant %s", got, want)
}
