package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The edge loop: the router's own HTTP/1.1 connection loop for what most
// clients send, bodiless requests on kept-alive connections (plain HTTP,
// and HTTPS connections that did not pick h2). Go's server takes the first
// request of every connection (TLS handshake, ALPN, HTTP/2, its checks);
// when that request is one the loop serves, the handler hijacks the
// connection and serves it and the following ones on the same goroutine:
// requests parsed by http.ReadRequest (Go's parser: smuggling stays
// rejected), one per-connection context, pooled buffers, responses written
// into a bufio.Writer flushed only when no pipelined request is already
// buffered, no background read per request. A request the loop does not
// serve (a body, Expect, Upgrade, HTTP/1.0, a head over edgeReadBufSize,
// anything Go's parser or server refuses) hands the connection back to a
// Go server of the same configuration, with the bytes already read replayed
// first; that server may hijack it again at its next bodiless request.

const (
	// edgeReadBufSize bounds the heads the loop parses itself: longer ones
	// (up to maxHeaderBytes) go to Go's server.
	edgeReadBufSize  = 4 << 10
	edgeWriteBufSize = 8 << 10
	// defaultWatchAfter is how long a request waits for its dyno's first
	// byte before the loop watches the client connection for a hang-up
	// (H27): fast responses never pay for the watch.
	defaultWatchAfter = 100 * time.Millisecond
)

// edge serves the HTTP/1.1 connections of one server made by NewHTTPServer.
type edge struct {
	r          *Router
	header     time.Duration // HeaderTimeout: a head must arrive within it
	idle       time.Duration // IdleTimeout: between requests
	writeIdle  time.Duration // a client that takes nothing for it fails (H28)
	watchAfter time.Duration

	inner        *http.Server // serves handed-off connections
	handoff      *handoffListener
	innerOnce    sync.Once
	innerStarted atomic.Bool
	innerDone    chan struct{}

	closing atomic.Bool
	// active counts the connections in the loop or being hijacked into
	// it, for Shutdown: Go's server stops tracking them at the hijack.
	active atomic.Int64
	mu     sync.Mutex
	conns  map[*edgeConn]struct{}
	closed bool      // Close was called: connections entering the loop close
	pool   sync.Pool // *edgeConn, with its buffers
	// Requests the loop served, connections it handed off and those that
	// went to an event loop, for tests.
	served, handoffs, looped, loopServed atomic.Int64
	dates                                atomic.Pointer[dateStamp]
	// afterHijack, when set (tests), runs between a hijack and the loop
	// taking the connection: the window a Close can fall into.
	afterHijack func()

	// The event loops (evloop.go), started with the first connection
	// that enters one. noLoops (tests) keeps every connection on its
	// goroutine.
	noLoops      bool
	loopsMu      sync.Mutex
	loops        []*evloop
	loopsStopped bool
	nextLoop     int
}

func newEdge(r *Router, cfg ServerConfig) *edge {
	e := &edge{
		r:          r,
		header:     cfg.HeaderTimeout,
		idle:       cfg.IdleTimeout,
		writeIdle:  r.cfg.IdleTimeout,
		watchAfter: defaultWatchAfter,
		handoff:    newHandoffListener(),
		innerDone:  make(chan struct{}),
		conns:      make(map[*edgeConn]struct{}),
	}
	e.pool.New = func() any {
		c := &edgeConn{e: e, watchDone: make(chan struct{}, 1), raw: make([]byte, 0, edgeReadBufSize)}
		c.br = bufio.NewReaderSize(c, edgeReadBufSize)
		c.bw = bufio.NewWriterSize(nil, edgeWriteBufSize)
		c.w.h = make(http.Header, 16)
		c.w.pend = make([]byte, 0, pendSize)
		return c
	}
	return e
}

// takes reports whether the loop serves req: HTTP/1.1 without a body,
// Expect or Upgrade, replayable (fastInbound).
func takes(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor < 1 {
		return false
	}
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	return fastInbound(req)
}

// ServeHTTP is the handler of Go's server: it serves req itself, or
// hijacks the connection into the loop.
func (e *edge) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// A connection that ends with this request is not worth the takeover.
	if !takes(req) || req.Close || e.closing.Load() {
		e.r.ServeHTTP(w, req)
		return
	}
	hj, ok := w.(http.Hijacker) // not over HTTP/2
	if !ok {
		e.r.ServeHTTP(w, req)
		return
	}
	// Counted before the hijack, when Go's server still tracks the
	// connection: Shutdown sees it in one count or the other.
	e.active.Add(1)
	defer e.active.Add(-1)
	if e.closing.Load() {
		e.r.ServeHTTP(w, req)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		e.r.ServeHTTP(w, req)
		return
	}
	if e.afterHijack != nil {
		e.afterHijack()
	}
	e.serveConn(nc, brw.Reader, req)
}

// innerHandler is the handler of the server of handed-off connections: it
// gives their requests the TLS state Go's server cannot see.
type innerHandler struct{ e *edge }

type tlsStateKey struct{}

func (h innerHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.TLS == nil {
		if cs, ok := req.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
			req.TLS = cs
		}
	}
	h.e.ServeHTTP(w, req)
}

// serveConn runs the loop on a hijacked connection whose first request,
// first, Go's server parsed; hbr holds what it read beyond.
func (e *edge) serveConn(nc net.Conn, hbr *bufio.Reader, first *http.Request) {
	if hc, ok := nc.(*handoffConn); ok && len(hc.prefix) == 0 {
		nc = hc.Conn // back from a hand-off, with its replayed bytes read
	}
	c := e.pool.Get().(*edgeConn)
	c.nc = nc
	c.tls = first.TLS
	c.remote = first.RemoteAddr
	c.ctx, c.cancel = context.WithCancel(first.Context()) // keeps the server's values
	c.cc, _ = first.Context().Value(clientConnKey{}).(*clientConn)
	if n := hbr.Buffered(); n > 0 {
		b, _ := hbr.Peek(n)
		c.pending = append(c.raw[:0], b...)
		c.raw = make([]byte, 0, edgeReadBufSize) // c.pending owns the other
	}
	c.br.Reset(c)
	c.bw.Reset(nc)
	c.rdl, c.wdl = 0, 0
	// Go's server stopped counting the connection when it was hijacked.
	c.account(1)
	e.runConn(c, first)
}

// runConn serves c's requests on this goroutine from req on, until the
// connection ends, goes to Go's server or to an event loop (evloop.go).
func (e *edge) runConn(c *edgeConn, req *http.Request) {
	e.mu.Lock()
	e.conns[c] = struct{}{}
	if e.closed {
		c.nc.Close() // Close came between the hijack and now: the loop ends at once
	}
	e.mu.Unlock()

	end := c.run(req)

	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	if end == connEnded {
		c.account(-1)
		c.bw.Flush()
		c.nc.Close()
	}
	c.cancel()
	c.nc, c.ctx, c.cancel, c.cc, c.tls, c.pending = nil, nil, nil, nil, nil, nil
	c.bw.Reset(nil)
	e.pool.Put(c)
}

// connEnd is how a connection left its goroutine.
type connEnd uint8

const (
	connEnded     connEnd = iota // closed
	connHandedOff                // given to Go's server
	connLooped                   // given to an event loop
)

// edgeConn is one client connection in the loop. Only its goroutine uses
// it, but for the watch (watchClient).
type edgeConn struct {
	e      *edge
	nc     net.Conn
	tls    *tls.ConnectionState
	remote string
	ctx    context.Context // every request's: canceled when the client hangs up
	cancel context.CancelFunc
	cc     *clientConn // the connection's app, for H22
	br     *bufio.Reader
	bw     *bufio.Writer
	w      edgeWriter
	raw    []byte // the current request's head as read, for a hand-off
	// pending is read before the connection: bytes Go's server or the
	// watch read ahead.
	pending []byte
	rdl     int64 // read deadline set, unix ns (0: unknown)
	wdl     int64 // write deadline set, unix ns
	idle    atomic.Bool

	// up is the dyno connection of the exchange in progress: the watch
	// closes it when the client leaves (upstream.watchCancel).
	up        atomic.Pointer[upConn]
	watching  bool
	aborting  atomic.Bool
	watchBuf  [1]byte
	watchDone chan struct{}
}

// Read is the source of c.br: pending bytes first, then the connection.
func (c *edgeConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.nc.Read(p)
}

// account adds d to the router's connection count and to the app's the
// connection belongs to, if any yet.
func (c *edgeConn) account(d int64) {
	c.e.r.metrics.clientConns.Add(d)
	if c.cc != nil {
		if st := c.cc.app.Load(); st != nil {
			st.conns.Add(d)
		}
	}
}

// run serves requests until the connection ends, is handed off or goes
// to an event loop.
func (c *edgeConn) run(req *http.Request) connEnd {
	for {
		if !c.serve(req) || c.e.closing.Load() || c.ctx.Err() != nil {
			return connEnded
		}
		var end connEnd
		req, end = c.next()
		if req == nil {
			if end == connHandedOff {
				c.handOff()
			}
			return end
		}
	}
}

// serve answers one request; false when the connection must close.
func (c *edgeConn) serve(req *http.Request) (keep bool) {
	c.e.served.Add(1)
	c.armWrite()
	w := &c.w
	w.reset(c, req)
	req = req.WithContext(c.ctx)
	defer func() {
		c.stopWatch()
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.e.r.log.Error("panic serving a request", "remote", c.remote, "panic", p, "stack", string(buf))
			}
			keep = false
		}
	}()
	c.e.r.ServeHTTP(w, req)
	if err := w.finish(); err != nil {
		return false
	}
	return !w.close
}

// next reads the next request. When it returns nil, end says why: the
// connection goes to Go's server (c.raw holds the head read), to an
// event loop, or ends.
func (c *edgeConn) next() (*http.Request, connEnd) {
	if c.br.Buffered() == 0 && len(c.pending) == 0 {
		// Nothing pipelined: the responses go out now.
		if c.bw.Flush() != nil {
			return nil, connEnded
		}
		if c.e.enterLoop(c) {
			return nil, connLooped
		}
		c.idle.Store(true)
		if c.e.closing.Load() {
			return nil, connEnded
		}
		c.armRead(c.e.idle, c.e.idle/50)
		if c.e.closing.Load() {
			return nil, connEnded // shutdown's deadline may have come before ours
		}
		// The client's next request is seldom there yet: the other
		// connections go first, and the read more often finds it rather
		// than failing with EAGAIN and parking (~8 % less CPU per request
		// under load; nothing to wait for when the router is idle).
		runtime.Gosched()
		_, err := c.br.Peek(1)
		c.idle.Store(false)
		if err != nil {
			return nil, connEnded
		}
	}
	n, ok := c.head()
	if !ok {
		return nil, connEnded
	}
	if n < 0 {
		c.raw = c.raw[:0] // too long for the loop: all of it is buffered
		return nil, connHandedOff
	}
	b, _ := c.br.Peek(n)
	c.raw = append(c.raw[:0], b...)
	req := quickRequest(b, nil)
	quick := req != nil
	var err error
	if quick {
		c.br.Discard(n)
	} else {
		before := c.br.Buffered()
		req, err = http.ReadRequest(c.br)
		if used := before - c.br.Buffered(); used > n {
			return nil, connEnded // (cannot happen: the parser stops at the empty line)
		} else if used < n {
			c.br.Discard(n - used) // a parse error before the end: c.raw has it all
		}
	}
	if err != nil || !checkHead(req, quick) || !takes(req) {
		// Go's server answers it as it does (400, 431, 501...), or serves
		// what the loop does not.
		return nil, connHandedOff
	}
	delete(req.Header, "Host")
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	return req, connEnded
}

// head waits until a whole request head is buffered, within
// HeaderTimeout, and returns its length; -1 when it does not fit in the
// buffer; false when the client left or was too slow.
func (c *edgeConn) head() (int, bool) {
	from := 0
	armed := false
	for {
		b, _ := c.br.Peek(c.br.Buffered())
		if n := headEnd(b, from); n > 0 {
			return n, true
		}
		if len(b) >= c.br.Size() {
			return -1, true
		}
		from = max(len(b)-3, 0)
		if !armed {
			c.armRead(c.e.header, 0)
			armed = true
		}
		if _, err := c.br.Peek(len(b) + 1); err != nil && err != bufio.ErrBufferFull {
			return 0, false
		}
	}
}

// headEnd returns the length of the head at the start of b, through its
// empty line, or 0 when b holds no empty line; from is where to look.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return 0
}

// checkHead applies the checks Go's server makes after parsing: one valid
// Host header (ReadRequest took it out of the map; a request in absolute
// form, whose Host may come from the URL, is left to Go's server), valid
// header names and values (unless fieldsChecked: quickRequest checked
// them as it parsed).
func checkHead(req *http.Request, fieldsChecked bool) bool {
	if req.Host == "" || req.URL.Host != "" || !validHostHeader(req.Host) {
		return false
	}
	if fieldsChecked {
		return true
	}
	for k, vs := range req.Header {
		if !validHeaderName(k) {
			return false
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return false
			}
		}
	}
	return true
}

// validHostHeader is httpguts.ValidHostHeader: the bytes RFC 3986 allows
// in a host and port.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '!', '$' <= c && c <= '.', c == ':', c == ';', c == '=', c == '[', c == ']', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// armRead makes the read deadline d from now, unless the one set is
// already within slack of it.
func (c *edgeConn) armRead(d, slack time.Duration) {
	at := nanotime() + int64(d)
	if c.rdl <= at && c.rdl >= at-int64(slack) {
		return
	}
	c.rdl = at
	c.nc.SetReadDeadline(time.Unix(0, at))
}

// armWrite keeps a write deadline on the connection, moved at most every
// writeIdle/50: a client that takes nothing fails the writes (H28), even
// where the request's own accounting sets none.
func (c *edgeConn) armWrite() {
	now := nanotime()
	if c.wdl-now >= int64(c.e.writeIdle)*49/50 {
		return
	}
	c.wdl = now + int64(c.e.writeIdle)
	c.nc.SetWriteDeadline(time.Unix(0, c.wdl))
}

// handOff passes the connection to Go's server, with what was read of it
// first. The responses of earlier pipelined requests go out before.
func (c *edgeConn) handOff() {
	c.e.handoffs.Add(1)
	c.account(-1)
	if c.bw.Flush() != nil {
		c.nc.Close()
		return
	}
	b, _ := c.br.Peek(c.br.Buffered())
	prefix := make([]byte, 0, len(c.raw)+len(b)+len(c.pending))
	prefix = append(append(append(prefix, c.raw...), b...), c.pending...)
	// Go's server sets the deadlines it needs, and no others.
	c.nc.SetReadDeadline(time.Time{})
	c.nc.SetWriteDeadline(time.Time{})
	c.e.pass(&handoffConn{Conn: c.nc, prefix: prefix, tls: c.tls})
}

// watchClient starts watching the client connection while a request
// waits for its dyno: a hang-up cancels the connection's context, which
// ends the exchange with H27, as Go's server's background read does.
func (c *edgeConn) watchClient() {
	if c.watching || c.br.Buffered() > 0 || len(c.pending) > 0 {
		return // a pipelined request is already there
	}
	c.watching = true
	c.aborting.Store(false)
	go func() {
		n, err := c.nc.Read(c.watchBuf[:])
		switch {
		case n > 0:
			c.pending = c.watchBuf[:n]
		case err != nil && !c.aborting.Load() && !isTimeout(err):
			c.cancel()
			if up := c.up.Swap(nil); up != nil {
				up.cancel()
			}
		}
		c.watchDone <- struct{}{}
	}()
}

// stopWatch ends the watch and waits for it.
func (c *edgeConn) stopWatch() {
	if !c.watching {
		return
	}
	c.aborting.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.rdl = 0
	<-c.watchDone
	c.watching = false
}

// edgeOf returns the loop connection a request is served on, if any.
func edgeOf(s *reqState) *edgeConn {
	if w, ok := s.w.ResponseWriter.(*edgeWriter); ok {
		return w.c
	}
	return nil
}

// pass gives a connection to the server of handed-off connections,
// started with the first.
func (e *edge) pass(c net.Conn) {
	e.innerOnce.Do(func() {
		e.innerStarted.Store(true)
		go func() {
			defer close(e.innerDone)
			e.inner.Serve(e.handoff)
		}()
	})
	e.handoff.pass(c)
}

// beginShutdown stops the loop taking connections and requests: idle
// loop connections close now, busy ones after their response.
func (e *edge) beginShutdown() {
	e.closing.Store(true)
	e.mu.Lock()
	for c := range e.conns {
		if c.idle.Load() {
			c.nc.SetReadDeadline(time.Unix(1, 0)) // the loop closes it
		}
	}
	e.mu.Unlock()
	e.shutdownLoops()
	e.handoff.Close()
}

// shutdownInner shuts the server of handed-off connections down, if it
// was started.
func (e *edge) shutdownInner(ctx context.Context) error {
	if !e.stopInner() {
		return nil
	}
	err := e.inner.Shutdown(ctx)
	if err != nil {
		return err
	}
	<-e.innerDone
	return nil
}

// wait waits until no connection is in the loop or on its way into it.
func (e *edge) wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for e.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// closeAll closes every loop connection and the handed-off ones.
func (e *edge) closeAll() {
	e.mu.Lock()
	e.closed = true
	for c := range e.conns {
		c.nc.Close()
	}
	e.mu.Unlock()
	e.stopLoops()
	if e.stopInner() {
		e.inner.Close()
		<-e.innerDone
	}
}

// stopInner keeps the server of handed-off connections from starting
// from now on, and reports whether it had started.
func (e *edge) stopInner() bool {
	e.innerOnce.Do(func() {})
	return e.innerStarted.Load()
}

// handoffConn is a connection handed to Go's server: prefix is read first.
type handoffConn struct {
	net.Conn
	prefix []byte
	tls    *tls.ConnectionState
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener is the listener of handed-off connections.
type handoffListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) pass(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }
