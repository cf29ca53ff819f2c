package router

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"
)

// reqState is what the router knows about one request in flight. The
// proxy's hooks (rewrite, round trip, response, error) find it in the
// request context.
type reqState struct {
	req       *http.Request // inbound
	w         responseWriter
	host      string // Host without port
	start     time.Time
	requestID string
	fwd       string // X-Forwarded-For sent to the dyno
	app       *app   // routes snapshot the request is served from
	body      trackedBody
	hdr       [6]string // values of the headers added for the dyno

	// Set by the proxy goroutine only.
	dyno       string // dyno of the current (last) attempt
	dispatched time.Time
	phase      phase
	status     int    // dyno's response status
	code       *hcode // router error, nil when the dyno answered

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

func stateOf(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

// pick chooses the dyno for an attempt, skipping those already tried. It is
// random for now (Heroku's default); the later least-outstanding P2C
// balancer replaces this function.
func pick(up []backend, tried []int) int {
	n := len(up)
	i := rand.IntN(n)
	for range n {
		seen := false
		for _, t := range tried {
			if t == i {
				seen = true
				break
			}
		}
		if !seen {
			return i
		}
		i = (i + 1) % n
	}
	return -1
}

// retryTransport sends a request to a dyno of the app and, when the
// connection cannot be established and nothing of the body was read, tries
// another up dyno: at most maxAttempts attempts, one per dyno.
type retryTransport struct{ r *Router }

func (t retryTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	s := stateOf(out.Context())
	if s == nil {
		return nil, errors.New("router: request without routing state")
	}
	up := s.app.up
	if len(up) == 0 {
		return nil, &dialError{addr: "(none)", err: errors.New("no up web dyno")}
	}
	var tried [maxAttempts]int
	attempts := min(maxAttempts, len(up))
	var err error
	for n := 0; n < attempts; n++ {
		i := pick(up, tried[:n])
		tried[n] = i
		req := out
		if n > 0 {
			// A fresh request per retry: the transport may still hold
			// the previous one.
			req = out.Clone(out.Context())
		}
		req.URL.Host = up[i].endpoint
		s.dyno = up[i].name
		s.phase = phaseDialed
		s.connect.Store(0)
		var resp *http.Response
		resp, err = t.r.transport.RoundTrip(req)
		var de *dialError
		if !errors.As(err, &de) {
			s.phase = phaseSent
			return resp, err
		}
		if s.body.read.Load() || out.Context().Err() != nil {
			return nil, err
		}
	}
	return nil, err
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
	v[0], v[1], v[2] = s.fwd, "http", localPort(pr.In)
	v[3], v[4], v[5] = s.requestID, strconv.FormatInt(s.start.UnixMilli(), 10), "1.1 dyno"
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
		out.Body = &s.body
	}
}

// modifyResponse records the dyno's status and echoes X-Request-Id unless
// the app set its own.
func (r *Router) modifyResponse(resp *http.Response) error {
	s := stateOf(resp.Request.Context())
	if s == nil {
		return nil
	}
	s.status = resp.StatusCode
	if _, ok := resp.Header["X-Request-Id"]; ok {
		s.w.Header().Del("X-Request-Id")
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
	s.code = classify(err, s.req.Context().Err() != nil)
	r.log.Debug("proxy error", "code", s.code.code, "dyno", s.dyno, "err", err)
	if s.code == errH27 {
		return // nobody to answer
	}
	// Straight to the client: bytes= counts only what came from the dyno.
	writePage(s.w.ResponseWriter, s.code.status, applicationErrorPage, applicationErrorLen)
}

// newTransport is the pool of connections to dynos.
func (r *Router) newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // dynos are reached directly, whatever the environment says
		DialContext:           r.dial,
		MaxIdleConns:          0, // no global limit; the per-dyno one applies
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second, // Router 2.0's keepalive idle timeout
		ResponseHeaderTimeout: r.cfg.FirstByteTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through as the dyno sent them
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// dial connects to a dyno, measures the time it took for the log line, and
// marks failures as dialError so the round trip may retry elsewhere.
func (r *Router) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	start := r.now()
	c, err := r.dialer.DialContext(ctx, network, addr)
	// The transport keeps the request's context values for its dials.
	if s := stateOf(ctx); s != nil {
		s.connect.Store(int64(r.now().Sub(start)))
	}
	if err != nil {
		return nil, &dialError{addr: addr, err: err}
	}
	return c, nil
}

// trackedBody remembers whether the transport started reading the request
// body: until then, a request may be retried on another dyno.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
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
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	if err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	return n, err
}

// FlushError is what http.ResponseController (and so ReverseProxy) calls.
func (w *responseWriter) FlushError() error {
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
