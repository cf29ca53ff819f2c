// Command balance measures the router's load balancing the way RapGenius
// hit Heroku's random routing: N web dynos that each serve ONE request at a
// time (the others queue inside the dyno), with heavy-tailed service times,
// under open-loop Poisson arrivals at a fixed share of total capacity. It
// starts an embedded store and the router (as the agent and the API server
// would write the app: name, release with config vars, up web dynos), runs
// the load once, and prints the latency distribution.
//
// The app's routing policy is the release config var DYNO_ROUTING_POLICY,
// set from -policy ("" leaves it unset: the router's default). Arrivals and
// service times come from -seed, so runs with different policies see the
// very same requests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/bench/internal/fixture"
	"github.com/dyno-platform/dyno/internal/router"
)

type options struct {
	backends int
	mean     time.Duration
	dist     string
	shape    float64
	load     float64
	duration time.Duration
	warmup   time.Duration
	seed     uint64
	policy   string
}

func main() {
	var o options
	flag.IntVar(&o.backends, "backends", 8, "web dynos, each serving one request at a time")
	flag.DurationVar(&o.mean, "mean", 10*time.Millisecond, "mean service time")
	flag.StringVar(&o.dist, "dist", "lognormal", "service time distribution: lognormal (shape = sigma), pareto (shape = alpha), weibull (shape = k), exp")
	flag.Float64Var(&o.shape, "shape", 1.0, "shape parameter of -dist")
	flag.Float64Var(&o.load, "load", 0.7, "offered load as a share of total capacity (backends / mean)")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long arrivals go on")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "arrivals in this first part are sent but not counted")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of arrivals and service times")
	flag.StringVar(&o.policy, "policy", "", "DYNO_ROUTING_POLICY of the app (random | round-robin | p2c); empty: unset, the router's default")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatalf("balance: %v", err)
	}
}

// request is one planned arrival.
type request struct {
	at      time.Duration // since the start of the run
	service time.Duration
}

// plan draws the arrivals (Poisson at rate) and their service times.
func plan(o options) ([]request, error) {
	sample, err := sampler(o.dist, o.shape, o.mean)
	if err != nil {
		return nil, err
	}
	rate := o.load * float64(o.backends) / o.mean.Seconds() // requests per second
	arrivals := rand.New(rand.NewPCG(o.seed, 1))
	services := rand.New(rand.NewPCG(o.seed, 2))
	var reqs []request
	var t float64
	for {
		t += arrivals.ExpFloat64() / rate
		at := time.Duration(t * float64(time.Second))
		if at >= o.duration {
			return reqs, nil
		}
		reqs = append(reqs, request{at: at, service: sample(services)})
	}
}

// maxService caps a drawn service time so that one extreme draw cannot
// outlast the run.
const maxService = 2 * time.Second

// sampler returns a function drawing service times of the given mean.
func sampler(dist string, shape float64, mean time.Duration) (func(*rand.Rand) time.Duration, error) {
	m := float64(mean)
	clamp := func(x float64) time.Duration { return time.Duration(min(x, float64(maxService))) }
	switch dist {
	case "exp":
		return func(r *rand.Rand) time.Duration { return clamp(r.ExpFloat64() * m) }, nil
	case "lognormal":
		mu := math.Log(m) - shape*shape/2
		return func(r *rand.Rand) time.Duration { return clamp(math.Exp(mu + shape*r.NormFloat64())) }, nil
	case "pareto":
		if shape <= 1 {
			return nil, fmt.Errorf("pareto needs -shape (alpha) > 1 for a finite mean, got %g", shape)
		}
		xm := m * (shape - 1) / shape
		return func(r *rand.Rand) time.Duration { return clamp(xm / math.Pow(1-r.Float64(), 1/shape)) }, nil
	case "weibull":
		scale := m / math.Gamma(1+1/shape)
		return func(r *rand.Rand) time.Duration {
			return clamp(scale * math.Pow(-math.Log(1-r.Float64()), 1/shape))
		}, nil
	}
	return nil, fmt.Errorf("unknown -dist %q: use lognormal, pareto, weibull or exp", dist)
}

// dyno is a web dyno that serves one request at a time: the others wait in
// its queue (the channel's FIFO of blocked senders), as in a single-threaded
// app server with a listen backlog.
type dyno struct {
	slot     chan struct{}
	inside   atomic.Int64 // requests queued or in service
	maxQueue atomic.Int64
	served   atomic.Int64
	busy     atomic.Int64 // ns spent serving, to report the real utilisation
}

func (d *dyno) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	us, err := strconv.ParseInt(r.URL.Query().Get("us"), 10, 64)
	if err != nil {
		http.Error(w, "want ?us=<service time in µs>", http.StatusBadRequest)
		return
	}
	n := d.inside.Add(1)
	for m := d.maxQueue.Load(); n > m && !d.maxQueue.CompareAndSwap(m, n); m = d.maxQueue.Load() {
	}
	d.slot <- struct{}{}
	start := time.Now()
	time.Sleep(time.Duration(us) * time.Microsecond)
	d.busy.Add(int64(time.Since(start)))
	<-d.slot
	d.inside.Add(-1)
	d.served.Add(1)
	io.WriteString(w, "ok\n")
}

func run(o options) error {
	reqs, err := plan(o)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dynos := make([]*dyno, o.backends)
	endpoints := make([]string, o.backends)
	for i := range dynos {
		d := &dyno{slot: make(chan struct{}, 1)}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen for web.%d: %w", i+1, err)
		}
		srv := &http.Server{Handler: d}
		go srv.Serve(ln)
		defer srv.Close()
		dynos[i], endpoints[i] = d, ln.Addr().String()
	}

	const app = "balanceapp"
	p, err := fixture.Start(ctx, fixture.App{Name: app, Endpoints: endpoints, Policy: o.policy},
		router.Config{Logs: fixture.DiscardLogs{}})
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the router: %w", err)
	}
	front := &http.Server{Handler: p.Router}
	go front.Serve(ln)
	defer front.Close()
	base := "http://" + ln.Addr().String()
	host := app + ".localhost"
	if err := fixture.WaitRoutable(base+"/?us=0", host); err != nil {
		return err
	}
	for _, d := range dynos {
		d.served.Store(0)
		d.maxQueue.Store(0)
		d.busy.Store(0)
	}

	lat, failed, err := load(ctx, base, host, reqs, o.warmup)
	if err != nil {
		return err
	}
	report(o, reqs, lat, failed, dynos)
	return nil
}

// load sends every planned request at its time, each on its own goroutine
// (open loop: a slow response never delays the next arrival), and returns
// the latencies of those after the warm-up, measured from the planned
// arrival time.
func load(ctx context.Context, base, host string, reqs []request, warmup time.Duration) ([]time.Duration, int, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4096, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	lat := make([]time.Duration, len(reqs))
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, rq := range reqs {
		if d := time.Until(start.Add(rq.at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return nil, 0, errors.New("interrupted")
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", base+"/?us="+strconv.FormatInt(rq.service.Microseconds(), 10), nil)
			req.Host = host
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				failed.Add(1)
				lat[i] = -1
				return
			}
			lat[i] = time.Since(start.Add(rq.at))
		}()
	}
	wg.Wait()
	var kept []time.Duration
	for i, rq := range reqs {
		if rq.at >= warmup && lat[i] >= 0 {
			kept = append(kept, lat[i])
		}
	}
	return kept, int(failed.Load()), nil
}

func report(o options, reqs []request, lat []time.Duration, failed int, dynos []*dyno) {
	slices.Sort(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return ms(lat[min(len(lat)-1, int(q*float64(len(lat))))])
	}
	var sum, s1, s2 float64
	for _, l := range lat {
		sum += ms(l)
	}
	for _, r := range reqs {
		s1 += ms(r.service)
		s2 += ms(r.service) * ms(r.service)
	}
	n := float64(len(reqs))
	es, es2 := s1/n, s2/n
	// Pollaczek-Khinchine: mean response of one M/G/1 dyno at the offered
	// load, i.e. what purely random routing should give.
	lambda := o.load / es // per dyno, per ms
	rho := lambda * es
	pk := es + lambda*es2/(2*(1-rho))
	policy := o.policy
	if policy == "" {
		policy = "default"
	}
	fmt.Printf("policy=%s: %d requests (%d counted after %s warm-up), %d failed; service %s mean %.2f ms (drawn %.2f ms), load %.0f%% of %d dynos = %.0f req/s\n",
		policy, len(reqs), len(lat), o.warmup, failed, o.dist, ms(o.mean), es, o.load*100, o.backends,
		o.load*float64(o.backends)/o.mean.Seconds())
	fmt.Printf("  latency ms: mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f   (M/G/1 mean for random routing: %.2f)\n",
		sum/float64(max(1, len(lat))), pct(0.50), pct(0.90), pct(0.99), pct(0.999), pct(1), pk)
	fmt.Printf("  per dyno: served")
	for _, d := range dynos {
		fmt.Printf(" %d", d.served.Load())
	}
	var busy int64
	for _, d := range dynos {
		busy += d.busy.Load()
	}
	// Sleeps overshoot a little, so the real load is a bit above -load.
	fmt.Printf("; measured utilisation %.0f%% (over %s)", 100*float64(busy)/float64(len(dynos))/float64(o.duration), o.duration)
	fmt.Printf("; deepest queue")
	for _, d := range dynos {
		fmt.Printf(" %d", d.maxQueue.Load())
	}
	fmt.Println()
	fmt.Printf("RESULT %s %.3f %.3f %.3f %.3f %d\n", policy, sum/float64(max(1, len(lat))), pct(0.50), pct(0.99), pct(0.999), failed)
	os.Stdout.Sync()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
