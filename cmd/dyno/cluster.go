package main

import (
	"errors"
	"flag"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/server"
)

// clusterFlags adds the flags of a highly available control plane to fs and
// returns the check to run once fs is parsed.
func clusterFlags(fs *flag.FlagSet, c *server.ClusterConfig) func() error {
	fs.StringVar(&c.Name, "cluster", "", "run as one node of a three-node control plane: the cluster's name, the same on every node (with --cluster-listen and --peers)")
	fs.StringVar(&c.Listen, "cluster-listen", ":6222", "with --cluster: this node's NATS route address, which the other nodes dial")
	peers := fs.String("peers", "", "with --cluster: the other nodes' --cluster-listen addresses, comma-separated (10.0.0.2:6222,10.0.0.3:6222)")
	fs.StringVar(&c.SecretsFrom, "cluster-secrets", "", "with --cluster, on every node but the first: a directory holding a copy of the first node's admin-api-key, nats-password, cluster-password and tls/, taken on first start")
	fs.DurationVar(&c.LeaseTTL, "leader-lease", 5*time.Second, "with --cluster: the manifold leader's lease; a dead leader is replaced after about this long")
	return func() error {
		for _, p := range strings.Split(*peers, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Peers = append(c.Peers, p)
			}
		}
		switch {
		case c.Name == "" && (len(c.Peers) > 0 || c.SecretsFrom != ""):
			return errors.New("--peers and --cluster-secrets need --cluster NAME")
		case c.Name != "" && len(c.Peers) < 2:
			return errors.New("--cluster needs the two other nodes' route addresses in --peers: a control plane of three survives the loss of one")
		case c.LeaseTTL < time.Second:
			return errors.New("--leader-lease must be at least 1s")
		}
		return nil
	}
}
