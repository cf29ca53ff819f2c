package router

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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
