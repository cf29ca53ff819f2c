package dynotest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyRun is `dyno run` on a real pseudo-terminal, as a person runs it.
type ptyRun struct {
	cmd   *exec.Cmd
	tty   *os.File
	mu    sync.Mutex
	out   bytes.Buffer
	start time.Time
	first map[string]time.Duration // when a pattern first showed
	done  chan error
}

func (p *Platform) runOnPTY(t *testing.T, args ...string) *ptyRun {
	t.Helper()
	cmd := exec.Command(p.Bin, args...)
	cmd.Env = append(os.Environ(), "DYNO_API_URL="+p.APIURL, "DYNO_API_KEY="+p.APIKey, "HOME="+t.TempDir(), "TERM=xterm")
	r := &ptyRun{cmd: cmd, start: time.Now(), done: make(chan error, 1)}
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	if err != nil {
		t.Fatal(err)
	}
	r.tty = tty
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			r.mu.Lock()
			r.out.Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		tty.Close()
	})
	return r
}

func (r *ptyRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// await waits until the output after position from matches re and
// returns the output's length then.
func (r *ptyRun) await(t *testing.T, from int, re string, timeout time.Duration) int {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		out := r.output()
		if from <= len(out) && rx.MatchString(out[from:]) {
			return len(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the terminal within %s; it shows:\n%q", re, timeout, out[min(from, len(out)):])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *ptyRun) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-r.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("dyno run did not end within %s; terminal:\n%q", timeout, r.output())
		return -1
	}
}

func TestRunOneOffs(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	dir := t.TempDir()
	procfile := "web: exec python3 -m http.server $PORT\nworker: echo worker-says\n"
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte(procfile), 0o644); err != nil {
		t.Fatal(err)
	}
	app := "oneoffs"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", dir, "-a", app)
	p.MustCLI("config:set", "GREETING=hello", "-a", app)

	t.Run("interactive bash on a terminal", func(t *testing.T) {
		r := p.runOnPTY(t, "run", "-a", app, "bash")
		pos := r.await(t, 0, `up, run\.\d+`, 60*time.Second)
		pos = r.await(t, pos, `\$ `, 30*time.Second)
		fmt.Fprint(r.tty, "echo $((6*7)) $GREETING $COLUMNS\r")
		pos = r.await(t, pos, `42 hello 100\r\n`, 10*time.Second)
		// Ctrl-C is a byte to the dyno's terminal: it interrupts sleep.
		fmt.Fprint(r.tty, "sleep 100\r")
		time.Sleep(500 * time.Millisecond)
		fmt.Fprint(r.tty, "\x03")
		fmt.Fprint(r.tty, "echo after-$((1+1))\r")
		r.await(t, pos, `after-2\r\n`, 10*time.Second)
		fmt.Fprint(r.tty, "exit 5\r")
		if code := r.exitCode(t, 20*time.Second); code != 5 {
			t.Fatalf("dyno run exited %d, want 5; terminal:\n%q", code, r.output())
		}
	})

	t.Run("exit statuses and stdin without a terminal", func(t *testing.T) {
		_, stderr, err := p.CLI("run", "-a", app, "--", "sh", "-c", "exit 3")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("dyno run -- sh -c 'exit 3': %v, want exit 3\n%s", err, stderr)
		}
		if !regexp.MustCompile("Running `sh -c 'exit 3'` on ⬢ oneoffs\\.\\.\\. up, run\\.\\d+").MatchString(stderr) {
			t.Errorf("stderr %q", stderr)
		}
		// A Procfile type runs its command; -e adds variables. One
		// argument is the command line as it is: $A expands in the dyno.
		out, stderr, err := p.CLI("run", "-a", app, "-e", "A=1;B=2", "-e", "C=3", "worker $A$B$C")
		if err != nil || !strings.Contains(out, "worker-says 123") {
			t.Fatalf("dyno run worker: %v\nstdout %q\nstderr %q", err, out, stderr)
		}
		// Several arguments keep the boundaries the local shell gave them.
		out, stderr, err = p.CLI("run", "-a", app, "--", "sh", "-c", `x=5; echo "x=$x" "it's"`)
		if err != nil || !strings.Contains(out, "x=5 it's") {
			t.Fatalf("dyno run -- sh -c ...: %v\nstdout %q\nstderr %q", err, out, stderr)
		}
	})

	t.Run("detached, in the logs", func(t *testing.T) {
		_, stderr, err := p.CLI("run:detached", "-a", app, "echo detached-output-$GREETING")
		m := regexp.MustCompile(`done, (run\.\d+)`).FindStringSubmatch(stderr)
		if err != nil || m == nil || !strings.Contains(stderr, "dyno logs -a oneoffs --dyno "+m[1]) {
			t.Fatalf("run:detached: %v\n%s", err, stderr)
		}
		Eventually(t, 60*time.Second, "the detached output in the logs", func() error {
			out := p.MustCLI("logs", "-a", app, "--dyno", m[1])
			if !strings.Contains(out, "app["+m[1]+"]: detached-output-hello") || !strings.Contains(out, "Process exited with status 0") {
				return errors.New(out)
			}
			return nil
		})
	})

	t.Run("ps lists one-offs and ps:stop ends them", func(t *testing.T) {
		_, stderr, err := p.CLI("run:detached", "-a", app, "sleep", "300")
		m := regexp.MustCompile(`done, (run\.\d+)`).FindStringSubmatch(stderr)
		if err != nil || m == nil {
			t.Fatalf("run:detached: %v\n%s", err, stderr)
		}
		Eventually(t, 60*time.Second, m[1]+" up in ps", func() error {
			out := p.MustCLI("ps", "-a", app)
			if !strings.Contains(out, "=== run: one-off processes") || !regexp.MustCompile(regexp.QuoteMeta(m[1])+` \(.*\): up .*sleep 300`).MatchString(out) {
				return errors.New(out)
			}
			return nil
		})
		p.MustCLI("ps:stop", m[1], "-a", app)
		Eventually(t, 60*time.Second, m[1]+" gone, not restarted", func() error {
			if out := p.MustCLI("ps", "-a", app); strings.Contains(out, m[1]) {
				return errors.New(out)
			}
			return nil
		})
	})

	t.Run("time to the first prompt byte", func(t *testing.T) {
		var times []time.Duration
		for range 5 {
			r := p.runOnPTY(t, "run", "-a", app, "bash")
			pos := r.await(t, 0, `up, run\.\d+`, 60*time.Second)
			r.await(t, pos, `\$ `, 30*time.Second)
			times = append(times, time.Since(r.start))
			fmt.Fprint(r.tty, "exit\r")
			r.exitCode(t, 20*time.Second)
		}
		slices.Sort(times)
		t.Logf("dyno run -a APP bash to the first prompt byte: median %s (min %s, max %s)", times[2], times[0], times[4])
	})
}
