package router

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Request limits (heroku.md §2.3). Go's parser enforces the framing rules
// (one Content-Length, chunked only, one Host, Expect); these are the
// sizes it does not check one by one.
const (
	maxRequestLine = 8192
	maxHeaderLine  = 8192
	maxHeaderName  = 1000
	maxHeaders     = 1000
	// maxHeaderBytes bounds what Go's server reads of a request's head at
	// all: Heroku's 1 MiB client buffer.
	maxHeaderBytes = 1 << 20
)

// checkRequest applies the request limits Go's server leaves to the
// handler; a violation is H26 with its cause.
func checkRequest(req *http.Request) (*hcode, string) {
	if len(req.Method)+len(req.RequestURI)+len(req.Proto)+2 > maxRequestLine {
		return errH26, "request line too long"
	}
	if e, ok := req.Header["Expect"]; ok && (len(e) != 1 || !asciiEqualFold(e[0], "100-continue")) {
		return errH26Expect, "unsupported expect header value"
	}
	n := 0
	for k, vs := range req.Header {
		if len(k) > maxHeaderName {
			return errH26, "header name too long"
		}
		for _, v := range vs {
			if len(k)+2+len(v) > maxHeaderLine {
				return errH26, "header line too long"
			}
		}
		if n += len(vs); n > maxHeaders {
			return errH26, "too many headers"
		}
	}
	return nil, ""
}

// asciiEqualFold reports whether a and b are equal but for the case of
// ASCII letters.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// ServerConfig tunes the client side of NewHTTPServer. Zero values pick
// the defaults.
type ServerConfig struct {
	// HeaderTimeout bounds the reading of a request's head (slowloris).
	// Default 30 s.
	HeaderTimeout time.Duration
	// IdleTimeout closes kept-alive client connections without a request.
	// Default 90 s (Router 2.0's).
	IdleTimeout time.Duration
	// MaxConcurrentStreams caps an HTTP/2 connection's streams. Default 250.
	MaxConcurrentStreams int
	Logger               *slog.Logger
}

// Server is the http.Server that serves a router to clients, made by
// NewHTTPServer. Its Shutdown and Close also cover the connections the
// router's own loop serves (edge.go), which Go's server no longer tracks
// once it handed them over. Serve it with its Serve or ServeTLS: the
// embedded server's ListenAndServe* would skip sysConn.
type Server struct {
	*http.Server
	edge *edge
}

// NewHTTPServer returns the server of r for clients, for the HTTP and
// HTTPS listeners alike: header timeout and size caps, no whole request or
// response timeouts (bodies stream for as long as they move: the router's
// own idle windows apply), HTTP/2 stream limits, and the connection
// accounting behind the per-app limit (H22) and metrics. The caller sets
// TLSConfig for HTTPS and serves it on its listener.
//
// HTTP/1.1 connections whose requests have no body are served by the
// router's own connection loop (edge.go) after their first request.
func NewHTTPServer(r *Router, cfg ServerConfig) *Server {
	setDefault(&cfg.HeaderTimeout, 30*time.Second)
	setDefault(&cfg.IdleTimeout, 90*time.Second)
	setDefault(&cfg.MaxConcurrentStreams, 250)
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	e := newEdge(r, cfg)
	srv := newServer(r, cfg, e, nil)
	// Handed-off connections are plain net.Conns to Go's server: their
	// TLS state rides in the context.
	e.inner = newServer(r, cfg, innerHandler{e}, func(ctx context.Context, c net.Conn) context.Context {
		if hc, ok := c.(*handoffConn); ok && hc.tls != nil {
			return context.WithValue(ctx, tlsStateKey{}, hc.tls)
		}
		return ctx
	})
	return &Server{Server: srv, edge: e}
}

// Shutdown stops the server gracefully, as http.Server's does, and waits
// as well for the requests in progress on the loop's connections: idle
// ones close at once, busy ones after their response. When ctx ends first
// it returns ctx's error; Close then ends what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.edge.beginShutdown()
	err := s.Server.Shutdown(ctx)
	if ierr := s.edge.shutdownInner(ctx); err == nil {
		err = ierr
	}
	if werr := s.edge.wait(ctx); err == nil {
		err = werr
	}
	if err == nil {
		s.edge.stopLoops() // nothing is left in them
	}
	return err
}

// Close closes the listeners and every connection at once, the loop's
// too, as http.Server's Close does.
func (s *Server) Close() error {
	s.edge.beginShutdown()
	err := s.Server.Close()
	s.edge.closeAll()
	return err
}

// newServer makes one Go server of NewHTTPServer's configuration.
func newServer(r *Router, cfg ServerConfig, h http.Handler, connCtx func(context.Context, net.Conn) context.Context) *http.Server {
	var conns sync.Map // net.Conn → *clientConn
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      cfg.MaxConcurrentStreams,
			MaxDecoderHeaderTableSize: 4096,
			MaxEncoderHeaderTableSize: 4096,
			MaxReadFrameSize:          1 << 20,
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cc := &clientConn{}
			conns.Store(c, cc)
			if connCtx != nil {
				ctx = connCtx(ctx, c)
			}
			return context.WithValue(ctx, clientConnKey{}, cc)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				r.metrics.clientConns.Add(1)
			case http.StateClosed, http.StateHijacked:
				r.metrics.clientConns.Add(-1)
				if v, ok := conns.LoadAndDelete(c); ok {
					if st := v.(*clientConn).app.Load(); st != nil {
						st.conns.Add(-1)
					}
				}
			}
		},
	}
}

// clientConn is one client connection; its first request ties it to an
// app for the connection limit.
type clientConn struct {
	app atomic.Pointer[appState]
}

type clientConnKey struct{}

// Serve serves clients on ln until Shutdown or Close: over TLS when
// TLSConfig is set (HTTP/2 included: ServeTLS adds h2 to its protocols),
// plain HTTP otherwise. ln is the plain TCP listener in both cases: its
// connections make their system calls as sysConn explains, and a TLS
// one's go through a tlsTransport, which lets an event loop serve it.
func (s *Server) Serve(ln net.Listener) error {
	if s.TLSConfig != nil {
		return s.Server.ServeTLS(tlsListener{ln}, "", "")
	}
	return s.Server.Serve(sysListener{ln})
}

// ServeTLS serves HTTPS on ln, as http.Server's ServeTLS does, with the
// connections of Serve.
func (s *Server) ServeTLS(ln net.Listener, certFile, keyFile string) error {
	return s.Server.ServeTLS(tlsListener{ln}, certFile, keyFile)
}
