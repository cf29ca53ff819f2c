package router

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// quickRequest parses a request head as http.ReadRequest does, for the
// shape browsers, load balancers and benchmarks send to a web app: a GET,
// HEAD or OPTIONS of an origin-form target, HTTP/1.1, one Host, CRLF line
// ends, no Content-Length, Transfer-Encoding, Trailer or Pragma, nothing
// folded. That shape is parsed with one string for the whole head (every
// value points into it), one map and one array of values: about a third
// of ReadRequest's time. Anything else, or anything it is not sure of,
// returns nil: Go's parser then decides, as it always did (request
// smuggling stays its business). head is a whole head, through its empty
// line (headEnd). The request is ReadRequest's, field for field
// (TestQuickRequestMatchesGo). p is the memory to fill: a loop's
// connection lends its own for each of its requests (reqParts); nil
// allocates one.
func quickRequest(head []byte, p *reqParts) *http.Request {
	n := len(head)
	if n < 20 || string(head[n-4:]) != "\r\n\r\n" {
		return nil
	}
	lines := bytes.Count(head, []byte{'\n'})
	s := string(head)
	eol := strings.Index(s, "\r\n")
	method, rest, _ := strings.Cut(s[:eol], " ")
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return nil
	}
	target, proto, _ := strings.Cut(rest, " ")
	if proto != "HTTP/1.1" || target == "" || target[0] != '/' {
		return nil
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return nil
		}
	}
	if p == nil {
		p = new(reqParts)
	}
	if !requestURL(target, &p.url) {
		return nil
	}
	h := p.fields.parse(s[eol+2:], lines, func(k, _ string) bool {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Pragma":
			return false // framing, and what ReadRequest rewrites: Go's parser
		}
		return true
	})
	if h == nil {
		return nil
	}
	host := h["Host"]
	if len(host) != 1 {
		return nil
	}
	delete(h, "Host") // as ReadRequest: req.Host has it
	p.req = http.Request{
		Method: method, URL: &p.url, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: host[0], RequestURI: target,
		Close: named(h["Connection"], "close"),
	}
	return &p.req
}

// reqParts is the memory of a request quickRequest parses: the request,
// its URL and its header. A loop's connection keeps one for all its
// requests, one at a time, so that the common request costs a single
// allocation (its head's string); nothing holds a request of a loop once
// it is answered, and a request that leaves the loop (to a goroutine)
// takes its connection, and so its parts, with it.
type reqParts struct {
	req http.Request
	url url.URL
	fields
}

// requestURL parses an origin-form target into u as url.ParseRequestURI
// does; false when that refuses it. The common target, a path of
// characters the path needs no escape for and an optional query, is
// split here; any other goes to url.ParseRequestURI.
func requestURL(target string, u *url.URL) bool {
	path, query, hasQuery := strings.Cut(target, "?")
	plain := true
	for i := 0; i < len(path) && plain; i++ {
		c := path[i]
		plain = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~$&+,/:;=@", c) >= 0
	}
	if !plain {
		v, err := url.ParseRequestURI(target)
		if err != nil {
			return false
		}
		*u = *v
		return true
	}
	*u = url.URL{Path: path, RawQuery: query}
	if hasQuery && query == "" {
		// "/p?" alone is ForceQuery; "/p??" keeps "?" as its query.
		u.ForceQuery = true
	}
	return true
}
