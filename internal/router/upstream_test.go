package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testUpstream is a pool to addr dialed the way the router dials dynos.
func testUpstream(t *testing.T, addr string, firstByte, idle time.Duration) *upstream {
	t.Helper()
	r := New(Config{FirstByteTimeout: firstByte, IdleTimeout: idle, ConnectTimeout: time.Second}, nil)
	u := &upstream{addr: addr, dial: r.dialDyno, firstByte: r.cfg.FirstByteTimeout, idle: r.cfg.IdleTimeout,
		gone: new(atomic.Bool), fallback: r.newTransport()}
	t.Cleanup(u.CloseIdleConnections)
	return u
}

// countingServer is a dyno that counts the connections made to it.
func countingServer(t *testing.T, h http.HandlerFunc) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), conns
}

func upGet(t *testing.T, u *upstream, ctx context.Context, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+u.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u.RoundTrip(req)
}

func (u *upstream) idleCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

func TestUpstreamPool(t *testing.T) {
	addr, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 100))
	})
	tests := []struct {
		name      string
		path      string
		read      int // bytes to read before Close; -1: all
		wantIdle  int // idle connections after the request
		wantConns int64
	}{
		{"first request dials", "/", -1, 1, 1},
		{"second reuses", "/", -1, 1, 1},
		{"third reuses", "/", -1, 1, 1},
		{"Connection: close is not pooled", "/close", -1, 0, 1},
		{"next dials again", "/", -1, 1, 2},
		{"closed before the end: discarded", "/", 10, 0, 2},
		{"then dials again", "/", -1, 1, 3},
	}
	u := testUpstream(t, addr, 0, 0)
	for _, tt := range tests {
		resp, err := upGet(t, u, context.Background(), tt.path)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []byte
		if tt.read < 0 {
			got, err = io.ReadAll(resp.Body)
		} else {
			got = make([]byte, tt.read)
			_, err = io.ReadFull(resp.Body, got)
		}
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || tt.read < 0 && len(got) != 100 {
			t.Fatalf("%s: %d, %d bytes, %v", tt.name, resp.StatusCode, len(got), err)
		}
		if n := u.idleCount(); n != tt.wantIdle {
			t.Errorf("%s: %d idle connections, want %d", tt.name, n, tt.wantIdle)
		}
		// The server counts a connection when it reads its first request.
		if n := conns.Load(); n != tt.wantConns {
			t.Errorf("%s: %d connections made, want %d", tt.name, n, tt.wantConns)
		}
	}
	u.gone.Store(true)
	resp, err := upGet(t, u, context.Background(), "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := u.idleCount(); n != 0 {
		t.Errorf("a dyno that left the table kept %d idle connections", n)
	}
}

// rawServer answers every connection with handle.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUpstreamTimeouts(t *testing.T) {
	tests := []struct {
		name   string
		handle func(c net.Conn, br *bufio.Reader)
		inBody bool // the timeout hits the body, not the head
		code   *hcode
	}{
		{"no first byte: H12", func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			time.Sleep(time.Second)
		}, false, errH12},
		{"partial head: H12", func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-")
			time.Sleep(time.Second)
		}, false, errH12},
		{"idle body: H15", func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
			time.Sleep(time.Second)
		}, true, errH15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testUpstream(t, rawServer(t, tt.handle), 150*time.Millisecond, 150*time.Millisecond)
			start := time.Now()
			resp, err := upGet(t, u, context.Background(), "/")
			if !tt.inBody {
				if err == nil || classify(err, false) != tt.code {
					t.Fatalf("err %v, want one classified %s", err, tt.code.code)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if !isTimeout(err) {
					t.Fatalf("body read error %v, want a timeout (H15)", err)
				}
			}
			if d := time.Since(start); d < 150*time.Millisecond || d > 900*time.Millisecond {
				t.Fatalf("gave up after %v, want after the 150ms window", d)
			}
			if n := u.idleCount(); n != 0 {
				t.Fatalf("%d idle connections after a timeout, want 0", n)
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
		code *hcode
	}{
		{"refused: H21", refusedEndpoint, errH21},
		{"closed without response: H13", func(t *testing.T) string {
			return rawServer(t, func(c net.Conn, br *bufio.Reader) { http.ReadRequest(br) })
		}, errH13},
		{"not HTTP: H13", func(t *testing.T) string {
			return rawServer(t, func(c net.Conn, br *bufio.Reader) { http.ReadRequest(br); io.WriteString(c, "SSH-2.0\r\n\r\n") })
		}, errH13},
		{"oversized head: H25", func(t *testing.T) string {
			return rawServer(t, func(c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				io.WriteString(c, "HTTP/1.1 200 OK\r\n")
				for i := 0; i < maxResponseHeaders/1000+10; i++ {
					fmt.Fprintf(c, "X-%d: %s\r\n", i, strings.Repeat("v", 990))
				}
			})
		}, errH25Header},
		{"unasked upgrade: H13", func(t *testing.T) string {
			return rawServer(t, func(c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
			})
		}, errH13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testUpstream(t, tt.addr(t), time.Second, time.Second)
			_, err := upGet(t, u, context.Background(), "/")
			if got := classify(err, false); got != tt.code {
				t.Fatalf("err %v classified %s, want %s", err, got.code, tt.code.code)
			}
		})
	}
	t.Run("dial errors stay dialError", func(t *testing.T) {
		u := testUpstream(t, refusedEndpoint(t), time.Second, time.Second)
		_, err := upGet(t, u, context.Background(), "/")
		var de *dialError
		if !errors.As(err, &de) {
			t.Fatalf("err %T %v, want a *dialError for the retry and quarantine logic", err, err)
		}
	})
}

// TestUpstreamRetriesStaleConn: a kept-alive connection the dyno closed
// while it was idle is replaced, invisibly to the request.
func TestUpstreamRetriesStaleConn(t *testing.T) {
	var served atomic.Int64
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		served.Add(1)
		// Keep-alive announced, then the connection closes anyway.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	u := testUpstream(t, addr, time.Second, time.Second)
	for i := range 5 {
		resp, err := upGet(t, u, context.Background(), "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
		time.Sleep(10 * time.Millisecond) // let the close arrive
	}
	if n := served.Load(); n != 5 {
		t.Fatalf("the dyno served %d requests, want 5", n)
	}
}

func TestUpstreamCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		arrived <- struct{}{}
		io.Copy(io.Discard, br) // until the router closes the connection
	})
	u := testUpstream(t, addr, 5*time.Second, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	start := time.Now()
	_, err := upGet(t, u, ctx, "/")
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

func TestUpstreamConcurrent(t *testing.T) {
	addr, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})
	u := testUpstream(t, addr, time.Second, time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				path := fmt.Sprintf("/%d/%d", g, i)
				resp, err := upGet(t, u, context.Background(), path)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != path {
					t.Errorf("got %q %v, want %q", b, err, path)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := conns.Load(); n > 8 {
		t.Errorf("%d connections for 8 concurrent clients, want at most 8", n)
	}
}

func TestFastPathChoice(t *testing.T) {
	tests := []struct {
		method string
		body   io.Reader
		hdr    string
		fast   bool
	}{
		{"GET", nil, "", true},
		{"HEAD", nil, "", true},
		{"OPTIONS", nil, "", true},
		{"POST", nil, "", false},
		{"DELETE", nil, "", false},
		{"GET", strings.NewReader("x"), "", false},
		{"GET", nil, "Upgrade", false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "http://x/", tt.body)
		req.URL.Scheme = "http"
		if tt.body == nil {
			req.Body = nil
		}
		if tt.hdr != "" {
			req.Header.Set(tt.hdr, "websocket")
		}
		if got := fastPath(req); got != tt.fast {
			t.Errorf("%s body=%v %s: fast %v, want %v", tt.method, tt.body != nil, tt.hdr, got, tt.fast)
		}
	}
}
