package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

var t0 = time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnsurePlatform(t *testing.T) {
	dir := t.TempDir()
	p1, err := EnsurePlatform(dir, "localhost", t0)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{CAFile: 0o644, CAKeyFile: 0o600, WildcardFile: 0o644, WildcardKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if got := p1.Wildcard.Leaf.DNSNames; strings.Join(got, ",") != "*.localhost,localhost" {
		t.Errorf("wildcard names = %v", got)
	}
	if len(p1.Wildcard.Leaf.IPAddresses) != 2 {
		t.Errorf("wildcard IPs = %v, want 127.0.0.1 and ::1", p1.Wildcard.Leaf.IPAddresses)
	}
	if p1.CA.NotAfter.Sub(t0) < 9*365*24*time.Hour || !p1.CA.IsCA {
		t.Errorf("CA valid until %v (IsCA %v), want 10 years", p1.CA.NotAfter, p1.CA.IsCA)
	}
	caPEM, leafPEM := read(t, p1.CAPath), read(t, filepath.Join(dir, WildcardFile))

	tests := []struct {
		name        string
		domain      string
		now         time.Time
		newWildcard bool
		wantNames   string
	}{
		{"restart reuses both", "localhost", t0.Add(time.Hour), false, "*.localhost,localhost"},
		{"domain change re-issues the wildcard", "apps.example.test", t0.Add(time.Hour), true, "*.apps.example.test,apps.example.test"},
		{"near expiry re-issues the wildcard", "apps.example.test", t0.Add(370 * 24 * time.Hour), true, "*.apps.example.test,apps.example.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := EnsurePlatform(dir, tc.domain, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(read(t, p.CAPath), caPEM) || !bytes.Equal(p.CAPEM, caPEM) {
				t.Error("the CA was replaced")
			}
			got := read(t, filepath.Join(dir, WildcardFile))
			if changed := !bytes.Equal(got, leafPEM); changed != tc.newWildcard {
				t.Errorf("wildcard re-issued = %v, want %v", changed, tc.newWildcard)
			}
			leafPEM = got
			if names := strings.Join(p.Wildcard.Leaf.DNSNames, ","); names != tc.wantNames {
				t.Errorf("names = %s, want %s", names, tc.wantNames)
			}
			if err := p.Wildcard.Leaf.CheckSignatureFrom(p.CA); err != nil {
				t.Errorf("wildcard not signed by the CA: %v", err)
			}
		})
	}
}

// handshake connects to addr as name, trusting only pool, and returns the
// certificate the server sent.
func handshake(t *testing.T, addr, name string, pool *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "h2" {
		t.Errorf("negotiated %q, want h2", st.NegotiatedProtocol)
	}
	return st.PeerCertificates[0], nil
}

func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
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
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestPlatformHandshake(t *testing.T) {
	tests := []struct{ domain, name string }{
		{"localhost", "app.localhost"}, // a certificate of its own: no client takes *.localhost
		{"localhost", "localhost"},
		{"localhost", ""}, // no SNI: 127.0.0.1 is in the wildcard's SANs
		{"apps.example.test", "hello.apps.example.test"},
	}
	for _, tc := range tests {
		t.Run(tc.domain+"/"+tc.name, func(t *testing.T) {
			p, err := EnsurePlatform(t.TempDir(), tc.domain, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			m := NewManager(ManagerConfig{Platform: p}, nil)
			addr := serveTLS(t, m.TLSConfig())
			name := tc.name
			if name == "" {
				name = "127.0.0.1"
			}
			if _, err := handshake(t, addr, name, p.CertPool()); err != nil {
				t.Fatalf("a client trusting only the platform CA: %v", err)
			}
			if _, err := handshake(t, addr, name, x509.NewCertPool()); err == nil {
				t.Fatal("a client trusting nothing accepted the certificate")
			}
		})
	}
}

func TestParse(t *testing.T) {
	now := time.Now()
	good, goodKey, err := SelfSigned([]string{"www.example.com", "*.example.org"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := SelfSigned([]string{"www.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredKey, _ := SelfSigned([]string{"www.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	tests := []struct {
		name, chain, key, wantErr string
	}{
		{"good", good, goodKey, ""},
		{"empty chain", "", goodKey, "holds no PEM certificate"},
		{"garbage chain", "hello", goodKey, "holds no PEM certificate"},
		{"key as chain", goodKey, goodKey, `"PRIVATE KEY" PEM block`},
		{"no key", good, "", "holds no PEM private key"},
		{"other key", good, otherKey, "does not match"},
		{"expired", expired, expiredKey, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, _, err := Parse(tc.chain, tc.key, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(info.Domains, ",") != "www.example.com,*.example.org" || !info.SelfSigned {
					t.Errorf("info = %+v", info)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "BEGIN EC") || strings.Contains(err.Error(), goodKey[40:80]) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"www.example.com", "www.example.com", true},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"www.example.com", "example.com", false},
	}
	for _, tc := range tests {
		if got := Matches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v", tc.pattern, tc.host, got)
		}
	}
}

func testStore(t *testing.T) *store.Store {
	st, _ := storetest.New(t)
	return st
}

// TestManagerSNI uploads certificates to the store and checks which one
// each SNI name gets, as the watch delivers them.
func TestManagerSNI(t *testing.T) {
	st := testStore(t)
	p, err := EnsurePlatform(t.TempDir(), "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{Platform: p}, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	now := time.Now()
	put := func(app, id string, domains []string, notAfter time.Time) {
		c, k, err := SelfSigned(domains, now.Add(-time.Hour), notAfter)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Certs.Put(ctx, model.CertificateKey(app, id), model.Certificate{ID: id, AppID: app, Name: id, CertificateChain: c, PrivateKey: k, Domains: domains}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "exact", []string{"www.example.com"}, now.Add(30*24*time.Hour))
	put("a", "wild", []string{"*.example.com"}, now.Add(60*24*time.Hour))
	put("b", "other-app", []string{"shop.example.net"}, now.Add(90*24*time.Hour))
	put("c", "squatter", []string{"shop.example.net"}, now.Add(900*24*time.Hour))
	if _, err := st.Domains.Put(ctx, model.DomainKey("shop.example.net"), model.Domain{ID: "d", AppID: "b", Hostname: "shop.example.net", Kind: "custom"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ sni, want string }{
		{"www.example.com", "www.example.com"},   // exact beats nothing else matching better: latest expiry among matches
		{"api.example.com", "*.example.com"},     // wildcard
		{"shop.example.net", "shop.example.net"}, // the owner's certificate, not the longer-lived squatter's
		{"hello.localhost", "hello.localhost"},   // platform
		{"unknown.example.org", "*.localhost"},   // nothing matches: the wildcard anyway
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, tc := range tests {
		for {
			c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
			if err != nil {
				t.Fatal(err)
			}
			got := c.Leaf.DNSNames[0]
			ok := got == tc.want
			if tc.sni == "shop.example.net" && ok {
				if !c.Leaf.NotAfter.Before(now.Add(100 * 24 * time.Hour)) {
					ok = false
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SNI %s got %s (until %v), want %s", tc.sni, got, c.Leaf.NotAfter, tc.want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A deleted certificate stops being served.
	if err := st.Certs.Delete(ctx, model.CertificateKey("a", "wild"), 0); err != nil {
		t.Fatal(err)
	}
	for {
		c, _ := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "api.example.com"})
		if c.Leaf.DNSNames[0] == "*.localhost" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a deleted certificate is still served")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
