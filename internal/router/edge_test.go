package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// edgeFront serves a router through NewHTTPServer with cfg, and returns
// the server's edge loop for its counters.
func edgeFront(t *testing.T, cfg ServerConfig, tlsOn bool) (*env, *httptest.Server, *edge) {
	t.Helper()
	st, srv := newStore(t)
	logs := &testLogs{ch: make(chan logEntry, 1000)}
	r := New(Config{Logs: logs}, st)
	startRouter(t, r)
	front, fsrv := startFront(t, r, cfg, tlsOn)
	e := &env{t: t, st: st, srv: srv, r: r, front: front, server: fsrv, logs: logs, tls: tlsOn}
	// A dyno that says what it got: method, path, body, scheme.
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b)+" "+r.Header.Get("X-Forwarded-Proto"))
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	return e, front, fsrv.edge
}

// clientConn is one raw client connection to the front server.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialFront(t *testing.T, front *httptest.Server, tlsOn bool) *rawClient {
	t.Helper()
	var c net.Conn
	var err error
	if tlsOn {
		c, err = tls.Dial("tcp", front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", front.Listener.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(raw string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response and returns its status and body.
func (rc *rawClient) read() (int, string, http.Header) {
	rc.t.Helper()
	return rc.readFor(nil)
}

// readFor reads the response to req (nil: a GET).
func (rc *rawClient) readFor(req *http.Request) (int, string, http.Header) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		rc.t.Fatalf("read a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read a response body: %v", err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// closed reports whether the server closes the connection within d.
func (rc *rawClient) closed(d time.Duration) bool {
	rc.c.SetReadDeadline(time.Now().Add(d))
	_, err := rc.br.ReadByte()
	return err != nil && !isTimeout(err)
}

const get = "GET /%s HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"

func getReq(path string) string { return strings.Replace(get, "%s", path, 1) }

func TestEdgeKeepAliveAndPipelining(t *testing.T) {
	e, front, ed := edgeFront(t, ServerConfig{}, false)
	rc := dialFront(t, front, false)
	for _, p := range []string{"a", "b", "c"} {
		rc.send(getReq(p))
		if code, body, h := rc.read(); code != 200 || body != "GET /"+p+"  http" || h.Get("X-Request-Id") == "" {
			t.Fatalf("GET /%s: %d %q %v", p, code, body, h)
		}
		e.logs.next(t)
	}
	// Three requests in one write: three responses, in order.
	rc.send(getReq("p1") + getReq("p2") + "HEAD /p3 HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
	head := httptest.NewRequest("HEAD", "/p3", nil)
	for i, want := range []string{"GET /p1  http", "GET /p2  http", ""} {
		var req *http.Request
		if i == 2 {
			req = head
		}
		if code, body, _ := rc.readFor(req); code != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want 200 %q", code, body, want)
		}
		if l := e.logs.next(t); field(l.line.Message, "status") != "200" {
			t.Fatalf("log line %q", l.line.Message)
		}
	}
	if got := ed.served.Load(); got != 6 {
		t.Fatalf("the loop served %d requests, want all 6", got)
	}
	// Connection: close is honored.
	rc.send("GET /last HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || !resp.Close {
		t.Fatalf("response %v (%v), want Connection: close", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if !rc.closed(2 * time.Second) {
		t.Fatal("the connection stayed open after Connection: close")
	}
}

func TestEdgeHandsOff(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			_, front, ed := edgeFront(t, ServerConfig{}, tlsOn)
			rc := dialFront(t, front, tlsOn)
			steps := []struct{ req, want string }{
				{getReq("one"), "GET /one  " + name},
				// A body: Go's server takes the connection...
				{"POST /up HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 5\r\n\r\nhello", "POST /up hello " + name},
				// ...and gives it back at the next bodiless request.
				{getReq("two"), "GET /two  " + name},
				// A head longer than the loop's buffer goes to Go's server too.
				{"GET /long HTTP/1.1\r\nHost: hello.localhost\r\nX-Long: " + strings.Repeat("x", edgeReadBufSize) + "\r\n\r\n", "GET /long  " + name},
				{getReq("three"), "GET /three  " + name},
			}
			for _, s := range steps {
				rc.send(s.req)
				if code, body, _ := rc.read(); code != 200 || body != s.want {
					t.Fatalf("%q: %d %q, want 200 %q", s.req[:20], code, body, s.want)
				}
			}
			if got := ed.handoffs.Load(); got != 2 {
				t.Fatalf("%d hand-offs, want 2", got)
			}
			// Go's server hands the long head's request back to the loop too.
			if got := ed.served.Load(); got != 4 {
				t.Fatalf("the loop served %d requests, want the 4 bodiless ones", got)
			}
		})
	}
}

func TestEdgeMalformed(t *testing.T) {
	tests := []struct {
		name, req string
		want      int
	}{
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: x\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: hello localhost\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nBad Name: x\r\n\r\n", 400},
		{"header without colon", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nnocolon\r\n\r\n", 400},
		{"two lengths (smuggling)", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		// Go's parser lets chunked framing win over a Content-Length (RFC
		// 9112 §6.3), and Go's server serves the request as it always did.
		{"length and chunked", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200},
		{"bad request line", "GET /\r\nHost: hello.localhost\r\n\r\n", 400},
		{"unknown transfer encoding", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"bad expect", "GET / HTTP/1.1\r\nHost: hello.localhost\r\nExpect: nonsense\r\n\r\n", 417},
	}
	_, front, ed := edgeFront(t, ServerConfig{}, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialFront(t, front, false)
			rc.send(getReq("ok")) // the loop takes the connection
			if code, _, _ := rc.read(); code != 200 {
				t.Fatalf("first request: %d", code)
			}
			before := ed.handoffs.Load()
			rc.send(tt.req)
			if code, _, _ := rc.read(); code != tt.want {
				t.Fatalf("status %d, want %d", code, tt.want)
			}
			if ed.handoffs.Load() != before+1 {
				t.Fatal("the loop answered instead of Go's server")
			}
		})
	}
}

func TestEdgeTimeouts(t *testing.T) {
	_, front, _ := edgeFront(t, ServerConfig{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, false)
	t.Run("idle", func(t *testing.T) {
		rc := dialFront(t, front, false)
		rc.send(getReq("x"))
		rc.read()
		start := time.Now()
		if !rc.closed(3 * time.Second) {
			t.Fatal("an idle connection stayed open past IdleTimeout")
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("closed after %v, want about the 300ms IdleTimeout", d)
		}
	})
	t.Run("slow head", func(t *testing.T) {
		rc := dialFront(t, front, false)
		rc.send(getReq("x"))
		rc.read()
		rc.send("GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Slow: ")
		start := time.Now()
		for i := 0; i < 10; i++ { // trickle, each byte within IdleTimeout
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(rc.c, "x"); err != nil {
				break
			}
		}
		if !rc.closed(3 * time.Second) {
			t.Fatal("a head that never ends kept the connection open")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("closed after %v, want about the 200ms HeaderTimeout", d)
		}
	})
}

func TestEdgeShutdown(t *testing.T) {
	e, front, ed := edgeFront(t, ServerConfig{}, false)
	rc := dialFront(t, front, false)
	rc.send(getReq("x"))
	rc.read()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !rc.closed(3 * time.Second) {
		t.Fatal("an idle loop connection stayed open after Shutdown")
	}
	ed.mu.Lock()
	n := len(ed.conns)
	ed.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d loop connections left after Shutdown", n)
	}
}

func TestHeadEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 27},
		{"GET / HTTP/1.1\nHost: a\n\n", 24},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", 0},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0},
		{"\n\n", 2},
	}
	for _, tt := range tests {
		if got := headEnd([]byte(tt.in), 0); got != tt.want {
			t.Errorf("headEnd(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestEdgeShutdownWaitsForRequests: Shutdown returns only after a request
// in progress on a loop connection got its whole response, and that
// connection closes after it.
func TestEdgeShutdownWaitsForRequests(t *testing.T) {
	e, front, ed := edgeFront(t, ServerConfig{}, false)
	got, release := make(chan struct{}), make(chan struct{})
	var gotOnce, releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	slow := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotOnce.Do(func() { close(got) })
		<-release
		io.WriteString(w, "finished")
	})
	t.Cleanup(free) // before the dyno's own cleanup, which waits for the handler
	e.app("slow", "a2")
	e.dyno("a2", 1, model.StateUp, slow)
	e.waitTable("slow", upCount(1))

	rc := dialFront(t, front, false)
	rc.send(getReq("first")) // Go's server serves it, then hands the connection to the loop
	rc.read()
	rc.send("GET /slow HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach its dyno within 5 s")
	}
	if n := ed.served.Load(); n != 2 {
		t.Fatalf("the loop served %d requests, want 2: the slow one is not on a loop connection", n)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.server.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a loop request was in progress", err)
	case <-time.After(300 * time.Millisecond):
	}
	free()
	if code, body, _ := rc.read(); code != 200 || body != "finished" {
		t.Fatalf("the request in progress got %d %q, want 200 \"finished\"", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown did not return after the last loop request finished")
	}
	if !rc.closed(3 * time.Second) {
		t.Fatal("the loop connection stayed open after Shutdown")
	}
}

// TestEdgeCloseDuringHijack: a connection hijacked while Close runs,
// before the loop registered it, is closed as it enters the loop, and
// does not stay open serving a request Close should have cut.
func TestEdgeCloseDuringHijack(t *testing.T) {
	e, front, ed := edgeFront(t, ServerConfig{}, false)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	slow := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "finished")
	})
	t.Cleanup(free)
	e.app("slow", "a2")
	e.dyno("a2", 1, model.StateUp, slow)
	e.waitTable("slow", upCount(1))
	ed.afterHijack = func() { e.server.Close() }

	rc := dialFront(t, front, false)
	rc.send("GET /slow HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
	if !rc.closed(3 * time.Second) {
		t.Fatal("a connection hijacked during Close stayed open, serving its request")
	}
}

// TestEdgeLeavesClosingConnections: a first request that closes its
// connection is served by Go's server, without the loop's takeover.
func TestEdgeLeavesClosingConnections(t *testing.T) {
	_, front, ed := edgeFront(t, ServerConfig{}, false)
	rc := dialFront(t, front, false)
	rc.send("GET /once HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
	if code, body, _ := rc.read(); code != 200 || body != "GET /once  http" {
		t.Fatalf("got %d %q", code, body)
	}
	if !rc.closed(3 * time.Second) {
		t.Fatal("the connection stayed open after Connection: close")
	}
	if n := ed.served.Load(); n != 0 {
		t.Fatalf("the loop served %d requests of a closing connection, want 0", n)
	}
}
