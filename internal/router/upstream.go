package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the pool of kept-alive connections to one dyno. Requests
// without a body that may be replayed (GET, HEAD, OPTIONS, TRACE: most of
// a web app's traffic) are exchanged on the calling goroutine over a pooled
// connection: no per-connection goroutines, no hand-offs between them.
// Everything else (bodies, upgrades, other methods) goes through an
// http.Transport of the dyno's own, as before.
type upstream struct {
	addr      string
	dial      func(ctx context.Context, addr string) (net.Conn, error) // dialError on failure
	firstByte time.Duration                                            // H12
	idle      time.Duration                                            // H15
	gone      *atomic.Bool                                             // the dyno left the table: pool nothing more
	fallback  *http.Transport

	mu    sync.Mutex
	conns []*upConn // idle connections, the most recently used last
}

const (
	maxIdlePerDyno  = 256              // as MaxIdleConnsPerHost of the fallback transport
	idleConnTimeout = 90 * time.Second // Router 2.0's keepalive idle timeout
	upReadBufSize   = 16 << 10
	upWriteBufSize  = 4 << 10
)

// The buffers live with a request, not with an idle connection.
var (
	upReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, upReadBufSize) }}
	upWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, upWriteBufSize) }}
)

// RoundTrip sends req to the dyno.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if !fastPath(req) {
		return u.fallback.RoundTrip(req)
	}
	return u.roundTrip(req.Context(), req, nil)
}

// roundTrip exchanges a bodiless request on a pooled connection. With s
// set, the request is s.req, whose head the router writes itself
// (writeFastRequest) and whose 1xx responses go straight to the client;
// otherwise req is written as Transport would.
func (u *upstream) roundTrip(ctx context.Context, req *http.Request, s *reqState) (*http.Response, error) {
	for {
		c, err := u.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := u.exchange(ctx, c, req, s)
		if err == nil {
			return resp, nil
		}
		// A kept-alive connection the dyno closed while it sat in the
		// pool fails before any byte of a response: the request (without
		// a body, idempotent) goes again on another one, as Transport does.
		if c.reused && c.nread == 0 && ctx.Err() == nil && !isTimeout(err) {
			continue
		}
		return nil, err
	}
}

// CloseIdleConnections closes the idle connections of both paths.
func (u *upstream) CloseIdleConnections() {
	u.mu.Lock()
	conns := u.conns
	u.conns = nil
	u.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
	u.fallback.CloseIdleConnections()
}

// fastPath reports whether req can be exchanged on the calling goroutine:
// plain HTTP, no body, replayable, no protocol upgrade.
func fastPath(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength != 0 || req.URL.Scheme != "http" {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	_, up := req.Header["Upgrade"]
	return !up
}

// get takes the most recently used idle connection, or dials a new one.
func (u *upstream) get(ctx context.Context) (*upConn, error) {
	now := nanotime()
	u.mu.Lock()
	for n := len(u.conns); n > 0; n = len(u.conns) {
		c := u.conns[n-1]
		u.conns[n-1] = nil
		u.conns = u.conns[:n-1]
		if now-c.lastUsed > int64(idleConnTimeout) {
			u.mu.Unlock()
			c.Conn.Close()
			u.mu.Lock()
			continue
		}
		u.mu.Unlock()
		c.reused = true
		return c, nil
	}
	u.mu.Unlock()
	nc, err := u.dial(ctx, u.addr)
	if err != nil {
		return nil, err
	}
	c := &upConn{Conn: nc, idle: int64(u.idle)}
	// Made once per connection rather than once per exchange.
	c.cancel = func() {
		c.canceled.Store(true)
		c.Conn.Close()
	}
	c.unwatch = func() bool { return c.edge.up.CompareAndSwap(c, nil) }
	return c, nil
}

// put returns a connection whose exchange ended cleanly to the pool.
func (u *upstream) put(c *upConn) {
	c.lastUsed = nanotime()
	var drop *upConn
	u.mu.Lock()
	switch {
	case u.gone.Load() || len(u.conns) >= maxIdlePerDyno:
		drop = c
	default:
		if len(u.conns) > 0 && c.lastUsed-u.conns[0].lastUsed > int64(idleConnTimeout) {
			// The least recently used one expired: no timer per connection.
			drop = u.conns[0]
			u.conns = append(u.conns[:0], u.conns[1:]...)
		}
		u.conns = append(u.conns, c)
	}
	u.mu.Unlock()
	if drop != nil {
		drop.Conn.Close()
	}
}

// errUnaskedUpgrade ends a 101 answer to a request that asked for no
// protocol switch.
var errUnaskedUpgrade = errors.New("the dyno switched protocols without being asked to")

// exchange writes req on c and reads the response head. On error c is
// closed; on success the response body owns c.
func (u *upstream) exchange(ctx context.Context, c *upConn, req *http.Request, s *reqState) (*http.Response, error) {
	// The client leaving ends the exchange, as Transport's cancellation does.
	c.canceled.Store(false)
	stop := u.watchCancel(ctx, c, s)
	c.nread = 0
	bw := upWriters.Get().(*bufio.Writer)
	bw.Reset(c.Conn)
	var err error
	if s != nil {
		err = writeFastRequest(bw, s, u.addr)
	} else {
		err = writeRequest(bw, req)
	}
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	upWriters.Put(bw)
	// The dyno's answer is seldom there yet: let the other connections'
	// goroutines run first, so that the read finds it rather than failing
	// with EAGAIN and parking (5-10 % less CPU per request under load).
	runtime.Gosched()
	if err != nil {
		stop()
		c.Conn.Close()
		return nil, u.fail(ctx, c, err)
	}
	c.watch = false
	c.limit = maxResponseHeaders
	br := upReaders.Get().(*bufio.Reader)
	br.Reset(c)
	err = u.awaitHead(ctx, c, br, s)
	var resp *http.Response
	for n := 0; err == nil; n++ {
		resp, err = readResponse(br, req, nil)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode < 100 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: ReverseProxy passes it on through the trace; the final
		// response follows. Transport allows 5 of them.
		if n == 4 {
			err = errors.New("net/http: too many 1xx informational responses")
			break
		}
		if s != nil {
			s.informational(resp)
		} else if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.Got1xxResponse != nil {
			if err = tr.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				break
			}
		}
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = errUnaskedUpgrade
	}
	if err != nil {
		stop()
		c.Conn.Close()
		br.Reset(nil)
		upReaders.Put(br)
		return nil, u.fail(ctx, c, err)
	}
	// The body: no size cap, and each read moves the idle deadline.
	c.limit = math.MaxInt64
	c.watch = true
	c.next = 0
	resp.Body = &upBody{u: u, c: c, br: br, rc: resp.Body, stop: stop, keep: !resp.Close}
	return resp, nil
}

// watchCancel makes the client's leaving end the exchange on c, and
// returns what unregisters it (true when c was not canceled). For a
// request of the edge loop, whose context is its connection's, the loop's
// watch closes c itself: no context.AfterFunc (and its allocations and
// locks) per request.
func (u *upstream) watchCancel(ctx context.Context, c *upConn, s *reqState) func() bool {
	var ec *edgeConn
	if s != nil {
		ec = edgeOf(s)
	}
	if ec == nil || s.Context != ec.ctx {
		return context.AfterFunc(ctx, c.cancel)
	}
	c.edge = ec
	ec.up.Store(c)
	if ctx.Err() != nil && ec.up.CompareAndSwap(c, nil) {
		c.cancel() // the client left before the store
	}
	return c.unwatch
}

// awaitHead sets the deadline of the response head: first byte (H12);
// the idle window (H15) can only be shorter. A request served by the edge
// loop waits watchAfter first, then has its client watched for a hang-up
// (H27) for the rest of the wait.
func (u *upstream) awaitHead(ctx context.Context, c *upConn, br *bufio.Reader, s *reqState) error {
	wait := min(u.firstByte, u.idle)
	var ec *edgeConn
	if s != nil {
		ec = edgeOf(s)
	}
	if ec == nil || ec.e.watchAfter >= wait {
		return c.Conn.SetReadDeadline(time.Now().Add(wait))
	}
	c.Conn.SetReadDeadline(time.Now().Add(ec.e.watchAfter))
	_, err := br.Peek(1)
	switch {
	case err == nil:
		if b, _ := br.Peek(br.Buffered()); len(b) > 9 && b[9] != '1' && headEnd(b, 0) > 0 {
			return nil // a final head is in: no more reads before the body's
		}
	case isTimeout(err) && ctx.Err() == nil:
		c.timedOut = false
		ec.watchClient()
		wait -= ec.e.watchAfter
	default:
		return err
	}
	return c.Conn.SetReadDeadline(time.Now().Add(wait))
}

// fail names an exchange's error the way Transport would, for classify.
func (u *upstream) fail(ctx context.Context, c *upConn, err error) error {
	switch {
	case c.limit <= 0:
		return fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxResponseHeaders)
	case ctx.Err() != nil:
		return ctx.Err()
	case c.timedOut || isTimeout(err):
		// (textproto may report a head cut by the deadline as malformed.)
		return &timeoutError{"net/http: timeout awaiting response headers after " + u.firstByte.String()}
	}
	return err
}

// timeoutError is a net.Error that timed out: H12 to classify.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// upConn is a pooled connection to a dyno.
type upConn struct {
	net.Conn
	limit    int64       // bytes the reader may still take: caps the response head
	nread    int64       // bytes read in the current exchange
	idle     int64       // H15 window, ns
	next     int64       // unix ns after which the deadline moves again
	watch    bool        // reading a body: reads move the idle deadline
	reused   bool        // taken from the pool
	timedOut bool        // a read hit the deadline
	canceled atomic.Bool // the request's context ended: the connection was closed for it
	cancel   func()      // sets canceled and closes the connection
	edge     *edgeConn   // the loop connection of the exchange, if any
	unwatch  func() bool // the stop of watchCancel for the loop's requests
	lastUsed int64       // unix ns it went back to the pool
}

func (c *upConn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errors.New("response head too long")
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	if c.watch {
		// The window starts anew at most every idle/50: cheap per read.
		if now := nanotime(); now >= c.next {
			c.next = now + c.idle/50
			c.Conn.SetReadDeadline(time.Unix(0, now+c.idle))
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil && isTimeout(err) {
		c.timedOut = true
	}
	c.limit -= int64(n)
	c.nread += int64(n)
	return n, err
}

// upBody is a response body on a pooled connection: read to its end, the
// connection goes back to the pool (when the response allows it); closed
// before, it is discarded, with whatever the dyno still had to send.
type upBody struct {
	u    *upstream
	c    *upConn
	br   *bufio.Reader
	rc   io.ReadCloser // the body as http.ReadResponse framed it
	stop func() bool   // unregisters the cancellation
	keep bool
	done bool
	err  error // what later reads return
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if err != nil {
		if err != io.EOF && b.c.canceled.Load() {
			// Closed because the client left, not broken by the dyno.
			err = context.Canceled
		}
		b.finish(err == io.EOF)
		b.err = err
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
		b.err = errors.New("http: read on closed response body")
	}
	return nil
}

func (b *upBody) finish(eof bool) {
	b.done = true
	// The buffer must be empty: bytes past the response are not HTTP.
	reuse := b.stop() && eof && b.keep && b.br.Buffered() == 0
	b.br.Reset(nil)
	upReaders.Put(b.br)
	b.br = nil
	if reuse {
		b.c.watch = false
		b.u.put(b.c)
	} else {
		b.c.Conn.Close()
	}
}

// writeRequest writes req's head as Transport would for a request without
// a body: request line, Host, User-Agent, the other headers as they are.
func writeRequest(w *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHost(host) {
		return fmt.Errorf("net/http: invalid Host header %q", host)
	}
	for k, vs := range req.Header {
		if !validHeaderName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if vs, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(vs) > 0 && vs[0] != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(textproto.TrimString(vs[0]))
		w.WriteString("\r\n")
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(textproto.TrimString(v))
			w.WriteString("\r\n")
		}
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// What Transport sends for the other methods without a body.
		w.WriteString("Content-Length: 0\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return false
		}
	}
	return true
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == '!', c == '#', c == '$', c == '%', c == '&', c == '\'',
			c == '*', c == '+', c == '^', c == '`', c == '|', c == '~':
		default:
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
