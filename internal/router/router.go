// Package router owns the routing mesh's HTTP edge: it mirrors app names,
// web dyno statuses, apps (maintenance, current release) and releases
// (routing policy) from the store into an in-memory route table (by
// watches, swapped atomically), answers requests for <app>.<domain> by
// proxying them to one of the app's up web dynos (least outstanding of two
// random choices by default, see PolicyVar), and reports each request as
// one Heroku-format router log line and in Prometheus metrics. Router errors answer Heroku's H
// codes with a plain HTML page (heroku.md §2).
package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Config configures a Router. Zero values pick Heroku's defaults.
type Config struct {
	// Domain is the apps' parent domain: app "hello" answers at Host
	// "hello.<Domain>" on any port, case-insensitively. Default "localhost".
	Domain string
	// Logs receives one router log line per request to a known app.
	Logs LogSink
	// Logger reports the router's own trouble (store watches).
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// FirstByteTimeout bounds the wait for a dyno's response headers,
	// else 503 H12. Default 30 s.
	FirstByteTimeout time.Duration
	// StartingWait is how long a request waits for a starting web dyno to
	// come up, else 503 H20. Default 75 s.
	StartingWait time.Duration
	// IdleTimeout is the rolling window after the first byte: a dyno that
	// sends nothing for it fails the request with H15, a client that
	// sends (or takes) nothing with H28. Default 55 s.
	IdleTimeout time.Duration
	// ConnectTimeout bounds a connection to a dyno, else H19. Default 5 s.
	ConnectTimeout time.Duration
	// Quarantine is how long a dyno that refused or timed out a
	// connection is left out of this router's choices. Default 5 s.
	Quarantine time.Duration
	// ConnectWait is how long a request waits while every dyno of its
	// app is quarantined, else H99. Default 75 s.
	ConnectWait time.Duration
	// BacklogPerDyno caps an app's requests in this router at this many
	// per up web dyno, else an immediate H11. Default 200.
	BacklogPerDyno int
	// MaxAppConns caps the client connections whose first request went
	// to one app, else H22. Counted only on servers made by
	// NewHTTPServer. Default 10000.
	MaxAppConns int
	// BusyPoll, when positive, is how long an event loop that ran out
	// of events polls for more before it sleeps; a loop polls only under
	// steady load, while nearly all its recent idle periods were shorter
	// (busypoll.go). Zero (the default) or negative: loops never poll.
	BusyPoll time.Duration
}

// LogSink takes router log lines; logplex implements it. Publish must not
// block for long: it is called on the request path.
type LogSink interface {
	Publish(appID string, line model.LogLine)
}

// Router is the HTTP edge of the routing mesh. Run keeps its route table
// current; ServeHTTP proxies requests. It is safe for concurrent use.
type Router struct {
	cfg       Config
	domain    string // ".<domain>", lower case
	store     *store.Store
	log       *slog.Logger
	now       func() time.Time
	table     atomic.Pointer[table]
	ready     chan struct{}
	readyOnce sync.Once
	proxy     *httputil.ReverseProxy
	bufs      *bufferPool // ReverseProxy's body copy buffers
	copyBufs  sync.Pool   // the fast path's: *[copyBufSize]byte, per-P caches
	dialer    net.Dialer
	// waiting counts the requests waiting for a starting dyno.
	waiting  atomic.Int64
	registry appRegistry   // every app's counters, for /metrics
	metrics  routerMetrics // router-wide counters
	// custom maps custom domains to app names (domains.go).
	custom atomic.Pointer[customHosts]
	ids    requestIDs
}

const (
	defaultFirstByteTimeout = 30 * time.Second
	defaultStartingWait     = 75 * time.Second
	defaultIdleTimeout      = 55 * time.Second
	// Heroku's 5 s upstream connect limit (H19 after it), and the
	// quarantine of a dyno that failed one.
	defaultConnectTimeout = 5 * time.Second
	defaultQuarantine     = 5 * time.Second
	defaultConnectWait    = 75 * time.Second
	defaultBacklogPerDyno = 200
	defaultMaxAppConns    = 10000
	// maxAttempts is Heroku's limit on connection attempts per request.
	maxAttempts = 10
)

// New returns a router reading routes from st. Call Run to load and follow
// the route table; until it is loaded, requests wait (up to StartingWait).
func New(cfg Config, st *store.Store) *Router {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = defaultFirstByteTimeout
	}
	setDefault(&cfg.StartingWait, defaultStartingWait)
	setDefault(&cfg.IdleTimeout, defaultIdleTimeout)
	setDefault(&cfg.ConnectTimeout, defaultConnectTimeout)
	setDefault(&cfg.Quarantine, defaultQuarantine)
	setDefault(&cfg.ConnectWait, defaultConnectWait)
	setDefault(&cfg.BacklogPerDyno, defaultBacklogPerDyno)
	setDefault(&cfg.MaxAppConns, defaultMaxAppConns)
	r := &Router{
		cfg:    cfg,
		domain: "." + strings.ToLower(strings.Trim(cfg.Domain, ".")),
		store:  st,
		log:    cfg.Logger.With("component", "router"),
		now:    cfg.Now,
		ready:  make(chan struct{}),
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second},
	}
	r.ids.init()
	r.table.Store(newTable(nil))
	r.bufs = newBufferPool(1024, copyBufSize)
	r.copyBufs.New = func() any { return new([copyBufSize]byte) }
	r.proxy = &httputil.ReverseProxy{
		Rewrite:   r.rewrite,
		Transport: retryTransport{r},
		// 0: ReverseProxy flushes at once for bodies of unknown length and for
		// event streams, and otherwise lets the server buffer: -1 would cost
		// a goroutine and a second write per response.
		FlushInterval:  0,
		BufferPool:     r.bufs,
		ModifyResponse: r.modifyResponse,
		ErrorHandler:   r.proxyError,
		ErrorLog:       slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	return r
}

func setDefault[T time.Duration | int](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Ready is closed once the initial route table is loaded.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// ServeHTTP routes one request by its Host to a web dyno of the app.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := r.now()
	host, name, ok := r.appName(req.Host)
	if !ok {
		name, ok = r.customName(host) // a custom domain (domains.go)
	}
	if !ok {
		r.metrics.unknownHost.Add(1)
		writePage(w, http.StatusNotFound, noSuchAppPage, noSuchAppLen)
		return
	}
	if !r.waitReady(req.Context()) {
		// No table yet, so no app to log to: say so in the router's log.
		r.log.Warn("request before the route table could be loaded: is the store reachable?", "host", host)
		writePage(w, http.StatusServiceUnavailable, applicationErrorPage, applicationErrorLen)
		return
	}
	t := r.table.Load()
	a := t.apps[name]
	if a == nil {
		r.metrics.unknownHost.Add(1)
		writePage(w, http.StatusNotFound, noSuchAppPage, noSuchAppLen)
		return
	}

	s := r.newState(new(reqState), w, req, host, name, a, start, true)
	st := a.state
	st.inflight.Add(1)
	defer st.inflight.Add(-1)
	cc, _ := req.Context().Value(clientConnKey{}).(*clientConn)
	if s.code, s.cause = r.admit(req, a, cc); s.code != nil {
		if s.code == errH22 {
			w.Header().Set("Connection", "close")
		}
		writeError(w, s.code)
		r.finish(s)
		return
	}
	if len(a.up) == 0 {
		a, s.code = r.awaitUp(req.Context(), t, name)
		if s.code != nil {
			if s.code != errH27 {
				writeError(w, s.code)
			}
			r.finish(s)
			return
		}
		s.app = a
	}

	s.dispatched = r.now()
	defer func() {
		if s.picked != nil {
			s.picked.release()
		}
		s.w.done()
		if p := recover(); p != nil {
			// ReverseProxy aborts with http.ErrAbortHandler when the body
			// copy breaks after the headers went out: log, then let the
			// server drop the connection.
			if s.code == nil {
				switch {
				case isTimeout(s.w.writeErr):
					s.code = errH28
				case s.w.writeErr != nil || req.Context().Err() != nil &&
					(s.respBody.err == nil || errors.Is(s.respBody.err, context.Canceled)):
					s.code = errH27
				case isTimeout(s.respBody.err):
					s.code = errH15
				default:
					s.code = errH18
				}
			}
			r.finish(s)
			panic(p)
		}
		r.finish(s)
	}()
	if fastInbound(req) {
		r.serveFast(s) // fast.go
		return
	}
	r.proxy.ServeHTTP(&s.w, req.WithContext(s)) // s is the context: no extra value layer
}

// newState makes s the state of a request to app a: its request ID (the
// client's when valid), X-Forwarded-For, and the X-Request-Id of the
// response. deadlines says whether the writer may move the client's write
// deadline (the event loop keeps its own).
func (r *Router) newState(s *reqState, w http.ResponseWriter, req *http.Request, host, name string, a *app, start time.Time, deadlines bool) *reqState {
	*s = reqState{Context: req.Context(), req: req, host: host, name: name, start: start, app: a}
	s.w = responseWriter{ResponseWriter: w, idle: int64(r.cfg.IdleTimeout)}
	if deadlines {
		s.rc = *http.NewResponseController(w)
		s.w.rctl = &s.rc
	}
	s.requestID = req.Header.Get("X-Request-Id")
	if !validRequestID(s.requestID) {
		s.requestID = r.ids.next()
	}
	s.fwd = forwardedFor(req)
	// The value's backing array is the one rewrite sends to the dyno.
	s.hdr[3] = s.requestID
	w.Header()["X-Request-Id"] = s.hdr[3:4:4]
	return s
}

// admit applies the checks made before a request may go to a dyno: the
// request's own validity (H26), maintenance mode (H80), a blank app (H81),
// the app's connection limit (H22) and backlog (H11). cc is the client
// connection, when counted (NewHTTPServer).
func (r *Router) admit(req *http.Request, a *app, cc *clientConn) (*hcode, string) {
	if code, cause := checkRequest(req); code != nil {
		return code, cause
	}
	switch {
	case a.maintenance:
		return errH80, ""
	case a.blank:
		return errH81, ""
	}
	if cc != nil && cc.app.Load() == nil {
		// The first request of a connection ties it to its app.
		if cc.app.CompareAndSwap(nil, a.state) && a.state.conns.Add(1) > int64(r.cfg.MaxAppConns) {
			return errH22, ""
		}
	}
	if a.state.inflight.Load() > int64(r.cfg.BacklogPerDyno*max(len(a.up), 1)) {
		return errH11, ""
	}
	return nil, ""
}

// waitReady waits for the first route table, at most StartingWait.
func (r *Router) waitReady(ctx context.Context) bool {
	select {
	case <-r.ready:
		return true
	default:
	}
	t := time.NewTimer(r.cfg.StartingWait)
	defer t.Stop()
	select {
	case <-r.ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// awaitUp handles an app without an up web dyno: it waits for a starting
// one (woken by table changes, never polling) or names the error.
func (r *Router) awaitUp(ctx context.Context, t *table, name string) (*app, *hcode) {
	var timeout <-chan time.Time
	for {
		a := t.apps[name]
		switch {
		case a == nil:
			return nil, errH14 // the app went away while we waited
		case len(a.up) > 0:
			return a, nil
		case a.starting > 0:
			// wait below
		case a.crashed > 0:
			return nil, errH10
		default:
			return nil, errH14
		}
		if timeout == nil {
			tm := time.NewTimer(r.cfg.StartingWait)
			defer tm.Stop()
			timeout = tm.C
			r.waiting.Add(1)
			defer r.waiting.Add(-1)
		}
		select {
		case <-t.changed:
			t = r.table.Load()
		case <-timeout:
			return nil, errH20
		case <-ctx.Done():
			return nil, errH27
		}
	}
}

// finish accounts for a request: its metrics and its router log line.
func (r *Router) finish(s *reqState) {
	now := r.now()
	s.app.state.metrics.observe(s.logStatus(), s.code, now.Sub(s.start))
	if r.cfg.Logs != nil {
		r.cfg.Logs.Publish(s.app.id, s.logLine(now))
	}
}

// appName extracts the app name from a Host header: "<app>.<domain>" with
// any port, case-insensitive. host is the header without its port.
func (r *Router) appName(hostport string) (host, name string, ok bool) {
	host = hostport
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	h := strings.TrimSuffix(host, ".")
	if len(h) <= len(r.domain) || !strings.EqualFold(h[len(h)-len(r.domain):], r.domain) {
		return host, "", false
	}
	name = h[:len(h)-len(r.domain)]
	if strings.IndexByte(name, '.') >= 0 {
		return host, "", false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			name = strings.ToLower(name)
			break
		}
	}
	return host, name, true
}

// forwardedFor is the X-Forwarded-For the dyno gets: what the client sent,
// with the client's IP appended.
func forwardedFor(req *http.Request) string {
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		ip = req.RemoteAddr
	}
	prior := req.Header["X-Forwarded-For"]
	if len(prior) == 0 {
		return ip
	}
	return strings.Join(prior, ", ") + ", " + ip
}

// localPort is the port the client connected to.
func localPort(req *http.Request) string {
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return strconv.Itoa(a.Port)
	}
	if _, p, err := net.SplitHostPort(req.Host); err == nil && p != "" {
		return p
	}
	return "80"
}
