package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// readResponse reads a dyno's response head as http.ReadResponse does,
// with a shortcut for the shape almost every dyno answers with: HTTP/1.1,
// a final status with a reason phrase, a Content-Length, no
// Transfer-Encoding or Trailer header, no Connection header but
// "keep-alive" (what Node's http module and others send by default: it
// changes nothing in HTTP/1.1, and passHead drops it), the whole head already
// buffered, CRLF line ends. That shape is parsed with one string and one
// map for the head and one allocation for the response and its body;
// anything else, or anything the shortcut is not sure of, goes to Go's
// parser, untouched, which decides as it always did.
//
// p is the memory the shortcut fills: a loop's connection lends its own
// (respParts); nil allocates one.
func readResponse(br *bufio.Reader, req *http.Request, p *respParts) (*http.Response, error) {
	if resp := quickResponse(br, req, p); resp != nil {
		return resp, nil
	}
	return http.ReadResponse(br, req)
}

// quickResponse parses the common shape, or returns nil having consumed
// nothing.
func quickResponse(br *bufio.Reader, req *http.Request, p *respParts) *http.Response {
	if req.Method == http.MethodHead {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	n := headEnd(b, 0)
	if n < 15 || string(b[:9]) != "HTTP/1.1 " || b[12] != ' ' {
		return nil
	}
	code := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || !bodyAllowed(code) {
		return nil
	}
	// Count the lines, to size the header map and the values' array.
	lines := bytes.Count(b[:n], []byte{'\n'})
	head := string(b[9:n]) // every string of the response points into it
	eol := strings.Index(head, "\r\n")
	if eol <= 4 || head[4] == ' ' {
		return nil // no reason phrase, or a bare LF
	}
	status := head[:eol]
	if !validHeaderValue(status) {
		return nil // a bare LF or another control byte: Go's parser decides
	}
	if p == nil {
		p = new(respParts)
	}
	length := int64(-1)
	h := p.fields.parse(head[eol+2:], lines, func(k, v string) bool {
		switch k {
		case "Transfer-Encoding", "Trailer":
			return false
		case "Connection":
			return strings.EqualFold(v, "keep-alive")
		case "Content-Length":
			if length >= 0 {
				return false
			}
			length = parseLength(v)
			return length >= 0
		}
		return true
	})
	if h == nil {
		return nil
	}
	if length < 0 {
		return nil
	}
	br.Discard(n)
	p.body = lengthBody{br: br, n: length}
	p.resp = http.Response{
		Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Request: req, Body: &p.body,
	}
	return &p.resp
}

// fields is the memory of a parsed header: its map and the array its
// values share. Kept (in reqParts, respParts), it is reused, cleared, for
// the next head; a header that grew large is let go instead.
type fields struct {
	h    http.Header
	vals []string
}

// maxKeptFields is the most header fields a kept map is reused for:
// clearing costs what the map grew to.
const maxKeptFields = 32

// parse parses the header lines of a head in the common shape, rest
// (starting after the first line, ending with the empty line): one
// "Name: value" per CRLF-ended line, valid names and values, no folding.
// take sees each field (canonical name) and may refuse it. lines is how
// many lines the head has, to size the map and the values' array. Any
// other shape, or a refusal, gives nil: the caller leaves the head to
// Go's parser.
func (f *fields) parse(rest string, lines int, take func(k, v string) bool) http.Header {
	if f.h == nil || len(f.h) > maxKeptFields {
		f.h = make(http.Header, lines)
	} else {
		clear(f.h)
	}
	if cap(f.vals) < lines || cap(f.vals) > 4*maxKeptFields {
		f.vals = make([]string, 0, max(lines, 8))
	}
	h, vals := f.h, f.vals[:0]
	for rest != "\r\n" {
		eol := strings.Index(rest, "\r\n")
		if eol <= 0 {
			return nil
		}
		line := rest[:eol]
		rest = rest[eol+2:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil
		}
		k, v := line[:colon], strings.Trim(line[colon+1:], " \t")
		if !validHeaderName(k) || !validHeaderValue(v) {
			return nil
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		if !take(k, v) {
			return nil
		}
		vals = append(vals, v)
		if prior, ok := h[k]; ok {
			h[k] = append(prior, v)
		} else {
			h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	return h
}

// parseLength parses a Content-Length value as Go's parser accepts it:
// digits only, within int64; -1 otherwise.
func parseLength(v string) int64 {
	if v == "" || len(v) > 18 {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n
}

// respParts is the memory of a response quickResponse parses: the
// response, its body and its header, in one allocation. A loop's
// connection keeps one for the responses of its requests, one at a time
// (see reqParts).
type respParts struct {
	resp http.Response
	body lengthBody
	fields
}

// lengthBody is a body of n bytes from br, as Go's parser frames it: EOF
// after them, io.ErrUnexpectedEOF when the dyno closes before.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		return n, io.EOF
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
