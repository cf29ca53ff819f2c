// Package dashboard is Dyno's web dashboard: a few static files (HTML, CSS
// and JavaScript modules, embedded in the binary, no build step) that run
// in the browser and talk to the Platform API with the user's API key.
// The API server mounts Handler under /dashboard/; the page itself holds
// no secret and needs no server-side session.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the API server mounts the dashboard.
const Prefix = "/dashboard/"

// ContentSecurityPolicy lets the page load only its own scripts and styles
// and talk only to its own origin (the API, and log streams on it): an API
// value that slipped into the page as markup could not run.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// contentType is set by hand: the system's MIME tables vary (.js is
// application/javascript on some), and module scripts need a JavaScript type.
func contentType(ext string) (string, bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	}
	return "", false
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard's files at paths relative to Prefix: "/" is
// the page, "/app.js" a module. Every answer carries the strict CSP.
type Handler struct {
	assets map[string]asset // by path: "/", "/app.js"
}

// New reads the embedded files once; it fails only if the binary was built
// with a file of a type it does not know.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentType(path.Ext(name))
		if !ok {
			return fmt.Errorf("dashboard file %s: no content type for %q", name, path.Ext(name))
		}
		body, err := static.ReadFile(name)
		if err != nil {
			return fmt.Errorf("read dashboard file %s: %w", name, err)
		}
		sum := sha256.Sum256(body)
		key := strings.TrimPrefix(name, "static")
		if key == "/index.html" {
			key = "/"
		}
		h.assets[key] = asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// ServeHTTP serves one file; r.URL.Path is relative to Prefix ("/app.js").
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "The dashboard's files are read with GET.", http.StatusMethodNotAllowed)
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok {
		http.Error(w, "No such dashboard file: open "+Prefix+" for the dashboard.", http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	// Revalidate every time: the files change with the binary, and an
	// unchanged one costs a 304.
	hd.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Mount adds the dashboard to mux: the files under Prefix, and a redirect
// to it from "/" for browsers (requests that accept HTML), so that API
// clients asking for "/" still get the API's answer from next.
func (h *Handler) Mount(mux *http.ServeMux, next http.Handler) {
	mux.Handle("GET "+Prefix, http.StripPrefix(strings.TrimSuffix(Prefix, "/"), h))
	mux.Handle("GET /dashboard", http.RedirectHandler(Prefix, http.StatusMovedPermanently))
	mux.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, Prefix, http.StatusFound)
			return
		}
		next.ServeHTTP(w, r)
	}))
}
