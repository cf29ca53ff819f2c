package dynotest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Multi-host tests run `dyno server --no-agent` in the root network
// namespace and `dyno agent`s each in a network namespace of its own,
// joined to the root one by a veth pair: host i has 10.250.i.2/30, the
// root side 10.250.i.1/30, and the server's NATS listens on 10.250.0.1
// (on lo), which every host reaches through its default route. The range
// keeps clear of the dyno networks (10.128.0.0/10).

// natsHostIP is the root namespace's address the hosts dial NATS on.
const natsHostIP = "10.250.0.1"

// StartControlPlane runs `dyno server --no-agent` with its NATS on
// natsHostIP, which it adds to lo until the test ends.
func StartControlPlane(t testing.TB, bin string, extra ...string) *Platform {
	t.Helper()
	mustRun(t, "ip", "addr", "add", natsHostIP+"/32", "dev", "lo")
	t.Cleanup(func() { exec.Command("ip", "addr", "del", natsHostIP+"/32", "dev", "lo").Run() })
	ports := FreePorts(t, 4)
	p := &Platform{
		t: t, Bin: bin, DataDir: filepath.Join(t.TempDir(), "data"), Domain: "localhost",
		APIURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		HTTPURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		NATS:      fmt.Sprintf("%s:%d", natsHostIP, ports[2]),
		HTTPSPort: ports[3],
	}
	p.args = append([]string{"server", "--no-agent", "--data-dir", p.DataDir,
		"--api", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--http", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--nats-listen", p.NATS, "--domain", p.Domain, "--https", fmt.Sprintf("127.0.0.1:%d", ports[3])}, extra...)
	p.start()
	t.Cleanup(func() { p.Stop(45 * time.Second) })
	return p
}

// Host is one agent host: a network namespace and the `dyno agent` in it.
type Host struct {
	t       testing.TB
	N       int
	ID      string // the agent's host ID
	Netns   string
	RootIf  string // the root namespace's end of the veth
	Addr    string // the host's address, the agent's --advertise
	DataDir string
	plane   *Platform

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// StartHost makes host n's namespace (n in 1..250) and runs its agent.
// Everything is removed when the test ends: the agent, every process of
// the namespace, the namespace and the veth.
func StartHost(t testing.TB, plane *Platform, n int) *Host {
	t.Helper()
	suffix := randomHex(3)
	h := &Host{
		t: t, N: n, ID: fmt.Sprintf("dt-%s-h%d", suffix, n), Netns: fmt.Sprintf("dt%sh%d", suffix, n),
		RootIf: fmt.Sprintf("dt%sr%d", suffix, n), Addr: fmt.Sprintf("10.250.%d.2", n),
		DataDir: filepath.Join(t.TempDir(), "host"), plane: plane,
	}
	inner := fmt.Sprintf("dt%si%d", suffix, n)
	mustRun(t, "ip", "netns", "add", h.Netns)
	t.Cleanup(func() {
		h.KillAll()
		exec.Command("ip", "link", "del", h.RootIf).Run()
		exec.Command("ip", "netns", "del", h.Netns).Run()
		// The dynos' namespaces stay mounted when their agent was killed.
		mounts, _ := filepath.Glob(filepath.Join("/run/dyno", h.ID, "netns", "*"))
		for _, m := range mounts {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		os.RemoveAll(filepath.Join("/run/dyno", h.ID))
	})
	mustRun(t, "ip", "link", "add", h.RootIf, "type", "veth", "peer", "name", inner)
	mustRun(t, "ip", "link", "set", inner, "netns", h.Netns)
	mustRun(t, "ip", "addr", "add", fmt.Sprintf("10.250.%d.1/30", n), "dev", h.RootIf)
	mustRun(t, "ip", "link", "set", h.RootIf, "up")
	for _, args := range [][]string{
		{"addr", "add", h.Addr + "/30", "dev", inner},
		{"link", "set", "lo", "up"},
		{"link", "set", inner, "up"},
		{"route", "add", "default", "via", fmt.Sprintf("10.250.%d.1", n)},
	} {
		mustRun(t, "ip", append([]string{"-n", h.Netns}, args...)...)
	}
	h.Start()
	return h
}

// Start runs the host's agent (again) and waits until it registered.
func (h *Host) Start() {
	h.t.Helper()
	h.out = &syncBuffer{}
	// nsenter enters the network namespace only (ip netns exec would also
	// make a mount namespace, hiding the dynos' namespace mounts from the
	// next agent).
	h.cmd = exec.Command("nsenter", "--net=/var/run/netns/"+h.Netns, "--", h.plane.Bin, "agent",
		"--credentials", filepath.Join(h.plane.DataDir, "agent-credentials"), "--nats-url", "nats://"+h.plane.NATS,
		"--advertise", h.Addr, "--data-dir", h.DataDir, "--host-id", h.ID, "--host-memory", "4096")
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		h.t.Fatalf("start dyno agent: %v", err)
	}
	h.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(h.cmd, h.done)
	Eventually(h.t, 60*time.Second, "agent "+h.ID+" registers", func() error {
		select {
		case err := <-h.done:
			h.done <- err
			return fmt.Errorf("agent exited (%v): %s", err, h.out.String())
		default:
		}
		if !strings.Contains(h.out.String(), "Dyno agent "+h.ID+" is running") {
			return fmt.Errorf("not yet: %s", h.out.String())
		}
		return nil
	})
}

// StopAgent sends the agent SIGTERM and waits for it: its dynos run on.
func (h *Host) StopAgent() {
	h.t.Helper()
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
		h.t.Errorf("agent %s did not stop within 60 s of SIGTERM:\n%s", h.ID, h.out.String())
	}
	h.cmd = nil
}

// KillAll SIGKILLs every process of the host's namespace, the agent and
// its dynos, as a host that loses power.
func (h *Host) KillAll() {
	for range 3 {
		for _, pid := range append(netnsPids(h.Netns), h.dynoPids()...) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.cmd != nil {
		h.cmd.Process.Kill()
		<-h.done
		h.cmd = nil
	}
}

// Cut takes the host off the network (its veth down) or, with false,
// puts it back.
func (h *Host) Cut(cut bool) {
	state := "up"
	if cut {
		state = "down"
	}
	mustRun(h.t, "ip", "link", "set", h.RootIf, state)
}

// Output is what the agent printed so far.
func (h *Host) Output() string { return h.out.String() }

// dynoPids lists the processes of the host's dynos: each dyno has a
// network namespace of its own, so they are found by their cgroups, named
// for the dynos the host's runtime records in /run/dyno/<host>.
func (h *Host) dynoPids() []int {
	entries, _ := os.ReadDir(filepath.Join("/run/dyno", h.ID))
	var pids []int
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "netns" {
			continue
		}
		for _, ctl := range []string{"pids", "memory", "unified"} {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctl, "dyno", e.Name(), "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			break
		}
	}
	return pids
}

// Procs returns the pids of the host's dyno processes whose command line
// starts with argv0 and contains marker.
func (h *Host) Procs(argv0, marker string) []int {
	var pids []int
	for _, pid := range h.dynoPids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == argv0 && strings.Contains(strings.Join(args, " "), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// netnsPids lists the processes in a named network namespace.
func netnsPids(name string) []int {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
