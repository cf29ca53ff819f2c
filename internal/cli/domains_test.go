package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func domainsAPI(t *testing.T) *fakeAPI {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}", http.StatusOK, appJSON("hello", 1))
	dom := func(host string, sni any) map[string]any {
		return map[string]any{"id": "d-" + host, "hostname": host, "kind": "custom", "cname": "hello.localhost", "status": "succeeded",
			"sni_endpoint": sni, "app": map[string]string{"id": "app-id", "name": "hello"},
			"created_at": "2026-11-26T13:00:00Z", "updated_at": "2026-11-26T13:00:00Z"}
	}
	api.handle("GET /apps/{app}/domains", http.StatusOK, []any{dom("*.example.org", nil), dom("www.example.com", map[string]string{"id": "s1", "name": "tokyo-01050"})})
	api.handle("POST /apps/{app}/domains", http.StatusCreated, dom("www.example.com", nil))
	api.handle("DELETE /apps/{app}/domains/{d}", http.StatusOK, dom("www.example.com", nil))
	sni := map[string]any{"id": "s1", "name": "tokyo-01050", "certificate_chain": "PEM", "domains": []string{"d-www.example.com"},
		"app": map[string]string{"id": "app-id", "name": "hello"},
		"ssl_cert": map[string]any{"ca_signed?": false, "cert_domains": []string{"www.example.com"}, "expires_at": "2027-01-01T00:00:00Z",
			"starts_at": "2026-01-01T00:00:00Z", "issuer": "CN=www.example.com", "subject": "CN=www.example.com", "self_signed?": true},
		"created_at": "2026-11-26T13:00:00Z", "updated_at": "2026-11-26T13:00:00Z"}
	api.handle("GET /apps/{app}/sni-endpoints", http.StatusOK, []any{sni})
	api.handle("POST /apps/{app}/sni-endpoints", http.StatusCreated, sni)
	api.handle("DELETE /apps/{app}/sni-endpoints/{s}", http.StatusOK, sni)
	api.mux.HandleFunc("GET /ca.pem", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("-----BEGIN CERTIFICATE-----\nCA\n")) })
	return api
}

func TestDomainsAndCerts(t *testing.T) {
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(crt, []byte("CHAIN"), 0o600)
	os.WriteFile(key, []byte("KEY"), 0o600)
	tests := []struct {
		args                   []string
		wantStdout, wantStderr string
		wantMethod, wantPath   string
		wantBody               string
	}{
		{[]string{"domains"}, "=== hello Heroku Domain\nhello.localhost\n\n=== hello Custom Domains\n" +
			"Domain Name      DNS Record Type  DNS Target       SNI Endpoint\n" +
			"*.example.org    CNAME            hello.localhost  \n" +
			"www.example.com  CNAME            hello.localhost  tokyo-01050\n", "", "GET", "/apps/hello/domains", ""},
		{[]string{"domains:add", "www.example.com"}, "Configure your app's DNS provider to point www.example.com to the DNS Target hello.localhost.\n",
			"Adding www.example.com to hello... done\n", "POST", "/apps/hello/domains", `{"hostname":"www.example.com","sni_endpoint":null}`},
		{[]string{"domains:remove", "www.example.com"}, "", "Removing www.example.com from hello... done\n", "DELETE", "/apps/hello/domains/www.example.com", ""},
		{[]string{"certs"}, "Name         Common Name(s)   Expires               Trusted  Type  Domains\n" +
			"tokyo-01050  www.example.com  2027-01-01 00:00 UTC  False    SNI   1\n", "", "GET", "/apps/hello/sni-endpoints", ""},
		{[]string{"certs:add", crt, key}, "Name:           tokyo-01050\nCommon Name(s): www.example.com\nExpires At:     2027-01-01 00:00 UTC\n" +
			"Issuer:         CN=www.example.com\nTrusted:        False\nDomains:        1\n",
			"Adding SSL certificate to hello... done\n", "POST", "/apps/hello/sni-endpoints", `{"certificate_chain":"CHAIN","private_key":"KEY"}`},
		{[]string{"certs:remove", "tokyo-01050"}, "", "Removing SSL certificate tokyo-01050 from hello... done\n", "DELETE", "/apps/hello/sni-endpoints/tokyo-01050", ""},
		{[]string{"certs:remove", "--name", "tokyo-01050"}, "", "Removing SSL certificate tokyo-01050 from hello... done\n", "DELETE", "/apps/hello/sni-endpoints/tokyo-01050", ""},
		{[]string{"certs:ca"}, "-----BEGIN CERTIFICATE-----\nCA\n", "", "GET", "/ca.pem", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api := domainsAPI(t)
			r := run(t, api, map[string]string{"DYNO_APP": "hello"}, tc.args...)
			wantOK(t, r)
			if r.stdout != tc.wantStdout || r.stderr != tc.wantStderr {
				t.Errorf("stdout %q\nwant   %q\nstderr %q\nwant   %q", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
			reqs := api.requests(tc.wantMethod, tc.wantPath)
			if len(reqs) != 1 {
				t.Fatalf("sent %d %s %s requests, want 1", len(reqs), tc.wantMethod, tc.wantPath)
			}
			if tc.wantBody != "" && strings.TrimSpace(reqs[0].Body) != tc.wantBody {
				t.Errorf("body %s, want %s", reqs[0].Body, tc.wantBody)
			}
			if tc.wantPath == "/ca.pem" && reqs[0].Header.Get("Authorization") != "" {
				t.Error("certs:ca sent the API key with an unauthenticated download")
			}
		})
	}
}

func TestCertsCASaves(t *testing.T) {
	api := domainsAPI(t)
	out := filepath.Join(t.TempDir(), "ca.pem")
	r := run(t, api, nil, "certs:ca", "-o", out)
	wantOK(t, r)
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "-----BEGIN CERTIFICATE-----\nCA\n" {
		t.Fatalf("saved %q, %v", b, err)
	}
}

func TestDomainsErrors(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("POST /apps/{app}/domains", http.StatusUnprocessableEntity, map[string]string{"id": "invalid_params", "message": "Hostname www.example.com already in use: it belongs to an app; remove it there first."})
	r := run(t, api, map[string]string{"DYNO_APP": "hello"}, "domains:add", "www.example.com")
	if r.code != 1 || r.stderr != "Adding www.example.com to hello... failed\nError: Hostname www.example.com already in use: it belongs to an app; remove it there first.\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	r = run(t, api, map[string]string{"DYNO_APP": "hello"}, "certs:add", "/nonexistent/c.pem", "/nonexistent/k.pem")
	if r.code != 1 || !strings.Contains(r.stderr, "read the certificate") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}
