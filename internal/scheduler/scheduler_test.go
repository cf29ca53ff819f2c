package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// t0 is half a minute before the first due time of a `* * * * *` job.
var t0 = time.Date(2026, 3, 2, 10, 0, 30, 0, time.UTC)

func at(hhmm string) time.Time {
	t, _ := time.Parse("15:04", hhmm)
	return time.Date(2026, 3, 2, t.Hour(), t.Minute(), 0, 0, time.UTC)
}

// runEveryMinute advances a shared clock through three minutes of a
// `* * * * *` job run by one scheduler per store (all on one cluster) and
// checks that each minute ran exactly once.
func runEveryMinute(t *testing.T, stores []*store.Store) {
	clock := newFakeClock(t0)
	launcher := newLauncher(clock, true)
	job := addJob(t, stores[0], model.SchedulerJob{Command: "bin/cleanup", Cron: "* * * * *", Size: "basic", CreatedAt: t0})
	var scheds []*Scheduler
	for i, st := range stores {
		s, _ := startScheduler(t, st, Config{Node: fmt.Sprintf("node-%d", i+1), Clock: clock}, launcher)
		scheds = append(scheds, s)
	}
	want := ""
	for i, minute := range []string{"10:01", "10:02", "10:03"} {
		clock.Set(at(minute))
		// The dyno ends at once; its exit status is recorded at the next
		// poll, which comes at once after a start.
		if i > 0 {
			want += "|"
		}
		want += fmt.Sprintf("%s ended scheduler.%d exit=0", minute, i+1)
		waitRuns(t, stores[0], job, want)
	}
	// Past the last minute: nobody runs anything late.
	clock.Advance(20 * time.Second)
	time.Sleep(300 * time.Millisecond)
	waitRuns(t, stores[0], job, want)

	launches := launcher.all()
	if len(launches) != 3 {
		t.Fatalf("%d dynos started, want 3: %+v", len(launches), launches)
	}
	for i, l := range launches {
		if l.req.Command != "bin/cleanup" || l.req.Size != "basic" || l.req.AppID != "app1" || l.req.NamePrefix != "scheduler" {
			t.Errorf("launch %d: %+v", i, l.req)
		}
		if want := at(fmt.Sprintf("10:%02d", i+1)); !l.at.Equal(want) {
			t.Errorf("launch %d at %s, want %s", i, l.at, want)
		}
	}
	var claimed, lost int64
	for i, s := range scheds {
		st := s.Stats()
		t.Logf("node-%d: %+v", i+1, st)
		claimed += st.Claimed
		lost += st.Lost
		if st.Missed != 0 || st.Skipped != 0 || st.Failed != 0 {
			t.Errorf("node-%d: %+v, want no missed, skipped or failed runs", i+1, st)
		}
	}
	if claimed != 3 {
		t.Errorf("%d claims in all, want 3", claimed)
	}
	t.Logf("%d due times claimed, %d claims lost to another node", claimed, lost)
}

func TestExactlyOnceThreeSchedulersOneServer(t *testing.T) {
	st, _ := storetest.New(t)
	runEveryMinute(t, []*store.Store{st, st, st})
}

func TestMissedRunsAreRecordedNotRun(t *testing.T) {
	tests := []struct {
		name     string
		back     time.Time // when the platform comes back
		grace    time.Duration
		maxRecs  int
		wantRuns string
		wantLog  string
	}{
		{
			name: "latest within the grace runs",
			back: at("10:05").Add(20 * time.Second),
			wantRuns: "10:01 ended scheduler.1 exit=0|10:02 missed|10:03 missed|10:04 missed|" +
				"10:05 ended scheduler.2 exit=0",
			wantLog: "Missed 3 runs of job ",
		},
		{
			name:     "none within the grace",
			back:     at("10:03").Add(30 * time.Second),
			grace:    10 * time.Second,
			wantRuns: "10:01 ended scheduler.1 exit=0|10:02 missed|10:03 missed",
			wantLog:  "Missed 2 runs of job ",
		},
		{
			name:     "a long outage is counted, the latest recorded",
			back:     at("12:00").Add(10 * time.Second),
			maxRecs:  3,
			wantRuns: "10:01 ended scheduler.1 exit=0|11:57 missed|11:58 missed|11:59 missed|12:00 ended scheduler.2 exit=0",
			wantLog:  "Missed 118 runs of job ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := storetest.New(t)
			clock := newFakeClock(t0)
			launcher := newLauncher(clock, true)
			logs := &logSink{}
			cfg := Config{Node: "node-1", Clock: clock, Logs: logs, MaxMissedRecords: tt.maxRecs, Grace: tt.grace}
			job := addJob(t, st, model.SchedulerJob{Command: "bin/report", Cron: "* * * * *", CreatedAt: t0})
			_, stop := startScheduler(t, st, cfg, launcher)
			clock.Set(at("10:01"))
			waitRuns(t, st, job, "10:01 ended scheduler.1 exit=0")
			stop() // the platform goes down

			clock.Set(tt.back)
			startScheduler(t, st, cfg, launcher)
			waitRuns(t, st, job, tt.wantRuns)
			got := logs.matching(tt.wantLog)
			if len(got) != 1 || !strings.Contains(got[0], "app1 app[scheduler]: ") || !strings.Contains(got[0], "(bin/report) while the platform was down") {
				t.Errorf("log lines %q, want one app[scheduler] line with %q", logs.matching(""), tt.wantLog)
			}
			if n := len(logs.matching("Missed")); n != 1 {
				t.Errorf("%d Missed lines, want 1: %q", n, logs.matching(""))
			}
		})
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		name  string
		allow bool
		want  string
	}{
		{"skipped while the previous run runs", false,
			"10:01 ended scheduler.1 exit=3|10:02 skipped|10:03 running scheduler.2"},
		{"allowed to overlap", true,
			"10:01 ended scheduler.1 exit=3|10:02 running scheduler.2|10:03 running scheduler.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := storetest.New(t)
			clock := newFakeClock(t0)
			launcher := newLauncher(clock, false)
			logs := &logSink{}
			job := addJob(t, st, model.SchedulerJob{Command: "bin/slow", Cron: "* * * * *", AllowOverlap: tt.allow, CreatedAt: t0})
			startScheduler(t, st, Config{Node: "node-1", Clock: clock, Logs: logs}, launcher)
			clock.Set(at("10:01"))
			waitRuns(t, st, job, "10:01 running scheduler.1")
			clock.Set(at("10:02"))
			second := "10:02 skipped"
			if tt.allow {
				second = "10:02 running scheduler.2"
			}
			waitRuns(t, st, job, "10:01 running scheduler.1|"+second)
			launcher.exit("scheduler.1", 3)
			clock.Advance(5 * time.Second) // past the next poll
			waitRuns(t, st, job, "10:01 ended scheduler.1 exit=3|"+second)
			clock.Set(at("10:03"))
			waitRuns(t, st, job, tt.want)

			skips := logs.matching("Skipped job")
			if tt.allow && len(skips) != 0 || !tt.allow && (len(skips) != 1 || !strings.Contains(skips[0], "its previous run scheduler.1 is still running")) {
				t.Errorf("skip log lines: %q", skips)
			}
			if !tt.allow {
				runs := runsOf(t, st, job)
				if !strings.Contains(runs[1].Error, "scheduler.1") {
					t.Errorf("skipped run's error %q, want the running dyno named", runs[1].Error)
				}
			}
		})
	}
}

func TestFailedLaunchAndAbandonedClaim(t *testing.T) {
	st, _ := storetest.New(t)
	clock := newFakeClock(t0)
	launcher := newLauncher(clock, true)
	launcher.failWith = errors.New("app1 has no release yet: deploy it first")
	logs := &logSink{}
	job := addJob(t, st, model.SchedulerJob{Command: "bin/x", Cron: "* * * * *", CreatedAt: t0})

	// A claim left "starting" by a node that died before starting the dyno.
	abandoned := model.SchedulerRun{JobID: job.ID, AppID: job.AppID, DueAt: at("10:00"), State: model.RunStarting, ClaimedBy: "node-9", StartedAt: at("10:00")}
	if _, err := st.SchedulerRuns.Create(t.Context(), model.SchedulerRunKey(job.AppID, job.ID, at("10:00")), abandoned); err != nil {
		t.Fatal(err)
	}
	startScheduler(t, st, Config{Node: "node-1", Clock: clock, Logs: logs, StartTimeout: 90 * time.Second}, launcher)
	// The abandoned claim still counts as running: 10:01 is skipped.
	clock.Set(at("10:01"))
	waitRuns(t, st, job, "10:00 starting|10:01 skipped")
	clock.Set(at("10:01").Add(30 * time.Second))
	waitRuns(t, st, job, "10:00 failed|10:01 skipped")
	clock.Set(at("10:02"))
	waitRuns(t, st, job, "10:00 failed|10:01 skipped|10:02 failed")
	runs := runsOf(t, st, job)
	if !strings.Contains(runs[0].Error, "node-9") || !strings.Contains(runs[2].Error, "deploy it first") {
		t.Errorf("errors %q and %q", runs[0].Error, runs[2].Error)
	}
	if got := logs.matching("could not start: app1 has no release yet"); len(got) != 1 {
		t.Errorf("log lines %q", logs.matching(""))
	}
}
