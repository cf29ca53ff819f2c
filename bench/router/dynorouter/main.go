// Command dynorouter serves the Dyno router for the benchmarks: it starts
// an embedded store holding one app whose web dynos are the given
// backends, and serves router.New(...) behind router.NewHTTPServer on an
// HTTP port and, with -https, on a TLS port. It uses only the router's
// exported API so that it keeps building while the router changes.
// It runs until SIGINT or SIGTERM; -cpuprofile writes a CPU profile of
// the whole run and -memprofile a profile of what it allocated.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/bench/internal/fixture"
	"github.com/dyno-platform/dyno/internal/router"
)

type options struct {
	httpAddr, httpsAddr string
	cert, key           string
	backends            []string
	app, domain         string
	policy              string
	busyPoll            time.Duration
	logs                bool
	cpuprofile          string
	memprofile          string
}

func main() {
	var o options
	var backends string
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:0", "HTTP listen address")
	flag.StringVar(&o.httpsAddr, "https", "", "HTTPS listen address (needs -cert and -key); empty: no HTTPS")
	flag.StringVar(&o.cert, "cert", "", "TLS certificate (PEM)")
	flag.StringVar(&o.key, "key", "", "TLS private key (PEM)")
	flag.StringVar(&backends, "backend", "", "comma-separated host:port of the app's web dynos")
	flag.StringVar(&o.app, "app", "benchapp", "app name")
	flag.StringVar(&o.domain, "domain", "localhost", "apps' parent domain")
	flag.StringVar(&o.policy, "policy", "", "DYNO_ROUTING_POLICY written in the app's release config (empty: unset)")
	flag.DurationVar(&o.busyPoll, "busy-poll", 0, "router.Config.BusyPoll: how long an event loop busy-polls before it sleeps (0, the default: never)")
	flag.BoolVar(&o.logs, "logs", true, "give the router a log sink that formats and drops each router log line, as in production")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile of the run to this file when it ends")
	flag.Parse()
	if backends == "" {
		log.Fatal("dynorouter: -backend is required: the host:port of at least one backend")
	}
	o.backends = strings.Split(backends, ",")
	router.TuneGC() // as dyno server and dyno router do
	if err := run(o); err != nil {
		log.Fatalf("dynorouter: %v", err)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg := router.Config{Domain: o.domain, BusyPoll: o.busyPoll}
	if o.logs {
		cfg.Logs = fixture.DiscardLogs{}
	}
	p, err := fixture.Start(ctx, fixture.App{Name: o.app, Endpoints: o.backends, Policy: o.policy}, cfg)
	if err != nil {
		return err
	}
	defer p.Close()

	var servers []*router.Server
	errc := make(chan error, 2)
	serve := func(addr string, tls bool) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("listen on %s: %w", addr, err)
		}
		// The server the dyno commands run (edge loop, limits, accounting).
		srv := router.NewHTTPServer(p.Router, router.ServerConfig{IdleTimeout: 120 * time.Second})
		servers = append(servers, srv)
		go func() {
			var err error
			if tls {
				err = srv.ServeTLS(ln, o.cert, o.key)
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		return ln.Addr().String(), nil
	}
	httpAddr, err := serve(o.httpAddr, false)
	if err != nil {
		return err
	}
	host := o.app + "." + o.domain
	if err := fixture.WaitRoutable("http://"+httpAddr+"/", host); err != nil {
		return err
	}
	httpsAddr := "-"
	if o.httpsAddr != "" {
		if httpsAddr, err = serve(o.httpsAddr, true); err != nil {
			return err
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.memprofile != "" {
		defer writeMemProfile(o.memprofile)
	}
	fmt.Printf("ready http=%s https=%s host=%s\n", httpAddr, httpsAddr, host)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	return nil
}

// writeMemProfile writes the allocation profile; a failure is only logged
// because the run it describes is over.
func writeMemProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Printf("dynorouter: create the allocation profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Printf("dynorouter: write the allocation profile: %v", err)
	}
}
