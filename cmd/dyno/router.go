package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/router"
	"github.com/dyno-platform/dyno/internal/server"
	"github.com/dyno-platform/dyno/internal/store"
)

// runRouter is `dyno router`: a stateless router process that follows the
// route table of a platform through NATS watches. Any number may run.
func runRouter(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dyno router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS of the platform (dyno server's --nats-listen)")
	creds := fs.String("credentials", "", "file with the NATS credentials: `user:password`, or the password of user dyno (the server's DATA/nats-password)")
	httpAddr := fs.String("http", ":8080", "HTTP listen address for apps")
	domain := fs.String("domain", "localhost", "apps answer at <app>.<domain>")
	httpsAddr := fs.String("https", "", "HTTPS listen address for apps (HTTP/2); needs --tls-dir")
	tlsDir := fs.String("tls-dir", "", "a copy of the server's DATA/tls (the platform CA and its certificates), for --https")
	metricsAddr := fs.String("metrics", "127.0.0.1:9101", "listen address of the Prometheus /metrics endpoint (empty: none)")
	busyPoll := fs.Duration("busy-poll", 0, busyPollUsage)
	logger := logFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dyno router: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dyno router: %v\n", err)
		return 2
	}
	if gc := router.TuneGC(); gc != "" {
		log.Debug("garbage collector tuned for routing", "set", gc)
	}
	if err := routerMain(ctx, routerFlags{*natsURL, *creds, *httpAddr, *httpsAddr, *tlsDir, *domain, *metricsAddr, *busyPoll}, stdout, log); err != nil {
		fmt.Fprintf(stderr, "dyno router: %v\n", err)
		return 1
	}
	return 0
}

type routerFlags struct {
	natsURL, creds, httpAddr, httpsAddr, tlsDir, domain, metricsAddr string
	busyPoll                                                         time.Duration
}

// busyPollUsage documents --busy-poll of dyno router and dyno server.
const busyPollUsage = "how long the router's event loops poll for more traffic before they sleep; a loop polls only under steady load, while nearly all its recent idle periods were shorter (default 0: never; 50µs suits a router with CPUs of its own)"

func routerMain(ctx context.Context, f routerFlags, stdout io.Writer, log *slog.Logger) error {
	if f.creds == "" {
		return errors.New("--credentials is required: pass the server's DATA/nats-password file (or a file with user:password)")
	}
	user, password, err := readCredentials(f.creds)
	if err != nil {
		return err
	}
	var platformTLS *certs.Platform
	if f.httpsAddr != "" {
		// A router must serve the platform's CA, not make one of its own.
		if _, err := os.Stat(filepath.Join(f.tlsDir, "ca.pem")); f.tlsDir == "" || err != nil {
			return fmt.Errorf("--https needs --tls-dir with a copy of the server's DATA/tls (ca.pem, ca-key.pem, wildcard.pem, wildcard-key.pem)")
		}
		if platformTLS, err = certs.EnsurePlatform(f.tlsDir, f.domain, time.Now()); err != nil {
			return err
		}
	}
	httpLn, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen for apps on %s: %w (use --http to pick another address)", f.httpAddr, err)
	}
	defer httpLn.Close()
	var metricsLn net.Listener
	if f.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w (use --metrics to pick another address, or --metrics '' for none)", f.metricsAddr, err)
		}
		defer metricsLn.Close()
	}
	host, _ := os.Hostname()
	nc, err := store.Connect(f.natsURL, user, password, "dyno-router-"+host)
	if err != nil {
		return fmt.Errorf("%w (check --nats-url and --credentials)", err)
	}
	defer nc.Close()
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Attach, not Open: a router must never change the buckets the control
	// plane made (Open would set a cluster's R3 buckets to one replica).
	st, err := store.Attach(openCtx, nc)
	if err != nil {
		return err
	}
	logs, err := logplex.Attach(openCtx, st.JetStream(), logplex.Config{Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		logs.Flush(fctx)
	}()

	rtr := router.New(router.Config{Domain: f.domain, Logs: logs, Logger: log, BusyPoll: f.busyPoll}, st)
	srv := router.NewHTTPServer(rtr, router.ServerConfig{Logger: log})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- rtr.Run(runCtx) }()
	serve := func(s server.Servable, ln net.Listener) {
		defer wg.Done()
		if err := server.ServeUntil(runCtx, s, ln, 5*time.Second); err != nil {
			errs <- err
		}
	}
	wg.Add(1)
	go serve(srv, httpLn)
	if platformTLS != nil {
		httpsLn, err := net.Listen("tcp", f.httpsAddr)
		if err != nil {
			stop()
			wg.Wait()
			return fmt.Errorf("listen for apps over HTTPS on %s: %w (use --https to pick another address)", f.httpsAddr, err)
		}
		defer httpsLn.Close()
		tlsCerts := certs.NewManager(certs.ManagerConfig{Platform: platformTLS, Logger: log}, st)
		wg.Add(1)
		go func() { defer wg.Done(); errs <- tlsCerts.Run(runCtx) }()
		httpsSrv := router.NewHTTPServer(rtr, router.ServerConfig{Logger: log})
		httpsSrv.TLSConfig = tlsCerts.TLSConfig()
		wg.Add(1)
		go serve(httpsSrv, httpsLn) // TLS and HTTP/2: the server has a TLS config
		fmt.Fprintf(stdout, "HTTPS on %s\n", httpsLn.Addr())
	}
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", rtr.MetricsHandler())
		wg.Add(1)
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go serve(ms, metricsLn)
		fmt.Fprintf(stdout, "Metrics: http://%s/metrics\n", metricsLn.Addr())
	}
	fmt.Fprintf(stdout, "Dyno router on %s for <app>.%s, following %s\n", httpLn.Addr(), f.domain, f.natsURL)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stop()
	wg.Wait()
	return runErr
}

// readCredentials reads "user:password" or a bare password (user dyno).
func readCredentials(path string) (user, password string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read NATS credentials: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", "", fmt.Errorf("NATS credentials file %s is empty", path)
	}
	if u, p, ok := strings.Cut(s, ":"); ok {
		return u, p, nil
	}
	return "dyno", s, nil
}
