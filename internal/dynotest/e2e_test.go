package dynotest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var dynoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dynotest-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dynoBin, err = Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: dynos run in containers (namespaces, cgroups, overlayfs); CI runs this as root")
	}
}

// probeApp writes an app whose web dynos answer questions about their own
// environment, and whose hog type eats memory. marker names its processes.
func probeApp(t *testing.T, marker string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("probe.py", `import http.server, json, os, socket, struct, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, obj):
        obj.setdefault('dyno', os.environ.get('DYNO'))
        body = json.dumps(obj).encode()
        self.send_response(200); self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        u = urllib.parse.urlparse(self.path); q = dict(urllib.parse.parse_qsl(u.query)); p = q.get('path', '')
        if u.path == '/ps':
            return self.answer({'pids': sorted(int(d) for d in os.listdir('/proc') if d.isdigit())})
        if u.path == '/write':
            try:
                with open(p, 'w') as f: f.write(os.environ.get('DYNO', ''))
                return self.answer({'ok': True})
            except Exception as e:
                return self.answer({'ok': False, 'error': str(e)})
        if u.path == '/read':
            try:
                with open(p) as f: return self.answer({'ok': True, 'data': f.read()})
            except Exception as e:
                return self.answer({'ok': False, 'error': str(e)})
        if u.path == '/connect':
            addr = q['addr'].replace('self', '127.0.0.1:' + os.environ['PORT'])
            host, port = addr.rsplit(':', 1)
            if host == 'gateway':
                with open('/proc/net/route') as f:
                    for line in f.readlines()[1:]:
                        fields = line.split()
                        if fields[1] == '00000000':
                            host = socket.inet_ntoa(struct.pack('<L', int(fields[2], 16)))
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                return self.answer({'ok': True, 'data': host})
            except Exception as e:
                return self.answer({'ok': False, 'error': str(e), 'data': host})
        if u.path == '/exists':
            return self.answer({'exists': os.path.exists(p)})
        self.answer({'port': os.environ.get('PORT'), 'dyno': os.environ.get('DYNO'), 'greeting': os.environ.get('GREETING'), 'uid': os.getuid(),
                     'home': os.environ.get('HOME'), 'cwd': os.getcwd(), 'headers': dict(self.headers.items())})
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
print('probe booting', os.environ.get('DYNO'), flush=True)
S(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`)
	write("hog.py", `import time
chunks = []
while True:
    chunks.append(bytearray(b'x' * (16 << 20)))
    print('holding', len(chunks) * 16, 'MB', flush=True)
    time.sleep(0.1)
`)
	write("Procfile", fmt.Sprintf("web: python3 probe.py %s\nworker: sh -c 'while true; do echo tick %s; sleep 5; done'\nhog: python3 hog.py %s\n", marker, marker, marker))
	return dir
}

type probeAnswer struct {
	Dyno     string            `json:"dyno"`
	Port     string            `json:"port"`
	Greeting string            `json:"greeting"`
	UID      int               `json:"uid"`
	Home     string            `json:"home"`
	Cwd      string            `json:"cwd"`
	Headers  map[string]string `json:"headers"`
	Pids     []int             `json:"pids"`
	OK       bool              `json:"ok"`
	Error    string            `json:"error"`
	Data     string            `json:"data"`
	Exists   bool              `json:"exists"`
}

func (p *Platform) probe(t *testing.T, app, path string) (probeAnswer, error) {
	code, body, _, err := p.Get(app, path)
	if err != nil {
		return probeAnswer{}, err
	}
	if code != 200 {
		return probeAnswer{}, fmt.Errorf("GET %s: status %d: %.200s", path, code, body)
	}
	var a probeAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return a, fmt.Errorf("GET %s: %v: %.200s", path, err, body)
	}
	return a, nil
}

// distinctDynos asks the app until n different web dynos have answered.
func (p *Platform) distinctDynos(t *testing.T, app string, n int) error {
	seen := map[string]bool{}
	for range n * 12 {
		a, err := p.probe(t, app, "/")
		if err != nil {
			return err
		}
		seen[a.Dyno] = true
		if len(seen) >= n {
			return nil
		}
	}
	return fmt.Errorf("only %d distinct dynos answered (%v), want %d", len(seen), seen, n)
}

func pgrep(pattern string) []int {
	out, _ := exec.Command("pgrep", "-f", pattern).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

func TestEndToEnd(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	marker := fmt.Sprintf("e2emark%d", os.Getpid())
	app := "probe"
	p.MustCLI("apps:create", app)
	out := p.MustCLI("deploy", probeApp(t, marker), "-a", app)
	if !strings.Contains(out, "v1") {
		t.Errorf("deploy output does not name release v1:\n%s", out)
	}
	p.MustCLI("ps:wait", "-a", app)

	t.Run("first web dyno answers with the platform's environment", func(t *testing.T) {
		a, err := p.probe(t, app, "/")
		if err != nil {
			t.Fatal(err)
		}
		if a.Dyno != "web.1" || a.Home != "/app" || a.Cwd != "/app" || a.UID == 0 {
			t.Errorf("dyno=%q home=%q cwd=%q uid=%d; want web.1, /app, /app and an unprivileged uid", a.Dyno, a.Home, a.Cwd, a.UID)
		}
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Request-Id", "X-Request-Start"} {
			if a.Headers[h] == "" {
				t.Errorf("request reached the dyno without %s (headers %v)", h, a.Headers)
			}
		}
	})

	p.MustCLI("ps:scale", "web=3", "worker=1", "-a", app)
	p.MustCLI("ps:wait", "-a", app)
	t.Run("three web dynos answer", func(t *testing.T) {
		Eventually(t, 30*time.Second, "three distinct web dynos", func() error { return p.distinctDynos(t, app, 3) })
		out := p.MustCLI("ps", "-a", app)
		for _, name := range []string{"web.1", "web.2", "web.3", "worker.1"} {
			if !strings.Contains(out, name) {
				t.Errorf("ps does not list %s:\n%s", name, out)
			}
		}
	})

	t.Run("isolation basics", func(t *testing.T) {
		ps, err := p.probe(t, app, "/ps")
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.Pids) == 0 || len(ps.Pids) > 6 {
			t.Errorf("a dyno sees pids %v; want only its own few processes", ps.Pids)
		}
		for _, path := range []string{"/usr/evil", "/etc/evil", "/bin/evil"} {
			w, err := p.probe(t, app, "/write?path="+path)
			if err != nil {
				t.Fatal(err)
			}
			if w.OK {
				t.Errorf("a dyno could write %s", path)
			}
		}
		if e, _ := p.probe(t, app, "/exists?path=/root"); e.Exists {
			t.Errorf("a dyno can see the host's /root")
		}
		if e, _ := p.probe(t, app, "/exists?path="+p.DataDir); e.Exists {
			t.Errorf("a dyno can see the platform's data dir %s", p.DataDir)
		}
		// Dynos cannot reach the platform: NATS and the API listen on the
		// host's loopback; the host is also the dyno's gateway.
		natsPort, apiPort := p.NATS[strings.LastIndex(p.NATS, ":")+1:], p.APIURL[strings.LastIndex(p.APIURL, ":")+1:]
		// The probe can connect at all: to its own port.
		if c, err := p.probe(t, app, "/connect?addr=self"); err != nil || !c.OK {
			t.Fatalf("a dyno cannot connect to its own port (%v, %+v): the checks below would prove nothing", err, c)
		}
		for _, target := range []string{"127.0.0.1:" + natsPort, "127.0.0.1:" + apiPort, "gateway:" + natsPort, "gateway:" + apiPort} {
			c, err := p.probe(t, app, "/connect?addr="+target)
			if err != nil {
				t.Fatal(err)
			}
			if c.OK {
				t.Errorf("a dyno connected to %s (%s): dynos must not reach the platform's ports", target, c.Data)
			}
			t.Logf("dyno -> %s (%s): %s", target, c.Data, c.Error)
		}
		// Every dyno has a user of its own.
		uids := map[int]string{}
		for i := 0; i < 60 && len(uids) < 3; i++ {
			a, err := p.probe(t, app, "/")
			if err != nil {
				t.Fatal(err)
			}
			if other, ok := uids[a.UID]; ok && other != a.Dyno {
				t.Fatalf("%s and %s run as the same uid %d", a.Dyno, other, a.UID)
			}
			uids[a.UID] = a.Dyno
		}
		if len(uids) < 3 {
			t.Errorf("saw uids %v from 3 dynos, want 3 different ones", uids)
		}
		// Every dyno writes its name to a file in /app and in /tmp. If any
		// two shared a file system, one would read the other's name.
		for _, dir := range []string{"/app", "/tmp"} {
			path := dir + "/owner-" + marker
			wrote := map[string]bool{}
			for i := 0; i < 60 && len(wrote) < 3; i++ {
				w, err := p.probe(t, app, "/write?path="+path)
				if err != nil || !w.OK {
					t.Fatalf("a dyno cannot write its own %s: %v %s", dir, err, w.Error)
				}
				wrote[w.Dyno] = true
			}
			if len(wrote) < 3 {
				t.Fatalf("only %v wrote to %s", wrote, dir)
			}
			for range 30 {
				r, err := p.probe(t, app, "/read?path="+path)
				if err != nil {
					t.Fatal(err)
				}
				if !r.OK || r.Data != r.Dyno {
					t.Fatalf("%s read %s and found %q (ok=%v, %s): dynos share files", r.Dyno, path, r.Data, r.OK, r.Error)
				}
			}
		}
	})

	t.Run("kill -9 of a dyno gets it replaced", func(t *testing.T) {
		pids := pgrep("^python3 probe.py " + marker)
		if len(pids) != 3 {
			t.Fatalf("found %d web dyno processes on the host, want 3", len(pids))
		}
		if err := exec.Command("kill", "-9", strconv.Itoa(pids[0])).Run(); err != nil {
			t.Fatal(err)
		}
		took := Eventually(t, 30*time.Second, "3 web dynos after kill -9", func() error {
			if n := len(pgrep("^python3 probe.py " + marker)); n != 3 {
				return fmt.Errorf("%d web dyno processes", n)
			}
			return p.distinctDynos(t, app, 3)
		})
		t.Logf("replaced in %s", took)
		logs := p.MustCLI("logs", "-a", app, "-n", "500")
		if !strings.Contains(logs, "Process exited with status 137") || !strings.Contains(logs, "State changed from up to crashed") {
			t.Errorf("logs do not tell of the killed dyno:\n%s", logs)
		}
	})

	t.Run("config:set makes a release whose dynos see it", func(t *testing.T) {
		p.MustCLI("config:set", "GREETING=hello-e2e", "-a", app)
		// ps:wait returns once no dyno of the old release is left.
		p.MustCLI("ps:wait", "-a", app)
		Eventually(t, 60*time.Second, "every dyno greets with the new value", func() error {
			for range 9 {
				a, err := p.probe(t, app, "/")
				if err != nil {
					return err
				}
				if a.Greeting != "hello-e2e" {
					return fmt.Errorf("%s greets %q", a.Dyno, a.Greeting)
				}
			}
			return nil
		})
		// The new release's dynos start from the slug: what the old ones
		// wrote to /app is gone.
		for range 9 {
			r, err := p.probe(t, app, "/read?path=/app/owner-"+marker)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK {
				t.Fatalf("%s of the new release found %q left by an earlier dyno in /app", r.Dyno, r.Data)
			}
		}
		if out := p.MustCLI("releases", "-a", app); !strings.Contains(out, "v2") {
			t.Errorf("releases does not list v2:\n%s", out)
		}
	})

	t.Run("a dyno over its quota gets R14, at twice the quota it is killed with R15", func(t *testing.T) {
		p.MustCLI("ps:scale", "hog=1", "-a", app)
		Eventually(t, 90*time.Second, "the hog's kill in the logs", func() error {
			logs, _, err := p.CLI("logs", "-a", app, "-n", "1500", "--dyno", "hog")
			if err != nil {
				return err
			}
			for _, want := range []string{"Error R14 (Memory quota exceeded)", "Error R15 (Memory quota vastly exceeded)", "Process exited with status 137", "State changed from up to crashed"} {
				if !strings.Contains(logs, want) {
					return fmt.Errorf("no %q for hog yet", want)
				}
			}
			return nil
		})
		p.MustCLI("ps:scale", "hog=0", "-a", app)
	})

	t.Run("a server restart keeps the app running and routable", func(t *testing.T) {
		took := p.Stop(45 * time.Second)
		if left := pgrep(marker); len(left) > 0 {
			t.Errorf("%d dyno processes still run after the server stopped", len(left))
		}
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), p.DataDir) {
			t.Errorf("mounts under the data dir remain after the server stopped")
		}
		t.Logf("server stopped in %s", took)
		p.start()
		back := Eventually(t, 60*time.Second, "three web dynos after a restart", func() error {
			return p.distinctDynos(t, app, 3)
		})
		t.Logf("app back %s after the restart", back)
		if a, err := p.probe(t, app, "/"); err != nil || a.Greeting != "hello-e2e" {
			t.Errorf("after a restart: %+v, %v; want the config var kept", a, err)
		}
	})

	t.Run("scale to zero gives H14", func(t *testing.T) {
		p.MustCLI("ps:scale", "web=0", "-a", app)
		Eventually(t, 30*time.Second, "503 after scaling web to 0", func() error {
			code, body, _, err := p.Get(app, "/")
			if err != nil {
				return err
			}
			if code != 503 || !strings.Contains(body, "<html") {
				return fmt.Errorf("status %d", code)
			}
			return nil
		})
		Eventually(t, 10*time.Second, "an H14 router line", func() error {
			if code, _, _, err := p.Get(app, "/"); err != nil || code != 503 {
				return fmt.Errorf("status %d, %v", code, err)
			}
			logs := p.MustCLI("logs", "-a", app, "-n", "300", "--source", "heroku", "--dyno", "router")
			if !strings.Contains(logs, "code=H14") {
				return fmt.Errorf("no code=H14 line in:\n%s", logs)
			}
			return nil
		})
	})

	t.Run("apps:destroy stops the dynos and removes the app", func(t *testing.T) {
		p.MustCLI("apps:destroy", app, "--confirm", app)
		Eventually(t, 45*time.Second, "no dyno processes left", func() error {
			if n := len(pgrep(marker)); n > 0 {
				return fmt.Errorf("%d processes", n)
			}
			return nil
		})
		if code, _ := p.API("GET", "/apps/"+app, nil); code != 404 {
			t.Errorf("GET /apps/%s after destroy = %d, want 404", app, code)
		}
	})
}
