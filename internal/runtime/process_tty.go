package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// startWithTerminal runs an unisolated dyno on a host pseudo-terminal that
// is the controlling terminal of its own session (Ctrl-C in it interrupts
// the foreground job).
func (r *ProcessRuntime) startWithTerminal(spec Spec, appDir string, env []string) (*processDyno, error) {
	cmd := exec.Command(commandShell(), "-c", spec.Command)
	cmd.Dir, cmd.Env = appDir, env
	size := &pty.Winsize{Cols: spec.Cols, Rows: spec.Rows}
	if spec.Cols == 0 || spec.Rows == 0 {
		size = nil
	}
	// Setsid makes the shell a session (and process group) leader, so the
	// group kill of Signal and Cleanup reaches it as for other dynos.
	master, err := pty.StartWithAttrs(cmd, size, &syscall.SysProcAttr{Setsid: true, Setctty: true})
	if err != nil {
		return nil, fmt.Errorf("run /bin/sh on a terminal: %w", err)
	}
	d := &processDyno{rt: r, spec: spec, cmd: cmd, done: make(chan struct{}), master: master}
	rec, _ := json.Marshal(processRecord{Pgid: cmd.Process.Pid, StartTime: procStartTime(cmd.Process.Pid), WorkDir: spec.WorkDir})
	if err := os.WriteFile(r.recordPath(spec.ID), rec, 0o600); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		master.Close()
		return nil, fmt.Errorf("record dyno: %w", err)
	}
	copied := make(chan struct{})
	go func() { copyOutput(spec.Stdout, master); close(copied) }()
	if spec.Stdin != nil {
		go feedStdin(master, spec.Stdin, false)
	}
	go d.waitTerminal(copied)
	return d, nil
}

// waitTerminal is wait for a dyno on a terminal: the master is closed
// after a grace, for processes that keep the terminal open.
func (d *processDyno) waitTerminal(copied <-chan struct{}) {
	_ = d.cmd.Wait()
	res := Result{ExitStatus: 255}
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		res.ExitStatus = exitStatus(ws)
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(outputGrace):
		d.master.Close()
		<-copied
	}
	d.result = res
	close(d.done)
}

// Resize changes the size of a dyno's terminal.
func (d *processDyno) Resize(cols, rows uint16) error {
	if d.master == nil {
		return fmt.Errorf("resize dyno %s: it has no terminal", d.spec.ID)
	}
	return resizeTerminal(d.master, cols, rows)
}
