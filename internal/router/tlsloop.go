package router

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// HTTPS connections in the event loops. Go's server makes every TLS
// connection (handshake, ALPN, HTTP/2) over a tlsTransport; an HTTP/1.1
// one that enters a loop keeps its *tls.Conn, whose records the loop
// reads and writes through the transport: the transport then reads the
// loop's socket without blocking (no data: errWouldBlock, which
// crypto/tls takes as temporary and resumes from) and writes into the
// loop's output (fdOut), which never blocks. When the connection leaves
// the loop, the transport goes back to a Go connection of the socket,
// with the ciphertext the loop could not write yet sent first.

// tlsTransport is the connection under a *tls.Conn of the router's
// HTTPS server.
type tlsTransport struct {
	net.Conn        // the TCP connection, while a goroutine serves it
	lc       *lconn // the loop's connection, while a loop serves it
	pendOut  []byte // ciphertext a loop left unwritten: written first
}

// errWouldBlock is what the transport's Read returns in a loop when the
// socket has nothing: a temporary net.Error, so crypto/tls keeps the
// connection and the part of a record it read.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "the socket has no data yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Read reads ciphertext: from the loop's socket in a loop, else from the
// Go connection.
func (t *tlsTransport) Read(p []byte) (int, error) {
	lc := t.lc
	if lc == nil {
		return t.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := sockRecv(lc.fd, p)
	switch {
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes ciphertext: into the loop's output in a loop, else to the
// Go connection, after what a loop left.
func (t *tlsTransport) Write(p []byte) (int, error) {
	if lc := t.lc; lc != nil {
		return lc.out.Write(p)
	}
	if err := t.writeHeld(); err != nil {
		return 0, err
	}
	return t.Conn.Write(p)
}

// writeHeld writes what a loop left unwritten; what a failed write did
// not take stays held (and is not written twice).
func (t *tlsTransport) writeHeld() error {
	if len(t.pendOut) == 0 {
		return nil
	}
	n, err := t.Conn.Write(t.pendOut)
	t.pendOut = t.pendOut[n:]
	if len(t.pendOut) == 0 {
		t.pendOut = nil
	}
	return err
}

// flushHeld writes, within timeout, the ciphertext a loop left unwritten
// when nc, an HTTPS connection, came back from it: the rest of a response
// must not wait for the next one (a pipelining client's next request may
// wait for a starting dyno). A plain connection's is the caller's out.
func flushHeld(nc net.Conn, timeout time.Duration) error {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	t, ok := tc.NetConn().(*tlsTransport)
	if !ok || len(t.pendOut) == 0 {
		return nil
	}
	t.Conn.SetWriteDeadline(time.Now().Add(timeout))
	err := t.writeHeld()
	t.Conn.SetWriteDeadline(time.Time{})
	return err
}

// The deadlines are the loop's own while it serves the connection.

func (t *tlsTransport) SetDeadline(d time.Time) error {
	if t.lc != nil {
		return nil
	}
	return t.Conn.SetDeadline(d)
}

func (t *tlsTransport) SetReadDeadline(d time.Time) error {
	if t.lc != nil {
		return nil
	}
	return t.Conn.SetReadDeadline(d)
}

func (t *tlsTransport) SetWriteDeadline(d time.Time) error {
	if t.lc != nil {
		return nil
	}
	return t.Conn.SetWriteDeadline(d)
}

// Close closes the Go connection; a loop closes its socket itself.
func (t *tlsTransport) Close() error {
	if t.lc != nil {
		return nil
	}
	return t.Conn.Close()
}

// tlsListener accepts the connections of the HTTPS server: sysConns
// (sysconn.go) under a tlsTransport.
type tlsListener struct{ net.Listener }

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsTransport{Conn: newSysConn(c)}, nil
}

// loopTLS returns the TLS connection nc and its transport, when nc is an
// HTTPS connection a loop can serve.
func loopTLS(nc net.Conn) (*tls.Conn, *tlsTransport) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	tt, ok := tc.NetConn().(*tlsTransport)
	if !ok || tt.lc != nil || len(tt.pendOut) > 0 {
		return nil, nil
	}
	return tc, tt
}
