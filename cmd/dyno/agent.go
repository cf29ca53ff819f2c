package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/server"
)

// runAgent is `dyno agent`: a host agent that joins a control plane with
// the join file the server wrote (DATA/agent-credentials).
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dyno agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := server.AgentConfig{Out: stdout}
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "the control plane's NATS, nats://HOST:4222 (comma-separated for a cluster; default: the URLs in --credentials)")
	fs.StringVar(&cfg.Credentials, "credentials", "", "the join file copied from the server's DATA/"+server.JoinFileName+" (required)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "this host's IPv4 address that routers reach; web dynos are published on it at their PORT (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("DYNO_DATA_DIR", "data"), "directory for slugs, dyno layers and the host ID")
	fs.IntVar(&cfg.HostMemoryMB, "host-memory", 0, "memory in MB this host offers dynos (default: all of the machine's)")
	fs.StringVar(&cfg.HostID, "host-id", "", "this host's ID (default: host-<random>, kept in DATA/host-id)")
	fs.StringVar(&cfg.DynoNetwork, "dyno-network", "", "IPv4 range for dyno addresses, one /30 each (default: a /16 in 10.128.0.0/10 picked from the host ID)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", model.DefaultHostHeartbeat, "how often the host's lease is renewed")
	fs.DurationVar(&cfg.HostTTL, "host-ttl", model.DefaultHostTTL, "the host's lease: with no successful heartbeat for this long the agent stops its dynos (keep it the manifold's host TTL)")
	fs.DurationVar(&cfg.UsageCheckpoint, "usage-checkpoint", time.Minute, "how often running dynos' time is recorded")
	fs.StringVar(&cfg.MetricsAddr, "metrics", "", "listen address of the agent's Prometheus /metrics (e.g. 127.0.0.1:9102; default none)")
	logger := logFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dyno agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if cfg.Credentials == "" || cfg.Advertise == "" {
		fmt.Fprintln(stderr, "dyno agent: --credentials FILE and --advertise IP are required")
		return 2
	}
	var err error
	if cfg.Logger, err = logger(stderr); err != nil {
		fmt.Fprintf(stderr, "dyno agent: %v\n", err)
		return 2
	}
	if err := server.RunAgent(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "dyno agent: %v\n", err)
		return 1
	}
	return 0
}
