package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
)

// start runs a rendezvous on a free loopback port with a certificate of a
// fresh platform CA; it returns the server and the roots clients trust.
func start(t *testing.T, clientTimeout time.Duration) (*Server, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	p, err := certs.EnsurePlatform(dir, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.IssueServer([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", ClientTimeout: clientTimeout,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, p.CertPool()
}

func TestPipesBothWaysWithControl(t *testing.T) {
	s, roots := start(t, 5*time.Second)
	secret, token, err := s.Register("d1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	url := "rendezvous://" + s.Addr() + "/" + secret
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The dyno side first: it waits for the client.
	type got struct {
		data    strings.Builder
		eof     bool
		resize  [2]uint16
		signals []string
	}
	var g got
	var mu sync.Mutex
	served := make(chan error, 1)
	dynoReady := make(chan *DynoConn, 1)
	go func() {
		d, err := DialDyno(ctx, s.Addr(), token, roots)
		if err != nil {
			served <- err
			return
		}
		dynoReady <- d
		served <- d.Serve(Events{
			Data:   func(p []byte) error { mu.Lock(); g.data.Write(p); mu.Unlock(); return nil },
			EOF:    func() { mu.Lock(); g.eof = true; mu.Unlock() },
			Resize: func(c, r uint16) { mu.Lock(); g.resize = [2]uint16{c, r}; mu.Unlock() },
			Signal: func(n string) { mu.Lock(); g.signals = append(g.signals, n); mu.Unlock() },
		})
	}()
	time.Sleep(100 * time.Millisecond) // let the dyno side wait first
	c, err := Attach(ctx, url, roots)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := DialControl(ctx, url, roots)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	d := <-dynoReady
	if _, err := io.WriteString(c, "echo hi\n"); err != nil {
		t.Fatal(err)
	}
	ctrl.Send(ControlMessage{Resize: &WindowSize{Cols: 120, Rows: 40}})
	ctrl.Send(ControlMessage{Signal: "INT"})
	ctrl.Send(ControlMessage{EOF: true, Sent: int64(len("echo hi\n"))})
	if _, err := io.WriteString(d, "hi\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hi\r\n" {
		t.Fatalf("client read %q, %v", line, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		ok := g.data.String() == "echo hi\n" && g.eof && g.resize == [2]uint16{120, 40} && len(g.signals) == 1
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("dyno side got data %q eof %v resize %v signals %v", g.data.String(), g.eof, g.resize, g.signals)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The client hanging up ends the dyno side's Serve.
	c.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dyno side did not notice the client leaving")
	}
	d.Close()
}

func TestRefusals(t *testing.T) {
	s, roots := start(t, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secret, token, err := s.Register("d2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dial func() error
		want string
	}{
		{"wrong secret", func() error {
			_, err := Attach(ctx, "rendezvous://"+s.Addr()+"/nope", roots)
			return err
		}, "unknown or expired secret"},
		{"wrong token", func() error {
			_, err := DialDyno(ctx, s.Addr(), "nope", roots)
			return err
		}, "unknown or expired dyno token"},
		{"untrusted certificate", func() error {
			_, err := Attach(ctx, "rendezvous://"+s.Addr()+"/"+secret, x509.NewCertPool())
			return err
		}, "certificate"},
		{"dyno side alone past the client timeout", func() error {
			_, err := DialDyno(ctx, s.Addr(), token, roots)
			return err
		}, "no client attached"},
		{"expired secret", func() error {
			_, err := Attach(ctx, "rendezvous://"+s.Addr()+"/"+secret, roots)
			return err
		}, "unknown or expired secret"},
	}
	_, _, _ = s.Register("d4", time.Minute)
	idle, _, _ := s.Register("d5", time.Minute)
	time.Sleep(400 * time.Millisecond)
	tests = append(tests, struct {
		name string
		dial func() error
		want string
	}{"secret unused past the client timeout", func() error {
		_, err := Attach(ctx, "rendezvous://"+s.Addr()+"/"+idle, roots)
		return err
	}, "unknown or expired secret"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.dial()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}

	// A secret is used once.
	secret, token, _ = s.Register("d3", time.Minute)
	go func() {
		if d, err := DialDyno(ctx, s.Addr(), token, roots); err == nil {
			defer d.Close()
			d.Serve(Events{})
		}
	}()
	c, err := Attach(ctx, "rendezvous://"+s.Addr()+"/"+secret, roots)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Attach(ctx, "rendezvous://"+s.Addr()+"/"+secret, roots); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("second use of a secret: %v", err)
	}
}
