package router

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// TestStreamsOneGigabyte sends 1 GiB down and 1 GiB up through the router
// and checks the router holds no whole body: its heap stays small.
func TestStreamsOneGigabyte(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB through the router; skipped with -short")
	}
	const size = 1 << 30
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		if r.Method == "POST" {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprint(w, n)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 256<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	e.app("big", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("big", upCount(1))

	// Sample the heap while the bodies move; the backend and client share
	// the process, but they stream in fixed chunks too.
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	// A first request on the client's connection, so that the download's
	// goes through an event loop (evloop.go), as a kept-alive client's does.
	ed := e.server.edge
	if resp, _ := e.get("big.localhost", "/warm", nil); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(5 * time.Second); ed.looped.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the client's connection did not enter an event loop")
		}
		time.Sleep(time.Millisecond)
	}
	served := ed.loopServed.Load()

	start := time.Now()
	get, err := http.NewRequest("GET", e.front.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Host = "big.localhost"
	resp, err := e.client.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || got != size {
		t.Fatalf("downloaded %d bytes (%v), want %d", got, err, size)
	}
	down := time.Since(start)
	if ed.loopServed.Load() != served+1 {
		t.Fatal("the download did not go through the event loop")
	}

	start = time.Now()
	req, err := http.NewRequest("POST", e.front.URL+"/", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "big.localhost"
	req.ContentLength = size
	up, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(up.Body)
	up.Body.Close()
	upTook := time.Since(start)
	close(stop)
	<-sampled
	if string(body) != strconv.Itoa(size) {
		t.Fatalf("the dyno received %s bytes, want %d", body, size)
	}
	t.Logf("1 GiB down in %s (%.0f MB/s), 1 GiB up in %s (%.0f MB/s), peak heap in use %d MB",
		down, float64(size)/down.Seconds()/1e6, upTook, float64(size)/upTook.Seconds()/1e6, peak.Load()>>20)
	if peak.Load() > 128<<20 {
		t.Errorf("heap in use peaked at %d MB while streaming 1 GiB: something buffers whole bodies", peak.Load()>>20)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
