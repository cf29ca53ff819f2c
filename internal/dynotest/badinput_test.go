package dynotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput feeds a real server the mistakes users make and checks each
// gets a clear error with the right status and leaves nothing half-made.
func TestBadInput(t *testing.T) {
	p := Start(t, dynoBin)
	p.MustCLI("apps:create", "good")

	t.Run("bad app names", func(t *testing.T) {
		for _, name := range []string{"Bad_Name", "x", "-lead", "trail-", strings.Repeat("a", 31), "../etc"} {
			code, body := p.API("POST", "/apps", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
			if code != 422 || !strings.Contains(body, `invalid_params`) {
				t.Errorf("POST /apps name=%q: %d %s; want 422 invalid_params", name, code, body)
			}
		}
		_, stderr, err := p.CLI("apps:create", "Bad_Name")
		if err == nil || !strings.Contains(stderr, "invalid") {
			t.Errorf("apps:create Bad_Name: err=%v stderr=%q; want a non-zero exit that says the name is invalid", err, stderr)
		}
	})

	t.Run("duplicate app name", func(t *testing.T) {
		code, body := p.API("POST", "/apps", strings.NewReader(`{"name":"good"}`))
		if code != 409 {
			t.Errorf("second POST /apps good: %d %s; want 409", code, body)
		}
		_, body = p.API("GET", "/apps", nil)
		if n := strings.Count(strings.ReplaceAll(body, " ", ""), `"name":"good"`); n != 1 {
			t.Errorf("GET /apps lists good %d times, want once: %s", n, body)
		}
	})

	t.Run("unknown app", func(t *testing.T) {
		for _, path := range []string{"/apps/nosuch", "/apps/nosuch/formation", "/apps/nosuch/dynos", "/apps/nosuch/releases", "/apps/nosuch/config-vars"} {
			if code, body := p.API("GET", path, nil); code != 404 || !strings.Contains(body, `not_found`) {
				t.Errorf("GET %s: %d %s; want 404 not_found", path, code, body)
			}
		}
		_, stderr, err := p.CLI("ps", "-a", "nosuch")
		if err == nil || !strings.Contains(strings.ToLower(stderr), "find") {
			t.Errorf("ps -a nosuch: err=%v stderr=%q; want a non-zero exit naming the missing app", err, stderr)
		}
	})

	t.Run("a source no buildpack recognises fails the build and makes no release", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("nothing to run\n"), 0o644)
		out, stderr, err := p.CLI("deploy", dir, "-a", "good")
		if err == nil || !strings.Contains(out+stderr, "no buildpack recognised this app") {
			t.Errorf("deploy of notes only: err=%v out=%q stderr=%q", err, out, stderr)
		}
	})

	t.Run("malformed Procfile fails the build and makes no release", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web python3 app.py\n"), 0o644)
		out, stderr, err := p.CLI("deploy", dir, "-a", "good")
		if err == nil || !strings.Contains(out+stderr, "line 1") {
			t.Errorf("deploy with a malformed Procfile: err=%v out=%q stderr=%q; want a failed build naming line 1", err, out, stderr)
		}
		p.noReleases(t, "good")
	})

	t.Run("garbage tarball fails the build and makes no release", func(t *testing.T) {
		_, body := p.API("POST", "/sources", nil)
		var src struct {
			SourceBlob struct{ GetURL, PutURL string } `json:"source_blob"`
		}
		if err := json.Unmarshal([]byte(body), &src); err != nil || src.SourceBlob.PutURL == "" {
			// Heroku's field names are get_url and put_url.
			var raw map[string]map[string]string
			json.Unmarshal([]byte(body), &raw)
			src.SourceBlob.GetURL, src.SourceBlob.PutURL = raw["source_blob"]["get_url"], raw["source_blob"]["put_url"]
		}
		req, _ := http.NewRequest("PUT", src.SourceBlob.PutURL, strings.NewReader("this is not a tarball"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		code, body := p.API("POST", "/apps/good/builds", strings.NewReader(fmt.Sprintf(`{"source_blob":{"url":%q}}`, src.SourceBlob.GetURL)))
		if code != 201 {
			t.Fatalf("POST builds: %d %s", code, body)
		}
		var b struct{ ID, Status string }
		json.Unmarshal([]byte(body), &b)
		Eventually(t, 30*time.Second, "the build fails", func() error {
			_, body := p.API("GET", "/apps/good/builds/"+b.ID, nil)
			json.Unmarshal([]byte(body), &b)
			if b.Status != "failed" {
				return fmt.Errorf("status %q", b.Status)
			}
			return nil
		})
		p.noReleases(t, "good")
	})

	t.Run("scaling an unknown process type", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web: python3 -m http.server $PORT\n"), 0o644)
		p.MustCLI("deploy", dir, "-a", "good")
		code, body := p.API("PATCH", "/apps/good/formation", strings.NewReader(`{"updates":[{"type":"web","quantity":2},{"type":"bogus","quantity":1}]}`))
		if code != 422 || !strings.Contains(body, "bogus") {
			t.Errorf("PATCH formation with bogus: %d %s; want 422 naming the type", code, body)
		}
		_, body = p.API("GET", "/apps/good/formation/web", nil)
		if !strings.Contains(strings.ReplaceAll(body, " ", ""), `"quantity":1`) {
			t.Errorf("web formation changed by a rejected batch: %s", body)
		}
		_, stderr, err := p.CLI("ps:scale", "bogus=1", "-a", "good")
		if err == nil || !strings.Contains(stderr, "bogus") {
			t.Errorf("ps:scale bogus=1: err=%v stderr=%q", err, stderr)
		}
	})

	t.Run("requests without a valid key", func(t *testing.T) {
		req, _ := http.NewRequest("GET", p.APIURL+"/apps", nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("GET /apps with a wrong key: %d, want 401", resp.StatusCode)
		}
	})
}

func (p *Platform) noReleases(t *testing.T, app string) {
	t.Helper()
	code, body := p.API("GET", "/apps/"+app+"/releases", nil)
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("releases of %s after a failed build: %d %s; want none", app, code, body)
	}
}
