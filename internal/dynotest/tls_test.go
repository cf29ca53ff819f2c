package dynotest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
)

// curl runs curl with args and returns its stdout.
func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestHTTPSEndToEnd deploys an app on a real server and reaches it with
// curl over HTTPS: first at <app>.localhost trusting only the platform
// CA, then at a custom domain with an uploaded certificate.
func TestHTTPSEndToEnd(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	p := Start(t, dynoBin)
	app := "secure"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", probeApp(t, fmt.Sprintf("tlsmark%d", os.Getpid())), "-a", app)
	p.MustCLI("ps:wait", "-a", app)

	ca := filepath.Join(p.DataDir, "tls", "ca.pem")
	if !strings.Contains(p.Output(), ca) {
		t.Errorf("the start-up banner does not name the CA %s:\n%s", ca, p.Output())
	}
	if got, want := p.MustCLI("certs:ca"), mustRead(t, ca); got != want {
		t.Errorf("certs:ca printed %q, want the contents of %s", got, ca)
	}

	url := fmt.Sprintf("https://%s.localhost:%d/", app, p.HTTPSPort)
	t.Run("curl --cacert reaches the app over HTTP/2", func(t *testing.T) {
		var out string
		Eventually(t, 30*time.Second, "curl "+url, func() error {
			var err error
			out, err = curl(t, "--cacert", ca, "-w", "\nhttp_version=%{http_version}", url)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if !strings.Contains(out, `"web.1"`) || !strings.Contains(out, `"X-Forwarded-Proto": "https"`) || !strings.HasSuffix(out, "http_version=2") {
			t.Fatalf("curl %s answered %s; want the probe app's web.1, X-Forwarded-Proto https, over HTTP/2", url, out)
		}
		if out, err := curl(t, url); err == nil {
			t.Fatalf("curl without the CA trusted the platform certificate: %s", out)
		}
	})

	t.Run("a custom domain routes over HTTP and HTTPS with its certificate", func(t *testing.T) {
		host := "www.dyno-e2e.test"
		p.MustCLI("domains:add", host, "-a", app)
		if out := p.MustCLI("domains", "-a", app); !strings.Contains(out, host) {
			t.Fatalf("domains does not list %s:\n%s", host, out)
		}
		dir := t.TempDir()
		chain, key, err := certs.SelfSigned([]string{host}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		crt, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		os.WriteFile(crt, []byte(chain), 0o600)
		os.WriteFile(keyFile, []byte(key), 0o600)
		p.MustCLI("certs:add", crt, keyFile, "-a", app)
		if out := p.MustCLI("certs", "-a", app); !strings.Contains(out, host) {
			t.Fatalf("certs does not list %s:\n%s", host, out)
		}
		httpPort := p.HTTPURL[strings.LastIndexByte(p.HTTPURL, ':')+1:]
		Eventually(t, 10*time.Second, "custom domain over HTTP", func() error {
			out, err := curl(t, "--resolve", host+":"+httpPort+":127.0.0.1", "http://"+host+":"+httpPort+"/")
			if err != nil || !strings.Contains(out, `"web.1"`) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		Eventually(t, 10*time.Second, "custom domain over HTTPS with its certificate", func() error {
			out, err := curl(t, "--cacert", crt, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, p.HTTPSPort), fmt.Sprintf("https://%s:%d/", host, p.HTTPSPort))
			if err != nil || !strings.Contains(out, `"X-Forwarded-Proto": "https"`) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		p.MustCLI("domains:remove", host, "-a", app)
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
