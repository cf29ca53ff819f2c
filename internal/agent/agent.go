// Package agent is the host agent: it registers its host, watches the
// assignments the manifold writes for it, runs one runner per assigned dyno
// through a Runtime, and reports each dyno's status and output. Agents are
// the only writers of dyno statuses and of their own host record.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/store"
)

// Runtime starts dynos; runtime.ContainerRuntime and runtime.ProcessRuntime
// are the two there are.
type Runtime interface {
	Start(ctx context.Context, spec runtime.Spec) (runtime.Dyno, error)
	Cleanup(ctx context.Context) error
	Isolated() bool
}

// LogSink receives the lines of the dynos' logs; logplex implements it.
type LogSink interface {
	Publish(appID string, line model.LogLine)
}

// Config configures an Agent.
type Config struct {
	HostID  string // stable across restarts of the agent
	Address string // IP the router dials to reach this host's dynos
	DataDir string // slugs and per-dyno writable layers live below it
	Runtime Runtime
	Logs    LogSink
	Logger  *slog.Logger
	Now     func() time.Time

	MemoryMB, CPUs int
	// UIDMin and UIDMax bound the host user IDs dynos run as: every dyno
	// has one of its own (and the group of the same number), so no two
	// dynos share a user. SlugGID is the one group they share, which owns
	// the unpacked slugs so that every dyno can change its own /app.
	UIDMin, UIDMax, SlugGID int
	// PortMin and PortMax bound the ports handed to web dynos as PORT.
	PortMin, PortMax int
	// StopTimeout is the grace between SIGTERM and SIGKILL (30 s).
	StopTimeout time.Duration
	// BootTimeout is how long a web dyno has to bind PORT (60 s, R10).
	BootTimeout time.Duration
	// Heartbeat is how often the host record is refreshed (1 s).
	Heartbeat time.Duration
	// PidsLimit bounds the processes of one dyno.
	PidsLimit int
	// DrainDelay is how long a web dyno stays out of the route tables
	// before it gets SIGTERM, for routers to notice and requests under way
	// to finish (2 s).
	DrainDelay time.Duration
	// MonitorInterval is how often a running dyno's memory and load are
	// sampled (2 s); MetricsPeriod how often R14 and metrics lines are
	// logged at most (20 s, as Heroku).
	MonitorInterval, MetricsPeriod time.Duration
	// Usage receives the dynos' usage segments; the store's usage stream
	// when nil. UsageCheckpoint is how often a running dyno's time is
	// written (60 s): a host that dies is billed up to its last one.
	// UsageFlushTimeout is how long an ended dyno's last segments are
	// retried before the time is given up (15 s: a NATS leader election
	// fits; a whole cluster going down must not hold a stop for long).
	Usage                              UsageSink
	UsageCheckpoint, UsageFlushTimeout time.Duration
	// RendezvousRoots verify the rendezvous attached one-offs dial (the
	// platform CA); nil uses the system's roots.
	RendezvousRoots *x509.CertPool
	// DetachTimeout is how long an attached one-off whose client left has
	// after SIGHUP before R16 and SIGKILL (10 s).
	DetachTimeout time.Duration
	// PublishPorts says web dynos are published on Address at their PORT
	// (runtime.NetworkConfig.Publish), so their status Endpoint is
	// Address:PORT, reachable from other hosts; otherwise it is the
	// dyno's own address, reachable from this host only.
	PublishPorts bool
	// KeepDynos makes the agent leave its dynos running when it stops and
	// adopt them when it starts again (adopt.go); otherwise it stops them
	// and cleans up what an earlier run left.
	KeepDynos bool
	// FenceAfter is how long the agent runs its dynos without a successful
	// heartbeat before it stops them all (fence.go): the host TTL of the
	// manifold (model.DefaultHostTTL); a negative value never fences.
	// FenceGrace is their SIGTERM grace then (1 s), FenceCheck how often
	// the lease is checked (100 ms).
	FenceAfter, FenceGrace, FenceCheck time.Duration
	// Metrics, if set, counts state changes and heartbeats (metrics.go).
	Metrics *Metrics

	// putStatus stores a dyno's status (tests make the store refuse);
	// nil: the store's Statuses.Put.
	putStatus func(ctx context.Context, key string, st model.DynoStatus) error
}

// Agent runs the dynos assigned to one host.
type Agent struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	slugs *slugCache
	ports *numberPool
	uids  *numberPool
	usage UsageSink

	mu      sync.Mutex
	runners map[string]*runner // by dyno ID; guarded by mu
	wg      sync.WaitGroup     // one per runner goroutine

	fence fenceState // fence.go
}

// New makes an agent; Run starts it.
func New(cfg Config, st *store.Store) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.putStatus == nil {
		cfg.putStatus = func(ctx context.Context, key string, s model.DynoStatus) error {
			_, err := st.Statuses.Put(ctx, key, s)
			return err
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = 20000, 29999
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 60 * time.Second
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = model.DefaultHostHeartbeat // the manifold loses a host after model.DefaultHostTTL
	}
	if cfg.PidsLimit == 0 {
		cfg.PidsLimit = 512
	}
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = 2 * time.Second
	}
	if cfg.MonitorInterval == 0 {
		cfg.MonitorInterval = 2 * time.Second
	}
	if cfg.MetricsPeriod == 0 {
		cfg.MetricsPeriod = 20 * time.Second
	}
	if cfg.DetachTimeout <= 0 {
		cfg.DetachTimeout = 10 * time.Second
	}
	if cfg.UsageCheckpoint <= 0 {
		cfg.UsageCheckpoint = time.Minute
	}
	if cfg.UsageFlushTimeout <= 0 {
		cfg.UsageFlushTimeout = 15 * time.Second
	}
	if cfg.FenceAfter == 0 {
		cfg.FenceAfter = model.DefaultHostTTL
	}
	if cfg.FenceGrace <= 0 {
		cfg.FenceGrace = time.Second
	}
	if cfg.FenceCheck <= 0 {
		cfg.FenceCheck = 100 * time.Millisecond
	}
	var usage UsageSink = st.Usage
	if cfg.Usage != nil {
		usage = cfg.Usage
	}
	if cfg.UIDMin == 0 {
		cfg.UIDMin, cfg.UIDMax = 200000, 299999
	}
	if cfg.SlugGID == 0 {
		cfg.SlugGID = 199999
	}
	if !cfg.Runtime.Isolated() {
		cfg.SlugGID = -1 // unisolated dynos run as the agent's own user: no chown
	}
	return &Agent{
		cfg:     cfg,
		st:      st,
		log:     cfg.Logger.With("host", cfg.HostID),
		slugs:   newSlugCache(filepath.Join(cfg.DataDir, "slugs"), st.Slugs, cfg.SlugGID),
		ports:   newPortPool(cfg.PortMin, cfg.PortMax),
		uids:    newNumberPool("user ID", cfg.UIDMin, cfg.UIDMax, nil),
		usage:   usage,
		runners: map[string]*runner{},
	}
}

// Run registers the host and runs its assignments until ctx ends; then it
// stops every dyno (SIGTERM, grace, SIGKILL) and returns. The assignments
// stay, so the dynos come back when the agent does.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(a.cfg.DataDir, "dynos"), 0o711); err != nil {
		return fmt.Errorf("create agent dirs: %w", err)
	}
	// Adopt what an earlier run left running and still has an
	// assignment; clean up the rest (adopt.go).
	a.adoptOrCleanup(ctx)
	started := a.cfg.Now()
	if err := a.heartbeat(ctx, started); err != nil {
		return err
	}
	if a.cfg.FenceAfter > 0 {
		fctx, cancel := context.WithCancel(ctx)
		fenceDone := make(chan struct{})
		go func() { defer close(fenceDone); a.runFence(fctx) }()
		defer func() { cancel(); <-fenceDone }()
	}
	events, err := a.st.Assignments.Watch(ctx, a.cfg.HostID+".>")
	if err != nil {
		return fmt.Errorf("watch assignments of host %s: %w", a.cfg.HostID, err)
	}
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	defer a.stopAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := a.heartbeat(ctx, started); err != nil && ctx.Err() == nil {
				a.log.Warn("heartbeat", "err", err)
			}
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("assignment watch ended: is NATS reachable?")
			}
			switch {
			case ev.Ready:
				a.removeOrphanStatuses(ctx)
			case ev.Deleted:
				a.stopDyno(dynoIDOf(ev.Key))
			default:
				a.startDyno(ctx, ev.Value)
			}
		}
	}
}

func dynoIDOf(key string) string {
	_, id, _ := strings.Cut(key, ".")
	return id
}

func (a *Agent) heartbeat(ctx context.Context, started time.Time) error {
	h := model.Host{
		ID: a.cfg.HostID, Address: a.cfg.Address, MemoryMB: a.cfg.MemoryMB, CPUs: a.cfg.CPUs,
		HeartbeatAt: a.cfg.Now(), StartedAt: started,
	}
	// A heartbeat stuck longer than the lease is no heartbeat (fence.go).
	hctx, cancel := context.WithTimeout(ctx, max(a.cfg.FenceAfter/2, a.cfg.Heartbeat))
	defer cancel()
	_, err := a.st.Hosts.Put(hctx, a.cfg.HostID, h)
	a.cfg.Metrics.heartbeat(err)
	if err != nil {
		return fmt.Errorf("register host %s: %w", a.cfg.HostID, err)
	}
	a.noteHeartbeat(h.HeartbeatAt)
	return nil
}

// startDyno starts a runner for a new assignment. Updates of an assignment
// that already runs (the manifold noting a back-off) change nothing, and a
// dyno that already crashed is not started again: the manifold replaces it.
func (a *Agent) startDyno(ctx context.Context, as model.Assignment) {
	if a.Fenced() {
		return // started again when the fence lifts (fence.go)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.runners[as.ID]; ok {
		return
	}
	r := newRunner(a, as)
	a.runners[as.ID] = r
	// A dyno that crashed before the agent restarted stays crashed: its
	// runner only waits to remove the status when the manifold replaces it.
	crashed := false
	if st, _, err := a.st.Statuses.Get(ctx, model.StatusKey(as.AppID, as.ID)); err == nil &&
		(st.State == model.StateCrashed || (as.OneOff && model.OneOffEnded(st))) { // a one-off runs once
		crashed = true
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if crashed {
			r.awaitRemoval()
		} else {
			r.run(ctx)
		}
		a.mu.Lock()
		delete(a.runners, as.ID)
		a.mu.Unlock()
	}()
}

// stopDyno stops the dyno whose assignment was deleted and, once stopped,
// removes its status.
func (a *Agent) stopDyno(id string) {
	a.mu.Lock()
	r, ok := a.runners[id]
	a.mu.Unlock()
	if ok {
		r.stop(true)
	}
}

// stopAll stops every dyno at once, waits for them, and leaves their
// assignments and statuses ("down") for the next start of the agent.
func (a *Agent) stopAll() {
	if a.cfg.KeepDynos {
		a.leaveAll()
		return
	}
	a.mu.Lock()
	for _, r := range a.runners {
		r.stop(false)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// removeOrphanStatuses deletes statuses this host wrote for dynos that have
// no assignment any more (their assignment went while the agent was away).
func (a *Agent) removeOrphanStatuses(ctx context.Context) {
	statuses, err := a.st.Statuses.List(ctx, ">")
	if err != nil {
		a.log.Warn("list statuses", "err", err)
		return
	}
	for _, e := range statuses {
		if e.Value.HostID != a.cfg.HostID {
			continue
		}
		if _, _, err := a.st.Assignments.Get(ctx, model.AssignmentKey(a.cfg.HostID, e.Value.ID)); errors.Is(err, store.ErrNotFound) {
			a.st.Statuses.Delete(ctx, e.Key, e.Revision)
		}
	}
}
