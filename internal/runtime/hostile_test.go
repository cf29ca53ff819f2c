package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Hostile dynos: each test runs what a tenant could try, with the network
// on, as the agent runs dynos in production.

// pyErrno runs a syscall through ctypes and prints its errno ("errno=0" when
// it succeeded).
func pyErrno(call string) string {
	return fmt.Sprintf(`python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = %s
print("errno=%%d" %% (ctypes.get_errno() if r == -1 else 0))
'`, call)
}

func TestHostileDyno(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)
	hostname, _ := os.Hostname()

	// Another dyno, running: its files and processes must stay out of reach.
	other, otherOut := startDyno(t, rt, testSpec(t, slug, "echo secret > /app/secret && echo ready && exec sleep 60"))
	waitFor(t, func() bool { return strings.Contains(otherOut.String(), "ready") })
	otherWork := other.(*containerDyno).spec.WorkDir

	// The syscall numbers are amd64's. Rows marked seccomp hold only with
	// the filter: without it, unprivileged user namespaces and keyctl work,
	// and this kernel answers module loading with ENOSYS (no module support).
	seccompOnly := map[string]bool{"cannot unshare -U": true, "cannot unshare -r": true, "cannot init_module": true,
		"cannot finit_module": true, "seccomp filter": true, "keyctl denied": true}
	tests := []struct {
		name, command, want string
	}{
		{"ps sees its own processes only", "ps ax -o pid= | wc -l", ""}, // checked below
		{"no /root", "test -e /root && echo present || echo absent", "absent"},
		{"no /etc/shadow", "cat /etc/shadow >/dev/null 2>&1 && echo read || echo denied", "denied"},
		{"no host data dirs", fmt.Sprintf("ls -d %s %s %s 2>/dev/null; echo none", otherWork, filepath.Dir(slug), os.TempDir()+"/*"), "none"},
		{"not the other dyno's files", fmt.Sprintf("cat /app/secret %s/upper/secret /proc/%d/root/app/secret 2>/dev/null; echo none", otherWork, other.Pid()), "none"},
		{"cannot write the stack", "for p in /usr/x /usr/bin/x /etc/x /bin/x /lib/x /x /sys/x /proc/x; do touch $p 2>/dev/null && echo wrote $p; done; echo none", "none"},
		{"cannot mount", "mkdir -p /tmp/x; mount -t tmpfs x /tmp/x 2>/dev/null && echo mounted; grep -c /tmp/x /proc/mounts", "0"},
		{"cannot mount via syscall", pyErrno(`libc.mount(b"x", b"/tmp", b"tmpfs", 0, None)`), "errno=1"},
		{"cannot unshare -U", "unshare -U true 2>/dev/null && echo unshared || echo denied", "denied"},
		{"cannot unshare -r", "unshare -r true 2>/dev/null && echo unshared || echo denied", "denied"},
		{"cannot ptrace the other dyno", pyErrno(fmt.Sprintf("libc.ptrace(16, %d, 0, 0)", other.Pid())), "errno=3"}, // ESRCH: not even visible
		{"cannot init_module", pyErrno(`libc.syscall(175, None, 0, b"")`), "errno=1"},
		{"cannot finit_module", pyErrno(`libc.syscall(313, os.open("/app/Procfile", os.O_RDONLY), b"", 0)`), "errno=1"},
		{"cannot sethostname", `python3 -c 'import socket
try:
    socket.sethostname("evil"); print("changed")
except PermissionError:
    print("denied")'`, "denied"},
		{"no effective capabilities", "grep CapEff /proc/self/status | tr -d '\\t'", "CapEff:0000000000000000"},
		{"seccomp filter", "grep Seccomp: /proc/self/status | tr -d '\\t'", "Seccomp:2"},
		{"keyctl denied", pyErrno(`libc.syscall(250, 0, 0, 0, 0, 0)`), "errno=1"},
		{"owns no slug file", "stat -c '%u %G %A' /app/Procfile /app/files/existing", "0 slug -rw-rw-r--\n0 slug -rw-rw-r--"},
		{"can change slug files through the overlay",
			"echo new >> /app/files/existing && touch /app/files/created /app/created && cat /app/files/existing && stat -c %u /app/files/created",
			"old\nnew\n10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if seccompOnly[tt.name] && !SeccompEnabled() {
				t.Skip("built without the seccomp tag: dynos run without a seccomp filter (go test -tags seccomp)")
			}
			out, errOut, res := runDyno(t, rt, testSpec(t, slug, tt.command))
			out = strings.TrimSpace(out)
			if tt.want == "" { // the process count
				if n, err := strconv.Atoi(out); err != nil || n < 2 || n > 5 {
					t.Fatalf("ps shows %q processes, want the dyno's few (stderr %q)", out, errOut)
				}
				return
			}
			if out != tt.want {
				t.Fatalf("stdout %q, want %q (stderr %q, %+v)", out, tt.want, errOut, res)
			}
		})
	}
	if now, _ := os.Hostname(); now != hostname {
		t.Errorf("host's hostname changed from %q to %q", hostname, now)
	}
	for name, want := range map[string]string{"Procfile": "web: bin/run\n", "files/existing": "old\n"} {
		if b, _ := os.ReadFile(filepath.Join(slug, name)); string(b) != want {
			t.Errorf("slug's %s changed to %q", name, b)
		}
	}
	for _, name := range []string{"created", "files/created", "secret"} {
		if _, err := os.Lstat(filepath.Join(slug, name)); err == nil {
			t.Errorf("a dyno's %s reached the slug dir", name)
		}
	}
}

func TestHostileForkBomb(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)
	spec := testSpec(t, slug, "bomb() { bomb | bomb & }; bomb; sleep 60")
	spec.PidsLimit = 256
	d, _ := startDyno(t, rt, spec)
	st, err := d.(*containerDyno).container.State()
	if err != nil {
		t.Fatal(err)
	}
	pidsDir := st.CgroupPaths["pids"]
	var worst time.Duration
	maxPids := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		start := time.Now()
		if err := exec.Command("true").Run(); err != nil {
			t.Fatalf("host cannot run true during the fork bomb: %v", err)
		}
		worst = max(worst, time.Since(start))
		b, _ := os.ReadFile(filepath.Join(pidsDir, "pids.current"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		maxPids = max(maxPids, n)
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("fork bomb: at most %d pids, slowest host `true` %v", maxPids, worst)
	if maxPids < 200 || maxPids > spec.PidsLimit {
		t.Errorf("the bomb reached %d pids, want near the limit %d and never above", maxPids, spec.PidsLimit)
	}
	if worst > 500*time.Millisecond {
		t.Errorf("host `true` took %v during the fork bomb, want it responsive", worst)
	}
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a fork-bombed dyno took more than 10s")
	}
	if _, err := os.Stat(pidsDir); err == nil {
		t.Errorf("pids cgroup %s left", pidsDir)
	}
}

func TestHostileMemoryBomb(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)
	spec := testSpec(t, slug, `python3 -c '
b = []
while True: b.append(b"x" * (1 << 20))'`)
	spec.MemoryMB = 64
	d, _ := startDyno(t, rt, spec)
	done := make(chan Result, 1)
	go func() { done <- d.Wait() }()
	select {
	case res := <-done:
		if res.ExitStatus != 137 || !res.OOMKilled {
			t.Fatalf("memory bomb ended with %+v, want 137 and OOMKilled", res)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("memory bomb still runs after 20s")
	}
}

func TestHostileUsersAndRuns(t *testing.T) {
	rt := newNetRuntime(t)
	slug := newTestSlug(t)
	t.Run("two dynos two users", func(t *testing.T) {
		var got []string
		for _, uid := range []int{10001, 10002} {
			spec := testSpec(t, slug, "id -u; id -g; id -G")
			spec.UID, spec.GID = uid, uid
			out, errOut, _ := runDyno(t, rt, spec)
			want := fmt.Sprintf("%d\n%d\n%d %d", uid, uid, uid, testSlugGID)
			if strings.TrimSpace(out) != want {
				t.Errorf("uid %d: id says %q, want %q (stderr %q)", uid, out, want, errOut)
			}
			got = append(got, out)
		}
		if got[0] == got[1] {
			t.Error("two dynos run as the same user")
		}
	})
	t.Run("a run's files are gone in the next", func(t *testing.T) {
		write := "echo x > /app/mine && echo x > /tmp/mine && echo x > /dev/shm/mine && echo x >> /app/Procfile"
		if _, errOut, res := runDyno(t, rt, testSpec(t, slug, write)); res.ExitStatus != 0 {
			t.Fatalf("first run: %+v %q", res, errOut)
		}
		out, _, _ := runDyno(t, rt, testSpec(t, slug, "ls /app/mine /tmp/mine /dev/shm/mine 2>/dev/null; cat /app/Procfile"))
		if strings.TrimSpace(out) != "web: bin/run" {
			t.Fatalf("second run sees %q, want a fresh slug", out)
		}
	})
}
