package dynotest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHosts runs the control plane and three `dyno agent` hosts, each in
// a network namespace of its own, and serves an app of three web dynos
// across them while agents restart, hosts are cut off and hosts die.
func TestHosts(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (iproute2, util-linux)", tool)
		}
	}
	p := StartControlPlane(t, dynoBin)
	hosts := []*Host{StartHost(t, p, 1), StartHost(t, p, 2), StartHost(t, p, 3)}
	defer func() {
		if t.Failed() {
			for _, h := range hosts {
				t.Logf("agent %s:\n%s", h.ID, h.Output())
			}
			t.Logf("server:\n%s", p.Output())
		}
	}()
	marker := fmt.Sprintf("hostsmark%d", os.Getpid())
	app := "spread"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", probeApp(t, marker), "-a", app)
	p.MustCLI("ps:scale", "web=3", "-a", app)
	const want = 3
	webs := func(h *Host) []int { return h.Procs("python3", "probe.py "+marker) }
	// capacity reports nil once want web dynos run on live hosts, the API
	// lists exactly want web dynos, all up, and the router answers.
	capacity := func(dead *Host) error {
		n := 0
		for _, h := range hosts {
			if h != dead {
				n += len(webs(h))
			}
		}
		if n != want {
			return fmt.Errorf("%d web processes on live hosts, want %d", n, want)
		}
		code, body := p.API("GET", "/apps/"+app+"/dynos", nil)
		var dynos []struct{ Type, State string }
		if code != 200 || json.Unmarshal([]byte(body), &dynos) != nil {
			return fmt.Errorf("GET dynos: %d %.200s", code, body)
		}
		up := 0
		for _, d := range dynos {
			if d.Type == "web" && d.State == "up" {
				up++
			}
		}
		if up != want || len(dynos) != want {
			return fmt.Errorf("%d dynos listed, %d web up: %s", len(dynos), up, body)
		}
		if _, err := p.probe(t, app, "/"); err != nil {
			return err
		}
		return nil
	}
	Eventually(t, 3*time.Minute, "three web dynos up across the hosts", func() error { return capacity(nil) })
	for _, h := range hosts {
		if n := len(webs(h)); n != 1 {
			t.Errorf("host %s runs %d web dynos; want one on each of the three hosts", h.ID, n)
		}
	}
	busiest := func(except *Host) *Host {
		var best *Host
		for _, h := range hosts {
			if h != except && (best == nil || len(webs(h)) > len(webs(best))) {
				best = h
			}
		}
		return best
	}

	t.Run("an agent restarts and its dynos run on, serving", func(t *testing.T) {
		h := busiest(nil)
		before := webs(h)
		if len(before) == 0 {
			t.Fatalf("host %s runs no web dyno", h.ID)
		}
		stop := make(chan struct{})
		var fails, ok atomic.Int64
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := p.probe(t, app, "/"); err != nil {
					fails.Add(1)
				} else {
					ok.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		h.StopAgent()
		h.Start()
		Eventually(t, 30*time.Second, "the restarted agent adopts its dynos", func() error {
			if !strings.Contains(h.Output(), "adopted the dynos") {
				return fmt.Errorf("no adoption yet")
			}
			return capacity(nil)
		})
		time.Sleep(7 * time.Second) // past the host TTL: no fencing, no replacement
		close(stop)
		after := webs(h)
		sort.Ints(before)
		sort.Ints(after)
		if !slices.Equal(before, after) {
			t.Errorf("web dyno pids on %s were %v before the agent restart, %v after; want the same processes", h.ID, before, after)
		}
		if err := capacity(nil); err != nil {
			t.Error(err)
		}
		t.Logf("requests during the agent restart: %d answered, %d failed", ok.Load(), fails.Load())
		if fails.Load() > 0 {
			t.Errorf("%d requests failed while the agent restarted", fails.Load())
		}
	})

	t.Run("a host cut off fences its dynos: no type runs over its quantity beyond the bound", func(t *testing.T) {
		h := busiest(nil)
		const bound = 2 * time.Second // FenceGrace 1 s + fence check 0.1 s + sampling
		h.Cut(true)
		cut := time.Now()
		var over, longest time.Duration
		var overSince time.Time
		fencedAt := time.Duration(0)
		for time.Since(cut) < 20*time.Second {
			n := 0
			for _, x := range hosts {
				n += len(webs(x))
			}
			if len(webs(h)) == 0 && fencedAt == 0 {
				fencedAt = time.Since(cut)
			}
			if n > want {
				if overSince.IsZero() {
					overSince = time.Now()
				}
				over = time.Since(overSince)
				longest = max(longest, over)
			} else {
				overSince = time.Time{}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("cut host %s: its dynos stopped %s after the cut; more than %d web dynos ran for at most %s", h.ID, fencedAt, want, longest)
		if fencedAt == 0 {
			t.Errorf("the cut-off host still runs %d web dynos after 20 s", len(webs(h)))
		}
		if longest > bound {
			t.Errorf("more than %d web dynos ran for %s; the bound is %s", want, longest, bound)
		}
		Eventually(t, 30*time.Second, "capacity back on the other hosts", func() error { return capacity(h) })
		h.Cut(false)
		healed := time.Now()
		// The agent reconnects, re-reads its assignments (all moved) and
		// drops the statuses of its stopped dynos.
		Eventually(t, 30*time.Second, "the returning host cleans up", func() error {
			if !strings.Contains(h.Output(), "heartbeats reach the control plane again") {
				return fmt.Errorf("the agent has not reconnected")
			}
			return capacity(nil)
		})
		t.Logf("the returning host was clean %s after the link came back", time.Since(healed).Round(10*time.Millisecond))
		if n := len(webs(h)); n != 0 {
			t.Errorf("the returning host runs %d web dynos whose assignments were moved; want 0", n)
		}
	})

	t.Run("a host dies: capacity is restored elsewhere", func(t *testing.T) {
		var took []time.Duration
		for run := range 5 {
			h := busiest(nil)
			if len(webs(h)) == 0 {
				t.Fatalf("run %d: no host runs a web dyno", run)
			}
			h.KillAll()
			start := time.Now()
			for capacity(h) != nil {
				if time.Since(start) > 60*time.Second {
					t.Fatalf("run %d: capacity not restored within 60 s: %v", run, capacity(h))
				}
				time.Sleep(100 * time.Millisecond)
			}
			took = append(took, time.Since(start))
			t.Logf("run %d: killed %s, capacity restored in %s", run, h.ID, took[run].Round(10*time.Millisecond))
			h.Start()
			Eventually(t, 30*time.Second, "steady", func() error { return capacity(nil) })
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		t.Logf("failover after a host's death: median %s (min %s, max %s) over 5 runs", took[2].Round(10*time.Millisecond),
			took[0].Round(10*time.Millisecond), took[4].Round(10*time.Millisecond))
		if took[2] > 10*time.Second {
			t.Errorf("median failover %s; the goal is 10 s", took[2])
		}
	})
}
