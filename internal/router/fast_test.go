package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

func TestFastInbound(t *testing.T) {
	tests := []struct {
		method, target string
		body           io.Reader
		hdr            string
		fast           bool
	}{
		{"GET", "/", nil, "", true},
		{"HEAD", "/?a=1&b=%20", nil, "", true},
		{"OPTIONS", "/", nil, "", true},
		{"TRACE", "/", nil, "", true},
		{"POST", "/", nil, "", false},
		{"GET", "/", strings.NewReader("x"), "", false},
		{"GET", "/", nil, "Upgrade", false},
		{"GET", "/?a=1;b=2", nil, "", false}, // ReverseProxy rewrites such queries
		{"GET", "/?a=%zz", nil, "", false},
	}
	for _, tt := range tests {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.method + " " + tt.target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		if tt.body != nil {
			req.Body, req.ContentLength = io.NopCloser(tt.body), 1
		}
		if tt.hdr != "" {
			req.Header.Set(tt.hdr, "websocket")
		}
		if got := fastInbound(req); got != tt.fast {
			t.Errorf("%s %s body=%v %s: fast %v, want %v", tt.method, tt.target, tt.body != nil, tt.hdr, got, tt.fast)
		}
	}
}

// headDyno is a dyno that hands the test each request head it gets and
// answers with response.
func headDyno(t *testing.T, response string) (string, <-chan *http.Request) {
	heads := make(chan *http.Request, 10)
	var mu sync.Mutex
	var conns []net.Conn
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			heads <- req
			io.WriteString(c, response)
		}
	})
	// Before rawServer's cleanup: the router's pool keeps connections open.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return addr, heads
}

func TestFastPathHeaders(t *testing.T) {
	e := newEnv(t, Config{})
	ep, heads := headDyno(t, "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authenticate: Basic\r\nX-App: yes\r\nContent-Length: 2\r\n\r\nok")
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	port := e.frontPort()
	absent := "(absent)"
	tests := []struct {
		name string
		in   http.Header
		want map[string]string // joined values, or absent
	}{
		{"adds the router's headers", http.Header{"User-Agent": {""}}, map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Port": port,
			"Via": "1.1 dyno", "User-Agent": absent, "Connection": absent, "Content-Length": absent,
		}},
		{"drops hop-by-hop and forged forwarding headers", http.Header{
			"Connection":          {"X-Secret, keep-alive"},
			"X-Secret":            {"s"},
			"Keep-Alive":          {"300"},
			"Proxy-Authorization": {"Basic x"},
			"Te":                  {"trailers, deflate"},
			"Forwarded":           {"for=6.6.6.6"},
			"X-Forwarded-Host":    {"evil"},
			"X-Forwarded-Port":    {"1"},
			"X-Forwarded-Proto":   {"https"},
			"X-Request-Start":     {"1"},
			"Via":                 {"1.0 other"},
			"User-Agent":          {"tester/1"},
			"X-Kept":              {"a", "b"},
		}, map[string]string{
			"X-Secret": absent, "Keep-Alive": absent, "Proxy-Authorization": absent, "Connection": absent,
			"Te": "trailers", "Forwarded": absent, "X-Forwarded-Host": absent, "X-Forwarded-Port": port,
			"X-Forwarded-Proto": "http", "Via": "1.0 other,1.1 dyno", "User-Agent": "tester/1", "X-Kept": "a,b",
		}},
		{"Te without trailers is dropped", http.Header{"Te": {"deflate"}}, map[string]string{"Te": absent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get("hello.localhost", "/p?q=1", tt.in)
			var got *http.Request
			select {
			case got = <-heads:
			case <-time.After(5 * time.Second):
				t.Fatal("the dyno got no request")
			}
			if got.RequestURI != "/p?q=1" || got.Host != "hello.localhost" {
				t.Errorf("dyno got %s for Host %s, want /p?q=1 for hello.localhost", got.RequestURI, got.Host)
			}
			for k, v := range tt.want {
				g, ok := got.Header[k]
				if gv := strings.Join(g, ","); v == absent && ok || v != absent && gv != v {
					t.Errorf("dyno got %s %q (present %v), want %q", k, gv, ok, v)
				}
			}
			id := got.Header.Get("X-Request-Id")
			if id == "" || resp.Header.Get("X-Request-Id") != id {
				t.Errorf("X-Request-Id %q to the dyno, %q to the client", id, resp.Header.Get("X-Request-Id"))
			}
			if _, err := strconv.ParseInt(got.Header.Get("X-Request-Start"), 10, 64); err != nil {
				t.Errorf("X-Request-Start %q, want unix ms", got.Header.Get("X-Request-Start"))
			}
			if body != "ok" || resp.Header.Get("X-App") != "yes" {
				t.Errorf("client got %q %v, want ok with X-App", body, resp.Header)
			}
			for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authenticate"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("client got hop-by-hop %s: %q", k, v)
				}
			}
			l := e.logs.next(t)
			want := `at=info method=GET path="/p?q=1" host=hello.localhost request_id=` + id
			if !strings.HasPrefix(l.line.Message, want) || field(l.line.Message, "status") != "200" ||
				field(l.line.Message, "bytes") != "2" || field(l.line.Message, "dyno") != "web.1" {
				t.Errorf("log line %q, want %s ... dyno=web.1 status=200 bytes=2", l.line.Message, want)
			}
		})
	}
}

func TestFastPathResponses(t *testing.T) {
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		case "/head":
			w.Header().Set("Content-Length", "1234")
			w.Header().Set("X-Head", "yes")
			if r.Method == "GET" {
				io.WriteString(w, strings.Repeat("x", 1234))
			}
		}
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	tests := []struct {
		method, path string
		check        func(resp *http.Response, body string) bool
		bytes        string
	}{
		{"GET", "/trailers", func(resp *http.Response, body string) bool {
			return body == "body" && resp.Trailer.Get("X-Sum") == "42" && resp.Trailer.Get("X-Late") == "late"
		}, "4"},
		{"HEAD", "/head", func(resp *http.Response, body string) bool {
			return body == "" && resp.ContentLength == 1234 && resp.Header.Get("X-Head") == "yes"
		}, "0"},
		{"GET", "/head", func(resp *http.Response, body string) bool { return len(body) == 1234 }, "1234"},
		{"HEAD", "/head", func(resp *http.Response, body string) bool { return resp.ContentLength == 1234 }, "0"},
	}
	for _, tt := range tests {
		resp, body := e.do(tt.method, "hello.localhost", tt.path, nil, nil)
		if resp.StatusCode != 200 || !tt.check(resp, body) {
			t.Errorf("%s %s: %d %q header %v trailer %v", tt.method, tt.path, resp.StatusCode, body, resp.Header, resp.Trailer)
		}
		l := e.logs.next(t)
		if !strings.HasPrefix(l.line.Message, "at=info method="+tt.method) || field(l.line.Message, "status") != "200" ||
			field(l.line.Message, "bytes") != tt.bytes {
			t.Errorf("%s %s: log line %q, want at=info status=200 bytes=%s", tt.method, tt.path, l.line.Message, tt.bytes)
		}
	}
}

// TestFastPathStreams: a body of unknown length, or an event stream,
// reaches the client as the dyno sends it, not when it ends.
func TestFastPathStreams(t *testing.T) {
	tests := []struct {
		name string
		hdr  map[string]string
	}{
		{"unknown length", map[string]string{"Content-Type": "text/plain"}},
		{"event stream with a length", map[string]string{"Content-Type": "Text/Event-Stream; charset=utf-8", "Content-Length": "13"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			next := make(chan struct{})
			ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.hdr {
					w.Header().Set(k, v)
				}
				io.WriteString(w, "first\n")
				w.(http.Flusher).Flush()
				select {
				case <-next:
				case <-time.After(5 * time.Second):
				}
				io.WriteString(w, "second\n")
			})
			e.app("hello", "a1")
			e.dyno("a1", 1, model.StateUp, ep)
			e.waitTable("hello", upCount(1))
			req, _ := http.NewRequest("GET", e.front.URL+"/events", nil)
			req.Host = "hello.localhost"
			resp, err := e.client.Do(req)
			if err != nil {
				close(next)
				t.Fatalf("no response head while the dyno holds its body: %v", err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			first := make(chan string, 1)
			go func() { s, _ := br.ReadString('\n'); first <- s }()
			select {
			case s := <-first:
				if s != "first\n" {
					t.Errorf("first line %q", s)
				}
			case <-time.After(2 * time.Second):
				t.Error("the first line did not arrive before the end: the router buffers the stream")
				resp.Body.Close()
			}
			close(next)
			rest, _ := io.ReadAll(br)
			if string(rest) != "second\n" && !t.Failed() {
				t.Errorf("rest %q, want second", rest)
			}
			if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, "at=info") || field(l.line.Message, "bytes") != "13" {
				t.Errorf("log line %q, want at=info bytes=13", l.line.Message)
			}
		})
	}
}

func TestFastPathBrokenBodies(t *testing.T) {
	tests := []struct {
		name   string
		length string // Content-Length the dyno announces, "" for chunked
	}{
		{"with a length", "1000"},
		{"chunked", ""},
	}
	for _, tt := range tests {
		t.Run("dyno breaks mid-body "+tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.length != "" {
					w.Header().Set("Content-Length", tt.length)
				}
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			})
			e.app("hello", "a1")
			e.dyno("a1", 1, model.StateUp, ep)
			e.waitTable("hello", upCount(1))
			req, _ := http.NewRequest("GET", e.front.URL, nil)
			req.Host = "hello.localhost"
			if resp, err := e.client.Do(req); err == nil {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("client read %q without an error; want the cut response to fail", b)
				}
			}
			l := e.logs.next(t)
			if !strings.HasPrefix(l.line.Message, `at=error code=H18 desc="Server Request Interrupted"`) ||
				field(l.line.Message, "sock") != "backend" || field(l.line.Message, "bytes") != "7" ||
				field(l.line.Message, "status") != "503" {
				t.Fatalf("log line %q, want H18 status=503 bytes=7 sock=backend", l.line.Message)
			}
		})
	}
	t.Run("client leaves mid-body", func(t *testing.T) {
		e := newEnv(t, Config{})
		ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
			chunk := strings.Repeat("x", 1024)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
		e.app("hello", "a1")
		e.dyno("a1", 1, model.StateUp, ep)
		e.waitTable("hello", upCount(1))
		c, err := net.Dial("tcp", e.front.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
		if _, err := io.ReadFull(c, make([]byte, 2048)); err != nil {
			t.Fatalf("no body before leaving: %v", err)
		}
		c.Close()
		l := e.logs.next(t)
		re := regexp.MustCompile(`^at=warning code=H27 desc="Client Request Interrupted" method=GET path="/stream" .* status=499 bytes=[1-9]\d* sock=client protocol=http$`)
		if !re.MatchString(l.line.Message) {
			t.Fatalf("log line %q does not match %s", l.line.Message, re)
		}
	})
	t.Run("client takes nothing: H28", func(t *testing.T) {
		e := newEnv(t, Config{IdleTimeout: 300 * time.Millisecond})
		ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 64<<10)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		e.app("hello", "a1")
		e.dyno("a1", 1, model.StateUp, ep)
		e.waitTable("hello", upCount(1))
		c, err := net.Dial("tcp", e.front.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
		l := e.logs.next(t) // the client reads nothing until the router gives up
		re := regexp.MustCompile(`^at=warning code=H28 desc="Client Connection Idle" method=GET path="/big" .* status=499 bytes=[1-9]\d* sock=client protocol=http$`)
		if !re.MatchString(l.line.Message) {
			t.Fatalf("log line %q does not match %s", l.line.Message, re)
		}
	})
	t.Run("client leaves before the head", func(t *testing.T) {
		e := newEnv(t, Config{})
		arrived := make(chan struct{})
		ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-r.Context().Done()
		})
		e.app("hello", "a1")
		e.dyno("a1", 1, model.StateUp, ep)
		e.waitTable("hello", upCount(1))
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "HEAD", e.front.URL, nil)
		req.Host = "hello.localhost"
		go func() { <-arrived; cancel() }()
		if _, err := e.client.Do(req); err == nil {
			t.Fatal("request succeeded after the client canceled it")
		}
		l := e.logs.next(t)
		re := regexp.MustCompile(`^at=warning code=H27 desc="Client Request Interrupted" method=HEAD .* dyno=web.1 .* status=499 bytes=0 sock=client protocol=http$`)
		if !re.MatchString(l.line.Message) {
			t.Fatalf("log line %q does not match %s", l.line.Message, re)
		}
	})
}

// TestFastPathInformational: a 1xx response reaches the client before the
// final one, whose headers it does not leak into.
func TestFastPathInformational(t *testing.T) {
	e := newEnv(t, Config{})
	ep, _ := headDyno(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, strconv.Itoa(code)+" "+h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", e.front.URL, nil)
	req.Host = "hello.localhost"
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 1 || got[0] != "103 </a.css>; rel=preload" || string(b) != "ok" || resp.Header.Get("Link") != "" ||
		resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("1xx %q, final %d %q %v; want one 103 with its Link, then ok with X-Request-Id and no Link", got, resp.StatusCode, b, resp.Header)
	}
	if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, "at=info") || field(l.line.Message, "status") != "200" || field(l.line.Message, "bytes") != "2" {
		t.Fatalf("log line %q, want at=info status=200 bytes=2", l.line.Message)
	}
}
