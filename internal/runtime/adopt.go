package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Dynos outlive their agent: an agent that restarts adopts the containers
// its predecessor started instead of killing them (ContainerRuntime.Adopt),
// so that upgrading an agent drops no traffic.
//
// Two things tie a container to the process that started it, and both are
// cut here:
//   - Output. With Spec.OutputFIFO the dyno writes its stdout and stderr
//     into a named pipe it holds open read-write, so its writes never fail
//     for want of a reader. While no agent reads, up to fifoBufferBytes of
//     output wait in the pipe; beyond that the dyno's writes block until
//     the next agent opens the FIFO again and reads on. Nothing is lost but
//     the agent's own half-read line.
//   - Exit. The init of an adopted container is not the agent's child, so
//     its exit is seen through a pidfd, and its exit status is unknown
//     (Result.ExitStatus is ExitStatusUnknown); the OOM counter still tells
//     an R15.

// ExitStatusUnknown is the exit status of an adopted dyno: it was not the
// agent's child, so its status could not be collected.
const ExitStatusUnknown = -1

// fifoBufferBytes is how much output a dyno may write while no agent
// reads (the pipe's size; the kernel may round it).
const fifoBufferBytes = 1 << 20

// openOutputFIFO makes the FIFO at path and opens its two ends: the reader
// for the agent (non-blocking, so that it sees EOF once every writer is
// gone) and the read-write end the dyno writes to.
func openOutputFIFO(path string) (reader, child *os.File, err error) {
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, nil, fmt.Errorf("output fifo %s: %w", path, err)
	}
	if reader, err = openFIFOReader(path); err != nil {
		return nil, nil, err
	}
	// Read-write: the dyno itself keeps a reader, so its writes never get
	// EPIPE while the agent is away.
	if child, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		reader.Close()
		return nil, nil, fmt.Errorf("output fifo %s: %w", path, err)
	}
	_, _ = unix.FcntlInt(child.Fd(), unix.F_SETPIPE_SZ, fifoBufferBytes)
	return reader, child, nil
}

// openFIFOReader opens a FIFO's read end without waiting for a writer.
func openFIFOReader(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open output fifo %s: %w", path, err)
	}
	return f, nil
}

// startWithFIFO runs the container's process with its output into
// Spec.OutputFIFO (container.go's start, for dynos without stdin).
func (d *containerDyno) startWithFIFO() error {
	reader, child, err := openOutputFIFO(d.spec.OutputFIFO)
	if err != nil {
		return err
	}
	p := &libcontainer.Process{
		Args: shellArgs(d.spec.Command), Env: d.spec.Env, Cwd: "/app",
		UID: d.spec.UID, GID: d.spec.GID, AdditionalGroups: d.spec.AdditionalGroups,
		Stdout: child, Stderr: child, Init: true,
	}
	if err := d.container.Run(p); err != nil {
		reader.Close()
		child.Close()
		return fmt.Errorf("run container (is cgo on and InitHook called first in main?): %w", err)
	}
	child.Close()
	d.process = p
	d.pid, _ = p.Pid()
	d.memCgroup = memoryCgroup(d.container)
	copied := make(chan struct{})
	go func() { copyOutput(d.spec.Stdout, reader); close(copied) }()
	go d.wait(copied)
	d.awaitCommand()
	return nil
}

func memoryCgroup(c *libcontainer.Container) string {
	st, err := c.State()
	if err != nil {
		return ""
	}
	if p := st.CgroupPaths["memory"]; p != "" {
		return p
	}
	return st.CgroupPaths[""] // cgroup v2: one unified path
}

// Running lists the IDs of the dynos an earlier process of the agent left
// running, for the agent to adopt or clean up.
func (r *ContainerRuntime) Running() []string {
	var ids []string
	for id := range r.records() {
		c, err := libcontainer.Load(r.stateDir, id)
		if err != nil {
			continue
		}
		if st, err := c.Status(); err == nil && (st == libcontainer.Running || st == libcontainer.Paused) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Adopt takes over a running dyno an earlier process of the agent started
// with spec (the same ID, WorkDir and OutputFIFO; Stdout receives its
// output from now on). The returned Dyno is like one Start returns, but
// its Wait reports ExitStatusUnknown. Call it before CleanupExcept.
func (r *ContainerRuntime) Adopt(ctx context.Context, spec Spec) (Dyno, error) {
	if spec.OutputFIFO == "" {
		return nil, fmt.Errorf("adopt dyno %s: it has no output fifo: only dynos started with one can be adopted", spec.ID)
	}
	b, err := os.ReadFile(r.recordPath(spec.ID))
	if err != nil {
		return nil, fmt.Errorf("adopt dyno %s: %w", spec.ID, err)
	}
	var rec dynoRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("adopt dyno %s: record: %w", spec.ID, err)
	}
	c, err := libcontainer.Load(r.stateDir, spec.ID)
	if err != nil {
		return nil, fmt.Errorf("adopt dyno %s: %w", spec.ID, err)
	}
	st, err := c.State()
	if err != nil {
		return nil, fmt.Errorf("adopt dyno %s: %w", spec.ID, err)
	}
	if status, err := c.Status(); err != nil || (status != libcontainer.Running && status != libcontainer.Paused) {
		return nil, fmt.Errorf("adopt dyno %s: its container is not running", spec.ID)
	}
	pidfd, err := unix.PidfdOpen(st.InitProcessPid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt dyno %s: pidfd: %w", spec.ID, err)
	}
	reader, err := openFIFOReader(spec.OutputFIFO)
	if err != nil {
		unix.Close(pidfd)
		return nil, fmt.Errorf("adopt dyno %s: %w", spec.ID, err)
	}
	if spec.WorkDir == "" {
		spec.WorkDir = rec.WorkDir
	}
	d := &containerDyno{rt: r, spec: spec, container: c, pid: st.InitProcessPid, net: rec.Net,
		memCgroup: memoryCgroup(c), done: make(chan struct{})}
	copied := make(chan struct{})
	go func() { copyOutput(spec.Stdout, reader); close(copied) }()
	go d.waitAdopted(pidfd, copied)
	return d, nil
}

// waitAdopted waits for an adopted init to end (its pidfd turns readable),
// then for the output.
func (d *containerDyno) waitAdopted(pidfd int, copied <-chan struct{}) {
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	res := Result{ExitStatus: ExitStatusUnknown}
	res.OOMKilled = oomKilled(d.memCgroup, 137)
	<-copied
	d.result = res
	close(d.done)
}

// CleanupExcept is Cleanup for every dyno but those keep names: the ones
// the agent adopted.
func (r *ContainerRuntime) CleanupExcept(ctx context.Context, keep map[string]bool) error {
	if _, err := os.ReadDir(r.stateDir); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	recs := r.records()
	entries, _ := os.ReadDir(r.stateDir)
	for _, e := range entries {
		if _, seen := recs[e.Name()]; e.IsDir() && e.Name() != netnsDirName && !seen {
			recs[e.Name()] = &dynoRecord{ID: e.Name()}
		}
	}
	var errs []error
	for id, rec := range recs {
		if keep[id] {
			continue
		}
		if err := r.cleanupOne(ctx, rec); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	return nil
}
