package apiserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
)

func TestDomains(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("hello")
	e.createApp("other")

	var d domainJSON
	e.must(http.StatusCreated, "POST", "/apps/hello/domains", map[string]any{"hostname": "WWW.Example.com.", "sni_endpoint": nil}, &d)
	if d.Hostname != "www.example.com" || d.Kind != "custom" || d.CNAME != "hello.dyno.test" || d.Status != "succeeded" || d.App.Name != "hello" || d.SNIEndpoint != nil {
		t.Fatalf("created domain = %+v", d)
	}
	e.must(http.StatusCreated, "POST", "/apps/hello/domains", map[string]any{"hostname": "*.example.org"}, nil)

	tests := []struct {
		name, app, hostname string
		want                int
		wantMsg             string
	}{
		{"same app again", "hello", "www.example.com", 422, "already added to hello"},
		{"another app", "other", "www.example.com", 422, "already in use"},
		{"platform name", "hello", "evil.dyno.test", 422, "platform's domain"},
		{"platform wildcard", "hello", "*.dyno.test", 422, "platform's domain"},
		{"platform itself", "hello", "dyno.test", 422, "platform's domain"},
		{"one label", "hello", "localhost", 422, "fully qualified"},
		{"underscore", "hello", "a_b.example.com", 422, "lowercase letters"},
		{"inner wildcard", "hello", "www.*.example.com", 422, "wildcard"},
		{"bare wildcard", "hello", "*.com", 422, "wildcard"},
		{"dash", "hello", "-a.example.com", 422, "dash"},
		{"empty label", "hello", "a..example.com", 422, "1 to 63"},
		{"long label", "hello", strings.Repeat("a", 64) + ".example.com", 422, "1 to 63"},
		{"too long", "hello", strings.Repeat("abcdefghi.", 26) + "com", 422, "253"},
		{"ip", "hello", "10.0.0.1", 422, "IP"},
		{"empty", "hello", "", 422, "empty"},
		{"unknown app", "nope", "a.example.com", 404, "app"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call("POST", "/apps/"+tc.app+"/domains", map[string]any{"hostname": tc.hostname})
			if status != tc.want || !strings.Contains(string(body), tc.wantMsg) {
				t.Fatalf("status %d %s, want %d with %q", status, body, tc.want, tc.wantMsg)
			}
		})
	}

	var list []domainJSON
	e.must(http.StatusOK, "GET", "/apps/hello/domains", nil, &list)
	if len(list) != 2 || list[0].Hostname != "*.example.org" || list[1].Hostname != "www.example.com" {
		t.Fatalf("list = %+v", list)
	}
	e.must(http.StatusOK, "GET", "/apps/other/domains", nil, &list)
	if len(list) != 0 {
		t.Fatalf("other's domains = %+v", list)
	}
	var got domainJSON
	e.must(http.StatusOK, "GET", "/apps/hello/domains/www.example.com", nil, &got)
	e.must(http.StatusOK, "GET", "/apps/hello/domains/"+d.ID, nil, &got)
	if got.ID != d.ID {
		t.Fatalf("by ID = %+v", got)
	}
	e.must(http.StatusNotFound, "GET", "/apps/other/domains/www.example.com", nil, nil)
	e.must(http.StatusNotFound, "DELETE", "/apps/other/domains/www.example.com", nil, nil)
	e.must(http.StatusOK, "DELETE", "/apps/hello/domains/www.example.com", nil, &got)
	e.must(http.StatusNotFound, "GET", "/apps/hello/domains/www.example.com", nil, nil)
	// Freed, the hostname can go to another app.
	e.must(http.StatusCreated, "POST", "/apps/other/domains", map[string]any{"hostname": "www.example.com"}, nil)
	// Destroying the app frees its hostnames.
	e.must(http.StatusOK, "DELETE", "/apps/other", nil, nil)
	e.must(http.StatusCreated, "POST", "/apps/hello/domains", map[string]any{"hostname": "www.example.com"}, nil)
}

func TestSNIEndpoints(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("hello")
	now := e.clock()
	chain, key, err := certs.SelfSigned([]string{"www.example.com", "*.example.org"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := certs.SelfSigned([]string{"www.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredKey, _ := certs.SelfSigned([]string{"www.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	keyBody := strings.Split(strings.TrimSpace(key), "\n")[1] // a line of the key's base64

	e.must(http.StatusCreated, "POST", "/apps/hello/domains", map[string]any{"hostname": "www.example.com"}, nil)
	var sni sniJSON
	status, body := e.call("POST", "/apps/hello/sni-endpoints", map[string]any{"certificate_chain": chain, "private_key": key})
	if status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, body)
	}
	if strings.Contains(string(body), keyBody) || strings.Contains(string(body), "PRIVATE KEY") {
		t.Fatalf("the upload's answer shows the private key: %s", body)
	}
	e.must(http.StatusOK, "GET", "/apps/hello/sni-endpoints/"+nameOf(t, body), nil, &sni)
	if strings.Join(sni.SSLCert.CertDomains, ",") != "www.example.com,*.example.org" || !sni.SSLCert.SelfSigned || sni.SSLCert.CASigned ||
		len(sni.Domains) != 1 || sni.App.Name != "hello" || !strings.Contains(sni.CertificateChain, "BEGIN CERTIFICATE") {
		t.Fatalf("endpoint = %+v", sni)
	}
	var d domainJSON
	e.must(http.StatusOK, "GET", "/apps/hello/domains/www.example.com", nil, &d)
	if d.SNIEndpoint == nil || d.SNIEndpoint.Name != sni.Name {
		t.Fatalf("the domain's sni_endpoint = %+v, want %s", d.SNIEndpoint, sni.Name)
	}

	bad := []struct {
		name    string
		body    map[string]any
		want    int
		wantMsg string
	}{
		{"key of another cert", map[string]any{"certificate_chain": chain, "private_key": otherKey}, 422, "does not match"},
		{"expired", map[string]any{"certificate_chain": expired, "private_key": expiredKey}, 422, "expired"},
		{"garbage", map[string]any{"certificate_chain": "nope", "private_key": key}, 422, "no PEM certificate"},
		{"no key", map[string]any{"certificate_chain": chain}, 422, "both"},
		{"swapped", map[string]any{"certificate_chain": key, "private_key": chain}, 422, "PRIVATE KEY"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"POST /apps/hello/sni-endpoints", "PATCH /apps/hello/sni-endpoints/" + sni.Name} {
				m, p, _ := strings.Cut(method, " ")
				status, body := e.call(m, p, tc.body)
				if status != tc.want || !strings.Contains(string(body), tc.wantMsg) {
					t.Fatalf("%s: %d %s, want %d with %q", method, status, body, tc.want, tc.wantMsg)
				}
				if strings.Contains(string(body), keyBody) {
					t.Fatalf("the error shows the private key: %s", body)
				}
			}
		})
	}

	// Renewal keeps the name.
	chain2, key2, _ := certs.SelfSigned([]string{"www.example.com"}, now.Add(-time.Hour), now.Add(200*24*time.Hour))
	var renewed sniJSON
	e.must(http.StatusOK, "PATCH", "/apps/hello/sni-endpoints/"+sni.ID, map[string]any{"certificate_chain": chain2, "private_key": key2}, &renewed)
	if renewed.Name != sni.Name || renewed.SSLCert.ExpiresAt == sni.SSLCert.ExpiresAt {
		t.Fatalf("renewed = %+v", renewed)
	}
	status, body = e.call("GET", "/apps/hello/sni-endpoints", nil)
	if status != 200 || strings.Contains(string(body), "PRIVATE KEY") || !strings.Contains(string(body), sni.Name) {
		t.Fatalf("list: %d %s", status, body)
	}
	e.must(http.StatusOK, "DELETE", "/apps/hello/sni-endpoints/"+sni.Name, nil, nil)
	e.must(http.StatusNotFound, "GET", "/apps/hello/sni-endpoints/"+sni.Name, nil, nil)
}

func nameOf(t *testing.T, body []byte) string {
	t.Helper()
	_, rest, ok := strings.Cut(string(body), `"name": "`)
	if !ok {
		t.Fatalf("no name in %s", body)
	}
	name, _, _ := strings.Cut(rest, `"`)
	return name
}

func TestCAWithoutAuth(t *testing.T) {
	e := newEnv(t, 0)
	resp := e.raw("GET", "/ca.pem", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without a CA: %d", resp.StatusCode)
	}
	e.srv.cfg.CACertPEM = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	status, body := e.call("GET", "/ca.pem", nil, "Authorization", "")
	if status != http.StatusOK || string(body) != string(e.srv.cfg.CACertPEM) {
		t.Fatalf("GET /ca.pem = %d %q", status, body)
	}
}
