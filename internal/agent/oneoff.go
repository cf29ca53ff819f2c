package agent

import (
	"context"
	"io"
	"strconv"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/rendezvous"
	"github.com/dyno-platform/dyno/internal/runtime"
)

// attachment joins an attached one-off's stdio to its client through the
// rendezvous: the client's bytes are the dyno's stdin, the dyno's output
// (a terminal's, or stdout and stderr together) goes to the client.
type attachment struct {
	conn   *rendezvous.DynoConn
	stdinR *io.PipeReader
	stdinW *io.PipeWriter
}

// attach dials the rendezvous and waits for the client; it fills the
// spec's stdio. A stop of the dyno meanwhile cancels the wait.
func (r *runner) attach(ctx context.Context, spec *runtime.Spec) (*attachment, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	at := r.as.Attach
	conn, err := rendezvous.DialDyno(ctx, at.Rendezvous, at.Token, r.a.cfg.RendezvousRoots)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	spec.Stdin, spec.Stdout, spec.Stderr = pr, conn, conn
	spec.TTY = at.TTY
	if at.TTY {
		// Heroku's CLI passes the terminal's size as COLUMNS and LINES.
		spec.Cols, spec.Rows = envSize(r.as.Env["COLUMNS"]), envSize(r.as.Env["LINES"])
	}
	return &attachment{conn: conn, stdinR: pr, stdinW: pw}, nil
}

func envSize(v string) uint16 {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 10000 {
		return 0
	}
	return uint16(n)
}

// serve forwards the client's input, window sizes and signals to the dyno;
// the channel closes when the client has gone.
func (a *attachment) serve(dyno runtime.Dyno) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		defer a.stdinW.Close()
		_ = a.conn.Serve(rendezvous.Events{
			Data: func(p []byte) error { _, err := a.stdinW.Write(p); return err },
			EOF:  func() { a.stdinW.Close() },
			Resize: func(cols, rows uint16) {
				if rz, ok := dyno.(runtime.Resizer); ok {
					_ = rz.Resize(cols, rows)
				}
			},
			Signal: func(name string) {
				if sig, ok := signals[name]; ok {
					_ = dyno.Signal(sig)
				}
			},
		})
	}()
	return gone
}

// signals are the ones a client may send.
var signals = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "QUIT": syscall.SIGQUIT, "HUP": syscall.SIGHUP,
}

// close hangs up on the client (it sees the end of the output) and ends
// the stdin copy.
func (a *attachment) close() {
	a.conn.Close()
	a.stdinW.Close()
	a.stdinR.Close()
}

// failAttach reports an attached one-off whose client never came.
func (r *runner) failAttach(err error) {
	r.a.log.Warn("attach one-off", "dyno", r.as.Name, "id", r.as.ID, "err", err)
	select {
	case <-r.stopCh: // stopped while waiting: not an attach error
		r.status.State, r.status.UpdatedAt = model.StateDown, r.a.cfg.Now()
		if r.removing() {
			r.deleteStatus()
		} else {
			r.writeStatus()
		}
		return
	default:
	}
	r.logDyno("Error R13 (Attach error) -> Failed to attach to process")
	r.setState(model.StateCrashed)
	r.awaitRemoval()
}

// detach is Heroku's end of an attached dyno whose client left: SIGHUP to
// every process, and R16 and SIGKILL if it lives on. ok is false when the
// dyno was stopped meanwhile (stopDyno reported it).
func (r *runner) detach(dyno runtime.Dyno, exited <-chan runtime.Result) (res runtime.Result, ok bool) {
	r.logDyno("Client connection closed. Sending SIGHUP to all processes")
	_ = dyno.Signal(syscall.SIGHUP)
	t := time.NewTimer(r.a.cfg.DetachTimeout)
	defer t.Stop()
	select {
	case res = <-exited:
		return res, true
	case <-t.C:
		r.logDyno("Error R16 (Detached) -> An attached process is not responding to SIGHUP after its external connection was closed.")
		r.logDyno("Stopping process with SIGKILL")
		_ = dyno.Signal(syscall.SIGKILL)
		return <-exited, true
	case <-r.stopCh:
		r.stopDyno(dyno, exited)
		return res, false
	}
}

// oneOffEnded records the end of a one-off: it is not restarted, so it
// goes down when its command succeeded and crashed otherwise, with its
// exit status either way (`dyno run` exits with it).
func (r *runner) oneOffEnded(res runtime.Result) {
	if res.OOMKilled {
		r.logDyno("Error R15 (Memory quota vastly exceeded)")
		r.logDyno("Stopping process with SIGKILL")
	}
	r.logDyno("Process exited with status %d", res.ExitStatus)
	status := res.ExitStatus
	r.status.ExitStatus = &status
	if status == 0 {
		r.setState(model.StateDown)
	} else {
		r.setState(model.StateCrashed)
	}
}
