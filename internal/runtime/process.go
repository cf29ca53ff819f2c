package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures the process runtime.
type ProcessConfig struct {
	// StateDir holds one record per running dyno (its process group), so that
	// Cleanup can kill what an earlier process of the agent left behind.
	StateDir string
}

// ProcessRuntime runs each dyno as a plain process group of the agent's user,
// in a private copy of the slug. It isolates nothing: it exists so the
// platform can run without root.
type ProcessRuntime struct {
	stateDir string
}

var _ Runtime = (*ProcessRuntime)(nil)

// NewProcessRuntime prepares the state dir.
func NewProcessRuntime(cfg ProcessConfig) (*ProcessRuntime, error) {
	if !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("process runtime: state dir %q must be an absolute path", cfg.StateDir)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("process runtime: create state dir: %w", err)
	}
	return &ProcessRuntime{stateDir: cfg.StateDir}, nil
}

// Isolated reports false: dynos are ordinary processes.
func (r *ProcessRuntime) Isolated() bool { return false }

// processRecord is the pid file of a dyno.
type processRecord struct {
	Pgid      int    `json:"pgid"`
	StartTime string `json:"start_time"` // of the leader, guards against pid reuse
	WorkDir   string `json:"work_dir"`
}

func (r *ProcessRuntime) recordPath(id string) string {
	return filepath.Join(r.stateDir, id+".json")
}

// Start copies the slug to WorkDir/app and runs /bin/sh -c Command there in
// a new process group, with HOME set to that dir.
func (r *ProcessRuntime) Start(ctx context.Context, spec Spec) (Dyno, error) {
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/\\") || spec.Command == "" || !filepath.IsAbs(spec.WorkDir) {
		return nil, fmt.Errorf("start dyno %q: needs an id, a command and an absolute work dir", spec.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start dyno %s: %w", spec.ID, err)
	}
	d, err := r.start(spec)
	if err != nil {
		_ = os.RemoveAll(spec.WorkDir)
		return nil, fmt.Errorf("start dyno %s: %w", spec.ID, err)
	}
	return d, nil
}

func (r *ProcessRuntime) start(spec Spec) (*processDyno, error) {
	appDir := filepath.Join(spec.WorkDir, "app")
	if err := copyTree(spec.SlugDir, appDir); err != nil {
		return nil, fmt.Errorf("copy slug: %w", err)
	}
	env := make([]string, 0, len(spec.Env)+1)
	for _, kv := range spec.Env {
		if !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+appDir)
	if spec.TTY {
		return r.startWithTerminal(spec, appDir, env)
	}
	pipes, err := newOutputPipes(spec.Stdout, spec.Stderr)
	if err != nil {
		return nil, fmt.Errorf("output pipes: %w", err)
	}
	cmd := exec.Command(commandShell(), "-c", spec.Command)
	cmd.Dir, cmd.Env = appDir, env
	cmd.Stdout, cmd.Stderr = pipes.stdoutW, pipes.childStderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdinR, stdinW, err := stdinPipe(spec.Stdin)
	if err != nil {
		pipes.closeAll()
		return nil, err
	}
	if stdinR != nil {
		cmd.Stdin = stdinR
	}
	if err := cmd.Start(); err != nil {
		pipes.closeAll()
		if stdinR != nil {
			stdinR.Close()
			stdinW.Close()
		}
		return nil, fmt.Errorf("run /bin/sh: %w", err)
	}
	pipes.closeWriteEnds()
	if stdinR != nil {
		stdinR.Close()
		go feedStdin(stdinW, spec.Stdin, true)
	}
	d := &processDyno{rt: r, spec: spec, cmd: cmd, done: make(chan struct{})}
	rec, _ := json.Marshal(processRecord{Pgid: cmd.Process.Pid, StartTime: procStartTime(cmd.Process.Pid), WorkDir: spec.WorkDir})
	if err := os.WriteFile(r.recordPath(spec.ID), rec, 0o600); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		pipes.closeAll()
		return nil, fmt.Errorf("record dyno: %w", err)
	}
	go d.wait(pipes.startCopying(spec.Stdout, spec.Stderr), pipes)
	return d, nil
}

// processDyno is one process group.
type processDyno struct {
	rt   *ProcessRuntime
	spec Spec
	cmd  *exec.Cmd

	done   chan struct{}
	result Result
	master *os.File // the pty master of a TTY dyno

	closeOnce sync.Once
	closeErr  error
}

// outputGrace bounds how long output is still copied after the dyno ended,
// for processes that left the process group and keep the pipes open.
const outputGrace = 2 * time.Second

func (d *processDyno) wait(copied <-chan struct{}, pipes *outputPipes) {
	_ = d.cmd.Wait()
	res := Result{ExitStatus: 255}
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		res.ExitStatus = exitStatus(ws)
	}
	// Like a container whose init ended: the rest of the dyno goes too.
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(outputGrace):
		pipes.stdoutR.Close()
		if pipes.stderrR != nil {
			pipes.stderrR.Close()
		}
		<-copied
	}
	d.result = res
	close(d.done)
}

// Pid is the pid of the shell, also the process group id.
func (d *processDyno) Pid() int { return d.cmd.Process.Pid }

// Addr is 127.0.0.1: the process shares the host's network.
func (d *processDyno) Addr() string { return "127.0.0.1" }

// Signal sends sig to the dyno's process group.
func (d *processDyno) Signal(sig syscall.Signal) error {
	select {
	case <-d.done:
		return fmt.Errorf("signal dyno %s: %w", d.spec.ID, os.ErrProcessDone)
	default:
	}
	if err := syscall.Kill(-d.cmd.Process.Pid, sig); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("signal dyno %s: %w", d.spec.ID, err)
	}
	return nil
}

// Wait blocks until the dyno ended and its output is copied.
func (d *processDyno) Wait() Result {
	<-d.done
	return d.result
}

// Close kills the process group and removes the work dir and the record.
func (d *processDyno) Close() error {
	d.closeOnce.Do(func() {
		select {
		case <-d.done: // the group is gone already; its id may be reused
		default:
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		if err := os.RemoveAll(d.spec.WorkDir); err != nil {
			d.closeErr = fmt.Errorf("close dyno %s: %w", d.spec.ID, err)
			return
		}
		_ = os.Remove(d.rt.recordPath(d.spec.ID))
	})
	return d.closeErr
}

// Cleanup kills the process groups recorded by an earlier process of the
// agent and removes their work dirs.
func (r *ProcessRuntime) Cleanup(ctx context.Context) error {
	entries, err := os.ReadDir(r.stateDir)
	if err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cleanup dynos: %w", err)
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(r.stateDir, e.Name())
		var rec processRecord
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &rec) == nil && rec.Pgid > 1 {
			// A live leader with another start time is a new process that
			// reused the pid: leave it alone.
			if st := procStartTime(rec.Pgid); st == "" || st == rec.StartTime {
				_ = syscall.Kill(-rec.Pgid, syscall.SIGKILL)
			}
			if rec.WorkDir != "" {
				if err := os.RemoveAll(rec.WorkDir); err != nil {
					errs = append(errs, err)
					continue
				}
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup dynos: %w", err)
	}
	return nil
}

// procStartTime is field 22 of /proc/<pid>/stat, or "" if there is no such
// process.
func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19] // fields[0] is field 3 (state)
}

// copyTree copies the slug dir to dst, keeping modes and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return nil // no devices or fifos in slugs
		}
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
