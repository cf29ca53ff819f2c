package dynotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Cluster is a control plane of `dyno server --cluster` nodes on loopback,
// each with its own data dir, ports, host agent and router.
type Cluster struct {
	t     testing.TB
	Nodes []*Platform
}

// Health is a node's GET /health.
type Health struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Leader  string `json:"leader"`
	Term    uint64 `json:"leader_term"`
	Leading bool   `json:"leading"`
}

// StartCluster starts n nodes: the first makes the shared secrets, the
// others take them with --cluster-secrets from its data dir. It returns
// once every node's API answers. Nodes are stopped when the test ends.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	ports := FreePorts(t, 5*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[5*i+4]))
	}
	root := t.TempDir()
	for i := range n {
		p := ports[5*i : 5*i+5]
		node := &Platform{
			t: t, Bin: bin, DataDir: filepath.Join(root, fmt.Sprintf("node%d", i+1)), Domain: "localhost",
			APIURL:    fmt.Sprintf("http://127.0.0.1:%d", p[0]),
			HTTPURL:   fmt.Sprintf("http://127.0.0.1:%d", p[1]),
			NATS:      fmt.Sprintf("127.0.0.1:%d", p[2]),
			HTTPSPort: p[3],
		}
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		node.args = []string{"server", "--data-dir", node.DataDir,
			"--api", fmt.Sprintf("127.0.0.1:%d", p[0]), "--http", fmt.Sprintf("127.0.0.1:%d", p[1]),
			"--nats-listen", node.NATS, "--domain", node.Domain, "--https", fmt.Sprintf("127.0.0.1:%d", p[3]),
			// Ranges outside the default 10.128.0.0/10 picks: three agents
			// on one machine never share one.
			"--dyno-network", fmt.Sprintf("10.%d.0.0/16", 210+i),
			"--cluster", "test", "--cluster-listen", routes[i], "--peers", strings.Join(peers, ",")}
		if i > 0 {
			node.args = append(node.args, "--cluster-secrets", c.Nodes[0].DataDir)
		}
		node.launch()
		t.Cleanup(func() {
			if t.Failed() && node.out != nil {
				// What a node said is how a failure here gets explained.
				out := node.out.String()
				t.Logf("node %s (%s) output, last 6 KB:\n%s", node.APIURL, node.DataDir, out[max(0, len(out)-6<<10):])
			}
			node.Stop(45 * time.Second)
		})
		c.Nodes = append(c.Nodes, node)
		if i == 0 {
			awaitSecrets(t, node)
		}
	}
	for _, node := range c.Nodes {
		node.awaitAPI(3 * time.Minute)
	}
	return c
}

// awaitSecrets waits until the first node has written what the others copy.
func awaitSecrets(t testing.TB, p *Platform) {
	t.Helper()
	files := []string{"admin-api-key", "nats-password", "cluster-password", "tls/ca.pem", "tls/ca-key.pem"}
	Eventually(t, 60*time.Second, "the first node's secrets", func() error {
		for _, f := range files {
			if b, err := os.ReadFile(filepath.Join(p.DataDir, f)); err != nil || len(b) == 0 {
				return fmt.Errorf("%s: not written yet", f)
			}
		}
		entries, err := os.ReadDir(filepath.Join(p.DataDir, "tls"))
		if err != nil || len(entries) < 4 {
			return fmt.Errorf("tls/: %d files", len(entries))
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the last file's write completes
}

// launch starts the node's process without waiting for it.
func (p *Platform) launch() {
	p.t.Helper()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(p.Bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start dyno server: %v", err)
	}
	p.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(p.cmd, p.done)
}

// awaitAPI waits until the node's API answers an authenticated request.
func (p *Platform) awaitAPI(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if key, err := os.ReadFile(filepath.Join(p.DataDir, "admin-api-key")); err == nil && len(key) > 0 {
			p.APIKey = strings.TrimSpace(string(key))
			req, _ := http.NewRequest("GET", p.APIURL+"/apps", nil)
			req.Header.Set("Authorization", "Bearer "+p.APIKey)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			p.t.Fatalf("dyno server exited (%v):\n%s", err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("dyno server's API did not answer in %s:\n%s", timeout, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the node's server, as a crash would; its dynos'
// containers stay behind until Relaunch (its agent removes them).
func (p *Platform) Kill() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// Relaunch starts a stopped or killed node again on its data dir and waits
// for its API.
func (p *Platform) Relaunch() {
	p.t.Helper()
	p.launch()
	p.awaitAPI(3 * time.Minute)
}

// Health asks the node's GET /health.
func (p *Platform) Health() (Health, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(p.APIURL + "/health")
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	var h Health
	if resp.StatusCode != 200 {
		return h, fmt.Errorf("GET /health: %s", resp.Status)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// Leader returns the node that says it leads, when the others agree.
func (c *Cluster) Leader() (*Platform, error) {
	var leader *Platform
	var name string
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		h, err := n.Health()
		if err != nil {
			return nil, err
		}
		if name == "" {
			name = h.Leader
		} else if h.Leader != name {
			return nil, fmt.Errorf("nodes disagree on the leader: %s and %s", name, h.Leader)
		}
		if h.Leading {
			leader = n
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("no live node leads (last seen leader %q)", name)
	}
	return leader, nil
}
