package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/model"
)

// echoHeaders is a dyno that answers with what the router told it.
func echoHeaders(t *testing.T) string {
	return dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proto="+r.Header.Get("X-Forwarded-Proto")+" port="+r.Header.Get("X-Forwarded-Port")+" host="+r.Host+" "+r.Proto)
	})
}

func (e *env) domain(host, appID string) {
	e.t.Helper()
	d := model.Domain{ID: "d-" + host, AppID: appID, Hostname: host, Kind: model.DomainKindCustom}
	if _, err := e.st.Domains.Put(context.Background(), model.DomainKey(host), d); err != nil {
		e.t.Fatal(err)
	}
}

// waitCustom waits until host resolves (or not) to an app name.
func (e *env) waitCustom(host, want string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := e.r.customName(host)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("custom host %s resolves to %q, want %q", host, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCustomDomainsOverHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.app("other", "a2")
	e.dyno("a1", 1, model.StateUp, says(t, "hello-dyno"))
	e.dyno("a2", 1, model.StateUp, says(t, "other-dyno"))
	e.waitTable("hello", upCount(1))
	e.waitTable("other", upCount(1))
	e.domain("www.example.com", "a1")
	e.domain("*.example.org", "a2")
	e.waitCustom("www.example.com", "hello")
	e.waitCustom("api.example.org", "other")

	tests := []struct {
		host       string
		wantStatus int
		wantBody   string
		wantApp    string
	}{
		{"www.example.com", 200, "hello-dyno", "a1"},
		{"WWW.Example.COM:8080", 200, "hello-dyno", "a1"},
		{"www.example.com.", 200, "hello-dyno", "a1"},
		{"api.example.org", 200, "other-dyno", "a2"}, // wildcard
		{"a.b.example.org", 404, "There's nothing here", ""},
		{"example.org", 404, "There's nothing here", ""},
		{"example.com", 404, "There's nothing here", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			resp, body := e.get(tc.host, "/", nil)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("Host %s: %d %q, want %d %q", tc.host, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if tc.wantApp != "" {
				if l := e.logs.next(t); l.appID != tc.wantApp || !strings.Contains(l.line.Message, " protocol=http") || strings.Contains(l.line.Message, "tls=") {
					t.Fatalf("log line %+v, want one for %s with protocol=http", l, tc.wantApp)
				}
			}
		})
	}

	// An app renamed keeps its domains; a removed domain stops routing.
	if err := e.st.AppNames.Delete(context.Background(), "hello", 0); err != nil {
		t.Fatal(err)
	}
	e.app("renamed", "a1")
	e.waitCustom("www.example.com", "renamed")
	if err := e.st.Domains.Delete(context.Background(), model.DomainKey("www.example.com"), 0); err != nil {
		t.Fatal(err)
	}
	e.waitCustom("www.example.com", "")
	if resp, _ := e.get("www.example.com", "/", nil); resp.StatusCode != 404 {
		t.Fatalf("a removed domain answers %d", resp.StatusCode)
	}
}

// tlsFront serves the router over TLS with the certificate manager, as
// dyno server does, and returns its port.
func tlsFront(t *testing.T, e *env, m *certs.Manager) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(e.r, ServerConfig{})
	srv.TLSConfig = m.TLSConfig()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// tlsClient trusts only pool and dials 127.0.0.1 whatever the URL's host.
func tlsClient(t *testing.T, pool *x509.CertPool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:"+port)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestHTTPS(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, echoHeaders(t))
	e.waitTable("hello", upCount(1))
	e.domain("www.example.com", "a1")
	e.waitCustom("www.example.com", "hello")

	p, err := certs.EnsurePlatform(t.TempDir(), "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := certs.NewManager(certs.ManagerConfig{Platform: p}, e.st)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runDone })
	port := tlsFront(t, e, m)

	// The platform CA is all a client needs for <app>.<domain>.
	resp, err := tlsClient(t, p.CertPool()).Get("https://hello.localhost:" + port + "/")
	if err != nil {
		t.Fatalf("HTTPS with only the platform CA trusted: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if want := "proto=https port=" + port + " host=hello.localhost:" + port + " HTTP/1.1"; string(body) != want {
		t.Fatalf("the dyno saw %q, want %q", body, want)
	}
	l := e.logs.next(t)
	if !strings.HasSuffix(l.line.Message, " protocol=https tls=true tls_version=tls1.3") {
		t.Fatalf("router log line %q, want protocol=https tls=true tls_version=tls1.3", l.line.Message)
	}
	// HTTP/1.1 over TLS: the second request of the connection is the
	// connection loop's.
	h1 := tlsClient(t, p.CertPool())
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	for i := 0; i < 2; i++ {
		resp, err := h1.Get("https://hello.localhost:" + port + "/")
		if err != nil {
			t.Fatalf("HTTP/1.1 over TLS, request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 1 || !strings.HasPrefix(string(body), "proto=https ") {
			t.Fatalf("HTTP/1.1 over TLS, request %d: %d over %s, %q", i+1, resp.StatusCode, resp.Proto, body)
		}
		e.logs.next(t)
	}

	// A custom domain with an uploaded certificate gets it by SNI; a client
	// trusting only that certificate connects.
	now := time.Now()
	chain, key, err := certs.SelfSigned([]string{"www.example.com"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Certs.Put(ctx, model.CertificateKey("a1", "c1"), model.Certificate{ID: "c1", AppID: "a1", Name: "c1", CertificateChain: chain, PrivateKey: key, Domains: []string{"www.example.com"}}); err != nil {
		t.Fatal(err)
	}
	own := x509.NewCertPool()
	own.AppendCertsFromPEM([]byte(chain))
	var last error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, last = tlsClient(t, own).Get("https://www.example.com:" + port + "/")
		if last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("HTTPS to the custom domain with its own certificate: %v", last)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "proto=https") || resp.TLS.PeerCertificates[0].DNSNames[0] != "www.example.com" {
		t.Fatalf("custom domain over HTTPS: %d %q", resp.StatusCode, body)
	}
	// A name nobody has a certificate for gets the platform wildcard,
	// which the client rejects.
	if _, err := tlsClient(t, own).Get("https://shop.example.net:" + port + "/"); err == nil {
		t.Fatal("a client accepted the platform certificate for shop.example.net")
	}
}
