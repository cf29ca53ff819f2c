package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

func TestStreamsLargeBodies(t *testing.T) {
	const size = 10 << 20
	const first = 1 << 20
	e := newEnv(t, Config{})
	gotFirst := make(chan struct{})
	clientGotFirst := make(chan struct{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			// Upload: say when the first MiB arrived, before the client sent the rest.
			n, err := io.CopyN(io.Discard, r.Body, first)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			close(gotFirst)
			m, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprint(w, n+m)
			return
		}
		// Download: send the rest only once the client got the first MiB.
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if sent == first {
				w.(http.Flusher).Flush()
				select {
				case <-clientGotFirst:
				case <-time.After(5 * time.Second):
					return // the router buffered the response
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))

	t.Run("upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(chunk) {
				if sent == first {
					select {
					case <-gotFirst:
					case <-time.After(5 * time.Second):
						pw.CloseWithError(errors.New("the dyno never saw the first MiB: the router buffers uploads"))
						return
					}
				}
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", e.front.URL+"/up", pr)
		req.Host = "hello.localhost"
		req.ContentLength = size
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != strconv.Itoa(size) {
			t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, b, size)
		}
		e.logs.next(t)
	})
	t.Run("download", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.front.URL+"/down", nil)
		req.Host = "hello.localhost"
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, first)); err != nil {
			t.Fatalf("first MiB: %v", err)
		}
		close(clientGotFirst)
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n+first != size {
			t.Fatalf("got %d bytes (%v), want %d", n+first, err, size)
		}
		if l := e.logs.next(t); field(l.line.Message, "bytes") != strconv.Itoa(size) {
			t.Fatalf("log line %q, want bytes=%d", l.line.Message, size)
		}
	})
}

func TestUpgradeRoundTrip(t *testing.T) {
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(line)
			brw.Flush()
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
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("got %d %v, want 101 Upgrade: echo", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"ping\n", "pong pong\n"} {
		io.WriteString(c, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
	c.Close()
	if l := e.logs.next(t); field(l.line.Message, "status") != "101" {
		t.Fatalf("log line %q, want status=101", l.line.Message)
	}
}

func TestDynoBreaksMidResponse(t *testing.T) {
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the dyno drops the connection mid-body
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	req, _ := http.NewRequest("GET", e.front.URL, nil)
	req.Host = "hello.localhost"
	// The router buffers a response's first bytes (as Heroku's does, up to
	// 1 MB): the client sees the partial body then an error, or only the
	// error; never a complete response.
	if resp, err := e.client.Do(req); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("client read %q without an error; want the broken response to fail", b)
		}
	}
	l := e.logs.next(t)
	if !strings.HasPrefix(l.line.Message, `at=error code=H18 desc="Server Request Interrupted"`) ||
		field(l.line.Message, "sock") != "backend" || field(l.line.Message, "bytes") != "7" {
		t.Fatalf("log line %q, want H18 sock=backend bytes=7", l.line.Message)
	}
}

func TestConnectionClosedWithoutResponse(t *testing.T) {
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	resp, _ := e.get("hello.localhost", "/", nil)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, `at=error code=H13 desc="Connection closed without response"`) {
		t.Fatalf("log line %q, want H13", l.line.Message)
	}
}

func TestClientGoesAway(t *testing.T) {
	e := newEnv(t, Config{})
	arrived := make(chan struct{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the router drops the connection when the client leaves
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.front.URL, nil)
	req.Host = "hello.localhost"
	go func() { <-arrived; cancel() }()
	if _, err := e.client.Do(req); err == nil {
		t.Fatal("request succeeded after the client canceled it")
	}
	l := e.logs.next(t)
	if !strings.HasPrefix(l.line.Message, `at=warning code=H27 desc="Client Request Interrupted"`) || field(l.line.Message, "status") != "499" {
		t.Fatalf("log line %q, want at=warning H27 status=499", l.line.Message)
	}
}
