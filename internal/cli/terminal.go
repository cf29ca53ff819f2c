package cli

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// terminal is the user's terminal while `dyno run` owns it: raw, so that
// every key (Ctrl-C too) goes to the dyno as typed and the dyno's output
// is shown as it comes (no \n → \r\n translation: the dyno's terminal
// does that).
type terminal struct {
	fd    int
	mu    sync.Mutex
	saved *unix.Termios // nil while not raw
}

// openTerminal returns f as a terminal, or nil when it is not one.
func openTerminal(f *os.File) *terminal {
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return nil
	}
	return &terminal{fd: fd}
}

// size is the terminal's width and height in characters.
func (t *terminal) size() (cols, rows uint16, err error) {
	ws, err := unix.IoctlGetWinsize(t.fd, unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, err
	}
	return ws.Col, ws.Row, nil
}

// makeRaw is cfmakeraw(3), remembering the settings for restore.
func (t *terminal) makeRaw() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, err := unix.IoctlGetTermios(t.fd, unix.TCGETS)
	if err != nil {
		return err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, &raw); err != nil {
		return err
	}
	t.saved = old
	return nil
}

// restore puts the settings makeRaw found back; it is idempotent.
func (t *terminal) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.saved != nil {
		_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved)
		t.saved = nil
	}
}
