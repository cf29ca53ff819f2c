package dynotest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// load sends keep-alive GETs to app through the router from n goroutines
// until stop is called, which returns the counts and the first failures.
func (p *Platform) load(app string, n int) (stop func() (ok int64, failed []string)) {
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var (
		okCount atomic.Int64
		mu      sync.Mutex
		fails   []string
		wg      sync.WaitGroup
	)
	done := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				req, _ := http.NewRequest("GET", p.HTTPURL+"/", nil)
				req.Host = app + "." + p.Domain
				resp, err := client.Do(req)
				var msg string
				if err != nil {
					msg = err.Error()
				} else {
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || rerr != nil {
						msg = fmt.Sprintf("%s %d %v %.100s", time.Now().Format("15:04:05.000"), resp.StatusCode, rerr, body)
					}
				}
				if msg == "" {
					okCount.Add(1)
					continue
				}
				mu.Lock()
				fails = append(fails, msg)
				mu.Unlock()
			}
		}()
	}
	return func() (int64, []string) {
		close(done)
		wg.Wait()
		tr.CloseIdleConnections()
		return okCount.Load(), fails
	}
}

// TestNoFailedRequestsWhileScalingAndRestarting runs a bounded load through
// the router during ps:scale web=5, web=1 and ps:restart: every request
// must succeed (dynos leave the table before SIGTERM; requests under way
// finish; broken kept-alive connections are retried elsewhere).
func TestNoFailedRequestsWhileScalingAndRestarting(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	app := "drain"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", probeApp(t, fmt.Sprintf("drainmark%d", os.Getpid())), "-a", app)
	p.MustCLI("ps:wait", "-a", app)
	Eventually(t, 30*time.Second, "the app answers", func() error { _, err := p.probe(t, app, "/"); return err })

	steps := []struct {
		name string
		args []string
	}{
		{"scale up to 5", []string{"ps:scale", "web=5", "-a", app}},
		{"scale down to 1", []string{"ps:scale", "web=1", "-a", app}},
		{"restart", []string{"ps:restart", "-a", app}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			stop := p.load(app, 4)
			time.Sleep(500 * time.Millisecond)
			p.MustCLI(s.args...)
			p.MustCLI("ps:wait", "-a", app)
			time.Sleep(4 * time.Second) // past the 2 s drain and the SIGTERM of leaving dynos
			ok, failed := stop()
			t.Logf("%s: %d requests succeeded, %d failed", s.name, ok, len(failed))
			if ok == 0 || len(failed) > 0 {
				t.Fatalf("%d failed requests (first: %.5q); want none", len(failed), failed)
			}
		})
	}
}

// TestStandaloneRouterProcess runs `dyno router` as a second process
// against a real server and measures how fast a route change reaches it.
func TestStandaloneRouterProcess(t *testing.T) {
	p := Start(t, dynoBin)
	ports := FreePorts(t, 3)
	cmd := exec.Command(dynoBin, "router", "--nats-url", "nats://"+p.NATS,
		"--credentials", filepath.Join(p.DataDir, "nats-password"),
		"--http", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--metrics", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--https", fmt.Sprintf("127.0.0.1:%d", ports[2]), "--tls-dir", filepath.Join(p.DataDir, "tls"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("dyno router did not stop within 15 s of SIGINT:\n%s", out.String())
		}
	})

	// Write a route as the API and an agent would, straight to the store.
	pw, err := os.ReadFile(filepath.Join(p.DataDir, "nats-password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := store.Connect("nats://"+p.NATS, "dyno", strings.TrimSpace(string(pw)), "dynotest")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	backend := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s.Listener.Addr().String()
	}
	setDyno := func(endpoint string) {
		s := model.DynoStatus{ID: "d1", AppID: "ghost-id", Type: "web", Name: "web.1", State: model.StateUp, Endpoint: endpoint, UpdatedAt: time.Now()}
		if _, err := st.Statuses.Put(ctx, model.StatusKey("ghost-id", "d1"), s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { st.Statuses.Delete(context.Background(), model.StatusKey("ghost-id", "d1"), 0) })
	if _, err := st.AppNames.Put(ctx, "ghost", model.AppName{ID: "ghost-id"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.AppNames.Delete(context.Background(), "ghost", 0) })
	setDyno(backend("v0"))

	routerURL := fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() string {
		req, _ := http.NewRequest("GET", routerURL, nil)
		req.Host = "ghost.localhost"
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	Eventually(t, 30*time.Second, "the router process routes", func() error {
		if got := get(); got != "v0" {
			return fmt.Errorf("got %.100q\n%s", got, out.String())
		}
		return nil
	})

	var took []time.Duration
	for i := 1; i <= 10; i++ {
		want := fmt.Sprintf("v%d", i)
		ep := backend(want)
		start := time.Now()
		setDyno(ep)
		for get() != want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("route change %d did not reach the router process in 5 s", i)
			}
		}
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("route propagation to a separate router process (status write → routed): median %v, max %v", took[5], took[9])
	if took[9] > 100*time.Millisecond {
		t.Errorf("slowest route change took %v, want under 100 ms", took[9])
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `dyno_router_requests_total{app="ghost",status="200",code=""}`) {
		t.Errorf("router metrics lack ghost's requests:\n%s", b)
	}

	// HTTPS with the platform's CA, HTTP/2.
	caPEM, err := os.ReadFile(filepath.Join(p.DataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "ghost.localhost"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", ports[2]), nil)
	req.Host = "ghost.localhost"
	hresp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("HTTPS through the router process: %v\n%s", err, out.String())
	}
	hb, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if string(hb) != "v10" || hresp.ProtoMajor != 2 {
		t.Errorf("HTTPS through the router process: %q over HTTP/%d, want v10 over HTTP/2", hb, hresp.ProtoMajor)
	}
}
