package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// The fast path: a bodiless, replayable request (GET, HEAD, OPTIONS,
// TRACE without Upgrade, most of a web app's traffic) is proxied here
// instead of by httputil.ReverseProxy. Its head is written to the dyno
// straight from the inbound request, with no outbound request, URL,
// header map or trace to allocate; the response is passed on as
// ReverseProxy would pass it. Errors take the same way as ReverseProxy's:
// failRequest before the response head, a panic with http.ErrAbortHandler
// (recovered and classified by ServeHTTP) after it.

// fastInbound reports whether ServeHTTP may take the fast path for req.
func fastInbound(req *http.Request) bool {
	if req.ContentLength != 0 || req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	// A query ReverseProxy would rewrite (cleanQueryParams) goes its way.
	return cleanQuery(req.URL.RawQuery)
}

// cleanQuery reports whether ReverseProxy would pass the query unchanged.
func cleanQuery(q string) bool {
	if strings.Count(q, "&") >= 10000 {
		return false
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !ishex(q[i+1]) || !ishex(q[i+2]) {
				return false
			}
		}
	}
	return true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// serveFast proxies s.req to a dyno of its app.
func (r *Router) serveFast(s *reqState) {
	resp, err := r.roundTrip(s, nil)
	if err != nil {
		r.failRequest(s, err)
		return
	}
	if code := r.passHead(s, resp); code != nil {
		resp.Body.Close()
		r.failRequest(s, &restrictionError{code})
		return
	}
	announced := len(resp.Trailer)

	s.respBody.rc = resp.Body
	err = r.copyBody(s, resp.ContentLength == -1 || eventStream(resp.Header))
	if err != nil {
		resp.Body.Close()
		if s.req.Context().Value(http.ServerContextKey) != nil {
			// The client must not take a cut body for a whole one:
			// the server drops the connection; ServeHTTP logs.
			panic(http.ErrAbortHandler)
		}
		return
	}
	resp.Body.Close()
	passTrailers(s, resp.Trailer, announced)
}

// passHead passes the head of a dyno's final response on to the client:
// hop-by-hop headers out, the response limits (a code when it breaks
// one: nothing was written), the app's X-Request-Id over the router's,
// the announced trailers, the status.
func (r *Router) passHead(s *reqState, resp *http.Response) *hcode {
	s.status = resp.StatusCode
	// Hop-by-hop headers go first, as in ReverseProxy, so the limits
	// apply to what would be passed on.
	conn := resp.Header["Connection"]
	for k := range resp.Header {
		if hopByHop(k) || named(conn, k) {
			delete(resp.Header, k)
		}
	}
	if code := checkResponse(resp); code != nil {
		return code
	}
	h := s.w.Header()
	if _, ok := resp.Header["X-Request-Id"]; ok {
		delete(h, "X-Request-Id") // the app's own wins
	}
	for k, vs := range resp.Header {
		// The response is ours alone: its slices can be shared.
		if prior, ok := h[k]; ok {
			h[k] = append(prior, vs...)
		} else {
			h[k] = vs
		}
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	s.w.WriteHeader(resp.StatusCode)
	return nil
}

// passTrailers adds the trailers a dyno sent after its body to the
// response, once the body is out; announced is how many the response head
// declared (undeclared ones need http.TrailerPrefix).
func passTrailers(s *reqState, trailer http.Header, announced int) {
	if len(trailer) == 0 {
		return
	}
	s.w.FlushError() // forces chunking: no Content-Length on short bodies
	prefix := ""
	if len(trailer) != announced {
		prefix = http.TrailerPrefix // trailers the dyno did not announce
	}
	h := s.w.Header()
	for k, vs := range trailer {
		for _, v := range vs {
			h.Add(prefix+k, v)
		}
	}
}

// copyBufSize is the size of the buffers bodies are copied with.
const copyBufSize = 32 << 10

// copyBody streams the dyno's response body to the client with a pooled
// buffer, flushing after each write when stream is set.
func (r *Router) copyBody(s *reqState, stream bool) error {
	b := r.copyBufs.Get().(*[copyBufSize]byte)
	defer r.copyBufs.Put(b)
	buf := b[:]
	if stream && s.req.Method != http.MethodHead {
		// The head goes out even if the body is slow to come.
		s.w.FlushError()
	}
	for {
		n, rerr := s.respBody.Read(buf)
		if n > 0 {
			if _, werr := s.w.Write(buf[:n]); werr != nil {
				return werr
			}
			if stream {
				s.w.FlushError()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// eventStream reports whether the response is Server-Sent Events, which
// are flushed as they come whatever their length.
func eventStream(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	v := ct[0]
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return asciiEqualFold(strings.TrimSpace(v), "text/event-stream")
}

// informational passes a 1xx response on to the client, as ReverseProxy
// does, leaving the final response's headers as they were.
func (s *reqState) informational(resp *http.Response) {
	h := s.w.Header()
	before := h.Clone()
	for k, vs := range resp.Header {
		h[k] = append(h[k][:len(h[k]):len(h[k])], vs...)
	}
	s.w.WriteHeader(resp.StatusCode)
	clear(h)
	for k, vs := range before {
		h[k] = vs
	}
}

// hopByHop reports whether a header (canonical name) concerns one
// connection only, and so is not passed on (RFC 9110 §7.6.1).
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// named reports whether the Connection header values conn name k.
func named(conn []string, k string) bool {
	for _, v := range conn {
		for len(v) > 0 {
			tok := v
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				v = ""
			}
			if asciiEqualFold(strings.Trim(tok, " \t"), k) { // OWS only, as Go's HeaderValuesContainsToken
				return true
			}
		}
	}
	return false
}

// writeFastRequest writes the head of s.req as the dyno gets it: the
// client's headers minus hop-by-hop ones and forwarding headers the
// client may not set, plus the router's (X-Forwarded-*, X-Request-Id,
// X-Request-Start, Via). It matches what ReverseProxy with rewrite and
// Transport send, but for the order of header lines. addr is the Host
// when the client sent none.
func writeFastRequest(w *bufio.Writer, s *reqState, addr string) error {
	req := s.req
	host := req.Host
	if host == "" {
		host = addr
	}
	hdr := req.Header
	conn := hdr["Connection"]
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	// No User-Agent when the client sent none, as ReverseProxy does.
	if ua := hdr["User-Agent"]; len(ua) > 0 && ua[0] != "" && !named(conn, "User-Agent") {
		writeField(w, "User-Agent", ua[0])
	}
	for k, vs := range hdr {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Via",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
			"X-Request-Id", "X-Request-Start":
			continue
		}
		if hopByHop(k) || len(conn) > 0 && named(conn, k) {
			continue
		}
		for _, v := range vs {
			writeField(w, k, v)
		}
	}
	if te := hdr["Te"]; len(te) > 0 && named(te, "trailers") {
		w.WriteString("Te: trailers\r\n")
	}
	writeField(w, "X-Forwarded-For", s.fwd)
	writeField(w, "X-Forwarded-Proto", scheme(req))
	w.WriteString("X-Forwarded-Port: ")
	if s.port > 0 {
		w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(s.port), 10))
	} else if a, ok := req.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(a.Port), 10)) // no allocation
	} else {
		w.WriteString(localPort(req))
	}
	w.WriteString("\r\nX-Request-Start: ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), s.start.UnixMilli(), 10))
	w.WriteString("\r\n")
	writeField(w, "X-Request-Id", s.requestID)
	if !named(conn, "Via") {
		for _, v := range hdr["Via"] {
			writeField(w, "Via", v)
		}
	}
	w.WriteString("Via: 1.1 dyno\r\n")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// What Transport sends for the other methods without a body.
		w.WriteString("Content-Length: 0\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// writeField writes one header line. The values come from Go's server,
// which refused requests with invalid names or values.
func writeField(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(v)
	w.WriteString("\r\n")
}
