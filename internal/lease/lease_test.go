package lease_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/lease"
	"github.com/dyno-platform/dyno/internal/store"
)

// startCluster runs an in-process NATS cluster of n nodes and returns its
// servers once JetStream can create an R3 bucket.
func startCluster(t *testing.T, n int) []*store.Server {
	t.Helper()
	var routes []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		routes = append(routes, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	var srvs []*store.Server
	for i := range n {
		srv, err := store.StartServer(store.ServerConfig{
			Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "u", Password: "p",
			Cluster: store.ClusterConfig{
				Name: "test", NodeName: fmt.Sprintf("n%d", i+1), Listen: routes[i], Peers: routes,
				User: "route", Password: "route-secret",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		srvs = append(srvs, srv)
	}
	return srvs
}

// openLeases opens the R3 lease bucket through srv, retrying while the
// cluster elects its JetStream leaders.
func openLeases(t *testing.T, srv *store.Server) store.Bucket[lease.Record] {
	t.Helper()
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := store.Open(ctx, nc, 3)
		if err == nil {
			var b store.Bucket[lease.Record]
			b, err = store.OpenBucket[lease.Record](ctx, st.JetStream(), "leases", 3)
			cancel()
			if err == nil {
				return b
			}
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not form in 60 s: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// cutBucket is a bucket whose contender can be cut off from NATS.
type cutBucket struct {
	store.Bucket[lease.Record]
	cut atomic.Bool
}

var errCut = errors.New("cut off")

func (b *cutBucket) Get(ctx context.Context, key string) (lease.Record, uint64, error) {
	if b.cut.Load() {
		return lease.Record{}, 0, errCut
	}
	return b.Bucket.Get(ctx, key)
}

func (b *cutBucket) Update(ctx context.Context, key string, v lease.Record, rev uint64) (uint64, error) {
	if b.cut.Load() {
		return 0, errCut
	}
	return b.Bucket.Update(ctx, key, v, rev)
}

func (b *cutBucket) Create(ctx context.Context, key string, v lease.Record) (uint64, error) {
	if b.cut.Load() {
		return 0, errCut
	}
	return b.Bucket.Create(ctx, key, v)
}

func (b *cutBucket) Delete(ctx context.Context, key string, rev uint64) error {
	if b.cut.Load() {
		return errCut
	}
	return b.Bucket.Delete(ctx, key, rev)
}

// referee records who leads and fails the test if two ever do at once.
type referee struct {
	t       *testing.T
	mu      sync.Mutex
	current string
	terms   []term
}

type term struct {
	holder     string
	start, end time.Time
}

func (r *referee) lead(name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		r.mu.Lock()
		if r.current != "" {
			r.t.Errorf("%s leads while %s still does", name, r.current)
		}
		r.current = name
		r.terms = append(r.terms, term{holder: name, start: time.Now()})
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.current = ""
		r.terms[len(r.terms)-1].end = time.Now()
		r.mu.Unlock()
		return nil
	}
}

func (r *referee) leader() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

func (r *referee) last() term {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terms[len(r.terms)-1]
}

func awaitLeader(t *testing.T, r *referee, not string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := r.leader(); l != "" && l != not {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader other than %q within %s", not, within)
	return ""
}

func TestLeaseOnThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	srvs := startCluster(t, 3)
	const ttl = 1500 * time.Millisecond
	ref := &referee{t: t}
	buckets := map[string]*cutBucket{}
	leases := map[string]*lease.Lease{}
	stops := map[string]func(){}
	var wg sync.WaitGroup
	start := func(name string, srv *store.Server) {
		b := &cutBucket{Bucket: openLeases(t, srv)}
		l := lease.New(lease.Config{Bucket: b, Key: "manifold", Holder: name, TTL: ttl})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			if err := l.Run(ctx, ref.lead(name)); err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		})
		buckets[name], leases[name], stops[name] = b, l, func() { cancel(); <-done }
	}
	for i, srv := range srvs {
		start(fmt.Sprintf("n%d", i+1), srv)
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
		wg.Wait()
	}()

	first := awaitLeader(t, ref, "", 10*time.Second)
	t.Run("exactly one holder, known to all", func(t *testing.T) {
		time.Sleep(2 * ttl) // several renewals: the holder keeps it
		if got := ref.leader(); got != first {
			t.Fatalf("leader changed from %s to %q without a failure", first, got)
		}
		for name, l := range leases {
			st := l.Status()
			if st.Holder != first || st.Leading != (name == first) {
				t.Errorf("%s sees %+v, want holder %s", name, st, first)
			}
		}
	})

	var second string
	t.Run("a holder that cannot renew steps down before another takes over", func(t *testing.T) {
		buckets[first].cut.Store(true)
		cutAt := time.Now()
		second = awaitLeader(t, ref, first, 3*ttl)
		took := time.Since(cutAt)
		ref.mu.Lock()
		old := ref.terms[len(ref.terms)-2]
		ref.mu.Unlock()
		if old.holder != first || old.end.IsZero() {
			t.Fatalf("terms: %+v", ref.terms)
		}
		gap := ref.last().start.Sub(old.end)
		t.Logf("cut off %s: it stepped down %s after the cut; %s led %s later (%s after the cut)",
			first, old.end.Sub(cutAt).Round(time.Millisecond), second, gap.Round(time.Millisecond), took.Round(time.Millisecond))
		if gap <= 0 {
			t.Errorf("the terms overlap by %s", -gap)
		}
		if old.end.Sub(cutAt) > ttl {
			t.Errorf("the cut-off holder stepped down %s after its last renewal could have been, over the TTL %s", old.end.Sub(cutAt), ttl)
		}
		buckets[first].cut.Store(false)
		time.Sleep(2 * ttl) // the healed node does not take it back
		if got := ref.leader(); got != second {
			t.Errorf("leader %q after the heal, want %s", got, second)
		}
	})

	t.Run("a holder that stops releases the lease at once", func(t *testing.T) {
		stoppedAt := time.Now()
		stops[second]()
		stops[second] = func() {}
		third := awaitLeader(t, ref, second, 2*ttl)
		t.Logf("%s stopped; %s led after %s", second, third, time.Since(stoppedAt).Round(time.Millisecond))
	})
}

// TestLeaseSurvivesNodeLoss kills the NATS node of the holder: a contender
// on another node leads once the lease bucket's stream has a new leader and
// the lease lapsed.
func TestLeaseSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	srvs := startCluster(t, 3)
	const ttl = 2 * time.Second
	ref := &referee{t: t}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	byName := map[string]*store.Server{}
	buckets := map[string]*cutBucket{}
	for i, srv := range srvs {
		name := fmt.Sprintf("n%d", i+1)
		byName[name] = srv
		buckets[name] = &cutBucket{Bucket: openLeases(t, srv)}
		l := lease.New(lease.Config{Bucket: buckets[name], Key: "manifold", Holder: name, TTL: ttl})
		wg.Go(func() { l.Run(ctx, ref.lead(name)) })
	}
	first := awaitLeader(t, ref, "", 10*time.Second)
	time.Sleep(ttl) // a renewal or two on every replica
	killed := time.Now()
	// The holder's process dies with its node: its client would otherwise
	// reconnect to a surviving node and keep the lease.
	buckets[first].cut.Store(true)
	byName[first].Shutdown()
	// The dead node's contender still thinks it leads until its lease
	// lapses (its renewals fail): count only the others.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ref.mu.Lock()
		var next string
		for _, tm := range ref.terms {
			if tm.holder != first && tm.start.After(killed) {
				next = tm.holder
			}
		}
		ref.mu.Unlock()
		if next != "" {
			t.Logf("killed the node of %s; %s leads after %s", first, next, time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader 30 s after the holder's node died")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
