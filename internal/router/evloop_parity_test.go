package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/dyno-platform/dyno/internal/model"
)

// The tests of this file hold the event loops to the goroutine path: each
// runs both (noLoops) on a case the loops once got wrong.

// parityFront serves a router with cfg and scfg and one dyno, h, on a
// listener whose connections have a send buffer of sndBuf bytes (0: the
// system's); noLoops keeps connections on their goroutines.
func parityFront(t *testing.T, cfg Config, scfg ServerConfig, noLoops bool, sndBuf int, h http.HandlerFunc) (*env, string) {
	t.Helper()
	return parityFrontOver(t, cfg, scfg, noLoops, sndBuf, false, h)
}

// parityFrontOver is parityFront, over TLS when tlsOn (httptest's
// certificate for 127.0.0.1).
func parityFrontOver(t *testing.T, cfg Config, scfg ServerConfig, noLoops bool, sndBuf int, tlsOn bool, h http.HandlerFunc) (*env, string) {
	t.Helper()
	st, srv := newStore(t)
	logs := &testLogs{ch: make(chan logEntry, 10000)}
	cfg.Logs = logs
	r := New(cfg, st)
	startRouter(t, r)
	fsrv := NewHTTPServer(r, scfg)
	fsrv.edge.noLoops = noLoops
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		if sndBuf > 0 {
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndBuf) })
		}
		return nil
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsOn {
		ts := httptest.NewTLSServer(nil)
		fsrv.TLSConfig = &tls.Config{Certificates: ts.TLS.Certificates}
		ts.Close()
	}
	go fsrv.Serve(ln)
	t.Cleanup(func() { fsrv.Close() })
	e := &env{t: t, st: st, srv: srv, r: r, server: fsrv, logs: logs, tls: tlsOn}
	ep := dynoServer(t, h)
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	return e, ln.Addr().String()
}

func parityDial(t *testing.T, addr string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

// pipelined requests beyond clientInMax: the rest of the socket is never read again.
func TestLoopParityPipelineBeyondClientInMax(t *testing.T) {
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			_, addr := parityFront(t, Config{}, ServerConfig{HeaderTimeout: 2 * time.Second}, noLoops, 0, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/0" {
					time.Sleep(300 * time.Millisecond)
				}
				io.WriteString(w, "ok")
			})
			rc := parityDial(t, addr)
			rc.send(getReq("warm"))
			rc.read()
			time.Sleep(50 * time.Millisecond) // into the loop
			pad := strings.Repeat("x", 900)
			var b strings.Builder
			const n = 400
			for i := range n {
				fmt.Fprintf(&b, "GET /%d HTTP/1.1\r\nHost: hello.localhost\r\nX-Pad: %s\r\n\r\n", i, pad)
			}
			go io.WriteString(rc.c, b.String())
			start := time.Now()
			for i := range n {
				resp, err := http.ReadResponse(rc.br, nil)
				if err != nil {
					t.Fatalf("response %d/%d after %v: %v", i, n, time.Since(start), err)
				}
				io.ReadAll(resp.Body)
			}
		})
	}
}

// a response head that comes just before the first-byte deadline, then a slow body: false H15.
func TestLoopParityStaleDeadlineH15(t *testing.T) {
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			e, addr := parityFront(t, Config{FirstByteTimeout: 400 * time.Millisecond, IdleTimeout: 3 * time.Second, ConnectTimeout: 5 * time.Second}, ServerConfig{}, noLoops, 0, warmed(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(340 * time.Millisecond)
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				for range 8 {
					time.Sleep(60 * time.Millisecond)
					io.WriteString(w, "chunk\n")
					w.(http.Flusher).Flush()
				}
			}))
			rc := parityDial(t, addr)
			rc.send(getReq("warm"))
			rc.read()
			e.logs.next(t)
			time.Sleep(50 * time.Millisecond)
			rc.send(getReq("warm"))
			rc.read()
			e.logs.next(t)
			time.Sleep(600 * time.Millisecond)
			rc.send(getReq("slow"))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			l := e.logs.next(t)
			if err != nil || len(b) != 8*6 {
				t.Fatalf("body %d bytes, err %v; log %s", len(b), err, l.line.Message)
			}
		})
	}
}

// back-pressure: the dyno's body waits in the socket while a slow client drains the loop's output; false H15?
func TestLoopParityBackpressureH15(t *testing.T) {
	const size = 768 << 10
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			e, addr := parityFront(t, Config{IdleTimeout: 250 * time.Millisecond}, ServerConfig{}, noLoops, 16<<10, warmed(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Write(make([]byte, size))
			}))
			rc := paritySlowClient(t, addr, 8<<10)
			rc.send(getReq("warm"))
			rc.read()
			e.logs.next(t)
			time.Sleep(50 * time.Millisecond)
			rc.send(getReq("big"))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			buf := make([]byte, 4096)
			n := 0
			for {
				k, err := resp.Body.Read(buf)
				n += k
				if err != nil {
					break
				}
				time.Sleep(8 * time.Millisecond) // ~500 KB/s: outHigh/2 takes longer than the idle window
			}
			l := e.logs.next(t)
			t.Logf("read %d of %d in %v; log %s", n, size, time.Since(start), l.line.Message)
			if n != size {
				t.Fail()
			}
		})
	}
}

// paritySlowClient dials addr with a receive buffer of rcvBuf bytes: a
// client whose socket takes little of a response.
func paritySlowClient(t *testing.T, addr string, rcvBuf int) *rawClient {
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf) })
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReaderSize(c, 4096)}
}

func paritySlowRead(resp *http.Response, pause time.Duration) (int, error) {
	buf := make([]byte, 4096)
	n := 0
	for {
		k, err := resp.Body.Read(buf)
		n += k
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		time.Sleep(pause)
	}
}

// the idle timer (ServerConfig.IdleTimeout) runs while the last response still drains: cut.
func TestLoopParityIdleCutsDrain(t *testing.T) {
	const size = 200 << 10
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			e, addr := parityFront(t, Config{IdleTimeout: 10 * time.Second}, ServerConfig{IdleTimeout: time.Second}, noLoops, 16<<10, warmed(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Write(make([]byte, size))
			}))
			rc := paritySlowClient(t, addr, 8<<10)
			rc.send(getReq("warm"))
			rc.read()
			e.logs.next(t)
			time.Sleep(50 * time.Millisecond)
			rc.send(getReq("big"))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := paritySlowRead(resp, 40*time.Millisecond)
			l := e.logs.next(t)
			t.Logf("read %d of %d in %v (err %v); log %s", n, size, time.Since(start), err, l.line.Message)
			if n != size {
				t.Fail()
			}
		})
	}
}

// a Connection: close response that drained through EPOLLOUT: when does the server close?
func TestLoopParityClosingAfterDrain(t *testing.T) {
	const size = 300 << 10
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			e, addr := parityFront(t, Config{IdleTimeout: 5 * time.Second}, ServerConfig{}, noLoops, 16<<10, warmed(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.Write(make([]byte, size))
			}))
			rc := paritySlowClient(t, addr, 8<<10)
			rc.send(getReq("warm"))
			rc.read()
			e.logs.next(t)
			time.Sleep(50 * time.Millisecond)
			rc.send("GET /big HTTP/1.1\r\nHost: hello.localhost\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := paritySlowRead(resp, 5*time.Millisecond)
			start := time.Now()
			closed := rc.closed(10 * time.Second)
			t.Logf("read %d (err %v); closed=%v %v after the body", n, err, closed, time.Since(start))
			if time.Since(start) > time.Second {
				t.Fail()
			}
		})
	}
}

// an enter posted after cmdExit in the same batch is dropped: fd, e.active and clientConns leak.
func TestLoopParityEnterAfterExitDropped(t *testing.T) {
	e, addr := parityFront(t, Config{}, ServerConfig{}, false, 0, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ed := e.server.edge
	a := parityDial(t, addr)
	a.send(getReq("a"))
	a.read()
	e.logs.next(t)
	time.Sleep(100 * time.Millisecond)
	ed.loopsMu.Lock()
	loops := ed.loops
	ed.loopsMu.Unlock()
	if len(loops) == 0 {
		t.Fatal("no loops")
	}
	// stopLoops' cmdExit is in the inbox, not yet taken (the loop was not woken yet).
	for _, l := range loops {
		l.mu.Lock()
		l.inbox = append(l.inbox, loopMsg{cmd: cmdExit})
		l.woken = true
		l.mu.Unlock()
	}
	before := e.r.metrics.clientConns.Load()
	b := parityDial(t, addr)
	b.send(getReq("b"))
	b.read()
	e.logs.next(t)
	time.Sleep(100 * time.Millisecond) // b's enter is posted behind cmdExit
	for _, l := range loops {
		one := uint64(1)
		rawWrite(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
		<-l.done
	}
	t.Logf("active=%d clientConns before=%d after=%d", ed.active.Load(), before, e.r.metrics.clientConns.Load())
	if !a.closed(time.Second) {
		t.Error("a stayed open")
	}
	if !b.closed(2 * time.Second) {
		t.Error("b stayed open after its loop exited: its dup'd fd leaked")
	}
	if ed.active.Load() != 0 {
		t.Errorf("e.active = %d after every loop exited", ed.active.Load())
	}
}

// a retired dyno: the loops' idle connections to it stay open (pools never cleaned).
func TestLoopParityRetiredDynoPool(t *testing.T) {
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			e, addr := parityFront(t, Config{}, ServerConfig{}, noLoops, 0, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			var open atomic.Int64
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "two") }))
			s.Config.ConnState = func(c net.Conn, st http.ConnState) {
				switch st {
				case http.StateNew:
					open.Add(1)
				case http.StateClosed, http.StateHijacked:
					open.Add(-1)
				}
			}
			s.Start()
			t.Cleanup(s.Close)
			e.deleteDyno("a1", 1)
			e.dyno("a1", 2, model.StateUp, s.Listener.Addr().String())
			e.waitTable("hello", func(a *app) bool { return a != nil && len(a.up) == 1 && a.up[0].endpoint == s.Listener.Addr().String() })
			rc := parityDial(t, addr)
			for i := range 3 {
				rc.send(getReq(fmt.Sprint(i)))
				rc.read()
				e.logs.next(t)
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("open dyno conns before retire: %d", open.Load())
			e.deleteDyno("a1", 2)
			e.waitTable("hello", upCount(0))
			for deadline := time.Now().Add(3 * sweepEvery); open.Load() != 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := open.Load(); n != 0 {
				t.Errorf("%d connections to the retired dyno still open", n)
			}
		})
	}
}

// TestLoopParityPipelinedAnswersHeldBack checks that a client that
// pipelines requests the router answers itself (404s) and reads none of
// the answers is held back, as Go's server holds it back: the router does
// not buffer the answers without bound, and the loop's other connections
// are served meanwhile.
func TestLoopParityPipelinedAnswersHeldBack(t *testing.T) {
	for _, noLoops := range []bool{true, false} {
		t.Run(fmt.Sprint("noLoops=", noLoops), func(t *testing.T) {
			_, addr := parityFront(t, Config{}, ServerConfig{}, noLoops, 0, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			other := parityDial(t, addr)
			other.send(getReq("warm"))
			other.read()
			c := paritySlowClient(t, addr, 4<<10).c
			io.WriteString(c, getReq("warm"))
			c.Read(make([]byte, 4096))
			time.Sleep(100 * time.Millisecond) // both in a loop
			req := strings.Repeat("GET / HTTP/1.1\r\nHost: nosuch.example\r\n\r\n", 1000)
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			sent := 0
			for sent < 8<<20 {
				n, err := io.WriteString(c, req)
				sent += n
				if err != nil {
					break
				}
			}
			start := time.Now()
			other.send(getReq("meanwhile"))
			if code, _, _ := other.read(); code != 200 || time.Since(start) > time.Second {
				t.Fatalf("another connection's request: %d after %v", code, time.Since(start))
			}
			t.Logf("the client sent %d KB before it was held back", sent>>10)
			if sent >= 8<<20 { // Go's server stops taking them after about 4 MB here
				t.Fatalf("the client sent %d MB without reading a response: nothing held it back", sent>>20)
			}
		})
	}
}
