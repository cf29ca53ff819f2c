package dynotest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// versionApp writes an app whose web dynos answer "version <v>", but only
// after warming up for a second and a half: before that every request,
// /healthz included, gets 503. Its Procfile runs web with command.
func versionApp(t *testing.T, v, command string) string {
	t.Helper()
	dir := t.TempDir()
	app := `import http.server, os, sys, time
start = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        ready = time.time() - start > 1.5
        body = (('version ' + sys.argv[1]) if ready else 'warming up').encode()
        self.send_response(200 if ready else 503)
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
S(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`
	if command == "" {
		command = "python3 app.py " + v
	}
	for name, body := range map[string]string{"app.py": app, "Procfile": "web: " + command + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pacedLoad sends rps GETs a second to app through the router until stop
// is called, which returns how many answers each body got and the failures.
func (p *Platform) pacedLoad(app string, rps int) (stop func() (bodies map[string]int, failed []string)) {
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu     sync.Mutex
		bodies = map[string]int{}
		fails  []string
		wg     sync.WaitGroup
	)
	done := make(chan struct{})
	tick := time.NewTicker(time.Second / time.Duration(rps))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", p.HTTPURL+"/", nil)
				req.Host = app + "." + p.Domain
				resp, err := client.Do(req)
				msg, body := "", ""
				if err != nil {
					msg = err.Error()
				} else {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					body = string(b)
					if resp.StatusCode != 200 || rerr != nil {
						msg = fmt.Sprintf("%s %d %v %.100s", time.Now().Format("15:04:05.000"), resp.StatusCode, rerr, b)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if msg != "" {
					fails = append(fails, msg)
				} else {
					bodies[body]++
				}
			}()
		}
	}()
	return func() (map[string]int, []string) {
		close(done)
		wg.Wait()
		client.CloseIdleConnections()
		return bodies, fails
	}
}

var crashedAtBoot = regexp.MustCompile(`web\.[12] crashed at boot \(exit status 1\)`)

// TestDeploysDropNothing deploys under a steady 200 requests/s: a new
// release whose dynos need a moment before they can serve (a health check
// path says when), then a release that crashes at boot, which must be
// rolled back while the old dynos keep serving. No request may fail.
func TestDeploysDropNothing(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	app := "steady"
	p.MustCLI("apps:create", app)
	p.MustCLI("config:set", "DYNO_HEALTHCHECK_PATH=/healthz", "-a", app)
	p.MustCLI("deploy", versionApp(t, "one", ""), "-a", app)
	p.MustCLI("ps:scale", "web=2", "-a", app)
	p.MustCLI("ps:wait", "-a", app)
	Eventually(t, 30*time.Second, "v1 answers", func() error {
		if code, body, _, err := p.Get(app, "/"); err != nil || code != 200 || body != "version one" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})

	t.Run("a new release takes over", func(t *testing.T) {
		stop := p.pacedLoad(app, 200)
		time.Sleep(time.Second)
		start := time.Now()
		out := p.MustCLI("deploy", versionApp(t, "two", ""), "-a", app)
		live := time.Since(start)
		Eventually(t, 30*time.Second, "v2 answers", func() error {
			if _, body, _, err := p.Get(app, "/"); err != nil || body != "version two" {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
		time.Sleep(4 * time.Second) // past the old dynos' drain and SIGTERM
		bodies, failed := stop()
		t.Logf("deploy to live in %s; answers %v; %d failed", live.Round(time.Millisecond), bodies, len(failed))
		if len(failed) > 0 {
			t.Fatalf("%d failed requests during the deploy (first: %q); want none", len(failed), failed[:min(3, len(failed))])
		}
		if bodies["version one"] == 0 || bodies["version two"] == 0 || !strings.Contains(out, "All up in") {
			t.Fatalf("answers %v, deploy output:\n%s", bodies, out)
		}
	})

	t.Run("a release that crashes at boot is rolled back", func(t *testing.T) {
		stop := p.pacedLoad(app, 200)
		time.Sleep(time.Second)
		out, stderr, err := p.CLI("deploy", versionApp(t, "three", "sh -c 'echo boom; exit 1'"), "-a", app)
		time.Sleep(2 * time.Second)
		bodies, failed := stop()
		t.Logf("answers %v; %d failed", bodies, len(failed))
		if err == nil || !crashedAtBoot.MatchString(out+stderr) || !strings.Contains(out+stderr, "Rolled back to v") {
			t.Fatalf("deploy of a crashing release: err=%v\n%s\n%s", err, out, stderr)
		}
		if len(failed) > 0 || bodies["version two"] == 0 || len(bodies) != 1 {
			t.Fatalf("answers %v, %d failed (first: %q); want every request answered by v2", bodies, len(failed), failed[:min(3, len(failed))])
		}
		rels := p.MustCLI("releases", "-a", app, "-n", "1")
		if !strings.Contains(rels, "Rollback to v3") {
			t.Fatalf("newest release is not the rollback to v3:\n%s", rels)
		}
		if _, body, _, _ := p.Get(app, "/"); body != "version two" {
			t.Fatalf("after the rollback the app answers %q", body)
		}
	})

	t.Run("rollback serves the old code again", func(t *testing.T) {
		p.MustCLI("rollback", "v2", "-a", app)
		Eventually(t, 30*time.Second, "v1's code answers", func() error {
			if _, body, _, err := p.Get(app, "/"); err != nil || body != "version one" {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
	})
}

// TestReleasePhase deploys an app whose Procfile has a release command: it
// runs as a one-off dyno of the new release before the release goes live;
// when it fails, the release is marked failed and the old one keeps serving.
func TestReleasePhase(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	app := "phased"
	p.MustCLI("apps:create", app)
	deploy := func(v string, fail bool) (string, string, error) {
		dir := versionApp(t, v, "")
		procfile := "web: python3 app.py " + v + "\nrelease: sh -c 'echo migrating to " + v + " as $DYNO; test ! -e fail'\n"
		os.WriteFile(filepath.Join(dir, "Procfile"), []byte(procfile), 0o644)
		if fail {
			os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644)
		}
		return p.CLI("deploy", dir, "-a", app)
	}
	out, stderr, err := deploy("one", false)
	if err != nil || !strings.Contains(out, "migrating to one as release.") || !strings.Contains(out, "Release command succeeded") {
		t.Fatalf("deploy with a passing release phase: %v\n%s\n%s", err, out, stderr)
	}
	p.MustCLI("ps:wait", "-a", app)
	Eventually(t, 30*time.Second, "v1 answers", func() error {
		if _, body, _, err := p.Get(app, "/"); err != nil || body != "version one" {
			return fmt.Errorf("%q %v", body, err)
		}
		return nil
	})
	if ps := p.MustCLI("ps", "-a", app); strings.Contains(ps, "release.") && !strings.Contains(ps, "one-off") {
		t.Errorf("ps lists the release phase as a process type:\n%s", ps)
	}

	out, stderr, err = deploy("two", true)
	if err == nil || !strings.Contains(out, "migrating to two") || !strings.Contains(out, "exited with status 1") {
		t.Fatalf("deploy with a failing release phase: err=%v\n%s\n%s", err, out, stderr)
	}
	if _, body, _, _ := p.Get(app, "/"); body != "version one" {
		t.Fatalf("after a failed release phase the app answers %q, want v1's code", body)
	}
	rels := p.MustCLI("releases", "-a", app)
	if !strings.Contains(rels, "(failed)") || !strings.Contains(rels, "Current: v1") {
		t.Errorf("releases after a failed release phase:\n%s", rels)
	}
	logs := p.MustCLI("logs", "-a", app, "-n", "200")
	if !strings.Contains(logs, "migrating to two") {
		t.Errorf("the release phase's output is not in the logs:\n%s", logs)
	}
}
