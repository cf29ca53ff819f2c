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
}

// ContainerRuntime runs each dyno as a container. It needs root.
type ContainerRuntime struct {
	stateDir     string
	cgroupParent string
}

var _ Runtime = (*ContainerRuntime)(nil)

// NewContainerRuntime checks that containers can be run here and prepares
// the state dir.
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
	return &ContainerRuntime{stateDir: cfg.StateDir, cgroupParent: cfg.CgroupParent}, nil
}

// Isolated reports true: dynos run in containers.
func (r *ContainerRuntime) Isolated() bool { return true }

// dynoRecord is what Cleanup needs to remove a dyno left behind by an earlier
// process of the agent. It is written before the container is created and
// removed last by Close, as <StateDir>/<id>.json next to libcontainer's <id>/.
type dynoRecord struct {
	ID      string `json:"id"`
	WorkDir string `json:"work_dir"`
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
	memCgroup string // memory cgroup dir, read for the OOM counter

	done   chan struct{} // closed when result is final and output copied
	result Result

	closeOnce sync.Once
	closeErr  error
}

func (d *containerDyno) start() error {
	rec, _ := json.Marshal(dynoRecord{ID: d.spec.ID, WorkDir: d.spec.WorkDir})
	if err := os.WriteFile(d.rt.recordPath(d.spec.ID), rec, 0o600); err != nil {
		return fmt.Errorf("record dyno: %w", err)
	}
	if err := prepareWorkDir(&d.spec); err != nil {
		return fmt.Errorf("prepare work dir: %w", err)
	}
	c, err := libcontainer.Create(d.rt.stateDir, d.spec.ID, containerConfig(&d.spec, d.rt.cgroupParent))
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	d.container = c
	pipes, err := newOutputPipes(d.spec.Stdout, d.spec.Stderr)
	if err != nil {
		return fmt.Errorf("output pipes: %w", err)
	}
	p := &libcontainer.Process{
		Args:   shellArgs(d.spec.Command),
		Env:    d.spec.Env,
		Cwd:    "/app",
		UID:    d.spec.UID,
		GID:    d.spec.GID,
		Stdout: pipes.stdoutW,
		Stderr: pipes.childStderr(),
		Init:   true,
	}
	if err := c.Run(p); err != nil {
		pipes.closeAll()
		return fmt.Errorf("run container (is cgo on and InitHook called first in main?): %w", err)
	}
	pipes.closeWriteEnds()
	d.process = p
	d.pid, _ = p.Pid()
	if st, err := c.State(); err == nil {
		d.memCgroup = st.CgroupPaths["memory"]
	}
	copied := pipes.startCopying(d.spec.Stdout, d.spec.Stderr)
	go d.wait(copied)
	d.awaitCommand()
	return nil
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
	if b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n > 0
			}
		}
	}
	// Kernels without the oom_kill counter: hitting the limit and dying of
	// SIGKILL is the best evidence there is.
	b, err := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && n > 0 && status == 137
}

// Pid is the host pid of the container's init.
func (d *containerDyno) Pid() int { return d.pid }

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
	entries, err := os.ReadDir(r.stateDir)
	if err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	ids := map[string]string{} // id -> work dir ("" when unknown)
	for _, e := range entries {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, ".json"); ok && !e.IsDir() {
			var rec dynoRecord
			if b, err := os.ReadFile(filepath.Join(r.stateDir, name)); err == nil && json.Unmarshal(b, &rec) == nil {
				ids[id] = rec.WorkDir
			} else if _, seen := ids[id]; !seen {
				ids[id] = ""
			}
		} else if e.IsDir() {
			if _, seen := ids[name]; !seen {
				ids[name] = ""
			}
		}
	}
	var errs []error
	for id, workDir := range ids {
		if err := r.cleanupOne(ctx, id, workDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	return nil
}

func (r *ContainerRuntime) cleanupOne(ctx context.Context, id, workDir string) error {
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
