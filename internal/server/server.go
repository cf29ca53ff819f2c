// Package server wires the all-in-one `dyno server`: the embedded NATS
// JetStream, the Platform API with builds, the manifold, and (on the same
// machine) a host agent and a router. It owns start-up order, the secrets
// in the data dir, and a clean stop: dynos stopped, nothing left running.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/agent"
	"github.com/dyno-platform/dyno/internal/apiserver"
	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/lease"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/manifold"
	"github.com/dyno-platform/dyno/internal/metering"
	"github.com/dyno-platform/dyno/internal/rendezvous"
	"github.com/dyno-platform/dyno/internal/router"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/scheduler"
	"github.com/dyno-platform/dyno/internal/store"
)

// Config is what `dyno server` is started with.
type Config struct {
	DataDir  string // state, secrets, slugs and dyno layers
	APIAddr  string // Platform API listen address
	HTTPAddr string // router listen address
	// MetricsAddr is where Prometheus /metrics is served: the API's,
	// manifold's, agent's, platform's and router's metrics (metrics.go;
	// apps own every path of the router's listeners); none when empty.
	MetricsAddr string
	// HTTPSAddr is the router's TLS listen address (HTTP/2 and HTTP/1.1);
	// empty serves no HTTPS. The platform CA is made either way.
	HTTPSAddr  string
	Domain     string // apps answer at <app>.<Domain>
	NATSListen string // embedded NATS client address
	// RouterBusyPoll is the router's Config.BusyPoll: how long its event
	// loops poll for more traffic before they sleep (0: the default).
	RouterBusyPoll time.Duration
	// PublicAPIURL is how clients reach the API; derived from APIAddr when empty.
	PublicAPIURL string
	// ProcessRuntime runs dynos as plain processes even as root (development only).
	ProcessRuntime bool
	// HostMemoryMB is the memory this host offers dynos; the machine's when 0.
	HostMemoryMB int
	// DynoNetwork is the IPv4 range dynos' addresses come from, one /30
	// each; a /16 chosen from the host ID when empty.
	DynoNetwork string
	// CrashBackoffScale scales Heroku's crash cool-offs (1 = 20 min after
	// the second crash; 0.01 = 12 s).
	CrashBackoffScale float64
	// Billing prices dyno time (free hours, monthly prices per size);
	// metering.DefaultConfig() when its MonthlyPrices is nil.
	Billing metering.Config
	// UsageCheckpoint is how often running dynos' time is recorded (60 s
	// when 0): a host that dies is billed up to its last checkpoint.
	UsageCheckpoint time.Duration
	// RendezvousAddr is where attached one-offs (dyno run) meet their
	// clients over TLS; the API's host with a free port when empty.
	RendezvousAddr string
	// LogHistory is how many log lines are kept per app (1500 when 0).
	LogHistory int
	// BuildTimeout bounds a build (15 min when 0).
	BuildTimeout time.Duration
	// Cluster, when its Name is set, makes this server one node of a
	// three-node control plane (cluster.go).
	Cluster ClusterConfig
	// GitHookCommand is the dyno binary that git pushes run as their
	// pre-receive hook (`dyno git-hook pre-receive`); this program when empty.
	GitHookCommand string
	// SchedulerTimeScale, for end-to-end tests only, runs the scheduler's
	// clock this many times faster than the wall clock (30: a cron minute
	// every 2 s); 0 or 1 is real time. cmd/dyno reads it from the
	// environment (DYNO_SCHEDULER_TIME_SCALE), not from a flag.
	SchedulerTimeScale float64
	// SchedulerTimeStart is when the fast clock agrees with the wall clock
	// (the server's start when zero): nodes of one test cluster share it
	// (DYNO_SCHEDULER_TIME_START, unix seconds) so their clocks agree.
	SchedulerTimeStart time.Time
	// NoAgent runs the control plane only: dynos run on the hosts of
	// `dyno agent`s that joined with DATA/agent-credentials (agent.go).
	NoAgent bool
	// Out receives the start-up banner (API URL, where the key is).
	Out    io.Writer
	Logger *slog.Logger
}

// Run starts every role and serves until ctx ends, then stops them in
// order: the manifold first (no new decisions), then the agent (its dynos
// get SIGTERM, 30 s, SIGKILL), then the listeners and NATS.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	log := cfg.Logger
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	if err := adoptSecrets(dataDir, cfg.Cluster.SecretsFrom); err != nil {
		return err
	}
	adminKey, err := secret(filepath.Join(dataDir, "admin-api-key"))
	if err != nil {
		return err
	}
	natsPassword, err := secret(filepath.Join(dataDir, "nats-password"))
	if err != nil {
		return err
	}
	hostID, err := secret(filepath.Join(dataDir, "host-id"))
	if err != nil {
		return err
	}
	hostID = "host-" + hostID[:12]
	var natsCluster store.ClusterConfig
	if cfg.Cluster.Name != "" {
		routePassword, err := secret(filepath.Join(dataDir, "cluster-password"))
		if err != nil {
			return err
		}
		// The host ID names this node in NATS: JetStream's Raft groups
		// know their peers by a name that must survive restarts.
		natsCluster = store.ClusterConfig{
			Name: cfg.Cluster.Name, NodeName: hostID, Listen: cfg.Cluster.Listen, Peers: cfg.Cluster.Peers,
			User: "dyno-route", Password: routePassword,
		}
	}

	// Bind the listeners first so a taken port fails start-up at once.
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w (is another dyno server running? use --api)", cfg.APIAddr, err)
	}
	defer apiLn.Close()
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for the router on %s: %w (use --http to pick another address)", cfg.HTTPAddr, err)
	}
	defer httpLn.Close()
	var httpsLn net.Listener
	if cfg.HTTPSAddr != "" {
		if httpsLn, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			return fmt.Errorf("listen for the router's HTTPS on %s: %w (use --https to pick another address)", cfg.HTTPSAddr, err)
		}
		defer httpsLn.Close()
	}
	platformTLS, err := certs.EnsurePlatform(filepath.Join(dataDir, "tls"), cfg.Domain, time.Now())
	if err != nil {
		return fmt.Errorf("platform CA: %w", err)
	}

	rdv, rdvAddr, err := listenRendezvous(cfg, apiLn.Addr().String(), platformTLS, log)
	if err != nil {
		return err
	}
	defer rdv.Close()

	ns, err := store.StartServer(store.ServerConfig{
		Dir: filepath.Join(dataDir, "nats"), Listen: cfg.NATSListen, User: "dyno", Password: natsPassword,
		Cluster: natsCluster,
	})
	if err != nil {
		return fmt.Errorf("start NATS on %s: %w (use --nats-listen to pick another address)", cfg.NATSListen, err)
	}
	defer ns.Shutdown()
	nc, err := ns.Connect("dyno-server")
	if err != nil {
		return err
	}
	defer nc.Close()
	replicas := cfg.Cluster.replicas()
	var (
		st     *store.Store
		logs   *logplex.Logplex
		leases store.Bucket[lease.Record] // on a cluster
	)
	err = openState(ctx, replicas, log, func(ctx context.Context) error {
		var err error
		if st, err = store.Open(ctx, nc, replicas); err != nil {
			return err
		}
		if logs, err = logplex.New(ctx, st.JetStream(), logplex.Config{History: cfg.LogHistory, Replicas: replicas, Logger: log}); err != nil {
			return err
		}
		if cfg.Cluster.Name != "" {
			leases, err = store.OpenBucket[lease.Record](ctx, st.JetStream(), "leases", replicas)
		}
		return err
	})
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		logs.Flush(fctx)
	}()

	if err := writeJoinFile(dataDir, JoinFile{NATSURLs: []string{"nats://" + reachable(strings.TrimPrefix(ns.ClientURL(), "nats://"))}, User: "dyno",
		Password: natsPassword, CAPEM: string(platformTLS.CAPEM)}); err != nil {
		return err
	}
	rt, err := newRuntime(cfg, dataDir, hostID, log)
	if err != nil {
		return err
	}

	publicURL := cfg.PublicAPIURL
	if publicURL == "" {
		publicURL = "http://" + reachable(apiLn.Addr().String())
	}
	_, httpPort, _ := net.SplitHostPort(httpLn.Addr().String())
	billing := cfg.Billing
	if billing.MonthlyPrices == nil {
		billing = metering.DefaultConfig()
	}
	meter := metering.NewMeter(billing, st.Usage, st.Invoices, nil, log)
	drains, err := logplex.NewDrains(logplex.DrainConfig{Logger: log}, nc, st.Drains, logs)
	if err != nil {
		return err
	}
	defer drains.Close()
	schedClock := schedulerClock(cfg.SchedulerTimeScale, cfg.SchedulerTimeStart)
	obs := newServerObservability()
	obs.Registry.MustRegister(PlatformCollector(st, 0, nil))
	api := apiserver.New(apiserver.Config{
		Domain: cfg.Domain, RouterURLPort: httpPort, PublicURL: publicURL, NodeID: hostID, AdminKey: adminKey, Logger: log.With("role", "api"),
		URLSecret: urlSecret(natsPassword),
		CACertPEM: platformTLS.CAPEM, Meter: meter, Drains: drains,
		Rendezvous: rdv, RendezvousAddr: rdvAddr, SchedulerNow: schedClock.Now, Git: gitConfig(cfg, dataDir, apiLn.Addr().String(), log),
	}, st, logs, newBuilder(cfg, st, logs, log, dataDir, rt))
	defer api.Close()
	rtr := router.New(router.Config{Domain: cfg.Domain, Logs: logs, Logger: log, BusyPoll: cfg.RouterBusyPoll}, st)
	mf := manifold.New(manifold.Config{Logger: log, LogSink: logs, BackoffScale: cfg.CrashBackoffScale, Metrics: obs.Manifold}, st)
	memoryMB := cfg.HostMemoryMB
	if memoryMB <= 0 {
		memoryMB = hostMemoryMB()
	}
	ag := agent.New(agent.Config{
		HostID: hostID, Address: "127.0.0.1", DataDir: filepath.Join(dataDir, "agent"), Runtime: rt, Logs: logs,
		Logger: log.With("role", "agent"), MemoryMB: memoryMB, CPUs: goruntime.NumCPU(), UsageCheckpoint: cfg.UsageCheckpoint,
		RendezvousRoots: platformTLS.CertPool(), Metrics: obs.Agent,
	}, st)
	if !cfg.NoAgent {
		obs.Registry.MustRegister(ag.Collector())
	}

	// On a cluster the manifold and the log drains (which would send each
	// line once per node) run on the lease holder only.
	var leader *lease.Lease
	if cfg.Cluster.Name != "" {
		leader = lease.New(lease.Config{Bucket: leases, Key: "manifold", Holder: hostID, TTL: cfg.Cluster.LeaseTTL, Logger: log})
	}

	apiSrv := &http.Server{Handler: withHealth(api.Observe(api.Handler(), obs.API), hostID, cfg.Cluster.Name, leader), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	// One constructor for both router listeners: header timeouts, size
	// caps, HTTP/2 stream limits, connection accounting (H22).
	httpSrv := router.NewHTTPServer(rtr, router.ServerConfig{Logger: log})

	// Each role runs under its own context so the stop order is ours.
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	failed := make(chan struct{})
	start := func(name string, run func(context.Context) error) (stop func()) {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			if err := run(rctx); err != nil && rctx.Err() == nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("%s: %w", name, err); close(failed) })
			}
		}()
		return func() { cancel(); <-done }
	}
	serve := func(srv Servable, ln net.Listener) func(context.Context) error {
		return func(ctx context.Context) error { return ServeUntil(ctx, srv, ln, 5*time.Second) }
	}
	stopRouterWatch := start("router", rtr.Run)
	stopHTTP := start("router http", serve(httpSrv, httpLn))
	tlsCerts := certs.NewManager(certs.ManagerConfig{Platform: platformTLS, Logger: log}, st)
	stopCerts := start("certificates", tlsCerts.Run)
	stopHTTPS := func() {}
	httpsPort := ""
	if httpsLn != nil {
		_, httpsPort, _ = net.SplitHostPort(httpsLn.Addr().String())
		httpsSrv := router.NewHTTPServer(rtr, router.ServerConfig{Logger: log})
		httpsSrv.TLSConfig = tlsCerts.TLSConfig()
		stopHTTPS = start("router https", serve(httpsSrv, httpsLn))
	}
	obs.AddText(rtr.MetricsHandler()) // the router's own exposition, on the same /metrics
	stopMetrics, err := obs.Serve(ctx, cfg.MetricsAddr, log, cfg.Out)
	if err != nil {
		return err
	}
	stopMeter := start("meter", meter.Run)
	stopDrains := func() {}
	if leader == nil {
		stopDrains = start("log drains", drains.Run)
	}
	stopAPI := start("api", serve(apiSrv, apiLn))
	stopRendezvous := start("rendezvous", rdv.Run)
	stopAgent := func() {}
	if !cfg.NoAgent {
		stopAgent = start("agent", ag.Run)
	}
	// Every node runs a scheduler: each due time is claimed by one of them.
	sched := scheduler.New(scheduler.Config{Node: hostID, Clock: schedClock, Logs: logs, Logger: log},
		st.SchedulerJobs, st.SchedulerRuns, api.SchedulerLauncher())
	stopScheduler := start("scheduler", sched.Run)
	var stopManifold func()
	if leader == nil {
		stopManifold = start("manifold", mf.Run)
	} else {
		stopManifold = start("manifold leader", func(ctx context.Context) error {
			return leader.Run(ctx, leaderOnly(log, map[string]func(context.Context) error{"manifold": mf.Run, "log drains": drains.Run}))
		})
	}

	fmt.Fprintf(cfg.Out, "Dyno is running.\n  API:     %s\n  API key: %s (DYNO_API_KEY)\n  Web:     %s/dashboard/\n  Apps:    http://<app>.%s:%s/\n",
		publicURL, filepath.Join(dataDir, "admin-api-key"), publicURL, cfg.Domain, httpPort)
	if httpsPort != "" {
		fmt.Fprintf(cfg.Out, "  HTTPS:   https://<app>.%s:%s/\n", cfg.Domain, httpsPort)
	}
	if leader != nil {
		fmt.Fprintf(cfg.Out, "  Cluster: %s, this node %s, routes on %s; the manifold leader: GET %s/health\n",
			cfg.Cluster.Name, hostID, ns.ClusterAddr(), publicURL)
	}
	fmt.Fprintf(cfg.Out, "  CA:      %s (curl --cacert %s; also GET %s/ca.pem, dyno certs:ca)\n  Try:     export DYNO_API_URL=%s DYNO_API_KEY=$(cat %s)\n",
		platformTLS.CAPath, platformTLS.CAPath, publicURL, publicURL, filepath.Join(dataDir, "admin-api-key"))

	select {
	case <-ctx.Done():
		log.Info("stopping: dynos get SIGTERM, then 30 s before SIGKILL")
	case <-failed:
		log.Error("stopping after a failure", "err", firstErr)
	}
	stopScheduler()
	stopManifold()
	stopAgent()
	if sd, ok := rt.(interface{ Shutdown(context.Context) error }); ok {
		if err := sd.Shutdown(context.Background()); err != nil {
			log.Warn("remove the dyno firewall", "err", err)
		}
	}
	stopHTTP()
	stopMetrics()
	stopHTTPS()
	stopCerts()
	stopAPI()
	stopRendezvous()
	stopMeter()
	stopDrains()
	stopRouterWatch()
	wg.Wait()
	log.Info("stopped: every dyno is down; the next start on this data dir brings them back")
	return firstErr
}

// listenRendezvous binds the rendezvous of attached one-offs, with a
// certificate of the platform CA for the address clients dial.
func listenRendezvous(cfg Config, apiAddr string, platformTLS *certs.Platform, log *slog.Logger) (*rendezvous.Server, string, error) {
	addr := cfg.RendezvousAddr
	if addr == "" {
		host, _, _ := net.SplitHostPort(apiAddr)
		addr = net.JoinHostPort(host, "0")
	}
	host, _, _ := net.SplitHostPort(reachable(addr))
	cert, err := platformTLS.IssueServer([]string{host, "127.0.0.1", "::1", "localhost"}, time.Now())
	if err != nil {
		return nil, "", err
	}
	rdv, err := rendezvous.Listen(rendezvous.Config{Addr: addr, Logger: log,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		return nil, "", err
	}
	return rdv, reachable(rdv.Addr()), nil
}

// newRuntime picks the container runtime as root and, loudly, the
// unisolated process runtime otherwise.
func newRuntime(cfg Config, dataDir, hostID string, log *slog.Logger) (agent.Runtime, error) {
	if os.Geteuid() == 0 && !cfg.ProcessRuntime {
		subnet := cfg.DynoNetwork
		if subnet == "" {
			subnet = defaultDynoNetwork(hostID)
		}
		rt, err := runtime.NewContainerRuntime(runtime.ContainerConfig{
			StateDir:     filepath.Join("/run/dyno", hostID),
			CgroupParent: "dyno",
			Network: runtime.NetworkConfig{
				Enabled: true,
				Subnet:  subnet,
				// One table per host agent: two platforms on one machine
				// (make run beside make test) keep out of each other's way.
				Table: "dyno_" + strings.TrimPrefix(hostID, "host-"),
			},
		})
		if err != nil {
			return nil, fmt.Errorf("container runtime: %w", err)
		}
		if !runtime.SeccompEnabled() {
			log.Warn("this dyno binary was built without seccomp: dynos run without a syscall filter. Build it with `make build` (needs libseccomp-dev).")
		}
		return rt, nil
	}
	if os.Geteuid() == 0 {
		return nil, errors.New("--process-runtime would run every app as root on this host: drop the flag (as root, dynos run in containers) or start dyno server as a normal user")
	}
	log.Warn(strings.Repeat("!", 72))
	log.Warn("NOT ISOLATED: dynos run as plain processes of this user, with no containers, no memory limit and no protection from each other. Run `dyno server` as root for isolated dynos.")
	log.Warn(strings.Repeat("!", 72))
	return runtime.NewProcessRuntime(runtime.ProcessConfig{StateDir: filepath.Join(dataDir, "processes")})
}

// defaultDynoNetwork picks one of 64 /16s in 10.128.0.0/10 from the host
// ID, so that platforms sharing a machine rarely share a range.
func defaultDynoNetwork(hostID string) string {
	h := fnv.New32a()
	h.Write([]byte(hostID))
	return fmt.Sprintf("10.%d.0.0/16", 128+h.Sum32()%64)
}

// urlSecret is the key that signs the API's secret URLs (source uploads,
// build output), derived from the NATS password: every node of a cluster
// has the same one (the README copies it), so each accepts the URLs of the
// others, and a restart keeps them valid.
func urlSecret(natsPassword string) []byte {
	m := hmac.New(sha256.New, []byte(natsPassword))
	m.Write([]byte("dyno signed URLs v1"))
	return m.Sum(nil)
}

// secret reads a secret file, creating it (mode 0600) with a new random
// value on first start.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("make secret: %w", err)
	}
	s := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

// reachable turns a listen address into one a client can dial.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// hostMemoryMB reads the machine's memory from /proc/meminfo.
func hostMemoryMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%d", &kb)
		}
	}
	return kb / 1024
}

// Servable is what the platform serves on a listener: an *http.Server
// (plain HTTP: its Serve ignores TLSConfig), or a *router.Server, which
// serves TLS itself when it has a TLS config and stops its own connection
// loop, which Go's server does not track.
type Servable interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// ServeUntil serves srv on ln until ctx ends, then shuts it down: the
// requests in progress get up to grace to finish, then what is left
// (WebSockets, stalled uploads) is closed. It returns once the shutdown is
// over (Serve itself returns as soon as it begins), or at once with the
// error that stopped Serve.
func ServeUntil(ctx context.Context, srv Servable, ln net.Listener, grace time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancelShutdown := context.WithTimeout(context.Background(), grace)
		defer cancelShutdown()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	err := srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		cancel()
		<-stopped
		return err
	}
	<-stopped
	return nil
}

// gitConfig sets up the apps' git remotes: repositories in DATA/repos,
// hooks that run this binary and reach the API on a loopback address.
func gitConfig(cfg Config, dataDir, apiAddr string, log *slog.Logger) *apiserver.GitConfig {
	hook := cfg.GitHookCommand
	if hook == "" {
		exe, err := os.Executable()
		if err != nil {
			log.Error("git remotes are off: cannot find this program for the push hooks", "err", err)
			return nil
		}
		hook = exe
	}
	return &apiserver.GitConfig{
		ReposDir: filepath.Join(dataDir, "repos"), HookCommand: hook, InternalURL: "http://" + reachable(apiAddr),
	}
}
