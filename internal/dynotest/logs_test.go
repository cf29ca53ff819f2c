package dynotest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// logsApp's web dyno prints "stamp K NANOS" (its clock when it writes)
// for each GET /stamp?i=K; its worker waits for /app/go, then prints
// "start NANOS" and numbered lines "num 1".."num N" as fast as it can.
func logsApp(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.py", `import http.server, os, sys, time, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        if 'i' in q:
            print('stamp', q['i'][0], time.time_ns(), flush=True)
        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
print('web ready', flush=True)
S(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`)
	write("worker.py", fmt.Sprintf(`import sys, time
print('start', time.time_ns(), flush=True)
w = sys.stdout.write
for i in range(1, %d):
    w('num %%d\n' %% i)
sys.stdout.flush()
while True:
    time.sleep(3600)
`, n+1))
	write("Procfile", "web: python3 web.py\nworker: python3 worker.py\n")
	return dir
}

// syslogListener accepts syslog connections and sends every frame's
// source, dyno and message, with its arrival time, to frames.
type drainFrame struct {
	source, dyno, msg string
	at                time.Time
}

func syslogListener(t *testing.T, capacity int) (net.Listener, chan drainFrame) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan drainFrame, capacity)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := bufio.NewReaderSize(c, 64<<10)
				for {
					l, err := r.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSpace(l))
					if err != nil || size <= 0 || size > 1<<20 {
						frames <- drainFrame{msg: "BAD FRAME LENGTH " + l}
						return
					}
					buf := make([]byte, size)
					if _, err := io.ReadFull(r, buf); err != nil {
						return
					}
					// <PRI>1 TIME TOKEN SOURCE DYNO - - MSG\n
					parts := strings.SplitN(strings.TrimSuffix(string(buf), "\n"), " ", 8)
					if len(parts) != 8 {
						frames <- drainFrame{msg: "BAD FRAME " + string(buf)}
						return
					}
					frames <- drainFrame{source: parts[3], dyno: parts[4], msg: parts[7], at: time.Now()}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln, frames
}

type jsonLine struct {
	Time, Source, Dyno, Message string
}

// logsJSON runs dyno logs --json with args and returns its lines.
func (p *Platform) logsJSON(t *testing.T, args ...string) []jsonLine {
	t.Helper()
	out := p.MustCLI(append([]string{"logs", "--json"}, args...)...)
	var lines []jsonLine
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		if s == "" {
			continue
		}
		var l jsonLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("dyno logs --json printed %q: %v", s, err)
		}
		lines = append(lines, l)
	}
	return lines
}

func nanosField(t *testing.T, msg string, field int) time.Time {
	t.Helper()
	f := strings.Fields(msg)
	ns, err := strconv.ParseInt(f[field], 10, 64)
	if err != nil {
		t.Fatalf("no time in %q", msg)
	}
	return time.Unix(0, ns)
}

// TestLogsEndToEnd: a worker writing 100,000 numbered lines as fast as it
// can; a syslog drain gets every one in order, the history the last 1,500;
// filters by dyno and source; a tail session gets new lines, and the
// latency from a dyno's write to the tail client is measured.
func TestLogsEndToEnd(t *testing.T) {
	requireRoot(t)
	const n = 100000
	ln, frames := syslogListener(t, 2*n)
	p := Start(t, dynoBin)
	app := "logburst"
	p.MustCLI("apps:create", app)
	p.MustCLI("drains:add", "syslog://"+ln.Addr().String(), "-a", app)
	p.MustCLI("deploy", logsApp(t, n), "-a", app)
	p.MustCLI("ps:scale", "web=1", "-a", app)
	Eventually(t, 60*time.Second, "the web dyno answers", func() error {
		code, body, _, err := p.Get(app, "/")
		if err != nil || code != 200 {
			return fmt.Errorf("status %d %q: %v", code, body, err)
		}
		return nil
	})

	// The tail session starts before the burst and follows web.1 only.
	tail := startTail(t, p, "-a", app, "--dyno", "web.1", "--source", "app", "-n", "1")
	select {
	case l := <-tail.lines:
		if l.Message != "web ready" {
			t.Fatalf("the tail's history line is %+v, want web ready", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the tail session showed no history")
	}

	p.MustCLI("ps:scale", "worker=1", "-a", app)
	// Every worker line reaches the drain, in order.
	var started, atDrain time.Time
	next := 1
	timeout := time.After(90 * time.Second)
	for next <= n {
		select {
		case f := <-frames:
			if strings.HasPrefix(f.msg, "BAD") {
				t.Fatalf("drain: %s", f.msg)
			}
			if f.source != "app" || f.dyno != "worker.1" {
				if f.dyno == "logplex" {
					t.Errorf("the drain got %q", f.msg)
				}
				continue
			}
			if strings.HasPrefix(f.msg, "start ") {
				started = nanosField(t, f.msg, 1)
				continue
			}
			if want := "num " + strconv.Itoa(next); f.msg != want {
				t.Fatalf("line %d at the drain is %q, want %q: lost or out of order", next, f.msg, want)
			}
			next++
			atDrain = f.at
		case <-timeout:
			t.Fatalf("the drain got %d of %d lines", next-1, n)
		}
	}
	// When the last line is in the history (polled), then exactly the last 1,500.
	var inHistory time.Time
	Eventually(t, 30*time.Second, "the last line in the history", func() error {
		l := p.logsJSON(t, "-a", app, "-n", "1", "--dyno", "worker.1", "--source", "app")
		if len(l) != 1 || l[0].Message != "num "+strconv.Itoa(n) {
			return fmt.Errorf("last line %+v", l)
		}
		inHistory = time.Now()
		return nil
	})
	if started.IsZero() {
		t.Fatal("no start line from the worker")
	}
	t.Logf("%d lines from worker.1: all at the syslog drain %v after its first write (%.0f lines/s); in the history after at most %v (%.0f lines/s)",
		n, atDrain.Sub(started), float64(n)/atDrain.Sub(started).Seconds(), inHistory.Sub(started), float64(n)/inHistory.Sub(started).Seconds())
	hist := p.logsJSON(t, "-a", app, "-n", "1500", "--dyno", "worker.1", "--source", "app")
	if len(hist) != 1500 {
		t.Fatalf("dyno logs -n 1500 shows %d lines, want 1500", len(hist))
	}
	for i, l := range hist {
		if want := "num " + strconv.Itoa(n-1500+1+i); l.Message != want || l.Dyno != "worker.1" || l.Source != "app" {
			t.Fatalf("history line %d is %+v, want %q from app[worker.1]", i, l, want)
		}
	}

	// Latency: 200 stamps over ~4 s, from the web dyno's write to the tail.
	const stamps = 200
	sent := make([]time.Time, stamps)
	for i := range stamps {
		sent[i] = time.Now()
		if code, _, _, err := p.Get(app, "/stamp?i="+strconv.Itoa(i)); err != nil || code != 200 {
			t.Fatalf("GET /stamp: %d %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var lat []time.Duration
	got := 0
	deadline := time.After(20 * time.Second)
	for got < stamps {
		select {
		case l := <-tail.lines:
			f := strings.Fields(l.Message)
			if len(f) != 3 || f[0] != "stamp" || l.Dyno != "web.1" {
				t.Fatalf("the web.1 tail shows %+v", l)
			}
			if f[1] != strconv.Itoa(got) {
				t.Fatalf("tail line %q, want stamp %d: lost or out of order", l.Message, got)
			}
			lat = append(lat, l.at.Sub(nanosField(t, l.Message, 2)))
			got++
		case <-deadline:
			t.Fatalf("the tail session got %d of %d lines written after it started", got, stamps)
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("dyno write to tail client (dyno logs --tail): p50 %v, p99 %v, max %v over %d lines", p50, p99, lat[len(lat)-1], len(lat))
	if p99 > 5*time.Second || lat[0] < -time.Second {
		t.Fatalf("latency p99 %v, min %v: not sane", p99, lat[0])
	}

	// Filters: by process type, by dyno and by source, over the history
	// which now holds the burst's tail, the stamps and router lines.
	tests := []struct {
		name  string
		args  []string
		check func(l jsonLine) bool
		want  string // a message that must be among the lines
	}{
		{"type web", []string{"--dyno", "web"}, func(l jsonLine) bool { return l.Dyno == "web.1" }, "stamp 199 "},
		{"dyno worker.1", []string{"--dyno", "worker.1"}, func(l jsonLine) bool { return l.Dyno == "worker.1" }, "num " + strconv.Itoa(n)},
		{"source heroku", []string{"--source", "heroku"}, func(l jsonLine) bool { return l.Source == "heroku" }, ""},
		{"app web", []string{"--source", "app", "--dyno", "web"}, func(l jsonLine) bool { return l.Source == "app" && l.Dyno == "web.1" }, "stamp 0 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := p.logsJSON(t, append([]string{"-a", app, "-n", "1500"}, tc.args...)...)
			if len(lines) == 0 {
				t.Fatal("no lines")
			}
			found := tc.want == ""
			for _, l := range lines {
				if !tc.check(l) {
					t.Fatalf("line %+v does not match the filter", l)
				}
				found = found || strings.HasPrefix(l.Message+" ", tc.want)
			}
			if !found {
				t.Fatalf("%q is not among the %d lines", tc.want, len(lines))
			}
		})
	}
	tail.stop(t)
}

type tailLine struct {
	jsonLine
	at time.Time
}

type tailProc struct {
	cmd   *exec.Cmd
	lines chan tailLine
	done  chan error
}

// startTail runs dyno logs --tail --json; it is stopped (as Ctrl-C does)
// when the test ends.
func startTail(t *testing.T, p *Platform, args ...string) *tailProc {
	t.Helper()
	cmd := exec.Command(p.Bin, append([]string{"logs", "--tail", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "DYNO_API_URL="+p.APIURL, "DYNO_API_KEY="+p.APIKey, "HOME="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tp := &tailProc{cmd: cmd, lines: make(chan tailLine, 10000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			at := time.Now()
			var l jsonLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				tp.lines <- tailLine{l, at}
			}
		}
		tp.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if tp.cmd.ProcessState == nil {
			tp.cmd.Process.Kill()
			<-tp.done
		}
	})
	return tp
}

// stop interrupts the tail as Ctrl-C does and expects a clean exit.
func (tp *tailProc) stop(t *testing.T) {
	t.Helper()
	tp.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-tp.done:
		if err != nil {
			t.Errorf("dyno logs --tail after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("dyno logs --tail did not end on Ctrl-C")
		tp.cmd.Process.Kill()
		<-tp.done
	}
}
