package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/lease"
)

// ClusterConfig makes `dyno server` one node of a highly available control
// plane: three (or five) nodes form a NATS cluster, every stream and KV
// bucket has 3 replicas, every node answers the API, runs a router and a
// host agent, and one node at a time (the lease holder) runs the manifold
// and the log drains.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node; empty runs the
	// single-node platform.
	Name string
	// Listen is this node's NATS route address (host:port) that the other
	// nodes dial.
	Listen string
	// Peers are the other nodes' Listen addresses.
	Peers []string
	// SecretsFrom is a directory holding the first node's shared secrets
	// (clusterSecrets: API key, NATS and route passwords, platform CA),
	// copied into this node's data dir on its first start. The first node
	// starts without it and makes them.
	SecretsFrom string
	// LeaseTTL is the manifold leader's lease (5 s when 0): a dead leader
	// is replaced after about this long, or after NATS moves the lease
	// bucket's stream leader, whichever is later.
	LeaseTTL time.Duration
}

// clusterSecrets are the data dir files every node of a cluster must share:
// the CLI's API key works on any node, agents and routers use one NATS
// credential, routes authenticate each other, and the routers' HTTPS
// certificates come from one CA.
var clusterSecrets = []string{"admin-api-key", "nats-password", "cluster-password", "tls"}

// replicas is how many copies of each stream and bucket the store keeps.
func (c ClusterConfig) replicas() int {
	if c.Name == "" {
		return 1
	}
	return 3
}

// adoptSecrets copies the shared secrets from dir into dataDir where they
// are missing, and refuses a data dir whose secrets differ from dir's: such
// a node could never join (routes refuse it) or would serve another key.
func adoptSecrets(dataDir, dir string) error {
	if dir == "" {
		return nil
	}
	for _, name := range clusterSecrets {
		src, dst := filepath.Join(dir, name), filepath.Join(dataDir, name)
		if name == "tls" {
			if _, err := os.Stat(dst); err == nil {
				continue // certificates are checked by the routers' clients
			}
			if err := os.CopyFS(dst, os.DirFS(src)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("copy the cluster's platform CA from %s: %w", src, err)
			}
			continue
		}
		want, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("read the cluster secret %s: %w (copy admin-api-key, nats-password, cluster-password and tls/ from the first node's data dir)", src, err)
		}
		have, err := os.ReadFile(dst)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.WriteFile(dst, want, 0o600); err != nil {
				return fmt.Errorf("write %s: %w", dst, err)
			}
		case err != nil:
			return fmt.Errorf("read %s: %w", dst, err)
		case strings.TrimSpace(string(have)) != strings.TrimSpace(string(want)):
			return fmt.Errorf("%s differs from %s: this data dir belongs to another cluster; start this node on an empty --data-dir", dst, src)
		}
	}
	return nil
}

// openState runs open, which opens the store's streams and buckets, with
// a timeout; on a cluster it retries until enough nodes are up for
// JetStream to elect its leaders (two of three). Nodes that create the same
// stream at the same moment wait for NATS answers that never come, so
// cluster attempts are short and retried after a random pause: one node
// soon creates everything, and the others find it made.
func openState(ctx context.Context, replicas int, log *slog.Logger, open func(context.Context) error) error {
	if replicas == 1 {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return open(octx)
	}
	start := time.Now()
	for {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := open(octx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Since(start) > 3*time.Minute {
			return fmt.Errorf("the NATS cluster did not form in 3 minutes: %w (are two of the three nodes up, with the same --cluster name and cluster-password, and each other's --cluster-listen in --peers?)", err)
		}
		log.Info("waiting for the NATS cluster: JetStream needs two of three nodes", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500*time.Millisecond + rand.N(2500*time.Millisecond)):
		}
	}
}

// leaderOnly runs roles together while this node leads. A role that
// fails (a store watch breaks while JetStream elects a new stream leader
// after a node died) is started again a second later: a leader's
// transient error must not stop the whole node.
func leaderOnly(log *slog.Logger, roles map[string]func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var wg sync.WaitGroup
		for name, run := range roles {
			wg.Go(func() {
				for {
					err := run(ctx)
					if ctx.Err() != nil {
						return
					}
					log.Warn("a leader's role ended: starting it again in 1 s", "role", name, "err", err)
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
				}
			})
		}
		wg.Wait()
		return nil
	}
}

// health is GET /health: this node, its cluster and the manifold leader.
type health struct {
	Status  string `json:"status"`
	Node    string `json:"node"`
	Cluster string `json:"cluster,omitempty"`
	// Leader is the node that runs the manifold; Leading says it is this
	// one. Term grows with every change of leader.
	Leader  string `json:"leader"`
	Term    uint64 `json:"leader_term,omitempty"`
	Leading bool   `json:"leading"`
}

// withHealth serves GET /health without authentication (load balancers and
// operators ask it) and everything else with api. lease is nil on a single
// node, which always leads.
func withHealth(api http.Handler, node, cluster string, l *lease.Lease) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			api.ServeHTTP(w, r)
			return
		}
		h := health{Status: "ok", Node: node, Cluster: cluster, Leader: node, Leading: true}
		if l != nil {
			st := l.Status()
			h.Leader, h.Term, h.Leading = st.Holder, st.Term, st.Leading
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
	})
}
