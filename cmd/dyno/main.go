// Command dyno is the whole platform in one binary: `dyno server` runs the
// control plane with a host agent and a router, `dyno router` a router
// alone (any number, following the platform through NATS); every other verb is the CLI
// (apps:create, deploy, ps:scale, logs, ...). main is the only os.Exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/internal/cli"
	"github.com/dyno-platform/dyno/internal/gitserver"
	"github.com/dyno-platform/dyno/internal/metering"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/server"
)

// The one init with a side effect the project allows: when libcontainer
// re-executes this binary as a container's init, become that init.
func init() { runtime.InitHook() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "server" {
		os.Exit(runServer(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "git-hook" { // run by git inside an app's repository
		os.Exit(gitserver.RunHook(os.Args[2:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(runAgent(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "router" {
		os.Exit(runRouter(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dyno server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := server.Config{Out: stdout}
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("DYNO_DATA_DIR", "data"), "directory for state, secrets, slugs and dyno layers")
	fs.StringVar(&cfg.APIAddr, "api", "127.0.0.1:5000", "Platform API listen address")
	fs.StringVar(&cfg.HTTPAddr, "http", ":8080", "router HTTP listen address")
	fs.StringVar(&cfg.HTTPSAddr, "https", ":8443", "router HTTPS listen address (HTTP/2; certificates from DATA/tls and certs:add); empty turns HTTPS off")
	fs.StringVar(&cfg.Domain, "domain", "localhost", "apps answer at <app>.<domain>")
	fs.DurationVar(&cfg.RouterBusyPoll, "busy-poll", 0, busyPollUsage)
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "embedded NATS listen address")
	fs.StringVar(&cfg.RendezvousAddr, "rendezvous", "", "TLS listen address where `dyno run` attaches to one-off dynos (default: the API's host, a free port)")
	fs.StringVar(&cfg.PublicAPIURL, "api-url", "", "URL clients use to reach the API (default: from --api)")
	fs.BoolVar(&cfg.ProcessRuntime, "process-runtime", false, "run dynos as plain processes, without isolation (development only)")
	fs.IntVar(&cfg.HostMemoryMB, "host-memory", 0, "memory in MB this host offers dynos (default: all of the machine's)")
	fs.Float64Var(&cfg.CrashBackoffScale, "crash-backoff-scale", 1, "scale of Heroku's crash cool-offs (20, 40, 60, 180, 320 min)")
	fs.StringVar(&cfg.DynoNetwork, "dyno-network", "", "IPv4 range for dyno addresses, one /30 each (default: a /16 in 10.128.0.0/10 picked from the host ID)")
	fs.StringVar(&cfg.MetricsAddr, "metrics", "", "listen address of the Prometheus /metrics of the API, manifold, agent, hosts, dynos and router (e.g. 127.0.0.1:9101; default none)")
	cfg.Billing = metering.DefaultConfig()
	fs.Float64Var(&cfg.Billing.FreeHours, "free-dyno-hours", cfg.Billing.FreeHours, "free dyno-hours per app per calendar month (UTC), used before any charge")
	prices := fs.String("dyno-prices", "", "monthly price per dyno by size, over Heroku's defaults (eco=5,basic=7,standard-1X=25,standard-2X=50,performance-M=250,performance-L=500); hourly = monthly/720, capped at monthly")
	fs.DurationVar(&cfg.UsageCheckpoint, "usage-checkpoint", time.Minute, "how often running dynos' time is recorded: a host that dies is billed up to its last checkpoint")
	fs.IntVar(&cfg.LogHistory, "log-history", 1500, "log lines kept per app, across restarts and redeploys")
	fs.DurationVar(&cfg.BuildTimeout, "build-timeout", 15*time.Minute, "how long a build may take before it is stopped")
	fs.BoolVar(&cfg.NoAgent, "no-agent", false, "run the control plane only: dynos run on hosts that joined with `dyno agent` (DATA/agent-credentials)")
	checkCluster := clusterFlags(fs, &cfg.Cluster)
	logger := logFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dyno server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := checkCluster(); err != nil {
		fmt.Fprintf(stderr, "dyno server: %v\n", err)
		return 2
	}
	// A pending build older than 24 h reads as failed (its node is gone):
	// a build, its release phase (1 h) and deploy check must end before.
	if cfg.BuildTimeout <= 0 || cfg.BuildTimeout > 20*time.Hour {
		fmt.Fprintf(stderr, "dyno server: --build-timeout %v: want more than 0 and at most 20h\n", cfg.BuildTimeout)
		return 2
	}
	if *prices != "" {
		p, err := metering.ParsePrices(cfg.Billing.MonthlyPrices, *prices)
		if err != nil {
			fmt.Fprintf(stderr, "dyno server: --dyno-prices: %v\n", err)
			return 2
		}
		cfg.Billing.MonthlyPrices = p
	}
	var err error
	if cfg.Logger, err = logger(stderr); err != nil {
		fmt.Fprintf(stderr, "dyno server: %v\n", err)
		return 2
	}
	// For end-to-end tests only, so not a flag: the scheduler's clock runs
	// this many times faster (docs/CONTRACTS.md, Scheduler).
	if v := os.Getenv("DYNO_SCHEDULER_TIME_SCALE"); v != "" {
		if _, err := fmt.Sscan(v, &cfg.SchedulerTimeScale); err != nil {
			fmt.Fprintf(stderr, "dyno server: DYNO_SCHEDULER_TIME_SCALE=%q: want a number such as 30\n", v)
			return 2
		}
	}
	if v := os.Getenv("DYNO_SCHEDULER_TIME_START"); v != "" {
		var sec int64
		if _, err := fmt.Sscan(v, &sec); err != nil {
			fmt.Fprintf(stderr, "dyno server: DYNO_SCHEDULER_TIME_START=%q: want unix seconds\n", v)
			return 2
		}
		cfg.SchedulerTimeStart = time.Unix(sec, 0)
	}
	if err := server.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "dyno server: %v\n", err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
