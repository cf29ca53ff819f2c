package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeUntilWaitsForRequests checks the role every listener of dyno
// server and dyno router runs: when its context ends, ServeUntil returns
// only after the request in progress got its whole response, or after the
// grace period, with the connection closed.
func TestServeUntilWaitsForRequests(t *testing.T) {
	tests := []struct {
		name      string
		hold      time.Duration // how long the handler takes after the stop
		grace     time.Duration
		wantBody  bool
		minReturn time.Duration // ServeUntil returns no sooner after the stop
	}{
		{"a request finishing within the grace period", 300 * time.Millisecond, 5 * time.Second, true, 300 * time.Millisecond},
		{"a request outliving the grace period", time.Hour, 200 * time.Millisecond, false, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered := make(chan struct{})
			release := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte("first half,"))
				w.(http.Flusher).Flush()
				close(entered)
				select {
				case <-release:
				case <-time.After(tt.hold):
				}
				w.Write([]byte("second half"))
			})}
			defer close(release)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			returned := make(chan error, 1)
			go func() { returned <- ServeUntil(ctx, srv, ln, tt.grace) }()

			body := make(chan string, 1)
			go func() {
				resp, err := http.Get("http://" + ln.Addr().String() + "/")
				if err != nil {
					body <- "error: " + err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body <- string(b)
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the request never reached the handler")
			}
			stopAt := time.Now()
			cancel()
			select {
			case err := <-returned:
				if err != nil {
					t.Fatalf("ServeUntil = %v, want nil after a stop", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeUntil did not return within 10 s of the stop")
			}
			if took := time.Since(stopAt); took < tt.minReturn {
				t.Errorf("ServeUntil returned %v after the stop, before the request was over (want at least %v)", took, tt.minReturn)
			}
			got := <-body
			if full := got == "first half,second half"; full != tt.wantBody {
				t.Errorf("the client read %q; whole response expected: %v", got, tt.wantBody)
			}
		})
	}
}

func TestServeUntilReportsServeErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once
	done := make(chan error, 1)
	go func() { done <- ServeUntil(context.Background(), &http.Server{}, ln, time.Second) }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("ServeUntil on a closed listener = %v, want its error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeUntil did not return when Serve failed")
	}
}

func TestURLSecretIsSharedByNodesWithThePassword(t *testing.T) {
	a, b, other := urlSecret("pw"), urlSecret("pw"), urlSecret("another pw")
	if string(a) != string(b) || len(a) != 32 {
		t.Fatalf("two nodes with one NATS password got different URL secrets (%x, %x)", a, b)
	}
	if string(a) == string(other) {
		t.Fatal("different NATS passwords gave the same URL secret")
	}
}
