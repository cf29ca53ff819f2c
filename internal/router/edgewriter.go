package router

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// pendSize is how much of a body without Content-Length the loop holds
// before its head goes out, as Go's server does: a body that ends within
// it gets a Content-Length, a longer one is chunked.
const pendSize = 2048

// edgeWriter is the loop's http.ResponseWriter: it frames responses as
// Go's server does (Content-Length or chunked, Date, Content-Type
// sniffing, trailers, Connection: close) straight into the connection's
// bufio.Writer. It is reused for every request of its connection.
type edgeWriter struct {
	c        *edgeConn
	req      *http.Request
	h        http.Header
	status   int
	wrote    bool // a final status is set
	sent     bool // the head is written
	chunked  bool
	bodyless bool
	pend     []byte   // body held until the head goes out
	trailers []string // declared trailer names
	close    bool     // the connection closes after this response
	err      error    // the first write error
}

func (w *edgeWriter) reset(c *edgeConn, req *http.Request) {
	clear(w.h)
	*w = edgeWriter{c: c, req: req, h: w.h, pend: w.pend[:0], close: req.Close}
}

// Header is the response's header map.
func (w *edgeWriter) Header() http.Header { return w.h }

// WriteHeader sets the final status, or writes a 1xx response at once.
func (w *edgeWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		bw := w.c.bw
		w.statusLine(code)
		for k, vs := range w.h {
			for _, v := range vs {
				writeField(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
		w.note(bw.Flush())
		return
	}
	w.wrote, w.status = true, code
	w.bodyless = w.req.Method == http.MethodHead || !bodyAllowed(code)
}

// Write adds to the body.
func (w *edgeWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.bodyless {
		return len(p), nil
	}
	if !w.sent {
		if _, ok := w.h["Content-Length"]; !ok && len(w.pend)+len(p) <= cap(w.pend) {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.sendHead(false, p)
	}
	w.body(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// FlushError sends the head and what is buffered to the client.
func (w *edgeWriter) FlushError() error {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(false, nil)
	}
	if w.err == nil {
		w.note(w.c.bw.Flush())
	}
	return w.err
}

// Flush makes the writer an http.Flusher.
func (w *edgeWriter) Flush() { w.FlushError() }

// SetWriteDeadline is what http.ResponseController calls; zero means the
// connection's own deadline (armWrite), never none.
func (w *edgeWriter) SetWriteDeadline(t time.Time) error {
	c := w.c
	if t.IsZero() {
		c.wdl = 0
		c.armWrite()
		return nil
	}
	c.wdl = t.UnixNano()
	return c.nc.SetWriteDeadline(t)
}

// SetReadDeadline is what http.ResponseController calls.
func (w *edgeWriter) SetReadDeadline(t time.Time) error {
	w.c.rdl = 0
	return w.c.nc.SetReadDeadline(t)
}

// finish completes the response: the head if not yet out (with the
// Content-Length of a held body), the held body, the last chunk and the
// trailers.
func (w *edgeWriter) finish() error {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(true, nil)
	}
	if w.chunked {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.h[k] {
				writeField(bw, k, v)
			}
		}
		for k, vs := range w.h {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				for _, v := range vs {
					writeField(bw, k[len(http.TrailerPrefix):], v)
				}
			}
		}
		_, err := bw.WriteString("\r\n")
		w.note(err)
	}
	return w.err
}

// sendHead writes the head, then the held body. final reports that the
// body is complete; data is the write that made the head go out.
func (w *edgeWriter) sendHead(final bool, data []byte) {
	w.sent = true
	h := w.h
	bw := w.c.bw
	if conn, ok := h["Connection"]; ok && named(conn, "close") {
		w.close = true
	}
	_, hasLen := h["Content-Length"]
	setLen := -1
	if !w.bodyless && !hasLen {
		if trailer, ok := h["Trailer"]; ok {
			w.declareTrailers(trailer)
		}
		if final && w.trailers == nil {
			setLen = len(w.pend)
		} else {
			w.chunked = true
		}
	}
	w.statusLine(w.status)
	suppress := !bodyAllowed(w.status)
	for k, vs := range h {
		if suppress && (k == "Content-Length" || k == "Transfer-Encoding" || k == "Content-Type" && w.status == http.StatusNotModified) {
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(w.c.e.date())
		bw.WriteString("\r\n")
	}
	if !suppress && !w.bodyless {
		if _, ok := h["Content-Type"]; !ok && len(h["Content-Encoding"]) == 0 {
			if sniff := w.pend; len(sniff) > 0 || len(data) > 0 {
				if len(sniff) == 0 {
					sniff = data
				}
				writeField(bw, "Content-Type", http.DetectContentType(sniff))
			}
		}
	}
	switch {
	case w.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case setLen >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(setLen), 10))
		bw.WriteString("\r\n")
	}
	if w.close {
		if _, ok := h["Connection"]; !ok {
			bw.WriteString("Connection: close\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	w.note(err)
	if len(w.pend) > 0 {
		p := w.pend
		w.pend = w.pend[:0]
		w.body(p)
	}
}

// declareTrailers notes the trailer names the Trailer header announces.
func (w *edgeWriter) declareTrailers(vs []string) {
	w.trailers = []string{}
	for _, v := range vs {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
}

// body writes p as the body, in a chunk when chunked.
func (w *edgeWriter) body(p []byte) {
	if len(p) == 0 || w.err != nil {
		return
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.note(err)
		return
	}
	_, err := bw.Write(p)
	w.note(err)
}

func (w *edgeWriter) statusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
}

func (w *edgeWriter) note(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// dateStamp is the Date header value of one second.
type dateStamp struct {
	sec int64
	b   []byte
}

// date returns the current Date header value, formatted once a second.
func (e *edge) date() []byte {
	now := time.Now()
	if d := e.dates.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateStamp{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	e.dates.Store(d)
	return d.b
}
