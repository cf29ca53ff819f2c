package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// scriptDyno is a dyno stand-in that runs script on each connection,
// after reading a request.
func scriptDyno(t *testing.T, script func(c net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					script(c, req)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// warmed answers the warm-up request (GET /warm, warmIntoLoop's and the
// parity tests') with "warm" and passes the others to h.
func warmed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			io.WriteString(w, "warm")
			return
		}
		h(w, r)
	}
}

// loopClient dials the front server and makes its connection enter an
// event loop: a first request (Go's server, then the edge loop), then
// the wait for the loop to take the connection.
func loopClient(t *testing.T, e *env, ed *edge) *rawClient {
	t.Helper()
	rc := dialFront(t, e.front, e.tls)
	warmIntoLoop(t, e, ed, rc)
	return rc
}

// warmIntoLoop makes rc's new connection enter an event loop: a first
// request, then the wait for a loop to take a connection.
func warmIntoLoop(t *testing.T, e *env, ed *edge, rc *rawClient) {
	t.Helper()
	before := ed.looped.Load()
	rc.send(getReq("warm"))
	if code, _, _ := rc.read(); code != 200 {
		t.Fatalf("warm-up: %d", code)
	}
	e.logs.next(t)
	for deadline := time.Now().Add(5 * time.Second); ed.looped.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not enter an event loop")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLoopSemantics checks that a request served by an event loop gets
// what the goroutine path gives it: responses passed on whole (chunked,
// trailers, until EOF, 1xx, HEAD), and each router error's status, code
// and connection outcome.
func TestLoopSemantics(t *testing.T) { bothSchemes(t, testLoopSemantics) }

func testLoopSemantics(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{FirstByteTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		Quarantine: time.Minute, ConnectWait: 300 * time.Millisecond}, tlsOn)
	ed := e.server.edge
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, says(t, "warm"))
	e.waitTable("hello", upCount(1))
	raw := func(resp string) string {
		return scriptDyno(t, func(c net.Conn, req *http.Request) { io.WriteString(c, resp) })
	}
	tests := []struct {
		name     string
		dyno     string // endpoint; "" for a crashed dyno
		req      string // sent as is; "" for a GET
		status   int
		body     string
		trailer  string // X-T trailer value wanted
		code     string // log line code= ("" none)
		logState string // log line status=
		closes   bool   // the router closes the connection after
	}{
		{name: "ok", dyno: says(t, "hi"), status: 200, body: "hi", logState: "200"},
		{name: "chunked with trailers", dyno: raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
			"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: v\r\n\r\n"), status: 200, body: "hello world", trailer: "v", logState: "200"},
		{name: "until EOF", dyno: scriptDyno(t, func(c net.Conn, req *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
			c.Close()
		}), status: 200, body: "all of it", logState: "200"},
		{name: "early hints", dyno: raw("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
			status: 200, body: "ok", logState: "200"},
		{name: "HEAD", dyno: raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), req: "HEAD / HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
			status: 200, logState: "200"},
		{name: "H12", dyno: scriptDyno(t, func(net.Conn, *http.Request) { time.Sleep(time.Second) }),
			status: 503, code: "H12", logState: "503"},
		{name: "H13", dyno: scriptDyno(t, func(c net.Conn, _ *http.Request) { c.Close() }),
			status: 503, code: "H13", logState: "503"},
		{name: "H21", dyno: refusedEndpoint(t), status: 503, code: "H21", logState: "503"},
		{name: "H25", dyno: raw("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"), status: 502, code: "H25", logState: "502"},
		{name: "H15", dyno: raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart"), status: -1, code: "H15", logState: "503", closes: true},
		{name: "H18", dyno: scriptDyno(t, func(c net.Conn, _ *http.Request) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
			c.Close()
		}), status: -1, code: "H18", logState: "503", closes: true},
		{name: "bad chunk", dyno: raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), status: -1, code: "H18", logState: "503", closes: true},
		{name: "crashed: a goroutine answers", dyno: "", status: 503, code: "H10", logState: "503"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, id := fmt.Sprintf("app%d", i), fmt.Sprintf("id%d", i)
			e.app(name, id)
			if tt.dyno == "" {
				e.dyno(id, 1, model.StateCrashed, "")
				e.waitTable(name, func(a *app) bool { return a != nil && a.crashed == 1 })
			} else {
				e.dyno(id, 1, model.StateUp, tt.dyno)
				e.waitTable(name, upCount(1))
			}
			rc := loopClient(t, e, ed)
			req := strings.Replace(tt.req, "app.localhost", name+".localhost", 1)
			if req == "" {
				req = "GET / HTTP/1.1\r\nHost: " + name + ".localhost\r\n\r\n"
			}
			rc.send(req)
			var head *http.Request
			if strings.HasPrefix(req, "HEAD") {
				head = &http.Request{Method: "HEAD"}
			}
			resp, err := http.ReadResponse(rc.br, head)
			if err == nil && resp.StatusCode == 103 {
				if resp.Header.Get("Link") != "</a.css>" {
					t.Fatalf("103 without its Link: %v", resp.Header)
				}
				resp, err = http.ReadResponse(rc.br, head)
			}
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
			}
			switch {
			case tt.status == -1:
				// The head went out; the body is cut: the client must not
				// take it for a whole one.
				if err == nil {
					t.Fatalf("a cut body read as whole: %q", body)
				}
			case err != nil:
				t.Fatalf("response: %v", err)
			case resp.StatusCode != tt.status || tt.status == 200 && string(body) != tt.body:
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			case resp.Trailer.Get("X-T") != tt.trailer:
				t.Fatalf("trailer X-T %q, want %q", resp.Trailer.Get("X-T"), tt.trailer)
			}
			l := e.logs.next(t)
			if got := field(l.line.Message, "code"); got != tt.code || field(l.line.Message, "status") != tt.logState {
				t.Fatalf("log line %q, want code=%q status=%s", l.line.Message, tt.code, tt.logState)
			}
			if tt.closes {
				if !rc.closed(2 * time.Second) {
					t.Fatal("the connection stayed open after a cut body")
				}
				return
			}
			// The connection goes on.
			rc.send(getReq("again"))
			if code, body, _ := rc.read(); code != 200 || body != "warm" {
				t.Fatalf("next request: %d %q", code, body)
			}
			e.logs.next(t)
		})
	}
}

// TestLoopClientLeaves checks the client's side of a loop's exchange: a
// client that hangs up while its dyno works (H27), one that takes none
// of a long response (H28), and a large body moved with back-pressure.
func TestLoopClientLeaves(t *testing.T) { bothSchemes(t, testLoopClientLeaves) }

func testLoopClientLeaves(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{IdleTimeout: 300 * time.Millisecond}, tlsOn)
	ed := e.server.edge
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, says(t, "warm"))
	e.waitTable("hello", upCount(1))
	const big = 64 << 20
	e.app("slow", "a1")
	e.dyno("a1", 1, model.StateUp, dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", fmt.Sprint(big))
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < big; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	e.waitTable("slow", upCount(1))

	t.Run("H27", func(t *testing.T) {
		rc := loopClient(t, e, ed)
		rc.send("GET /wait HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		rc.c.Close()
		l := e.logs.next(t)
		if field(l.line.Message, "code") != "H27" || field(l.line.Message, "status") != "499" {
			t.Fatalf("log line %q, want H27 status=499", l.line.Message)
		}
	})
	t.Run("H28", func(t *testing.T) {
		rc := loopClient(t, e, ed)
		rc.send("GET /big HTTP/1.1\r\nHost: slow.localhost\r\n\r\n") // and read none of it
		l := e.logs.next(t)
		if field(l.line.Message, "code") != "H28" || field(l.line.Message, "status") != "499" {
			t.Fatalf("log line %q, want H28 status=499", l.line.Message)
		}
		// What the client's socket took of the body, then the end.
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, rc.br); isTimeout(err) {
			t.Fatal("the connection stayed open after H28")
		}
	})
	t.Run("a large body", func(t *testing.T) {
		rc := loopClient(t, e, ed)
		rc.send("GET /big HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
		rc.c.SetDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A slow start: the loop must hold the dyno back, not the body.
		time.Sleep(100 * time.Millisecond)
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != big {
			t.Fatalf("read %d bytes (%v), want %d", n, err, big)
		}
		if l := e.logs.next(t); field(l.line.Message, "bytes") != fmt.Sprint(big) {
			t.Fatalf("log line %q", l.line.Message)
		}
	})
}

// TestLoopHandsBack checks what a loop gives back: a request with a body
// goes to Go's server and the connection comes back to a loop after it;
// responses to pipelined requests keep their order across the hand-offs.
func TestLoopHandsBack(t *testing.T) { bothSchemes(t, testLoopHandsBack) }

func testLoopHandsBack(t *testing.T, tlsOn bool) {
	e, _, ed := edgeFront(t, ServerConfig{}, tlsOn)
	scheme := map[bool]string{false: "http", true: "https"}[tlsOn]
	rc := loopClient(t, e, ed)
	before, looped := ed.handoffs.Load(), ed.looped.Load()
	rc.send(getReq("a") + "POST /b HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 3\r\n\r\nxyz" + getReq("c"))
	for _, want := range []string{"GET /a  " + scheme, "POST /b xyz " + scheme, "GET /c  " + scheme} {
		if code, body, _ := rc.read(); code != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", code, body, want)
		}
		e.logs.next(t)
	}
	if got := ed.handoffs.Load() - before; got != 1 {
		t.Fatalf("%d hand-offs, want 1", got)
	}
	// Back in a loop once Go's server is done with it.
	for deadline := time.Now().Add(5 * time.Second); ed.looped.Load() == looped; {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not go back to a loop")
		}
		time.Sleep(time.Millisecond)
	}
	rc.send(getReq("d"))
	if code, body, _ := rc.read(); code != 200 || body != "GET /d  "+scheme {
		t.Fatalf("%d %q", code, body)
	}
	e.logs.next(t)
}

// TestLoopShutdown checks Shutdown with connections in loops: an idle one
// closes at once, a busy one after its response, and Shutdown returns
// once they are gone.
func TestLoopShutdown(t *testing.T) { bothSchemes(t, testLoopShutdown) }

func testLoopShutdown(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{}, tlsOn)
	ed := e.server.edge
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, says(t, "warm"))
	e.waitTable("hello", upCount(1))
	e.app("slow", "a1")
	e.dyno("a1", 1, model.StateUp, dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	}))
	e.waitTable("slow", upCount(1))
	idle := loopClient(t, e, ed)
	busy := loopClient(t, e, ed)
	busy.send("GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	shutdown(t, e.server)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the busy request's response", d)
	}
	if code, body, _ := busy.read(); code != 200 || body != "done" {
		t.Fatalf("busy: %d %q", code, body)
	}
	if !busy.closed(time.Second) || !idle.closed(time.Second) {
		t.Fatal("a loop connection stayed open after Shutdown")
	}
	if n := ed.active.Load(); n != 0 {
		t.Fatalf("%d connections still counted after Shutdown", n)
	}
}

// TestLoopForwardingHeaders checks the headers a loop's request takes to
// its dyno, which the goroutine path finds in the request's context.
func TestLoopForwardingHeaders(t *testing.T) { bothSchemes(t, testLoopForwardingHeaders) }

func testLoopForwardingHeaders(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{}, tlsOn)
	ed := e.server.edge
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, dynoServer(t, warmed(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s|%s|%s|%s|%s|%s", r.Host, r.Header.Get("X-Forwarded-Port"), r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Via"), r.Header.Get("X-Request-Id"))
	})))
	e.waitTable("hello", upCount(1))
	rc := loopClient(t, e, ed)
	rc.send("GET /h HTTP/1.1\r\nHost: hello.localhost\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: abc-123\r\n\r\n")
	scheme := map[bool]string{false: "http", true: "https"}[tlsOn]
	want := "hello.localhost|" + e.frontPort() + "|10.0.0.1, 127.0.0.1|" + scheme + "|1.1 dyno|abc-123"
	if code, body, h := rc.read(); code != 200 || body != want || h.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("%d %q (X-Request-Id %q), want %q", code, body, h.Get("X-Request-Id"), want)
	}
	e.logs.next(t)
}

// TestLoopKeepAliveDyno: a dyno that says "Connection: keep-alive" and
// "Keep-Alive: timeout=5" on every response, as Node's http module does,
// is answered through the loop's response shortcut: its hop-by-hop
// headers are not passed on, and its connection is used again.
func TestLoopKeepAliveDyno(t *testing.T) { bothSchemes(t, testLoopKeepAliveDyno) }

func testLoopKeepAliveDyno(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{}, tlsOn)
	ed := e.server.edge
	var mu sync.Mutex
	from := map[string]string{} // request path: the dyno connection's remote address
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, scriptDyno(t, func(c net.Conn, req *http.Request) {
		mu.Lock()
		from[req.URL.Path] = c.RemoteAddr().String()
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-App: 1\r\nContent-Length: 2\r\n\r\nok")
	}))
	e.waitTable("hello", upCount(1))
	rc := loopClient(t, e, ed)
	paths := []string{"k1", "k2", "k3"}
	for _, p := range paths {
		rc.send(getReq(p))
		code, body, h := rc.read()
		if code != 200 || body != "ok" || h.Get("X-App") != "1" || h.Get("Keep-Alive") != "" || h.Get("Connection") != "" {
			t.Fatalf("GET /%s: %d %q %v, want 200 \"ok\" with X-App and neither Keep-Alive nor Connection", p, code, body, h)
		}
		e.logs.next(t)
	}
	mu.Lock()
	defer mu.Unlock()
	if from["/k1"] == "" || from["/k2"] != from["/k1"] || from["/k3"] != from["/k1"] {
		t.Fatalf("the loop's requests came over dyno connections %v, want one kept alive", from)
	}
}

// TestLoopRequestsShareNoHeaders checks that a loop's connection, which
// parses each of its requests and its dyno's responses into the same
// memory (reqParts, respParts), passes on each request's and response's
// own headers only: none left over from the one before, none lost.
func TestLoopRequestsShareNoHeaders(t *testing.T) { bothSchemes(t, testLoopRequestsShareNoHeaders) }

func testLoopRequestsShareNoHeaders(t *testing.T, tlsOn bool) {
	e := newEnvOver(t, Config{}, tlsOn)
	ed := e.server.edge
	e.app("hello", "a0")
	e.dyno("a0", 1, model.StateUp, dynoServer(t, warmed(func(w http.ResponseWriter, r *http.Request) {
		// The response's headers are named by the request's query.
		for _, kv := range strings.Split(r.URL.RawQuery, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				w.Header().Add(k, v)
			}
		}
		// The body lists the client's own headers the dyno got.
		var got []string
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X-C-") {
				got = append(got, k+"="+strings.Join(vs, ","))
			}
		}
		slices.Sort(got)
		io.WriteString(w, strings.Join(got, ";"))
	})))
	e.waitTable("hello", upCount(1))
	rc := loopClient(t, e, ed)
	steps := []struct {
		query, reqHeaders string
		wantBody          string
		wantResp          map[string]string // X-R- headers of the response
	}{
		{"X-R-A=1&X-R-B=2&X-R-B=3", "X-C-One: 1\r\nX-C-Two: 2\r\nX-C-Two: 2b\r\n", "X-C-One=1;X-C-Two=2,2b",
			map[string]string{"X-R-A": "1", "X-R-B": "2,3"}},
		{"X-R-C=4", "X-C-Three: 3\r\n", "X-C-Three=3", map[string]string{"X-R-C": "4"}},
		{"", "", "", map[string]string{}},
		{"X-R-A=5", "X-C-One: again\r\nUser-Agent: t\r\n", "X-C-One=again", map[string]string{"X-R-A": "5"}},
	}
	for i, st := range steps {
		rc.send("GET /h?" + st.query + " HTTP/1.1\r\nHost: hello.localhost\r\n" + st.reqHeaders + "\r\n")
		code, body, h := rc.read()
		if code != 200 || body != st.wantBody {
			t.Fatalf("request %d: %d %q, want 200 %q", i, code, body, st.wantBody)
		}
		got := map[string]string{}
		for k, vs := range h {
			if strings.HasPrefix(k, "X-R-") {
				got[k] = strings.Join(vs, ",")
			}
		}
		if !maps.Equal(got, st.wantResp) {
			t.Fatalf("request %d: response headers %v, want %v", i, got, st.wantResp)
		}
		e.logs.next(t)
	}
	if ed.loopServed.Load() < int64(len(steps)) {
		t.Fatalf("the loops served %d requests, want at least %d", ed.loopServed.Load(), len(steps))
	}
}

// bothSchemes runs test over plain HTTP and over HTTPS: HTTPS connections
// enter the loops too (tlsloop.go).
func bothSchemes(t *testing.T, test func(t *testing.T, tlsOn bool)) {
	t.Run("http", func(t *testing.T) { test(t, false) })
	t.Run("https", func(t *testing.T) { test(t, true) })
}

// TestLoopHandBackSendsHeldOutput checks that a response a loop could not
// write whole goes out at once when the client's next (pipelined) request
// goes back to a goroutine to wait for a starting dyno: it must not wait
// for that request's answer. Over HTTPS the held bytes are ciphertext the
// TLS transport writes (flushHeld).
func TestLoopHandBackSendsHeldOutput(t *testing.T) { bothSchemes(t, testLoopHandBackSendsHeldOutput) }

func testLoopHandBackSendsHeldOutput(t *testing.T, tlsOn bool) {
	const wait = 2 * time.Second
	big := strings.Repeat("x", 1<<20)
	// Small socket buffers on both sides: the loop holds what they do
	// not take.
	e, addr := parityFrontOver(t, Config{StartingWait: wait}, ServerConfig{}, false, 8192, tlsOn, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "warm")
	})
	ed := e.server.edge
	e.app("boot", "a2")
	e.dyno("a2", 1, model.StateStarting, "")
	e.waitTable("boot", func(a *app) bool { return a != nil && a.starting > 0 })
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if tlsOn {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	warmIntoLoop(t, e, ed, rc)
	rc.send(getReq("big") + "GET / HTTP/1.1\r\nHost: boot.localhost\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // the loop fills what it may hold
	start := time.Now()
	code, body, _ := rc.read()
	if code != 200 || len(body) != len(big) {
		t.Fatalf("the first response: %d, %d bytes, want 200 and %d", code, len(body), len(big))
	}
	if took := time.Since(start); took >= wait*3/4 {
		t.Fatalf("the first response's end took %v: it waited for the second request's dyno", took)
	}
}

// pieceConn writes each Write in pieces of piece bytes, with a pause
// between them: TLS records reach the router in parts.
type pieceConn struct {
	net.Conn
	piece int
}

func (c *pieceConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(c.piece, len(p))
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		time.Sleep(2 * time.Millisecond)
	}
	return n, nil
}

// TestLoopTLSRecordsInPieces checks that a loop serves pipelined HTTPS
// requests whose TLS records arrive a few bytes at a time: a record the
// loop read part of (crypto/tls keeps it across errWouldBlock) is finished
// at the next readiness.
func TestLoopTLSRecordsInPieces(t *testing.T) {
	e, front, ed := edgeFront(t, ServerConfig{}, true)
	raw, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	pc := &pieceConn{Conn: raw, piece: 1 << 20}
	c := tls.Client(pc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	warmIntoLoop(t, e, ed, rc)
	for _, piece := range []int{1, 3, 7, 100} {
		pc.piece = piece
		rc.send(getReq("a") + getReq("b"))
		for _, p := range []string{"a", "b"} {
			if code, body, _ := rc.read(); code != 200 || body != "GET /"+p+"  https" {
				t.Fatalf("records in %d-byte pieces: %d %q", piece, code, body)
			}
			e.logs.next(t)
		}
	}
	if n := ed.loopServed.Load(); n < 8 {
		t.Fatalf("the loops served %d requests, want the 8 pipelined ones", n)
	}
}

// TestLoopTLSKeyUpdate sends TLS 1.3 KeyUpdate messages (openssl
// s_client's "k": new client keys; "K": and new server keys asked for) on
// a connection in an event loop: the loop's crypto/tls must take the new
// keys, and answer with its own, between requests it serves.
func TestLoopTLSKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: it is the client that sends KeyUpdate (crypto/tls cannot)")
	}
	e, front, ed := edgeFront(t, ServerConfig{}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Not -quiet: that would turn off s_client's commands.
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", front.Listener.Addr().String(),
		"-tls1_3", "-alpn", "http/1.1", "-crlf")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw // one stream: responses and KEYUPDATE in order
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		stdin.Close()
		cmd.Wait()
		pr.Close()
	}()
	// What s_client prints, as it comes: a body ends with no newline.
	chunks := make(chan string, 100)
	go func() {
		defer close(chunks)
		b := make([]byte, 4096)
		for {
			n, err := pr.Read(b)
			if n > 0 {
				chunks <- string(b[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	var seen strings.Builder
	await := func(want string) {
		t.Helper()
		for {
			if i := strings.Index(seen.String(), want); i >= 0 {
				rest := seen.String()[i+len(want):]
				seen.Reset()
				seen.WriteString(rest)
				return
			}
			select {
			case c, ok := <-chunks:
				if !ok {
					t.Fatalf("openssl ended before it printed %q; it printed:\n%s", want, seen.String())
				}
				seen.WriteString(c)
			case <-ctx.Done():
				t.Fatalf("openssl did not print %q; it printed:\n%s", want, seen.String())
			}
		}
	}
	get := func(path string) {
		t.Helper()
		io.WriteString(stdin, "GET /"+path+" HTTP/1.1\nHost: hello.localhost\n\n")
		await("GET /" + path + "  https") // the dyno's answer
		e.logs.next(t)
	}
	before := ed.looped.Load()
	get("warm")
	for deadline := time.Now().Add(5 * time.Second); ed.looped.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not enter an event loop")
		}
		time.Sleep(time.Millisecond)
	}
	served := ed.loopServed.Load()
	for _, step := range []string{"k", "K", "k"} {
		// s_client takes a command from the start of what one read of
		// its input gets, and drops the rest: the request waits for it.
		io.WriteString(stdin, step+"\n")
		await("KEYUPDATE")
		get("after-" + step)
	}
	if n := ed.loopServed.Load() - served; n != 3 {
		t.Fatalf("the loops served %d of the 3 requests after a KeyUpdate, want all", n)
	}
}
