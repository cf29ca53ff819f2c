package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/agent"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/store"
)

// JoinFileName is the join file `dyno server` writes into its data dir:
// what a `dyno agent` on another host needs to join the platform. Copy it
// to the new host (mode 0600: it holds the NATS password) and pass it as
// `dyno agent --credentials FILE`.
const JoinFileName = "agent-credentials"

// JoinFile is the content of the join file (JSON).
type JoinFile struct {
	// NATSURLs are the control plane's NATS client URLs, as the server
	// knows them; `dyno agent --nats-url` overrides them (a server that
	// listens on 0.0.0.0 writes 127.0.0.1 here).
	NATSURLs []string `json:"nats_urls"`
	User     string   `json:"user"`
	Password string   `json:"password"`
	// CAPEM is the platform CA, which attached one-offs' rendezvous
	// certificates are verified with.
	CAPEM string `json:"ca_pem,omitempty"`
}

// writeJoinFile writes DATA/agent-credentials, mode 0600.
func writeJoinFile(dataDir string, jf JoinFile) error {
	b, err := json.MarshalIndent(jf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, JoinFileName)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write join file: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write join file: %w", err)
	}
	return nil
}

// ReadJoinFile reads a join file.
func ReadJoinFile(path string) (JoinFile, error) {
	var jf JoinFile
	b, err := os.ReadFile(path)
	if err != nil {
		return jf, fmt.Errorf("read credentials %s: %w (copy DATA/%s from the server)", path, err, JoinFileName)
	}
	if err := json.Unmarshal(b, &jf); err != nil {
		return jf, fmt.Errorf("read credentials %s: %w", path, err)
	}
	if jf.User == "" || jf.Password == "" {
		return jf, fmt.Errorf("read credentials %s: no NATS user and password in it", path)
	}
	return jf, nil
}

// AgentConfig is what `dyno agent` is started with.
type AgentConfig struct {
	// NATSURL is the control plane's NATS (comma-separated for a cluster);
	// the join file's URLs when empty.
	NATSURL string
	// Credentials is the join file copied from the server.
	Credentials string
	// Advertise is the IP address of this host that routers on other hosts
	// dial; web dynos are published on it (DNAT) at their PORT.
	Advertise string
	DataDir   string // slugs, dyno layers, the host ID
	// HostMemoryMB is the memory this host offers dynos; the machine's when 0.
	HostMemoryMB int
	// HostID names the host; "host-" and 12 hex digits kept in DATA/host-id when empty.
	HostID string
	// DynoNetwork is the IPv4 range dynos' addresses come from (a /16 in
	// 10.128.0.0/10 picked from the host ID when empty).
	DynoNetwork string
	// Heartbeat and HostTTL are the lease: a heartbeat every Heartbeat
	// (1 s), and the agent stops its dynos when none succeeded for HostTTL
	// (5 s; keep it the manifold's host TTL).
	Heartbeat, HostTTL time.Duration
	// UsageCheckpoint is how often running dynos' time is recorded (60 s).
	UsageCheckpoint time.Duration
	// MetricsAddr is where the agent's Prometheus /metrics is served
	// (metrics.go); none when empty.
	MetricsAddr string
	Logger      *slog.Logger
	Out         io.Writer
}

// RunAgent runs a host agent that joins a control plane over NATS: it
// waits for the control plane's buckets, registers the host, and runs the
// dynos the manifold assigns it in containers, until ctx ends. It leaves
// its dynos running when it stops; the next start adopts them.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	log := cfg.Logger
	if os.Geteuid() != 0 {
		return errors.New("dyno agent runs dynos in containers: run it as root")
	}
	if net.ParseIP(cfg.Advertise).To4() == nil {
		return fmt.Errorf("--advertise %q: want this host's IPv4 address that routers on other hosts reach", cfg.Advertise)
	}
	jf, err := ReadJoinFile(cfg.Credentials)
	if err != nil {
		return err
	}
	urls := cfg.NATSURL
	if urls == "" {
		urls = strings.Join(jf.NATSURLs, ",")
	}
	if urls == "" {
		return errors.New("no NATS URL: pass --nats-url nats://SERVER:4222")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	hostID := cfg.HostID
	if hostID == "" {
		id, err := secret(filepath.Join(dataDir, "host-id"))
		if err != nil {
			return err
		}
		hostID = "host-" + id[:12]
	}
	nc, err := store.Connect(urls, jf.User, jf.Password, "dyno-agent-"+hostID)
	if err != nil {
		return fmt.Errorf("%w (is --nats-url reachable from this host?)", err)
	}
	defer nc.Close()
	log.Info("connected to the control plane; waiting for its buckets", "nats", nc.ConnectedUrlRedacted(), "host", hostID)
	st, err := store.Attach(ctx, nc)
	if err != nil {
		return err
	}
	logs, err := logplex.Attach(ctx, st.JetStream(), logplex.Config{Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		logs.Flush(fctx)
	}()
	subnet := cfg.DynoNetwork
	if subnet == "" {
		subnet = defaultDynoNetwork(hostID)
	}
	rt, err := runtime.NewContainerRuntime(runtime.ContainerConfig{
		StateDir:     filepath.Join("/run/dyno", hostID),
		CgroupParent: "dyno",
		Network: runtime.NetworkConfig{
			Enabled: true, Subnet: subnet, Table: "dyno_" + strings.TrimPrefix(hostID, "host-"),
			Publish: true, // routers on other hosts dial Advertise:PORT
		},
	})
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	if !runtime.SeccompEnabled() {
		log.Warn("this dyno binary was built without seccomp: dynos run without a syscall filter. Build it with `make build` (needs libseccomp-dev).")
	}
	memoryMB := cfg.HostMemoryMB
	if memoryMB <= 0 {
		memoryMB = hostMemoryMB()
	}
	var roots *x509.CertPool
	if jf.CAPEM != "" {
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(jf.CAPEM))
	}
	obs := newAgentObservability()
	ag := agent.New(agent.Config{
		HostID: hostID, Address: cfg.Advertise, DataDir: filepath.Join(dataDir, "agent"), Runtime: rt, Logs: logs,
		Logger: log, Metrics: obs.Agent, MemoryMB: memoryMB, CPUs: goruntime.NumCPU(), UsageCheckpoint: cfg.UsageCheckpoint,
		RendezvousRoots: roots, Heartbeat: cfg.Heartbeat, FenceAfter: cfg.HostTTL,
		PublishPorts: true, KeepDynos: true,
	}, st)
	fmt.Fprintf(cfg.Out, "Dyno agent %s is running: %d MB, %d CPUs, dynos published on %s\n", hostID, memoryMB, goruntime.NumCPU(), cfg.Advertise)
	obs.Registry.MustRegister(ag.Collector())
	stopMetrics, err := obs.Serve(ctx, cfg.MetricsAddr, log, cfg.Out)
	if err != nil {
		return err
	}
	defer stopMetrics()
	err = ag.Run(ctx)
	// The dynos run on (the next start adopts them), so the firewall stays.
	log.Info("agent stopped; its dynos keep running until the next start adopts them")
	return err
}
