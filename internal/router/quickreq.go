package router

import (
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
// (TestQuickRequestMatchesGo).
func quickRequest(head []byte) *http.Request {
	n := len(head)
	if n < 20 || string(head[n-4:]) != "\r\n\r\n" {
		return nil
	}
	lines := 0
	for _, c := range head {
		if c == '\n' {
			lines++
		}
	}
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
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	h := quickFields(s[eol+2:], lines, func(k, _ string) bool {
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
	return &http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: host[0], RequestURI: target,
		Close: named(h["Connection"], "close"),
	}
}
