package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	// Without it the cgroup manager cannot set the device rules.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// ContainerConfig configures the container runtime.
type ContainerConfig struct {
	// StateDir is libcontainer's root for this agent, e.g. /run/dyno/<host>.
	// Keep it on a tmpfs so that stale state dies with a reboot, and give every
	// agent on a machine its own.
	StateDir string
	// CgroupParent is the parent cgroup of every dyno ("dyno" when empty).
	CgroupParent string
	// Network gives dynos network namespaces of their own; see NetworkConfig.
	Network NetworkConfig
}

// ContainerRuntime runs each dyno as a container. It needs root.
type ContainerRuntime struct {
	stateDir     string
	cgroupParent string
	seccomp      *configs.Seccomp // nil without the seccomp build tag
	net          *network         // nil when dynos share the host's network
}

var _ Runtime = (*ContainerRuntime)(nil)

// NewContainerRuntime checks that containers can be run here and prepares
// the state dir, the seccomp filter and, when the network is enabled, the
// nftables table (with the dynos an earlier process left running still in
// it, until Cleanup removes them) and IP forwarding.
func NewContainerRuntime(cfg ContainerConfig) (*ContainerRuntime, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("container runtime: needs root (run the agent as root, or use the process runtime)")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("container runtime: state dir %q must be an absolute path", cfg.StateDir)
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "dyno"
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("container runtime: create state dir: %w", err)
	}
	r := &ContainerRuntime{stateDir: cfg.StateDir, cgroupParent: cfg.CgroupParent}
	var err error
	if r.seccomp, err = seccompProfile(); err != nil {
		return nil, fmt.Errorf("container runtime: %w", err)
	}
	if cfg.Network.Enabled {
		if r.net, err = newNetwork(cfg.Network, cfg.StateDir); err != nil {
			return nil, fmt.Errorf("container runtime: %w", err)
		}
		var left []*netRecord
		for _, rec := range r.records() {
			if rec.Net != nil {
				left = append(left, rec.Net)
			}
		}
		r.net.reserve(left)
		if err := r.net.fw.install(left); err != nil {
			return nil, fmt.Errorf("container runtime: %w", err)
		}
	}
	return r, nil
}

// Shutdown removes the runtime's nftables table. Call it when the agent
// stops for good, after closing every dyno: it refuses while dynos are
// recorded, because their traffic would no longer be filtered.
func (r *ContainerRuntime) Shutdown(ctx context.Context) error {
	if r.net == nil {
		return nil
	}
	if n := len(r.records()); n > 0 {
		return fmt.Errorf("shut down container runtime: %d dynos still exist: close them (or run Cleanup) first", n)
	}
	if err := r.net.fw.uninstall(); err != nil {
		return fmt.Errorf("shut down container runtime: %w", err)
	}
	return nil
}

// records reads the dyno records of the state dir.
func (r *ContainerRuntime) records() map[string]*dynoRecord {
	entries, _ := os.ReadDir(r.stateDir)
	recs := map[string]*dynoRecord{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		rec := &dynoRecord{ID: id}
		if b, err := os.ReadFile(filepath.Join(r.stateDir, e.Name())); err == nil {
			_ = json.Unmarshal(b, rec) // a torn record still names the dyno
		}
		recs[id] = rec
	}
	return recs
}

// Isolated reports true: dynos run in containers.
func (r *ContainerRuntime) Isolated() bool { return true }

// dynoRecord is what Cleanup needs to remove a dyno left behind by an earlier
// process of the agent. It is written before the container is created and
// removed last by Close, as <StateDir>/<id>.json next to libcontainer's <id>/.
type dynoRecord struct {
	ID      string     `json:"id"`
	WorkDir string     `json:"work_dir"`
	Net     *netRecord `json:"net,omitempty"`
}

func (r *ContainerRuntime) recordPath(id string) string {
	return filepath.Join(r.stateDir, id+".json")
}

// Start creates and starts the container of a dyno. It returns once the
// command runs.
func (r *ContainerRuntime) Start(ctx context.Context, spec Spec) (Dyno, error) {
	if err := validateSpec(&spec); err != nil {
		return nil, fmt.Errorf("start dyno: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start dyno %s: %w", spec.ID, err)
	}
	if _, err := os.Lstat(r.recordPath(spec.ID)); err == nil {
		return nil, fmt.Errorf("start dyno %s: a dyno with this id exists already: use a new id", spec.ID)
	}
	d := &containerDyno{rt: r, spec: spec, done: make(chan struct{})}
	if err := d.start(); err != nil {
		d.removeLeftovers()
		return nil, fmt.Errorf("start dyno %s: %w", spec.ID, err)
	}
	return d, nil
}

// containerDyno is one running container.
type containerDyno struct {
	rt   *ContainerRuntime
	spec Spec

	container *libcontainer.Container
	process   *libcontainer.Process
	pid       int
	memCgroup string     // memory cgroup dir, read for the OOM counter
	net       *netRecord // nil without a network namespace
	master    *os.File   // the pty master of a TTY dyno; closed by its output copier

	done   chan struct{} // closed when result is final and output copied
	result Result

	closeOnce sync.Once
	closeErr  error
}

func (d *containerDyno) start() error {
	if d.rt.net != nil {
		n, err := d.rt.net.allocate(d.spec.ID, d.spec.Port)
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		d.net = n
	}
	rec, _ := json.Marshal(dynoRecord{ID: d.spec.ID, WorkDir: d.spec.WorkDir, Net: d.net})
	if err := os.WriteFile(d.rt.recordPath(d.spec.ID), rec, 0o600); err != nil {
		return fmt.Errorf("record dyno: %w", err)
	}
	if err := prepareWorkDir(&d.spec, d.net != nil); err != nil {
		return fmt.Errorf("prepare work dir: %w", err)
	}
	cfg := containerConfig(&d.spec, d.rt.cgroupParent)
	cfg.Seccomp = d.rt.seccomp
	if d.net != nil {
		if err := d.rt.net.setup(d.net); err != nil {
			return fmt.Errorf("network: %w", err)
		}
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWNET, Path: d.net.Netns})
	}
	c, err := libcontainer.Create(d.rt.stateDir, d.spec.ID, cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	d.container = c
	if d.spec.TTY {
		return d.startWithTerminal()
	}
	if d.spec.OutputFIFO != "" && d.spec.Stdin == nil {
		return d.startWithFIFO()
	}
	pipes, err := newOutputPipes(d.spec.Stdout, d.spec.Stderr)
	if err != nil {
		return fmt.Errorf("output pipes: %w", err)
	}
	stdinR, stdinW, err := stdinPipe(d.spec.Stdin)
	if err != nil {
		pipes.closeAll()
		return err
	}
	p := &libcontainer.Process{
		Args: shellArgs(d.spec.Command),
		Env:  d.spec.Env,
		Cwd:  "/app",
		UID:  d.spec.UID,
		GID:  d.spec.GID,
		// The slug group: what lets the dyno write to /app's files.
		AdditionalGroups: d.spec.AdditionalGroups,
		Stdout:           pipes.stdoutW,
		Stderr:           pipes.childStderr(),
		Init:             true,
	}
	if stdinR != nil {
		p.Stdin = stdinR
	}
	if err := c.Run(p); err != nil {
		pipes.closeAll()
		if stdinR != nil {
			stdinR.Close()
			stdinW.Close()
		}
		return fmt.Errorf("run container (is cgo on and InitHook called first in main?): %w", err)
	}
	pipes.closeWriteEnds()
	if stdinR != nil {
		stdinR.Close()
		go feedStdin(stdinW, d.spec.Stdin, true)
	}
	d.process = p
	d.pid, _ = p.Pid()
	if st, err := c.State(); err == nil {
		d.memCgroup = st.CgroupPaths["memory"]
		if d.memCgroup == "" {
			d.memCgroup = st.CgroupPaths[""] // cgroup v2: one unified path
		}
	}
	copied := pipes.startCopying(d.spec.Stdout, d.spec.Stderr)
	go d.wait(copied)
	d.awaitCommand()
	return nil
}

// startWithTerminal runs the container's process on a pseudo-terminal
// that libcontainer's init makes inside the container and sends back.
func (d *containerDyno) startWithTerminal() error {
	sock, err := newConsoleSocket()
	if err != nil {
		return err
	}
	p := &libcontainer.Process{
		Args: shellArgs(d.spec.Command), Env: d.spec.Env, Cwd: "/app",
		UID: d.spec.UID, GID: d.spec.GID, AdditionalGroups: d.spec.AdditionalGroups,
		ConsoleSocket: sock.child, ConsoleWidth: d.spec.Cols, ConsoleHeight: d.spec.Rows,
		Init: true,
	}
	if err := d.container.Run(p); err != nil {
		sock.close()
		return fmt.Errorf("run container with a terminal: %w", err)
	}
	master, err := sock.receive()
	if err != nil {
		_ = d.container.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		return err
	}
	d.process, d.master = p, master
	d.pid, _ = p.Pid()
	if st, err := d.container.State(); err == nil {
		d.memCgroup = st.CgroupPaths["memory"]
		if d.memCgroup == "" {
			d.memCgroup = st.CgroupPaths[""]
		}
	}
	copied := make(chan struct{})
	go func() { copyOutput(d.spec.Stdout, master); close(copied) }() // EIO once every process closed the tty
	if d.spec.Stdin != nil {
		go feedStdin(master, d.spec.Stdin, false)
	}
	go d.wait(copied)
	d.awaitCommand()
	return nil
}

// Resize changes the size of a dyno's terminal.
func (d *containerDyno) Resize(cols, rows uint16) error {
	if d.master == nil {
		return fmt.Errorf("resize dyno %s: it has no terminal", d.spec.ID)
	}
	return resizeTerminal(d.master, cols, rows)
}

// awaitCommand waits until the PID 1 shell has forked the command. A signal
// sent before that would reach only PID 1, which ignores it, and be lost:
// a dyno stopped right after its start would then run on until SIGKILL.
func (d *containerDyno) awaitCommand() {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if pids, err := d.container.Processes(); err != nil || len(pids) >= 2 {
			return
		}
		select {
		case <-d.done:
			return
		case <-time.After(500 * time.Microsecond):
		}
	}
}

// wait is the dyno's one goroutine: it reaps the init, reads the OOM counter
// while the cgroup still exists, and waits for the output.
func (d *containerDyno) wait(copied <-chan struct{}) {
	ps, err := d.process.Wait()
	res := Result{ExitStatus: -1}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			res.ExitStatus = exitStatus(ws)
		}
	} else if err != nil {
		res.ExitStatus = 255
	}
	res.OOMKilled = oomKilled(d.memCgroup, res.ExitStatus)
	// With a PID namespace the init's death kills every other process, so the
	// pipes close soon after.
	<-copied
	d.result = res
	close(d.done)
}

// oomKilled tells whether the memory cgroup's OOM killer fired.
func oomKilled(dir string, status int) bool {
	if dir == "" {
		return false
	}
	// cgroup v1 counts in memory.oom_control, v2 in memory.events.
	for _, name := range []string{"memory.oom_control", "memory.events"} {
		if n, ok := counter(filepath.Join(dir, name), "oom_kill"); ok {
			return n > 0
		}
	}
	// Kernels without the oom_kill counter: hitting the limit and dying of
	// SIGKILL is the best evidence there is.
	b, err := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && n > 0 && status == 137
}

// counter reads one "name value" line of a cgroup stats file.
func counter(path, name string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

// Pid is the host pid of the container's init.
func (d *containerDyno) Pid() int { return d.pid }

// Addr is the dyno's own address with a network namespace, else 127.0.0.1.
func (d *containerDyno) Addr() string {
	if d.net != nil {
		return d.net.IP
	}
	return "127.0.0.1"
}

// Wait blocks until the dyno ended and its output is copied.
func (d *containerDyno) Wait() Result {
	<-d.done
	return d.result
}

// Signal sends sig to every process in the dyno's cgroup. The init (a shell,
// PID 1 inside) ignores signals it has no handler for, except SIGKILL, which
// also kills everything else in the PID namespace.
func (d *containerDyno) Signal(sig syscall.Signal) error {
	select {
	case <-d.done:
		return fmt.Errorf("signal dyno %s: %w", d.spec.ID, os.ErrProcessDone)
	default:
	}
	if sig == syscall.SIGKILL {
		if err := d.container.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("signal dyno %s: %w", d.spec.ID, err)
		}
		return nil
	}
	pids, err := d.container.Processes()
	if err != nil {
		return fmt.Errorf("signal dyno %s: list processes: %w", d.spec.ID, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal dyno %s: pid %d: %w", d.spec.ID, pid, err)
		}
	}
	return nil
}

// Close kills the dyno if it still runs, waits for it, and removes its
// cgroup, container state and work dir.
func (d *containerDyno) Close() error {
	d.closeOnce.Do(func() {
		select {
		case <-d.done:
		default:
			_ = d.container.Signal(unix.SIGKILL)
			<-d.done
		}
		d.closeErr = d.removeLeftovers()
	})
	return d.closeErr
}

// removeLeftovers removes the container state, cgroup, work dir and record.
func (d *containerDyno) removeLeftovers() error {
	var errs []error
	if d.container != nil {
		if err := d.container.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy container: %w", err))
		}
	}
	if err := os.RemoveAll(d.spec.WorkDir); err != nil {
		errs = append(errs, fmt.Errorf("remove work dir: %w", err))
	}
	if d.net != nil {
		if err := d.rt.net.teardown(d.net); err != nil {
			errs = append(errs, fmt.Errorf("remove network: %w", err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(d.rt.recordPath(d.spec.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close dyno %s: %w", d.spec.ID, err)
	}
	return nil
}

// Cleanup kills and removes the dynos an earlier process of this agent left
// behind: containers still running, their state dirs, cgroups and work dirs.
// It only touches dynos recorded in this runtime's state dir, so agents that
// share a machine do not clean up each other's dynos.
func (r *ContainerRuntime) Cleanup(ctx context.Context) error {
	if _, err := os.ReadDir(r.stateDir); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	recs := r.records()
	// libcontainer state dirs without a record (a crash between the two).
	entries, _ := os.ReadDir(r.stateDir)
	for _, e := range entries {
		if _, seen := recs[e.Name()]; e.IsDir() && e.Name() != netnsDirName && !seen {
			recs[e.Name()] = &dynoRecord{ID: e.Name()}
		}
	}
	var errs []error
	for _, rec := range recs {
		if err := r.cleanupOne(ctx, rec); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	return nil
}

func (r *ContainerRuntime) cleanupOne(ctx context.Context, rec *dynoRecord) error {
	id, workDir := rec.ID, rec.WorkDir
	if c, err := libcontainer.Load(r.stateDir, id); err == nil {
		_ = c.Signal(unix.SIGKILL)
		for {
			st, err := c.Status()
			if err != nil || st == libcontainer.Stopped {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("dyno %s still running: %w", id, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if err := c.Destroy(); err != nil {
			return fmt.Errorf("dyno %s: %w", id, err)
		}
	}
	// The state dir may be gone (or unreadable) while the cgroup is not.
	if err := r.removeCgroup(id); err != nil {
		return fmt.Errorf("dyno %s: %w", id, err)
	}
	if err := os.RemoveAll(filepath.Join(r.stateDir, id)); err != nil {
		return fmt.Errorf("dyno %s: %w", id, err)
	}
	if workDir != "" {
		if err := os.RemoveAll(workDir); err != nil {
			return fmt.Errorf("dyno %s: %w", id, err)
		}
	}
	if rec.Net != nil {
		if err := r.removeNetwork(rec.Net); err != nil {
			return fmt.Errorf("dyno %s: %w", id, err)
		}
	}
	if err := os.Remove(r.recordPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dyno %s: %w", id, err)
	}
	return nil
}

// removeCgroup kills whatever runs in a dyno's cgroup and removes it.
func (r *ContainerRuntime) removeCgroup(id string) error {
	m, err := manager.New(&cgroups.Cgroup{Name: id, Parent: r.cgroupParent, Resources: &cgroups.Resources{}})
	if err != nil {
		return fmt.Errorf("cgroup manager: %w", err)
	}
	if !m.Exists() {
		return nil
	}
	_ = m.Freeze(cgroups.Frozen)
	pids, _ := m.GetAllPids()
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	_ = m.Freeze(cgroups.Thawed)
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	return nil
}

// removeNetwork removes a dyno's network found by Cleanup, also when this
// runtime has the network disabled.
func (r *ContainerRuntime) removeNetwork(n *netRecord) error {
	if r.net != nil {
		return r.net.teardown(n)
	}
	return removeNetns(n)
}
