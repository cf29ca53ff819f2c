package router

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// The dyno side of an event loop (evloop.go): its own kept-alive
// connections to each dyno, connected without blocking, and the exchange
// of a request: the head writeFastRequest writes, the response read as
// it comes and passed on as serveFast passes it, with upstream.go's and
// roundTrip's rules for retries and errors.

// lup is a loop's connection to a dyno.
type lup struct {
	fd         int
	gen        uint32
	d          *dyno
	c          *lconn // the exchange's client; nil in the pool
	out        fdOut
	in         []byte // read, not yet passed on (nil in the pool)
	readable   bool
	hup        bool // epoll saw the dyno's FIN (or an error): read to the end
	connecting bool
	reused     bool
	dialAt     int64 // unix ns the connect began
	sentAt     int64 // unix ns the request was written
	lastUsed   int64 // unix ns it went back to the pool
	nread      int64 // bytes read in this exchange

	// The response.
	headDone bool
	ninfo    int   // 1xx responses passed on
	left     int64 // Content-Length still to come; -1: until EOF
	chunked  bool
	dec      chunkDecoder
	keep     bool // the connection may serve another exchange
	announce int  // trailers the head declared
}

func (u *lup) generation() uint32 { return u.gen }

// loopPool is a loop's idle connections to one dyno.
type loopPool struct {
	addr unix.Sockaddr // nil: the endpoint is not an IP address and port
	af   int
	idle []*lup // the most recently used last
}

// errNoSockaddr is a dyno endpoint the loop cannot connect to itself (not
// an IP address and port, or an IPv6 address with a zone).
var errNoSockaddr = errors.New("the endpoint is not an IP address and port")

// pool returns the loop's pool for d.
func (l *evloop) pool(d *dyno) *loopPool {
	p := l.pools[d]
	if p == nil {
		p = &loopPool{}
		if ap, err := netip.ParseAddrPort(d.endpoint); err == nil && ap.Addr().Zone() == "" {
			a := ap.Addr().Unmap()
			if a.Is4() {
				p.addr, p.af = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, unix.AF_INET
			} else {
				p.addr, p.af = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, unix.AF_INET6
			}
		}
		l.pools[d] = p
	}
	return p
}

// attempt sends the request in progress to d, as one of roundTrip's
// attempts.
func (l *evloop) attempt(c *lconn, d *dyno) {
	c.tried[c.ntried] = d
	c.ntried++
	c.s.claim(d)
	l.send(c, d)
}

// send writes the request in progress to a connection to d: an idle one,
// else a new one.
func (l *evloop) send(c *lconn, d *dyno) {
	u, err := l.getUp(d)
	if err == errNoSockaddr {
		req := c.s.req // a goroutine resolves it
		l.unwind(c)
		l.escape(c, req)
		return
	}
	if err != nil {
		l.dialFailed(c, d, err)
		return
	}
	u.c, c.up = c, u
	u.nread, u.headDone, u.ninfo, u.chunked, u.keep = 0, false, 0, false, false
	if u.in == nil {
		u.in = l.buf()
	}
	l.ubw.Reset(&u.out)
	writeFastRequest(l.ubw, c.s, d.endpoint)
	l.ubw.Flush()
	l.ubw.Reset(nil)
	u.sentAt = l.now
	if !u.connecting {
		l.flushUp(u)
		return
	}
	l.rearm(c)
}

// getUp takes the most recently used idle connection to d, or connects
// a new one (connect(2) without waiting: the loop hears when it is done).
func (l *evloop) getUp(d *dyno) (*lup, error) {
	p := l.pool(d)
	now := l.now
	for n := len(p.idle); n > 0; n = len(p.idle) {
		u := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if now-u.lastUsed > int64(idleConnTimeout) || d.gone.Load() {
			l.closeUp(u)
			continue
		}
		u.reused = true
		return u, nil
	}
	if p.addr == nil {
		return nil, errNoSockaddr
	}
	fd, err := unix.Socket(p.af, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// As Go's dialer: no Nagle, keep-alive probes (net.Dialer.KeepAlive).
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
	u := &lup{fd: fd, gen: l.nextGen(), d: d, dialAt: now}
	u.out.fd, u.out.now = fd, &l.now
	switch err := unix.Connect(fd, p.addr); err {
	case nil:
	case unix.EINPROGRESS:
		u.connecting, u.out.hold = true, true
	default:
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	if err := l.register(fd, u); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return u, nil
}

// buf returns a dyno read buffer.
func (l *evloop) buf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, upBufSize)
}

// putBuf keeps u's read buffer for another exchange.
func (l *evloop) putBuf(u *lup) {
	if u.in != nil && cap(u.in) == upBufSize && len(l.bufs) < 64 {
		l.bufs = append(l.bufs, u.in[:0])
	}
	u.in = nil
}

// upEvent handles epoll's report on a dyno connection.
func (l *evloop) upEvent(u *lup, ev uint32) {
	if u.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = os.NewSyscallError("connect", syscall.Errno(errno))
		}
		if err != nil {
			l.upFailed(u, &dialError{addr: u.d.endpoint, err: err})
			return
		}
		u.connecting, u.out.hold = false, false
		if c := u.c; c != nil {
			c.s.connect.Store(l.now - u.dialAt)
			u.sentAt = l.now
		}
		if !l.flushUp(u) {
			return
		}
	} else if ev&unix.EPOLLOUT != 0 && len(u.out.pend) > 0 {
		if !l.flushUp(u) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.readable = true
		u.hup = u.hup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
		l.readUp(u)
	}
}

// flushUp writes the request head; false when the exchange failed.
func (l *evloop) flushUp(u *lup) bool {
	u.out.flush()
	if err := u.out.err; err != nil {
		if u.c == nil {
			l.closeUp(u)
		} else {
			l.upFailed(u, err)
		}
		return false
	}
	if u.c != nil {
		l.rearm(u.c)
	}
	return true
}

// readUp reads what the dyno sent and passes it on, unless the client
// has too much output waiting already.
func (l *evloop) readUp(u *lup) {
	for u.readable {
		c := u.c
		if c == nil {
			// Idle in the pool: the dyno closed it, or sent what no
			// request asked for. Either way it is done.
			l.dropIdle(u)
			return
		}
		if len(c.out.pend) >= outHigh {
			l.rearm(c) // H28's window, not H15's
			return     // the client's flush reads on
		}
		if len(u.in) == cap(u.in) {
			u.in = slices.Grow(u.in, cap(u.in)) // a long head
		}
		free := u.in[len(u.in):cap(u.in)]
		n, errno := sockRecv(u.fd, free)
		switch {
		case errno == syscall.EAGAIN:
			u.readable = false
			l.rearm(c)
			return
		case errno != 0:
			u.readable = false
			l.upBroken(u, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)})
			return
		case n == 0:
			u.readable = false
			l.upEOF(u)
			return
		}
		if n < len(free) && !u.hup {
			u.readable = false // a short read drained the socket; a FIN would have told
		}
		u.in = u.in[:len(u.in)+n]
		u.nread += int64(n)
		c.upAt = l.now
		l.upData(u)
	}
}

// upData passes on what u.in holds of the response.
func (l *evloop) upData(u *lup) {
	c := u.c
	s := c.s
	for !u.headDone {
		end := headEnd(u.in, 0)
		if end == 0 {
			if len(u.in) >= maxResponseHeaders {
				l.upFailed(u, fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxResponseHeaders))
			}
			return
		}
		l.rd.Reset(u.in[:end])
		l.br.Reset(&l.rd)
		l.br.Peek(min(end, l.br.Size())) // readResponse's shortcut wants the head buffered
		resp, err := readResponse(l.br, s.req, &c.respParts)
		if err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
			switch {
			case resp.StatusCode == http.StatusSwitchingProtocols:
				err = errUnaskedUpgrade
			case u.ninfo == 4:
				err = errors.New("net/http: too many 1xx informational responses")
			default:
				u.ninfo++
				s.informational(resp)
				u.in = u.in[:copy(u.in, u.in[end:])]
				continue
			}
		}
		if err != nil {
			l.upFailed(u, err)
			return
		}
		u.in = u.in[:copy(u.in, u.in[end:])]
		s.phase = phaseSent
		if code := l.r.passHead(s, resp); code != nil {
			l.closeUp(u)
			c.up = nil
			l.r.failRequest(s, &restrictionError{code})
			l.finish(c)
			l.advance(c)
			return
		}
		u.headDone = true
		u.keep = !resp.Close
		u.announce = len(resp.Trailer)
		u.dec.reset()
		switch {
		case s.req.Method == http.MethodHead || !bodyAllowed(resp.StatusCode):
			u.left = 0
		case len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked":
			u.chunked = true
		case resp.ContentLength >= 0:
			u.left = resp.ContentLength
		default:
			u.left, u.keep = -1, false // until the dyno closes
		}
		c.stream = resp.ContentLength == -1 || eventStream(resp.Header)
		if c.stream && s.req.Method != http.MethodHead {
			s.w.FlushError() // the head goes out even if the body is slow to come
		}
	}
	l.upBody(u)
}

// upBody passes on the body bytes u.in holds, and ends the exchange at
// the body's end.
func (l *evloop) upBody(u *lup) {
	c := u.c
	s := c.s
	done := false
	switch {
	case u.chunked:
		in := u.in
		for len(in) > 0 && !done {
			n, data, end, err := u.dec.next(in)
			in = in[n:]
			if len(data) > 0 && !l.pass(c, data) {
				return
			}
			if err != nil {
				s.respBody.err = err
				l.abort(c, errH18)
				return
			}
			done = end
			if n == 0 {
				break
			}
		}
		u.in = u.in[:copy(u.in, in)]
	case u.left >= 0:
		k := min(u.left, int64(len(u.in)))
		if k > 0 && !l.pass(c, u.in[:k]) {
			return
		}
		u.left -= k
		u.in = u.in[:copy(u.in, u.in[k:])]
		done = u.left == 0
	default:
		if len(u.in) > 0 && !l.pass(c, u.in) {
			return
		}
		u.in = u.in[:0]
	}
	if c.stream && !done {
		if s.w.FlushError() != nil {
			l.abort(c, errH27)
			return
		}
	}
	if done {
		l.complete(u)
	}
}

// pass writes body bytes to the client; false when the client is gone
// (the request is aborted).
func (l *evloop) pass(c *lconn, p []byte) bool {
	if _, err := c.s.w.Write(p); err != nil {
		l.abort(c, errH27)
		return false
	}
	return true
}

// complete ends an exchange whose response was passed on whole.
func (l *evloop) complete(u *lup) {
	c := u.c
	s := c.s
	if u.chunked {
		passTrailers(s, u.dec.trailer, u.announce)
	}
	// Bytes past the response are not HTTP: such a connection is done.
	if u.keep && len(u.in) == 0 && !u.readable {
		l.putUp(u)
	} else {
		l.closeUp(u)
	}
	c.up = nil
	l.finish(c)
	l.advance(c)
}

// putUp returns a connection whose exchange ended cleanly to the pool.
func (l *evloop) putUp(u *lup) {
	u.c = nil
	l.putBuf(u)
	d := u.d
	p := l.pools[d]
	if d.gone.Load() || p == nil || len(p.idle) >= maxIdlePerDyno {
		l.closeUp(u)
		return
	}
	u.lastUsed = l.now
	if len(p.idle) > 0 && u.lastUsed-p.idle[0].lastUsed > int64(idleConnTimeout) {
		// The least recently used one expired: no timer per connection.
		old := p.idle[0]
		p.idle = p.idle[1:]
		l.closeUp(old)
	}
	p.idle = append(p.idle, u)
}

// dropIdle closes an idle connection and takes it out of its pool.
func (l *evloop) dropIdle(u *lup) {
	if p := l.pools[u.d]; p != nil {
		if i := slices.Index(p.idle, u); i >= 0 {
			p.idle = slices.Delete(p.idle, i, i+1)
		}
		if len(p.idle) == 0 && u.d.gone.Load() {
			delete(l.pools, u.d)
		}
	}
	l.closeUp(u)
}

// closeUp closes a dyno connection.
func (l *evloop) closeUp(u *lup) {
	if u.fd < 0 {
		return
	}
	l.forget(u.fd)
	syscall.Close(u.fd)
	u.fd, u.out.fd = -1, -1
	u.readable = false
	l.putBuf(u)
	if c := u.c; c != nil && c.up == u {
		c.up = nil
	}
}

// upEOF handles the dyno closing the connection.
func (l *evloop) upEOF(u *lup) {
	switch {
	case u.headDone && u.left < 0 && !u.chunked:
		u.keep = false
		l.complete(u) // the body ends with the connection
	case u.headDone:
		l.upBroken(u, io.ErrUnexpectedEOF)
	case u.nread == 0:
		l.upFailed(u, io.EOF)
	default:
		l.upFailed(u, io.ErrUnexpectedEOF)
	}
}

// upBroken handles a connection that broke: before the response head, a
// failed exchange; after, a cut body (H18).
func (l *evloop) upBroken(u *lup, err error) {
	if !u.headDone {
		l.upFailed(u, err)
		return
	}
	c := u.c
	c.s.respBody.err = err
	l.abort(c, errH18)
}

// upFailed handles an exchange that got no response head, as roundTrip
// does: a kept-alive connection the dyno closed in the pool is replaced,
// a failed connect quarantines the dyno and tries another, so does a
// broken connection to a dyno that left the table; anything else is the
// request's error (classify).
func (l *evloop) upFailed(u *lup, err error) {
	c := u.c
	d := u.d
	l.closeUp(u)
	if c == nil {
		return
	}
	c.up = nil
	var de *dialError
	switch {
	case errors.As(err, &de):
		l.dialFailed(c, d, de.err)
		return
	case u.reused && u.nread == 0 && !isTimeout(err):
		l.send(c, d)
		return
	case d.gone.Load() && !isTimeout(err):
		c.err = err
		l.retry(c)
		return
	}
	c.s.phase = phaseSent
	l.fail(c, err)
}

// dialFailed quarantines d, whose connect failed, and tries another dyno.
func (l *evloop) dialFailed(c *lconn, d *dyno, err error) {
	c.err = &dialError{addr: d.endpoint, err: err}
	d.quarantine.Store(l.now + int64(l.r.cfg.Quarantine))
	l.retry(c)
}

// retry makes the next attempt of roundTrip's loop: another dyno not
// tried yet; when only quarantined ones are left, the request goes to a
// goroutine, which waits for them.
func (l *evloop) retry(c *lconn) {
	if cur := l.r.table.Load().apps[c.s.name]; cur != nil {
		c.a = cur // routes may have changed since the request started
	}
	if c.ntried == maxAttempts {
		l.fail(c, c.err) // Heroku's limit, as roundTrip's
		return
	}
	tried := c.tried[:c.ntried]
	d := c.a.pick(tried)
	if d == nil {
		if _, untried := c.a.quarantineEnd(tried); untried {
			req := c.s.req
			l.unwind(c)
			l.escape(c, req)
			return
		}
		l.fail(c, c.err)
		return
	}
	l.attempt(c, d)
}

// fail answers a request no dyno answered, as failRequest does.
func (l *evloop) fail(c *lconn, err error) {
	l.r.failRequest(c.s, err)
	l.finish(c)
	l.advance(c)
}
