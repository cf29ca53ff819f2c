package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// reqState is what the router knows about one request in flight. The
// proxy's hooks (rewrite, round trip, response, error) find it in the
// request context.
type reqState struct {
	// The inbound request's context; reqState is the context the proxy
	// sees, which saves a context.WithValue per request (Value below).
	context.Context
	req       *http.Request // inbound
	w         responseWriter
	host      string // Host without port
	start     time.Time
	requestID string
	fwd       string // X-Forwarded-For sent to the dyno
	name      string // app name, to find its current routes on a retry
	app       *app   // routes snapshot the request is served from
	body      trackedBody
	hdr       [6]string // values of the headers added for the dyno
	port      int       // the port the client connected to (0: from the request's context)

	// Set by the proxy goroutine only.
	dyno       string // dyno of the current (last) attempt
	dispatched time.Time
	phase      phase
	status     int    // dyno's response status
	code       *hcode // router error, nil when the dyno answered
	cause      string // H26: what was wrong with the request
	picked     *dyno  // dyno of the current attempt, holding an outstanding count
	respBody   trackedResponse
	rc         http.ResponseController // the client connection's deadlines

	connect atomic.Int64 // ns to connect to the dyno; written by the dial goroutine
}

// phase is how far a request got towards a dyno; it decides which log
// fields are known.
type phase uint8

const (
	phaseRouting phase = iota // no dyno chosen yet
	phaseDialed               // connecting to a dyno (connect= known)
	phaseSent                 // connected; the dyno has the request (service=, bytes= known)
)

type stateKey struct{}

// Value makes a reqState the context of its own request.
func (s *reqState) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return s
	}
	return s.Context.Value(key)
}

func stateOf(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

// claim makes d the dyno of the request's next attempt: d holds an
// outstanding count until the request ends or the next attempt.
func (s *reqState) claim(d *dyno) {
	d.outstanding.Add(1)
	if s.picked != nil {
		s.picked.release()
	}
	s.picked = d
	s.dyno = d.name
	s.phase = phaseDialed
	s.connect.Store(0)
}

// retryTransport sends a request to a dyno of the app. When the
// connection cannot be established and nothing of the body was read, it
// quarantines that dyno (in this router) and tries another: at most
// maxAttempts attempts, one per dyno, then H19/H21. When every dyno is
// quarantined it waits for one to come out, up to ConnectWait, then H99.
// An idempotent request without a body whose dyno left the table while its
// kept-alive connection broke is sent to another dyno as well.
type retryTransport struct{ r *Router }

// errAllQuarantined ends a request whose app's dynos all stayed in
// quarantine for ConnectWait.
var errAllQuarantined = errors.New("every web dyno is in connect quarantine")

func (t retryTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	s := stateOf(out.Context())
	if s == nil {
		return nil, errors.New("router: request without routing state")
	}
	return t.r.roundTrip(s, out)
}

// roundTrip is retryTransport's loop. out nil means the fast path: s.req
// (bodiless, replayable) goes over the dyno's pooled connections with the
// head written by writeFastRequest.
func (r *Router) roundTrip(s *reqState, out *http.Request) (*http.Response, error) {
	ctx := context.Context(s)
	if out != nil {
		ctx = out.Context()
	}
	a := s.app
	var tried [maxAttempts]*dyno
	n := 0
	var err error
	var waitDeadline time.Time // set once the request waits on quarantines
	for {
		d := a.pick(tried[:n])
		if d == nil {
			end, untried := a.quarantineEnd(tried[:n])
			if !untried && waitDeadline.IsZero() {
				if err == nil {
					err = &dialError{addr: "(none)", err: errors.New("no up web dyno")}
				}
				return nil, err
			}
			// Every dyno left is quarantined: wait for the first one out
			// (or a table change), up to ConnectWait, then H99.
			if waitDeadline.IsZero() {
				waitDeadline = r.now().Add(r.cfg.ConnectWait)
			}
			if !untried {
				n = 0 // waited before: the quarantines decide, not the tries
				end, _ = a.quarantineEnd(nil)
			}
			var ok bool
			if a, ok = r.waitQuarantine(ctx, s, end, waitDeadline); !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errAllQuarantined
			}
			continue
		}
		if n == maxAttempts {
			return nil, err
		}
		tried[n] = d
		n++
		s.claim(d)
		var resp *http.Response
		if out == nil {
			resp, err = d.transport.roundTrip(ctx, s.req, s)
		} else {
			req := out
			if n > 1 || !waitDeadline.IsZero() {
				// A fresh request per retry: the transport may still hold
				// the previous one.
				req = out.Clone(ctx)
			}
			req.URL.Host = d.endpoint
			resp, err = d.transport.RoundTrip(req)
		}
		if err == nil {
			s.phase = phaseSent
			return resp, nil
		}
		if ctx.Err() != nil || s.body.read.Load() {
			s.phase = max(s.phase, phaseSent)
			return nil, err
		}
		var de *dialError
		if errors.As(err, &de) {
			d.quarantine.Store(nanotime() + int64(r.cfg.Quarantine))
		} else if !(d.gone.Load() && (out == nil || replayable(out)) && !isTimeout(err)) {
			s.phase = phaseSent
			return nil, err
		}
		if n == maxAttempts && waitDeadline.IsZero() {
			return nil, err
		}
		// Routes may have changed since the request started.
		if cur := r.table.Load().apps[s.name]; cur != nil {
			a = cur
		}
	}
}

// waitQuarantine waits until the earliest quarantine ends (end, unix ns),
// the routes change, or the deadline passes; it returns the app's current
// routes, false at the deadline or when the client left.
func (r *Router) waitQuarantine(ctx context.Context, s *reqState, end int64, deadline time.Time) (*app, bool) {
	t := r.table.Load()
	wait := time.Duration(end - nanotime())
	if left := deadline.Sub(r.now()); left <= 0 {
		return nil, false
	} else if wait > left || wait <= 0 && end == 0 {
		wait = left
	}
	tm := time.NewTimer(max(wait, time.Millisecond))
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-t.changed:
	case <-ctx.Done():
		return nil, false
	}
	if !r.now().Before(deadline) {
		return nil, false
	}
	a := r.table.Load().apps[s.name]
	if a == nil || len(a.up) == 0 {
		return nil, false
	}
	return a, true
}

// replayable reports whether a request may be sent again to another dyno:
// idempotent and without a body.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rewrite turns the inbound request into the one the dyno gets.
func (r *Router) rewrite(pr *httputil.ProxyRequest) {
	s := stateOf(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "dyno" // the round trip sets the chosen dyno's endpoint
	// Out.Host keeps the client's Host: apps see the name they were called by.
	// One backing array for the header values: fewer allocations per request.
	v := &s.hdr
	v[0], v[1], v[2] = s.fwd, scheme(pr.In), localPort(pr.In)
	v[4], v[5] = strconv.FormatInt(s.start.UnixMilli(), 10), "1.1 dyno"
	h := out.Header
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Forwarded-Proto"] = v[1:2:2]
	h["X-Forwarded-Port"] = v[2:3:3]
	h["X-Request-Id"] = v[3:4:4]
	h["X-Request-Start"] = v[4:5:5]
	if via := h["Via"]; len(via) > 0 {
		h["Via"] = append(via, v[5])
	} else {
		h["Via"] = v[5:6:6]
	}
	if out.Body != nil {
		s.body.rc = out.Body
		s.body.rctl = &s.rc
		s.body.idle = int64(r.cfg.IdleTimeout)
		out.Body = &s.body
	}
}

// Response limits (heroku.md §2.3): a longer header line or cookie is
// refused with H25; the whole header is capped by the transport.
const (
	maxResponseHeaderLine = 512 << 10
	maxSetCookie          = 8192
	maxResponseHeaders    = 1 << 20
)

// modifyResponse enforces the response limits, records the dyno's status,
// watches the body for idleness (H15) and echoes X-Request-Id unless the
// app set its own.
func (r *Router) modifyResponse(resp *http.Response) error {
	s := stateOf(resp.Request.Context())
	if s == nil {
		return nil
	}
	s.status = resp.StatusCode
	if code := checkResponse(resp); code != nil {
		resp.Body.Close()
		return &restrictionError{code}
	}
	if _, ok := resp.Header["X-Request-Id"]; ok {
		s.w.Header().Del("X-Request-Id")
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
		// (An upgrade's body is the connection itself and must stay an
		// io.ReadWriteCloser.)
		s.respBody.rc = resp.Body
		resp.Body = &s.respBody
	}
	return nil
}

// checkResponse applies the response limits; nil when the response passes.
func checkResponse(resp *http.Response) *hcode {
	// "HTTP/1.1 200" without a reason phrase: Go's parser gives Status "200".
	if resp.ProtoMajor == 1 && strings.IndexByte(resp.Status, ' ') < 0 {
		return errH25Status
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			switch {
			case len(k)+2+len(v) > maxResponseHeaderLine:
				return errH25Header
			case len(v) > maxSetCookie && k == "Set-Cookie":
				return errH25Cookie
			}
		}
	}
	return nil
}

// proxyError answers a request the dyno could not: Heroku's page and code.
func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	s := stateOf(req.Context())
	if s == nil {
		writePage(w, http.StatusBadGateway, applicationErrorPage, applicationErrorLen)
		return
	}
	r.failRequest(s, err)
}

// failRequest classifies why a request got no response from a dyno and
// answers the client, unless it is gone.
func (r *Router) failRequest(s *reqState, err error) {
	switch {
	case isTimeout(s.body.err):
		s.code = errH28 // the client stopped sending its body
	case errors.Is(err, errAllQuarantined):
		s.code = errH99
	default:
		s.code = classify(err, s.req.Context().Err() != nil)
	}
	r.log.Debug("proxy error", "code", s.code.code, "dyno", s.dyno, "err", err)
	if s.code == errH27 || s.code == errH28 {
		return // nobody to answer
	}
	// Straight to the client: bytes= counts only what came from the dyno.
	writeError(s.w.ResponseWriter, s.code)
}

// newDyno makes the state of a dyno that came up, with its own pool of
// kept-alive connections.
func (r *Router) newDyno(key, name, endpoint string) *dyno {
	d := &dyno{key: key, name: name, endpoint: endpoint}
	d.transport = &upstream{
		addr:      endpoint,
		dial:      r.dialDyno,
		firstByte: r.cfg.FirstByteTimeout,
		idle:      r.cfg.IdleTimeout,
		gone:      &d.gone,
		fallback:  r.newTransport(),
	}
	return d
}

// newAppState makes and registers the counters of an app.
func (r *Router) newAppState(string) *appState {
	st := &appState{}
	r.registry.add(st)
	return st
}

// newTransport is the pool of connections to one dyno.
func (r *Router) newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil, // dynos are reached directly, whatever the environment says
		DialContext:            r.dial,
		MaxIdleConns:           0, // no global limit; the per-dyno one applies
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second, // Router 2.0's keepalive idle timeout
		ResponseHeaderTimeout:  r.cfg.FirstByteTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaders,
		DisableCompression:     true, // pass bodies through as the dyno sent them
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
}

// dialDyno connects to a dyno, measures the time it took for the log line,
// and marks failures as dialError so the round trip may retry elsewhere.
func (r *Router) dialDyno(ctx context.Context, addr string) (net.Conn, error) {
	start := r.now()
	c, err := r.dialer.DialContext(ctx, "tcp", addr)
	if err == nil {
		c = newSysConn(c)
	}
	// The request's context reaches the dial (Transport keeps its values).
	if s := stateOf(ctx); s != nil {
		s.connect.Store(int64(r.now().Sub(start)))
	}
	if err != nil {
		return nil, &dialError{addr: addr, err: err}
	}
	return c, nil
}

// dial is the fallback Transport's dialer: the connection times out after
// IdleTimeout without a byte either way (H15).
func (r *Router) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := r.dialDyno(ctx, addr)
	if err != nil {
		return nil, err
	}
	ic := &idleConn{Conn: c, idle: int64(r.cfg.IdleTimeout)}
	ic.touch()
	return ic, nil
}

// idleConn is a connection to a dyno whose reads fail after idle ns
// without traffic in either direction. The deadline moves at most every
// idle/50, which keeps the cost off most reads and writes.
type idleConn struct {
	net.Conn
	idle int64
	next atomic.Int64 // unix ns after which the deadline is moved again
}

func (c *idleConn) touch() {
	now := nanotime()
	if now < c.next.Load() {
		return
	}
	c.next.Store(now + c.idle/50)
	c.Conn.SetReadDeadline(time.Unix(0, now+c.idle))
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.touch()
	return c.Conn.Write(p)
}

// trackedResponse notes the error that ended the copy of a dyno's
// response body, to tell H15 (idle) from H18 (broken).
type trackedResponse struct {
	rc  io.ReadCloser
	err error
}

func (b *trackedResponse) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *trackedResponse) Close() error { return b.rc.Close() }

// trackedBody remembers whether the transport started reading the request
// body: until then, a request may be retried on another dyno. It also
// gives up on a client that sends nothing for idle (H28).
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
	err  error // what ended the read, if not EOF
	rctl *http.ResponseController
	idle int64
	next int64 // unix ns after which the deadline is moved again
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	if b.rctl != nil {
		if now := nanotime(); now >= b.next {
			b.next = now + b.idle/50
			b.rctl.SetReadDeadline(time.Unix(0, now+b.idle))
		}
	}
	n, err := b.rc.Read(p)
	if err != nil {
		if err != io.EOF {
			b.err = err
		}
		if b.rctl != nil {
			// Nothing more to wait for: Go's server reads on in the
			// background, and a deadline there would cancel the request.
			b.rctl.SetReadDeadline(time.Time{})
			b.rctl = nil
		}
	}
	return n, err
}

// Close passes on only once the body was read: the transport closes the
// body after a failed dial, and ReverseProxy's body refuses reads after
// Close, which would rule out the retry. ReverseProxy closes it itself
// when the request ends.
func (b *trackedBody) Close() error {
	if !b.read.Load() {
		return nil
	}
	return b.rc.Close()
}

// responseWriter counts what goes to the client and notes whether writing
// to it failed (the client went away).
type responseWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	writeErr error
	// A client that takes nothing for idle fails the write (H28).
	rctl *http.ResponseController
	idle int64
	next int64 // unix ns after which the write deadline is moved again
}

// unblockedOutput is what a response may write without a write deadline:
// the server's buffer and a socket's send buffer take it whole, so the
// writes cannot block on a client that reads nothing. Most responses fit,
// and are spared setting and clearing the deadline.
const unblockedOutput = 8 << 10

// touch moves the client's write deadline, at most every idle/50, before
// n more bytes are written (or flushed: force).
func (w *responseWriter) touch(n int, force bool) {
	if w.rctl == nil || w.next == 0 && !force && w.bytes+int64(n) <= unblockedOutput {
		return
	}
	if now := nanotime(); now >= w.next {
		w.next = now + w.idle/50
		w.rctl.SetWriteDeadline(time.Unix(0, now+w.idle))
	}
}

// done clears the write deadline, so a kept-alive connection's next
// request does not inherit it.
func (w *responseWriter) done() {
	if w.rctl != nil && w.next != 0 {
		w.rctl.SetWriteDeadline(time.Time{})
	}
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.touch(len(p), false)
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return n, err
}

// FlushError is what http.ResponseController (and so ReverseProxy) calls.
func (w *responseWriter) FlushError() error {
	w.touch(0, true)
	var err error
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	default:
		return http.ErrNotSupported
	}
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return err
}

// Flush makes the writer an http.Flusher for handlers that check for one.
func (w *responseWriter) Flush() { w.FlushError() }

// Unwrap lets http.ResponseController reach the connection (Hijack for
// protocol upgrades such as WebSocket).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool recycles the proxy's copy buffers without allocating: a
// bounded free list.
type bufferPool struct {
	free chan []byte
	size int
}

func newBufferPool(n, size int) *bufferPool {
	return &bufferPool{free: make(chan []byte, n), size: size}
}

func (p *bufferPool) Get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) != p.size {
		return
	}
	select {
	case p.free <- b[:p.size]:
	default:
	}
}
