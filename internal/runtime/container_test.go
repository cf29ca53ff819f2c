package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a container's init when libcontainer
// re-executes it.
func TestMain(m *testing.M) {
	InitHook()
	os.Exit(m.Run())
}

const (
	testUID     = 10000
	testGID     = 10000
	testSlugGID = 9999
)

// syncBuffer is a bytes.Buffer safe for the copy goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("container runtime tests need root (they create namespaces, cgroups and mounts); run them as root")
	}
}

func newTestContainerRuntime(t testing.TB) *ContainerRuntime {
	t.Helper()
	needRoot(t)
	rt, err := NewContainerRuntime(ContainerConfig{StateDir: t.TempDir(), CgroupParent: "dyno-test"})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// newTestSlug makes a slug dir with a Procfile and a script, unpacked as the
// agent does (root:testSlugGID, group permissions like the owner's).
func newTestSlug(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "slug")
	gid := -1
	if os.Geteuid() == 0 {
		gid = testSlugGID
	}
	tarball := makeTarball(t, []tarEntry{
		{name: "Procfile", body: "web: bin/run\n"},
		{name: "bin/run", body: "#!/bin/sh\necho running\n", mode: 0o755},
		{name: "files/", typ: tar.TypeDir, mode: 0o755},
		{name: "files/existing", body: "old\n", mode: 0o644},
	})
	if err := UnpackSlug(tarball, dir, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

var testCounter struct {
	sync.Mutex
	n int
}

func testSpec(t testing.TB, slug, command string) Spec {
	testCounter.Lock()
	testCounter.n++
	n := testCounter.n
	testCounter.Unlock()
	return Spec{
		ID:       fmt.Sprintf("test-%d-%d", os.Getpid(), n),
		Hostname: "web.1",
		Command:  command,
		Env:      []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/app", "DYNO=web.1", "PORT=5000"},
		SlugDir:  slug,
		WorkDir:  filepath.Join(t.TempDir(), "work"),
		UID:      testUID,
		GID:      testGID,
		MemoryMB: 256,
		// The slug group.
		AdditionalGroups: []int{testSlugGID},
		CPUShares:        1024,
		PidsLimit:        256,
	}
}

// runDyno starts a dyno, waits for it to end, closes it and returns its output.
func runDyno(t *testing.T, rt Runtime, spec Spec) (stdout, stderr string, res Result) {
	t.Helper()
	var out, errOut syncBuffer
	spec.Stdout, spec.Stderr = &out, &errOut
	d, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	res = d.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), res
}

func TestContainerContract(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	tests := []struct {
		name, command string
		wantOut       string // stdout, trimmed
		wantErr       string // substring of stderr
		wantStatus    int
	}{
		{"runs as the dyno user", "id -u; id -g; id -un", "10000\n10000\ndyno", "", 0},
		{"sees only its own processes", "ls /proc | grep -c '^[0-9]'", "", "", 0}, // checked below
		{"ps shows a handful", "ps ax | wc -l", "", "", 0},                        // checked below
		{"cwd and env", `pwd; echo $HOME $DYNO $PORT`, "/app\n/app web.1 5000", "", 0},
		{"hostname", "hostname", "web.1", "", 0},
		{"slug at /app", "cat /app/Procfile && ./bin/run", "web: bin/run\nrunning", "", 0},
		{"python3", `python3 -c 'import os, ssl, json; print(os.getuid(), json.dumps([1]))'`, "10000 [1]", "", 0},
		{"awk via alternatives", `echo a b | awk '{print $2}'`, "b", "", 0},
		{"cannot write /usr", "touch /usr/x", "", "Read-only file system", 1},
		{"cannot write /etc", "touch /etc/x", "", "Read-only file system", 1},
		{"cannot change /etc/passwd", "echo x >> /etc/passwd", "", "/etc/passwd: Permission denied", 1}, // bash runs commands
		{"cannot write /", "mkdir /x", "", "Read-only file system", 1},
		{"can write /app", "echo hi > /app/new && cat /app/new && echo more >> /app/Procfile && tail -1 /app/Procfile", "hi\nmore", "", 0},
		{"can write /tmp and /dev/shm", "echo t > /tmp/t && cat /tmp/t && echo s > /dev/shm/s", "t", "", 0},
		{"host private dirs absent", "ls -d /root /home /work /run 2>/dev/null; echo none", "none", "", 0},
		{"passwd has no host users", "cut -d: -f1 /etc/passwd | tr '\\n' ' '", "root dyno nobody", "", 0},
		{"no capabilities", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '",
			"CapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1", "", 0},
		{"nofile limit", "ulimit -n", "10000", "", 0},
		{"binds a port on the host network", `python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print("ok")'`, "ok", "", 0},
		{"proc/keys masked", "wc -c < /proc/keys", "0", "", 0},
		{"proc/sys read-only", "echo 1 > /proc/sys/kernel/hostname", "", "Read-only file system", 1},
		{"stderr and exit status", "echo oops >&2; exit 3", "", "oops", 3},
		{"sh -c semantics", "for i in 1 2; do echo $i; done | tr '\\n' ,", "1,2,", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, res := runDyno(t, rt, testSpec(t, slug, tt.command))
			if res.ExitStatus != tt.wantStatus || res.OOMKilled {
				t.Fatalf("result %+v, want status %d; stdout %q stderr %q", res, tt.wantStatus, out, errOut)
			}
			out = strings.TrimSpace(out)
			switch tt.name {
			case "sees only its own processes", "ps shows a handful":
				// init shell, command shell, and the pipeline (+ ps's header line).
				if n, err := strconv.Atoi(out); err != nil || n < 2 || n > 6 {
					t.Fatalf("process count %q, want a handful", out)
				}
			default:
				if out != tt.wantOut {
					t.Errorf("stdout %q, want %q (stderr %q)", out, tt.wantOut, errOut)
				}
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tt.wantErr)
			}
		})
	}
	// Nothing the dynos wrote reached the shared slug.
	if b, _ := os.ReadFile(filepath.Join(slug, "Procfile")); string(b) != "web: bin/run\n" {
		t.Errorf("slug's Procfile changed to %q", b)
	}
	if _, err := os.Stat(filepath.Join(slug, "new")); err == nil {
		t.Error("a dyno's write to /app reached the slug dir")
	}
}

func TestContainerDynosDoNotShareWrites(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	var out syncBuffer
	a := testSpec(t, slug, "echo a > /app/a && echo a > /tmp/a && echo ready && exec sleep 60")
	a.Stdout = &out
	da, err := rt.Start(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer da.Close()
	waitFor(t, func() bool { return strings.Contains(out.String(), "ready") })

	gotOut, _, res := runDyno(t, rt, testSpec(t, slug, "ls /app /tmp"))
	if res.ExitStatus != 0 || strings.Contains(gotOut, "a\n") {
		t.Fatalf("second dyno sees %q (status %d), want no trace of the first dyno's files", gotOut, res.ExitStatus)
	}
	if err := da.Close(); err != nil {
		t.Fatal(err)
	}
	if res := da.Wait(); res.ExitStatus != 137 {
		t.Errorf("closed running dyno ended with %+v, want 137", res)
	}
}

func TestContainerMemoryLimit(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	tests := []struct {
		name       string
		mb         int
		wantStatus int
		wantOOM    bool
	}{
		{"200 MB in 64 MB is killed", 200, 137, true},
		{"20 MB in 64 MB is fine", 20, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// bytes * n writes every page, so all of it is charged.
			spec := testSpec(t, slug, fmt.Sprintf(`python3 -c 'b = b"x" * (%d << 20); print(len(b))'`, tt.mb))
			spec.MemoryMB = 64
			out, errOut, res := runDyno(t, rt, spec)
			if res.ExitStatus != tt.wantStatus || res.OOMKilled != tt.wantOOM {
				t.Fatalf("result %+v, want status %d oom %v (stdout %q stderr %q)", res, tt.wantStatus, tt.wantOOM, out, errOut)
			}
		})
	}
}

func TestContainerSignal(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	tests := []struct {
		name, command string
		sig           syscall.Signal
		want          int
	}{
		{"SIGTERM stops sleep", "sleep 60", syscall.SIGTERM, 143},
		{"SIGTERM reaches background processes too", "sleep 61 & sleep 62 & wait", syscall.SIGTERM, 143},
		{"SIGKILL", "sleep 60", syscall.SIGKILL, 137},
		{"handled SIGTERM", `trap 'echo bye; exit 0' TERM; echo ready; sleep 60 & wait`, syscall.SIGTERM, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			spec := testSpec(t, slug, tt.command)
			spec.Stdout = &out
			d, err := rt.Start(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			// Wait until the command's processes exist (init + command + children).
			waitFor(t, func() bool {
				pids, _ := d.(*containerDyno).container.Processes()
				return len(pids) >= 2 && (!strings.Contains(tt.command, "ready") || strings.Contains(out.String(), "ready"))
			})
			if err := d.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			if res := d.Wait(); res.ExitStatus != tt.want {
				t.Fatalf("result %+v, want %d (output %q)", res, tt.want, out.String())
			}
			if err := d.Signal(tt.sig); err == nil {
				t.Error("signal to an ended dyno succeeded, want an error")
			}
		})
	}
}

func TestContainerCloseRemovesEverything(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	for _, running := range []bool{false, true} {
		t.Run(fmt.Sprintf("running=%v", running), func(t *testing.T) {
			cmd := "echo x > /app/x"
			if running {
				cmd = "sleep 60"
			}
			spec := testSpec(t, slug, cmd)
			d, err := rt.Start(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			cg := d.(*containerDyno).memCgroup
			if cg == "" {
				t.Fatal("no memory cgroup path")
			}
			if !running {
				d.Wait()
			}
			for i := 0; i < 2; i++ { // idempotent
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
			}
			assertGone(t, rt, spec.ID, spec.WorkDir, cg)
		})
	}
}

func TestContainerCleanup(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	spec := testSpec(t, slug, "sleep 60 & sleep 60")
	d, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	cg := d.(*containerDyno).memCgroup
	// A new process of the agent (same state dir) cleans up the running dyno.
	rt2, err := NewContainerRuntime(ContainerConfig{StateDir: rt.stateDir, CgroupParent: rt.cgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt2.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if res := d.Wait(); res.ExitStatus != 137 {
		t.Errorf("cleaned-up dyno ended with %+v, want 137", res)
	}
	assertGone(t, rt, spec.ID, spec.WorkDir, cg)
	if err := rt2.Cleanup(ctx); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// assertGone checks that nothing of a dyno is left on the host.
func assertGone(t *testing.T, rt *ContainerRuntime, id, workDir, cgroupDir string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), workDir) {
		t.Errorf("a mount under %s is left", workDir)
	}
	for _, p := range []string{workDir, cgroupDir, filepath.Join(rt.stateDir, id), rt.recordPath(id)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left behind", p)
		}
	}
	pidsCg := strings.Replace(cgroupDir, "/memory/", "/pids/", 1)
	if _, err := os.Stat(pidsCg); err == nil && pidsCg != cgroupDir {
		t.Errorf("%s is left behind", pidsCg)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstWrite signals when the dyno wrote its first byte.
type firstWrite struct {
	once sync.Once
	ch   chan struct{}
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.once.Do(func() { close(f.ch) })
	return len(p), nil
}

// BenchmarkStart measures the time from Start to the dyno's command running
// (its first output arriving).
func BenchmarkStart(b *testing.B) {
	rt := newTestContainerRuntime(b)
	slug := newTestSlug(b)
	for i := 0; i < b.N; i++ {
		spec := testSpec(b, slug, "echo up; exec sleep 60")
		fw := &firstWrite{ch: make(chan struct{})}
		spec.Stdout = fw
		b.StartTimer()
		d, err := rt.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		<-fw.ch
		b.StopTimer()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
