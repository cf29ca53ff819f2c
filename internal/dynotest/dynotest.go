// Package dynotest starts real Dyno platforms for integration tests: it
// builds the dyno binary, runs `dyno server` in a temp dir on free loopback
// ports, drives it with the real CLI and the router, and awaits states.
// Only tests import it.
package dynotest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles cmd/dyno into dir and returns the binary's path.
func Build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "dyno")
	// make test passes its build tags (seccomp) on, so the binary under
	// test is the one make run builds.
	cmd := exec.Command("go", "build", "-tags", os.Getenv("DYNO_BUILD_TAGS"), "-o", bin, "./cmd/dyno")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dyno: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Platform is one running `dyno server`.
type Platform struct {
	t       testing.TB
	Bin     string
	DataDir string
	APIURL  string
	APIKey  string
	HTTPURL string // the router, http://127.0.0.1:port
	// HTTPSPort is the router's TLS port; DataDir/tls/ca.pem is its CA.
	HTTPSPort int
	NATS      string // the embedded NATS server's address, 127.0.0.1:port
	Domain    string

	args []string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// Start runs `dyno server` with a fresh data dir and free ports and waits
// until its API answers. The platform is stopped when the test ends.
func Start(t testing.TB, bin string) *Platform {
	t.Helper()
	ports := FreePorts(t, 4)
	p := &Platform{
		t: t, Bin: bin, DataDir: filepath.Join(t.TempDir(), "data"), Domain: "localhost",
		APIURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		HTTPURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		NATS:      fmt.Sprintf("127.0.0.1:%d", ports[2]),
		HTTPSPort: ports[3],
	}
	p.args = []string{"server", "--data-dir", p.DataDir,
		"--api", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--http", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--nats-listen", p.NATS, "--domain", p.Domain, "--https", fmt.Sprintf("127.0.0.1:%d", ports[3])}
	p.start()
	t.Cleanup(func() { p.Stop(45 * time.Second) })
	return p
}

func (p *Platform) start() {
	p.t.Helper()
	p.launch()
	p.awaitAPI(60 * time.Second)
}

// Stop sends SIGTERM and waits up to timeout for the server to exit; it
// returns how long the stop took. Stopping a stopped platform does nothing.
func (p *Platform) Stop(timeout time.Duration) time.Duration {
	if p.cmd == nil {
		return 0
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("dyno server did not stop within %s of SIGTERM:\n%s", timeout, p.Output())
	}
	p.cmd = nil
	took := time.Since(start)
	if took > 10*time.Second {
		p.t.Logf("dyno server took %s to stop; its output:\n%s", took, p.Output())
	}
	return took
}

// Restart stops the server and starts it again on the same data dir.
func (p *Platform) Restart() {
	p.t.Helper()
	p.Stop(45 * time.Second)
	p.start()
}

// Output is what the server printed so far.
func (p *Platform) Output() string { return p.out.String() }

// CLI runs the dyno CLI against the platform and returns its stdout and
// stderr and its error (an *exec.ExitError for a non-zero exit).
func (p *Platform) CLI(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Bin, args...)
	cmd.Env = append(os.Environ(), "DYNO_API_URL="+p.APIURL, "DYNO_API_KEY="+p.APIKey, "HOME="+p.t.TempDir())
	cmd.Dir = p.t.TempDir() // not the source tree: apps:create adds a git remote to the repository it runs in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// MustCLI is CLI that fails the test on a non-zero exit.
func (p *Platform) MustCLI(args ...string) string {
	p.t.Helper()
	out, errOut, err := p.CLI(args...)
	if err != nil {
		p.t.Fatalf("dyno %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// Get sends one request to app through the router.
func (p *Platform) Get(app, path string) (int, string, http.Header, error) {
	req, err := http.NewRequest("GET", p.HTTPURL+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Host = app + "." + p.Domain
	c := http.Client{Timeout: 40 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, err
}

// API sends one authenticated request to the Platform API.
func (p *Platform) API(method, path string, body io.Reader) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.APIURL+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.APIKey)
	req.Header.Set("Accept", "application/vnd.heroku+json; version=3")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Eventually retries check every interval until it returns nil or timeout
// passes, then fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = check(); err == nil {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

// FreePorts finds n free loopback TCP ports.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// syncBuffer is a bytes.Buffer safe for the server's two output streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
