// Command manifold measures the dyno manifold at scale (issue 5): one
// manifold on a real embedded NATS JetStream, N simulated hosts (a host
// record refreshed every -heartbeat, and an agent that reports every dyno
// assigned to it up at once and deletes the status of every dyno whose
// assignment goes: a fake runtime), and A apps with a web and a worker
// process type. It scales every app up to -per-type dynos of each type,
// kills one host (heartbeat and agent stop: its dynos are lost), then
// scales every app down to zero, and prints for each phase how long it
// took, placements per second, and when the 1,000th dyno was placed.
//
//	go run ./bench/manifold                       # 20 hosts, 100 apps, 2,000 dynos
//	go run ./bench/manifold -cpuprofile cpu.out   # then go tool pprof cpu.out
//
// Everything runs in one process on 127.0.0.1 and stops by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/manifold"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

type options struct {
	hosts, apps, perType int
	heartbeat, ttl       time.Duration
	timeout              time.Duration
	workers              int
	cpuProfile           string
	verbose              bool
}

func main() {
	var o options
	flag.IntVar(&o.hosts, "hosts", 20, "simulated hosts")
	flag.IntVar(&o.apps, "apps", 100, "apps, each with a web and a worker process type")
	flag.IntVar(&o.perType, "per-type", 10, "dynos of each process type of each app (2 × apps × per-type in all)")
	flag.DurationVar(&o.heartbeat, "heartbeat", model.DefaultHostHeartbeat, "how often hosts heartbeat")
	flag.DurationVar(&o.ttl, "ttl", model.DefaultHostTTL, "the manifold's host TTL")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on a phase after this long")
	flag.IntVar(&o.workers, "workers", 0, "the manifold's concurrent store writes (0: its default)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.BoolVar(&o.verbose, "v", false, "log the manifold's plans")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "dyno-bench-manifold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := store.StartServer(store.ServerConfig{Dir: dir, Listen: "127.0.0.1:0", User: "bench", Password: "bench"})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := store.Open(ctx, nc, 1)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	obs := newObserver()
	if err := obs.watch(ctx, &wg, st); err != nil {
		return err
	}
	hosts := make([]*host, o.hosts)
	for i := range hosts {
		hosts[i] = startHost(ctx, &wg, st, fmt.Sprintf("host-%02d", i), o.heartbeat)
	}
	if err := writeApps(ctx, st, o.apps, 0); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m := manifold.New(manifold.Config{Logger: logger, HostTTL: o.ttl, Workers: o.workers}, st)
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			log.Printf("manifold: %v", err)
		}
	})
	select {
	case <-m.Synced():
	case <-time.After(o.timeout):
		return fmt.Errorf("the manifold did not sync")
	}
	total := 2 * o.apps * o.perType
	fmt.Printf("manifold bench: %d hosts, %d apps, %d dynos (web and worker × %d per app), heartbeat %s, host TTL %s\n",
		o.hosts, o.apps, total, o.perType, o.heartbeat, o.ttl)

	// Scale up.
	start := time.Now()
	if err := writeApps(ctx, st, o.apps, o.perType); err != nil {
		return err
	}
	placed1000, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.placed >= min(1000, total) })
	if err != nil {
		return fmt.Errorf("scale up: %w", err)
	}
	placed, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.placed == total })
	if err != nil {
		return fmt.Errorf("scale up: %w", err)
	}
	up, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.up == total && s.placed == total })
	if err != nil {
		return fmt.Errorf("scale up: %w", err)
	}
	fmt.Printf("scale up 0 → %d: 1,000 placed in %s; all placed in %s (%.0f placements/s); all up in %s\n",
		total, since(start, placed1000), since(start, placed), float64(total)/placed.Sub(start).Seconds(), since(start, up))
	fmt.Printf("  spread: %s\n", obs.spread())

	// Kill a host: its dynos are replaced once its TTL lapses.
	victim := hosts[len(hosts)/2]
	onVictim := obs.on(victim.id)
	start = time.Now()
	victim.kill()
	restored, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.upElsewhere(victim.id) == total })
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	cleaned, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.assignedTo[victim.id] == 0 && s.statusOn[victim.id] == 0 })
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	last := time.Unix(0, victim.lastBeat.Load())
	fmt.Printf("host %s killed with %d dynos: all %d up on other hosts %s after its last heartbeat (%s after the kill); its assignments and statuses gone after %s\n",
		victim.id, onVictim, total, since(last, restored), since(start, restored), since(last, cleaned))

	// Scale down.
	start = time.Now()
	if err := writeApps(ctx, st, o.apps, 0); err != nil {
		return err
	}
	down, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.assigned == 0 })
	if err != nil {
		return fmt.Errorf("scale down: %w", err)
	}
	gone, err := obs.wait(ctx, o.timeout, func(s snapshot) bool { return s.assigned == 0 && s.statuses == 0 })
	if err != nil {
		return fmt.Errorf("scale down: %w", err)
	}
	fmt.Printf("scale down %d → 0: assignments deleted in %s (%.0f/s); statuses gone in %s\n",
		total, since(start, down), float64(total)/down.Sub(start).Seconds(), since(start, gone))
	return nil
}

func since(start, t time.Time) time.Duration { return t.Sub(start).Round(time.Millisecond) }

// writeApps writes apps app000.. with a release and a formation of n web
// and n worker dynos each.
func writeApps(ctx context.Context, st *store.Store, apps, n int) error {
	slug := &model.Slug{ID: "slug", ProcessTypes: map[string]string{"web": "run web", "worker": "run worker"}}
	for i := range apps {
		id := fmt.Sprintf("app%03d", i)
		if _, err := st.Releases.Put(ctx, model.ReleaseKey(id, 1), model.Release{AppID: id, Version: 1, Slug: slug}); err != nil {
			return err
		}
		if _, err := st.Apps.Put(ctx, id, model.App{ID: id, Name: id, ReleaseVersion: 1}); err != nil {
			return err
		}
		f := model.Formation{AppID: id, Processes: map[string]model.Process{"web": {Quantity: n}, "worker": {Quantity: n}}}
		if _, err := st.Formations.Put(ctx, id, f); err != nil {
			return err
		}
	}
	return nil
}
