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
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/router"
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
	metricsAddr := fs.String("metrics", "127.0.0.1:9101", "listen address of the Prometheus /metrics endpoint (empty: none)")
	verbose := fs.Bool("verbose", false, "debug logging")
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
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := routerMain(ctx, routerFlags{*natsURL, *creds, *httpAddr, *domain, *metricsAddr}, stdout, log); err != nil {
		fmt.Fprintf(stderr, "dyno router: %v\n", err)
		return 1
	}
	return 0
}

type routerFlags struct {
	natsURL, creds, httpAddr, domain, metricsAddr string
}

func routerMain(ctx context.Context, f routerFlags, stdout io.Writer, log *slog.Logger) error {
	if f.creds == "" {
		return errors.New("--credentials is required: pass the server's DATA/nats-password file (or a file with user:password)")
	}
	user, password, err := readCredentials(f.creds)
	if err != nil {
		return err
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
	st, err := store.Open(openCtx, nc, 1)
	if err != nil {
		return err
	}
	logs, err := logplex.New(openCtx, st.JetStream(), logplex.Config{Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		logs.Flush(fctx)
	}()

	rtr := router.New(router.Config{Domain: f.domain, Logs: logs, Logger: log}, st)
	srv := router.NewHTTPServer(rtr, router.ServerConfig{Logger: log})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- rtr.Run(runCtx) }()
	serve := func(s *http.Server, ln net.Listener) {
		defer wg.Done()
		go func() {
			<-runCtx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s.Shutdown(sctx) != nil {
				s.Close() // WebSockets and long requests do not wait
			}
		}()
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	}
	wg.Add(1)
	go serve(srv, httpLn)
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", rtr.MetricsHandler())
		wg.Add(1)
		go serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, metricsLn)
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
