package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesAssets(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"id":"not_found"}`)
	})
	mux.Handle("/", api)
	h.Mount(mux, api)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		method, path, accept string
		status               int
		contentType          string // prefix
		body                 string // contained
		location             string
		csp                  bool
	}{
		{"GET", "/dashboard/", "", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`, "", true},
		{"GET", "/dashboard/app.js", "", 200, "text/javascript; charset=utf-8", "import", "", true},
		{"GET", "/dashboard/apppage.js", "", 200, "text/javascript; charset=utf-8", "EventSource", "", true},
		{"GET", "/dashboard/api.js", "", 200, "text/javascript; charset=utf-8", "sessionStorage", "", true},
		{"GET", "/dashboard/dom.js", "", 200, "text/javascript; charset=utf-8", "createTextNode", "", true},
		{"GET", "/dashboard/chart.js", "", 200, "text/javascript; charset=utf-8", "svg", "", true},
		{"GET", "/dashboard/style.css", "", 200, "text/css; charset=utf-8", ":focus-visible", "", true},
		{"HEAD", "/dashboard/style.css", "", 200, "text/css; charset=utf-8", "", "", true},
		{"GET", "/dashboard/index.html", "", 404, "text/plain", "open /dashboard/", "", true},
		{"GET", "/dashboard/nope.js", "", 404, "text/plain", "No such dashboard file", "", true},
		{"POST", "/dashboard/", "", 404, "application/json", "not_found", "", false}, // not ours: the API's
		{"GET", "/dashboard", "", 301, "", "", "/dashboard/", false},
		{"GET", "/", "text/html,application/xhtml+xml", 302, "", "", "/dashboard/", false},
		{"GET", "/", "application/vnd.heroku+json; version=3", 404, "application/json", "not_found", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.accept, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body lacks %q:\n%.300s", tt.body, body)
			}
			if loc := resp.Header.Get("Location"); loc != tt.location {
				t.Errorf("Location %q, want %q", loc, tt.location)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !tt.csp {
				return
			}
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
		})
	}
}

// TestNoMarkupFromData keeps the rule that API data never becomes markup:
// no script may use innerHTML, outerHTML, insertAdjacentHTML or
// document.write, and no page may carry inline scripts or styles (the CSP
// would block them anyway).
func TestNoMarkupFromData(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range h.assets {
		body := string(a.body)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", " style=\"", "<script>"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s uses %q", name, bad)
			}
		}
	}
}

// TestETag: an unchanged file costs a 304.
func TestETag(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app.js", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" {
		t.Fatalf("status %d, ETag %q", rec.Code, etag)
	}
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation: status %d, want 304", rec.Code)
	}
}
