package router

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sysConn is a TCP connection whose reads and writes make their system
// calls with syscall.RawSyscall, through Go's poller (syscall.RawConn):
// deadlines, Close, errors and the wait for readiness are net.TCPConn's.
// ReadFrom, WriteTo (splice, sendfile) and CloseWrite are the embedded
// net.TCPConn's own.
//
// Why: a write to a socket delivers the data to the other end inside the
// system call (on one host, through its whole TCP receive path), which can
// take tens of µs. A net.Conn call tells the scheduler it entered a system
// call; the scheduler's monitor then takes the P from a call it sees
// lasting and wakes another thread to run it, and the caller must find a P
// again on return. Under load that churn of threads cost the router about
// 2 µs of CPU per request (bench/router; perf showed the monitor waking
// every 20 µs). The sockets are non-blocking: a raw call never blocks,
// and waits for readiness go through the poller as before. The price: a
// call that takes long in the kernel (memory reclaim) holds its P, and a
// stop-the-world of the collector waits for it.
type sysConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu    sync.Mutex // the state of the read in progress
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(uintptr) bool

	wmu     sync.Mutex // the state of the write in progress
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// newSysConn wraps c; any other connection is returned as it is, and so
// is every connection of a race-detector build: raw system calls are
// invisible to it (raceSyscalls).
func newSysConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || raceSyscalls {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sysConn{TCPConn: tc, rc: rc}
	s.readFn = s.rawRead
	s.writeFn = s.rawWrite
	return s
}

func (c *sysConn) rawRead(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch errno {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for data, then calls again
		}
		c.rerr = errno
		return true
	}
}

// Read reads as net.TCPConn's Read does.
func (c *sysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, renameOp(c.rc.Read(done), "read") // an error only when closed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, renameOp(err, "read")
	case c.rerr != 0:
		return 0, c.opError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *sysConn) rawWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		b := c.wbuf[c.wn:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits for room, then calls again
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// Write writes all of p, as net.TCPConn's Write does.
func (c *sysConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, renameOp(c.rc.Write(done), "write")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	switch {
	case err != nil:
		return c.wn, renameOp(err, "write")
	case c.werr != 0:
		return c.wn, c.opError("write", c.werr)
	}
	return c.wn, nil
}

func (c *sysConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// done is the RawConn function of an empty read or write.
func done(uintptr) bool { return true }

// renameOp names the operation of a RawConn error ("raw-read") as
// net.TCPConn would ("read"): the error reads the same in the logs.
func renameOp(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}

// sysListener accepts sysConns.
type sysListener struct{ net.Listener }

func (l sysListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newSysConn(c), nil
}
