package dynotest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterSurvivesLeaderLoss runs a control plane of three real
// `dyno server --cluster` processes, deploys through one, kills the
// manifold leader's node with SIGKILL, and keeps scaling, serving and
// reading every acknowledged write through the survivors. It measures how
// long leadership takes to move, over three kills.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	requireRoot(t)
	c := StartCluster(t, dynoBin, 3)
	var leader *Platform
	Eventually(t, 30*time.Second, "one leader all nodes agree on", func() (err error) {
		leader, err = c.Leader()
		return err
	})

	n1 := c.Nodes[0]
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	n1.MustCLI("apps:create", "hello")
	n1.MustCLI("deploy", filepath.Join(root, "examples", "hello"), "-a", "hello")
	n1.MustCLI("ps:wait", "-a", "hello")
	for i, n := range c.Nodes {
		Eventually(t, 30*time.Second, fmt.Sprintf("hello through node %d's router", i+1), serves(n, "hello"))
	}

	// Acknowledged writes through the leader's node, which then dies.
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("acked-%02d", i)
		if code, body := leader.API("POST", "/apps", strings.NewReader(`{"name":"`+name+`"}`)); code != 201 {
			t.Fatalf("create %s through the leader: %d %s", name, code, body)
		}
		names = append(names, name)
	}

	var changes []time.Duration
	dead := leader
	if took := killLeader(t, c, dead); took > 0 {
		changes = append(changes, took)
	}
	survivor := c.Nodes[0]
	if survivor == dead {
		survivor = c.Nodes[1]
	}

	t.Run("every acknowledged write survives", func(t *testing.T) {
		took := Eventually(t, 60*time.Second, "every app through a survivor", func() error {
			code, body := survivor.API("GET", "/apps", nil)
			if code != 200 {
				return fmt.Errorf("GET /apps: %d %s", code, body)
			}
			var apps []struct{ Name string }
			if err := json.Unmarshal([]byte(body), &apps); err != nil {
				return err
			}
			var have []string
			for _, a := range apps {
				have = append(have, a.Name)
			}
			for _, n := range append(names, "hello") {
				if !slices.Contains(have, n) {
					return fmt.Errorf("%s is missing from %v", n, have)
				}
			}
			return nil
		})
		t.Logf("all %d apps read back through a survivor %s after the leader change", len(names)+1, took.Round(time.Millisecond))
	})

	t.Run("scaling and serving go on", func(t *testing.T) {
		start := time.Now()
		Eventually(t, 60*time.Second, "ps:scale web=2 through a survivor", func() error {
			_, errOut, err := survivor.CLI("ps:scale", "web=2", "-a", "hello")
			if err != nil {
				return fmt.Errorf("%v: %s", err, errOut)
			}
			return nil
		})
		t.Logf("ps:scale accepted %s after the kill's leader change", time.Since(start).Round(time.Millisecond))
		// web.2 starts on a live host; web.1 keeps answering (from its old
		// container until the dead host lapses, then from its replacement).
		Eventually(t, 90*time.Second, "web.1 and web.2 answer through a survivor", func() error {
			seen := map[string]bool{}
			for range 20 {
				_, body, _, err := survivor.Get("hello", "/")
				if err != nil {
					return err
				}
				var a struct{ Dyno string }
				json.Unmarshal([]byte(body), &a)
				seen[a.Dyno] = true
			}
			if !seen["web.1"] || !seen["web.2"] {
				return fmt.Errorf("answered by %v", seen)
			}
			return nil
		})
		for _, n := range c.Nodes {
			if n != dead {
				Eventually(t, 30*time.Second, "hello through a surviving router", serves(n, "hello"))
			}
		}
	})

	// More leader changes for a median: the dead node rejoins, then the
	// current leader dies.
	for len(changes) < 3 && !t.Failed() {
		dead.Relaunch()
		time.Sleep(3 * time.Second) // the rejoined node catches up its replicas
		Eventually(t, 60*time.Second, "one leader after the rejoin", func() (err error) {
			leader, err = c.Leader()
			return err
		})
		dead = leader
		if took := killLeader(t, c, dead); took > 0 {
			changes = append(changes, took)
		}
	}
	if dead.cmd == nil {
		dead.Relaunch() // its agent removes the dynos its crash left behind
	}
	if len(changes) == 0 {
		t.Fatal("no leader change was measured")
	}
	slices.Sort(changes)
	t.Logf("leader change after kill -9 of the leader's node: median %s of %v", changes[len(changes)/2].Round(time.Millisecond), changes)

	t.Run("the rejoined node reads every app", func(t *testing.T) {
		Eventually(t, 60*time.Second, "every app through the rejoined node", func() error {
			code, body := dead.API("GET", "/apps", nil)
			if code != 200 {
				return fmt.Errorf("GET /apps: %d", code)
			}
			for _, n := range names {
				if !strings.Contains(body, `"`+n+`"`) {
					return fmt.Errorf("%s missing", n)
				}
			}
			return nil
		})
	})
}

// killLeader kills dead (the leader's node) with SIGKILL and returns how
// long until a surviving node leads.
func killLeader(t *testing.T, c *Cluster, dead *Platform) time.Duration {
	t.Helper()
	h, err := dead.Health()
	start := time.Now()
	dead.Kill()
	if err != nil || !h.Leading {
		// Leadership moved between finding the leader and the kill: no
		// sample (the caller relaunches the node and tries again).
		t.Logf("the leader changed just before the kill (%+v, %v): not measured", h, err)
		return 0
	}
	for time.Since(start) < 60*time.Second {
		for _, n := range c.Nodes {
			if n == dead {
				continue
			}
			if nh, err := n.Health(); err == nil && nh.Leading {
				took := time.Since(start)
				t.Logf("killed leader %s; %s leads after %s", h.Node, nh.Node, took.Round(time.Millisecond))
				return took
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no surviving node leads 60 s after the leader %s died", h.Node)
	return 0
}

// serves checks that app answers 200 through p's router.
func serves(p *Platform, app string) func() error {
	return func() error {
		code, body, _, err := p.Get(app, "/")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	}
}
