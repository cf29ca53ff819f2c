package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Resizer is implemented by a dyno started with Spec.TTY: it changes the
// size of its terminal (the command gets SIGWINCH).
type Resizer interface {
	Resize(cols, rows uint16) error
}

// consoleSocket is the pair of sockets over which libcontainer's init
// sends back the master side of the pseudo-terminal it made inside the
// container (from the container's own /dev/pts instance, so the dyno's
// tty is one of its own and the session's controlling terminal).
type consoleSocket struct {
	parent, child *os.File
}

func newConsoleSocket() (*consoleSocket, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{parent: os.NewFile(uintptr(fds[0]), "console-parent"), child: os.NewFile(uintptr(fds[1]), "console-child")}, nil
}

// receive reads the pty master the init sent. Call it after the container
// started (the init sends it before it execs the command).
func (c *consoleSocket) receive() (*os.File, error) {
	c.child.Close() // ours; the init has its copy
	defer c.parent.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	err := controlErr(c.parent, func(fd uintptr) error {
		var rerr error
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
		return rerr
	})
	if err != nil {
		return nil, fmt.Errorf("receive the dyno's terminal: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive the dyno's terminal: no file descriptor came (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive the dyno's terminal: %v", err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

func (c *consoleSocket) close() {
	c.parent.Close()
	c.child.Close()
}

// controlErr runs fn on f's descriptor in blocking mode.
func controlErr(f *os.File, fn func(fd uintptr) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Read(func(fd uintptr) bool {
		ferr = fn(fd)
		return !errors.Is(ferr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return ferr
}

// resizeTerminal sets the window size of the pty whose master is m.
func resizeTerminal(m *os.File, cols, rows uint16) error {
	rc, err := m.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize terminal: %w", ierr)
	}
	return nil
}

// feedStdin copies src into w until src ends or w breaks, then closes w
// (the dyno sees EOF). closeW is false for a pty master, which carries the
// output too and is closed by the output copier.
func feedStdin(w *os.File, src io.Reader, closeW bool) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if closeW {
		w.Close()
	}
}

// stdinPipe makes the pipe the dyno reads its stdin from; feedStdin fills
// it once the child holds the read end.
func stdinPipe(src io.Reader) (r, w *os.File, err error) {
	if src == nil {
		return nil, nil, nil
	}
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	return r, w, nil
}
