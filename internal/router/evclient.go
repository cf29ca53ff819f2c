package router

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The client side of an event loop (evloop.go): a connection's state,
// its requests and its timer.

// lconn is a client connection in a loop. It embeds the edgeConn its
// responses' edgeWriter writes through (bw, into out).
type lconn struct {
	edgeConn
	l    *evloop
	fd   int
	gen  uint32
	base context.Context // the connection's values (server, local address, clientConn); never canceled
	port int             // the local port the client connected to (X-Forwarded-Port)
	// An HTTPS connection's TLS connection and its transport (tlsloop.go):
	// the loop reads requests from tconn and writes responses to it.
	tconn *tls.Conn
	tt    *tlsTransport

	in       []byte // read, not yet served
	readable bool   // the socket may hold more than was read
	hup      bool   // epoll saw the client's FIN (or an error): read to the end
	eof      bool   // the client sent its last byte (or reset)
	out      fdOut
	state    lcState
	idleAt   int64 // unix ns the connection went idle
	headAt   int64 // unix ns the first byte of the pending head came (0: none yet)
	closed   bool

	// The request in progress (lcBusy).
	s      *reqState // &state0 (one per connection: no allocation per request)
	state0 reqState
	st     *appState
	a      *app // the routes retries pick from
	up     *lup
	tried  [maxAttempts]*dyno
	ntried int
	err    error // the last attempt's
	stream bool  // flush after every piece of the body
	upAt   int64 // unix ns of the dyno's last byte

	timer   *time.Timer
	timerAt int64 // unix ns the timer fires (0: not armed)

	// The memory of the request in progress and of its dyno's response,
	// reused from one request to the next.
	reqParts  reqParts
	respParts respParts
}

// lcState is where a loop's client connection is.
type lcState uint8

const (
	lcIdle    lcState = iota // waiting for (the rest of) a request head
	lcBusy                   // a request is with a dyno
	lcClosing                // its last response goes out, then it closes
)

func (c *lconn) generation() uint32 { return c.gen }

// enter takes a connection an edge loop gave up.
func (l *evloop) enter(c *lconn) {
	c.gen = l.nextGen()
	c.in = make([]byte, 0, edgeReadBufSize)
	c.idleAt = l.now
	if err := l.register(c.fd, c); err != nil {
		l.r.log.Warn("router event loop: a connection could not be watched; it is closed", "err", err)
		c.closed = true
		syscall.Close(c.fd)
		c.account(-1)
		l.e.active.Add(-1)
		return
	}
	c.readable = true // data that came before the registration
	l.readClient(c)
}

// clientEvent handles epoll's report on a client's socket.
func (l *evloop) clientEvent(c *lconn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && len(c.out.pend) > 0 {
		l.flushClient(c)
		if c.closed {
			return
		}
		if c.state != lcBusy && len(c.out.pend) < outHigh/2 {
			if len(c.out.pend) == 0 {
				c.idleAt = l.now // idle from the end of the last response
			}
			l.advance(c) // a closing connection closes now; a held-back one goes on
			if c.closed {
				return
			}
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
		c.hup = c.hup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
		l.readClient(c)
	}
}

// readClient reads what the client sent, then moves the connection on.
func (l *evloop) readClient(c *lconn) {
	l.fill(c)
	l.advance(c)
}

// fill reads what the client sent, up to clientInMax held.
func (l *evloop) fill(c *lconn) {
	for c.readable && !c.eof && len(c.in) < clientInMax {
		if cap(c.in)-len(c.in) < 1024 {
			c.in = append(c.in, make([]byte, cap(c.in))...)[:len(c.in)]
		}
		free := c.in[len(c.in):cap(c.in)]
		if c.tconn != nil {
			l.fillTLS(c, free)
			continue
		}
		n, errno := sockRecv(c.fd, free)
		switch {
		case errno == syscall.EAGAIN:
			c.readable = false
		case errno != 0 || n == 0:
			c.eof, c.readable = true, false // a reset is a hang-up too
		default:
			c.in = c.in[:len(c.in)+n]
			if n < len(free) && !c.hup {
				c.readable = false // a short read drained the socket; a FIN would have told
			}
		}
	}
}

// fillTLS reads one TLS record's data into free (c.in's free space). The
// connection stays readable until the transport found the socket empty:
// a record may hold less than the socket does, and crypto/tls may hold
// the start of the next.
func (l *evloop) fillTLS(c *lconn, free []byte) {
	n, err := c.tconn.Read(free)
	c.in = c.in[:len(c.in)+n]
	switch {
	case err == errWouldBlock:
		c.readable = false
	case err != nil:
		c.eof, c.readable = true, false // close_notify, a hang-up, a bad record
	}
}

// advance serves the requests the connection holds, as far as it can.
func (l *evloop) advance(c *lconn) {
	for served := 0; !c.closed; served++ {
		switch c.state {
		case lcBusy:
			if c.eof && len(c.in) == 0 {
				// Hung up while its request was with a dyno, as Go's
				// server's background read tells (H27).
				l.abort(c, errH27)
			} else {
				l.rearm(c)
			}
			return
		case lcClosing:
			if l.flushClient(c) {
				l.closeClient(c)
			} else {
				l.rearm(c)
			}
			return
		}
		if l.closing || l.e.closing.Load() {
			c.state = lcClosing // shutdown: no new request
			continue
		}
		if len(c.out.pend) >= outHigh || served == maxPipelined {
			// A client that takes none of its responses gets no more
			// (back-pressure, then H28's window); one that sent many
			// lets the loop's other connections go first.
			if len(c.out.pend) < outHigh {
				l.again = append(l.again, c)
			}
			l.rearm(c)
			return
		}
		if c.readable {
			l.fill(c) // what clientInMax left unread
		}
		end := headEnd(c.in[:min(len(c.in), edgeReadBufSize)], 0)
		if end == 0 {
			switch {
			case len(c.in) >= edgeReadBufSize:
				l.handOff(c) // too long for the loop: Go's server reads on
			case c.eof:
				c.state = lcClosing
				continue
			default:
				if len(c.in) > 0 && c.headAt == 0 {
					c.headAt = l.now
				}
				if l.flushClient(c); !c.closed {
					c.out.trim() // idle
					l.rearm(c)
				}
			}
			return
		}
		l.request(c, end)
	}
}

// request parses the head of c.in's first end bytes and serves it, or
// gives the connection to Go's server when the loop does not serve it.
func (l *evloop) request(c *lconn, end int) {
	req := quickRequest(c.in[:end], &c.reqParts)
	quick := req != nil
	var err error
	if !quick {
		l.rd.Reset(c.in[:end])
		l.br.Reset(&l.rd)
		req, err = http.ReadRequest(l.br)
	}
	if err != nil || !checkHead(req, quick) || !takes(req) {
		l.handOff(c)
		return
	}
	c.in = c.in[:copy(c.in, c.in[end:])]
	c.headAt = 0
	delete(req.Header, "Host")
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	// No context: what the goroutine path finds in it, the loop has
	// (c.cc, c.port); a request that goes back to a goroutine gets one.
	l.serve(c, req)
}

// serve is Router.ServeHTTP for a request of a loop, up to its dispatch:
// the answers the router makes itself go out at once, a request that
// must wait goes to a goroutine.
func (l *evloop) serve(c *lconn, req *http.Request) {
	r := l.r
	l.e.served.Add(1)
	l.e.loopServed.Add(1)
	w := &c.w
	w.reset(&c.edgeConn, req)
	start := r.now()
	host, name, ok := r.appName(req.Host)
	if !ok {
		name, ok = r.customName(host)
	}
	var a *app
	if ok {
		select {
		case <-r.ready:
		default:
			l.escape(c, req) // waits for the table
			return
		}
		a = r.table.Load().apps[name]
	}
	if a == nil {
		r.metrics.unknownHost.Add(1)
		writePage(w, http.StatusNotFound, noSuchAppPage, noSuchAppLen)
		l.responded(c)
		return
	}
	if len(a.up) == 0 {
		l.escape(c, req) // waits for a starting dyno, or says why not
		return
	}
	s := r.newState(&c.state0, w, req, host, name, a, start, false)
	c.s, c.st, c.a = s, a.state, a
	c.st.inflight.Add(1)
	s.port = c.port
	if s.code, s.cause = r.admit(req, a, c.cc); s.code != nil {
		if s.code == errH22 {
			w.Header().Set("Connection", "close")
		}
		writeError(w, s.code)
		l.finish(c)
		return
	}
	d := a.pick(nil)
	if d == nil {
		l.unwind(c)
		l.escape(c, req) // every dyno is quarantined: it waits
		return
	}
	s.dispatched = r.now()
	c.state = lcBusy
	c.ntried = 0
	l.attempt(c, d)
}

// unwind takes back the admission of the request in progress, which goes
// to a goroutine to be served from the start.
func (l *evloop) unwind(c *lconn) {
	if c.s.picked != nil {
		c.s.picked.release()
	}
	c.st.inflight.Add(-1)
	c.s, c.st, c.a = nil, nil, nil
	c.state = lcIdle
}

// finish ends the request in progress, answered (ended), then the
// response (responded).
func (l *evloop) finish(c *lconn) {
	l.ended(c)
	l.responded(c)
}

// ended accounts for the request in progress as Router.ServeHTTP's end
// does: its dyno's claim, its log line and metrics (Router.finish), the
// app's in-flight count.
func (l *evloop) ended(c *lconn) {
	if s := c.s; s.picked != nil {
		s.picked.release()
	}
	l.r.finish(c.s)
	c.st.inflight.Add(-1)
	c.s, c.st, c.a, c.up = nil, nil, nil, nil
}

// responded completes the response of the request in progress; the
// connection goes on with the next one, or closes.
func (l *evloop) responded(c *lconn) {
	err := c.w.finish()
	c.w.req = nil
	c.state = lcIdle
	c.idleAt = l.now
	if err != nil || c.w.close {
		c.state = lcClosing
	}
}

// abort ends the request in progress without its whole response (code
// says why), and the connection with it: what was written goes out
// first, as Go's server does with a handler that panics.
func (l *evloop) abort(c *lconn, code *hcode) {
	s := c.s
	if u := c.up; u != nil {
		l.closeUp(u)
	}
	if s.code == nil {
		s.code = code
	}
	l.ended(c)
	c.w.req = nil
	c.bw.Flush()
	c.out.flush()
	l.closeClient(c)
}

// flushClient writes held output; true when none is left. A client that
// reads nothing more of a response may let the dyno's body wait
// (outHigh): once it takes enough, the body moves again.
func (l *evloop) flushClient(c *lconn) bool {
	c.bw.Flush()
	done := c.out.flush()
	if c.out.err != nil {
		if c.state == lcBusy {
			c.s.w.writeErr = c.out.err
			l.abort(c, errH27)
		} else {
			l.closeClient(c)
		}
		return false
	}
	if c.state == lcBusy && c.up != nil && len(c.out.pend) < outHigh/2 && c.up.readable {
		c.upAt = l.now // the dyno waited for the client, not the reverse
		l.readUp(c.up)
	}
	return done
}

// closeClient closes the connection (with no request in progress).
func (l *evloop) closeClient(c *lconn) {
	if c.closed {
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.tconn != nil && c.out.err == nil {
		// close_notify, as tls.Conn.Close sends it, if the socket takes it.
		c.tconn.CloseWrite()
		c.out.flush()
	}
	l.forget(c.fd)
	syscall.Close(c.fd)
	c.account(-1)
	l.e.active.Add(-1)
}

// release takes the connection out of the loop for a goroutine: its
// socket as a Go connection (an HTTPS one's TLS connection, its transport
// back on a Go connection), and the output not written yet (an HTTPS
// one's transport writes it first itself).
func (l *evloop) release(c *lconn) (nc net.Conn, out []byte, ok bool) {
	c.bw.Flush()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	l.forget(c.fd)
	out = c.out.pend
	if c.out.err != nil {
		syscall.Close(c.fd)
		c.account(-1)
		l.e.active.Add(-1)
		return nil, nil, false
	}
	conn, err := fileConn(c.fd)
	if err != nil {
		l.r.log.Warn("router event loop: a connection could not go back to a goroutine; it is closed", "err", err)
		c.account(-1)
		l.e.active.Add(-1)
		return nil, nil, false
	}
	if tt := c.tt; tt != nil {
		tt.Conn, tt.pendOut, tt.lc = conn, out, nil
		return c.tconn, nil, true
	}
	return conn, out, true
}

// escape gives the connection back to a goroutine of the edge loop, which
// serves req from the start.
func (l *evloop) escape(c *lconn, req *http.Request) {
	rest := append([]byte(nil), c.in...)
	nc, out, ok := l.release(c)
	if !ok {
		return
	}
	go l.e.resume(nc, c, out, req, rest)
}

// handOff gives the connection to Go's server, c.in replayed first.
func (l *evloop) handOff(c *lconn) {
	prefix := append([]byte(nil), c.in...)
	c.account(-1) // Go's server counts it again
	nc, out, ok := l.release(c)
	if !ok {
		c.account(1)
		return
	}
	go l.e.passBack(nc, c.tls, out, prefix)
}

// rearm sets the connection's deadline for its state (deadline) and
// its timer.
func (l *evloop) rearm(c *lconn) {
	at := l.deadline(c)
	if at == 0 || c.timerAt != 0 && c.timerAt <= at {
		return // the timer fires before: it sets itself again then
	}
	// Never further than the shortest window: a deadline set later is
	// then never earlier than the timer, and requests need no Reset.
	now := l.now
	at = min(at, now+int64(l.minWindow()))
	c.timerAt = at
	d := time.Duration(at - now)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, func() { l.post(loopMsg{timer: c}) })
	} else {
		c.timer.Reset(d)
	}
}

// deadline is the connection's deadline in its state: the idle and
// header timeouts between requests, H19's connect timeout, H12's first
// byte, the H15 and H28 idle windows; 0 for none.
func (l *evloop) deadline(c *lconn) int64 {
	e, r := l.e, l.r
	var at int64
	switch c.state {
	case lcIdle:
		switch {
		case len(c.out.pend) > 0:
			at = c.out.at + int64(e.writeIdle) // a response still going out
		case len(c.in) == 0:
			at = c.idleAt + int64(e.idle)
		default:
			at = c.headAt + int64(e.header)
		}
	case lcClosing:
		at = c.out.at + int64(e.writeIdle)
	case lcBusy:
		switch u := c.up; {
		case u == nil:
		case u.connecting:
			at = u.dialAt + int64(r.cfg.ConnectTimeout)
		case !u.headDone:
			at = u.sentAt + int64(min(r.cfg.FirstByteTimeout, r.cfg.IdleTimeout))
		case len(c.out.pend) < outHigh && !u.readable:
			// H15 while the loop waits for the dyno; not while the
			// dyno's bytes wait for the client (back-pressure: H28's).
			at = c.upAt + int64(r.cfg.IdleTimeout)
		}
		if len(c.out.pend) > 0 {
			if w := c.out.at + int64(e.writeIdle); at == 0 || w < at {
				at = w
			}
		}
	}
	return at
}

// minWindow is the shortest of the timeouts rearm sets a connection
// that is not connecting to a dyno (a new dyno connection is rare: its
// shorter deadline may Reset the timer).
func (l *evloop) minWindow() time.Duration {
	r := l.r
	return max(min(l.e.idle, l.e.header, l.e.writeIdle, r.cfg.FirstByteTimeout, r.cfg.IdleTimeout), time.Millisecond)
}

// timerFired handles the connection's timer: a deadline passed, or the
// timer fired early and is set again.
func (l *evloop) timerFired(c *lconn) {
	c.timerAt = 0
	if c.closed {
		return
	}
	now := l.now
	if at := l.deadline(c); at == 0 || now < at {
		l.rearm(c)
		return
	}
	switch c.state {
	case lcIdle, lcClosing:
		// Idle, a head too slow (slowloris), or a last response the
		// client does not take.
		c.bw.Flush()
		c.out.flush()
		l.closeClient(c)
	case lcBusy:
		u := c.up
		switch {
		case len(c.out.pend) > 0 && now-c.out.at >= int64(l.e.writeIdle):
			c.s.w.writeErr = errClientIdle
			l.abort(c, errH28)
		case u.connecting:
			l.upFailed(u, &dialError{addr: u.d.endpoint, err: &timeoutError{"dial tcp " + u.d.endpoint + ": i/o timeout"}})
		case !u.headDone:
			l.upFailed(u, &timeoutError{"net/http: timeout awaiting response headers after " + l.r.cfg.FirstByteTimeout.String()})
		default:
			l.abort(c, errH15)
		}
	}
}

// errClientIdle is the write error of a client that took nothing for the
// idle window.
var errClientIdle = &timeoutError{"client took nothing of the response within the idle window"}
