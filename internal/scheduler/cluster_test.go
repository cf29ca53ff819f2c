package scheduler

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/store"
)

// freePorts reserves n loopback ports and frees them for the servers: a
// cluster's routes must name its peers' ports before they listen.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startCluster starts a three-node NATS JetStream cluster on loopback and
// opens the store on each node with every bucket at three replicas.
func startCluster(t *testing.T) []*store.Store {
	t.Helper()
	ports := freePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var servers []*server.Server
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "dyno", Host: "127.0.0.1", Port: p},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats server n%d did not start", i+1)
		}
		servers = append(servers, ns)
	}
	var stores []*store.Store
	for i, ns := range servers {
		nc, err := nats.Connect(ns.ClientURL(), nats.Name(fmt.Sprintf("scheduler-%d", i+1)), nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		// The cluster needs a JetStream leader before streams can be made.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := store.Open(ctx, nc, 3)
			cancel()
			if err == nil {
				stores = append(stores, st)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("open the store on n%d: %v", i+1, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return stores
}

func TestExactlyOnceThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	stores := startCluster(t)
	info, err := stores[0].JetStream().Stream(t.Context(), "KV_scheduler-runs")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().Config.Replicas; n != 3 {
		t.Fatalf("runs bucket has %d replicas, want 3", n)
	}
	runEveryMinute(t, stores)
}
