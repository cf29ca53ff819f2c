package dynotest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// schedulerRun is the part of GET .../scheduler/jobs/{id}/runs we check.
type schedulerRun struct {
	DueAt time.Time `json:"due_at"`
	State string    `json:"state"`
	Dyno  *struct {
		Name string `json:"name"`
	} `json:"dyno"`
	ExitStatus *int   `json:"exit_status"`
	ClaimedBy  string `json:"claimed_by"`
}

// TestSchedulerEveryMinute runs a `* * * * *` job on a real platform whose
// scheduler clock runs ten times faster (DYNO_SCHEDULER_TIME_SCALE, a test
// knob: a cron minute every 6 s), in real one-off dynos scheduler.N.
func TestSchedulerEveryMinute(t *testing.T) {
	requireRoot(t)
	t.Setenv("DYNO_SCHEDULER_TIME_SCALE", "10")
	p := Start(t, dynoBin)
	everyMinute(t, []*Platform{p})
}

// TestSchedulerEveryMinuteCluster is the same on a three-node control
// plane, each node running a scheduler on one shared fast clock
// (DYNO_SCHEDULER_TIME_START): each minute runs once, not once per node.
func TestSchedulerEveryMinuteCluster(t *testing.T) {
	requireRoot(t)
	t.Setenv("DYNO_SCHEDULER_TIME_SCALE", "10")
	t.Setenv("DYNO_SCHEDULER_TIME_START", fmt.Sprint(time.Now().Unix()))
	c := StartCluster(t, dynoBin, 3)
	Eventually(t, 30*time.Second, "one leader all nodes agree on", func() error {
		_, err := c.Leader()
		return err
	})
	everyMinute(t, c.Nodes)
}

// everyMinute deploys an app through the first node, adds a job through
// the last, and checks through each node that three minutes ran once each.
func everyMinute(t *testing.T, nodes []*Platform) {
	p, last := nodes[0], nodes[len(nodes)-1]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("worker: sleep 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := "cronjobs"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", dir, "-a", app)
	p.MustCLI("config:set", "GREETING=hello", "-a", app)

	// Overlap is allowed so that a slow container start on a busy machine
	// (a scaled minute is 6 s) cannot turn a run into a skip.
	out := last.MustCLI("scheduler:add", "-a", app, "--cron", "* * * * *", "--allow-overlap", "--", "echo scheduled-$GREETING; exit 3")
	m := regexp.MustCompile(`Scheduled job ([0-9a-f]{8}) on cronjobs: echo scheduled-\$GREETING; exit 3, cron \* \* \* \* \*`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("scheduler:add said %q", out)
	}
	job := m[1]
	reader := 0
	runs := func() []schedulerRun {
		reader = (reader + 1) % len(nodes) // every node answers the same
		status, body := nodes[reader].API("GET", "/apps/"+app+"/scheduler/jobs/"+job+"/runs", nil)
		var rs []schedulerRun
		if status != 200 || json.Unmarshal([]byte(body), &rs) != nil {
			t.Fatalf("runs: %d %s", status, body)
		}
		return rs
	}
	ended := func(rs []schedulerRun) int {
		n := 0
		for _, r := range rs {
			if r.State == "ended" {
				n++
			}
		}
		return n
	}
	var rs []schedulerRun
	Eventually(t, 90*time.Second, "three runs ended", func() error {
		if rs = runs(); ended(rs) < 3 {
			return fmt.Errorf("runs so far: %+v", rs)
		}
		return nil
	})
	listed := p.MustCLI("scheduler", "-a", app)
	if !strings.Contains(listed, job+"  cron * * * * * (overlap allowed)  echo scheduled-$GREETING; exit 3") || !strings.Contains(listed, "exit 3") {
		t.Errorf("scheduler lists:\n%s", listed)
	}
	// The newest runs may still be running: check the ended ones.
	for len(rs) > 0 && rs[0].State != "ended" {
		rs = rs[1:]
	}
	// One run per minute, each in its own dyno, each exit status recorded.
	dynos, claimers := map[string]bool{}, map[string]int{}
	for i, r := range rs { // newest first
		if r.ExitStatus == nil || *r.ExitStatus != 3 || r.Dyno == nil || !strings.HasPrefix(r.Dyno.Name, "scheduler.") {
			t.Errorf("run %d: %+v, want ended with exit 3 in a scheduler.N dyno", i, r)
			continue
		}
		if r.DueAt.Second() != 0 || (i > 0 && !rs[i-1].DueAt.Equal(r.DueAt.Add(time.Minute))) {
			t.Errorf("run %d due at %s; runs are due on consecutive minutes: %+v", i, r.DueAt, rs)
		}
		dynos[r.Dyno.Name] = true
		claimers[r.ClaimedBy]++
	}
	if len(dynos) != len(rs) {
		t.Errorf("%d dynos for %d runs", len(dynos), len(rs))
	}
	// The logs have each run's output once, under its dyno's name.
	logs := p.MustCLI("logs", "-a", app, "-n", "1500")
	started := regexp.MustCompile(`app\[(scheduler\.\d+)\]: scheduled-hello`).FindAllStringSubmatch(logs, -1)
	seen := map[string]int{}
	for _, s := range started {
		seen[s[1]]++
	}
	for name := range dynos {
		if seen[name] != 1 {
			t.Errorf("%s printed its output %d times, want once:\n%s", name, seen[name], logs)
		}
	}
	if len(seen) != len(dynos) {
		t.Errorf("%d scheduler dynos in the logs, %d runs recorded:\n%s", len(seen), len(dynos), logs)
	}
	t.Logf("%d runs, one a minute, in %d dynos; claimed by %v", len(rs), len(dynos), claimers)
	p.MustCLI("scheduler:remove", job, "-a", app)
	if out := p.MustCLI("scheduler", "-a", app); !strings.Contains(out, "has no scheduled jobs") {
		t.Errorf("after scheduler:remove: %s", out)
	}
}
