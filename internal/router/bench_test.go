package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

type discardLogs struct{}

func (discardLogs) Publish(string, model.LogLine) {}

// discardWriter is the cheapest ResponseWriter, to measure the router alone.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkProxy sends parallel GETs through the router to a local dyno.
// "handler" calls ServeHTTP directly (router + transport + dyno server);
// "http" adds a real client and front server, as a user would see it.
func BenchmarkProxy(b *testing.B) {
	st, _ := newStore(b)
	r := New(Config{Logs: discardLogs{}}, st)
	startRouter(b, r)
	dyno := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer dyno.Close()
	ctx := context.Background()
	if _, err := st.AppNames.Put(ctx, "hello", model.AppName{ID: "a1"}); err != nil {
		b.Fatal(err)
	}
	s := model.DynoStatus{ID: "d1", AppID: "a1", Type: "web", Name: "web.1", State: model.StateUp, Endpoint: dyno.Listener.Addr().String()}
	if _, err := st.Statuses.Put(ctx, model.StatusKey("a1", "d1"), s); err != nil {
		b.Fatal(err)
	}
	for deadline := time.After(10 * time.Second); ; {
		t := r.table.Load()
		if a := t.apps["hello"]; a != nil && len(a.up) == 1 {
			break
		}
		select {
		case <-t.changed:
		case <-deadline:
			b.Fatal("route not in the table after 10 s")
		}
	}

	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := httptest.NewRequest("GET", "http://hello.localhost/", nil)
			w := &discardWriter{h: http.Header{}}
			for pb.Next() {
				clear(w.h)
				r.ServeHTTP(w, req)
			}
		})
	})
	b.Run("http", func(b *testing.B) {
		front := httptest.NewServer(r)
		defer front.Close()
		tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", front.URL, nil)
				req.Host = "hello.localhost"
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	})
}

// BenchmarkEdge measures the edge loop alone: raw keep-alive clients send
// GETs through NewHTTPServer's server to a raw dyno that answers a fixed
// 1 KB response, so that allocations and CPU are the router's.
func BenchmarkEdge(b *testing.B) {
	st, _ := newStore(b)
	r := New(Config{Logs: discardLogs{}}, st)
	startRouter(b, r)
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 26 Nov 2026 17:00:00 GMT\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)
	dyno := keepAliveDyno(b, resp)
	ctx := context.Background()
	if _, err := st.AppNames.Put(ctx, "hello", model.AppName{ID: "a1"}); err != nil {
		b.Fatal(err)
	}
	s := model.DynoStatus{ID: "d1", AppID: "a1", Type: "web", Name: "web.1", State: model.StateUp, Endpoint: dyno}
	if _, err := st.Statuses.Put(ctx, model.StatusKey("a1", "d1"), s); err != nil {
		b.Fatal(err)
	}
	for deadline := time.After(10 * time.Second); ; {
		t := r.table.Load()
		if a := t.apps["hello"]; a != nil && len(a.up) == 1 {
			break
		}
		select {
		case <-t.changed:
		case <-deadline:
			b.Fatal("route not in the table after 10 s")
		}
	}
	front, _ := startFront(b, r, ServerConfig{}, false)
	req := []byte("GET /bench HTTP/1.1\r\nHost: hello.localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", front.Listener.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readFixed(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// readFixed reads one response with a Content-Length, without allocating.
func readFixed(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return errors.New("response without Content-Length")
	}
	_, err := br.Discard(n)
	return err
}

// keepAliveDyno answers every request head on a connection with resp.
func keepAliveDyno(b *testing.B, resp string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				out := []byte(resp)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
