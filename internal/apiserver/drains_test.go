package apiserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dyno-platform/dyno/internal/logplex"
)

func TestLogDrainsCRUD(t *testing.T) {
	e := newEnv(t, 0)
	e.createApp("hello")
	var d drainJSON
	e.must(http.StatusCreated, "POST", "/apps/hello/log-drains", map[string]any{"url": "syslog://logs.example.com:514"}, &d)
	if d.ID == "" || !strings.HasPrefix(d.Token, "d.") || len(d.Token) != 38 || d.URL != "syslog://logs.example.com:514" || d.Addon != nil || d.CreatedAt == "" {
		t.Fatalf("created drain = %+v", d)
	}
	var h drainJSON
	e.must(http.StatusCreated, "POST", "/apps/hello/log-drains", map[string]any{"url": "https://u:secret@logs.example.com/in"}, &h)
	tests := []struct {
		name, app, url string
		want           int
		wantMsg        string
	}{
		{"duplicate", "hello", "syslog://logs.example.com:514", 409, "already"},
		{"no port", "hello", "syslog://logs.example.com", 422, "port"},
		{"bad scheme", "hello", "ftp://logs.example.com/", 422, "not supported"},
		{"syslog credentials", "hello", "syslog://a:b@logs.example.com:514", 422, "credentials"},
		{"no host", "hello", "https:///x", 422, "host"},
		{"unknown app", "nope", "syslog://logs.example.com:514", 404, "app"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.call("POST", "/apps/"+tc.app+"/log-drains", map[string]any{"url": tc.url})
			if status != tc.want || !strings.Contains(string(body), tc.wantMsg) {
				t.Fatalf("status %d %s, want %d with %q", status, body, tc.want, tc.wantMsg)
			}
		})
	}
	var list []drainJSON
	e.must(http.StatusOK, "GET", "/apps/hello/log-drains", nil, &list)
	if len(list) != 2 || list[0].ID != d.ID || list[1].ID != h.ID {
		t.Fatalf("list = %+v", list)
	}
	// The app's log says who added what, without the password.
	_ = e.logs.Flush(t.Context())
	lines, err := e.logs.Recent(t.Context(), list[0].App.ID, logplex.Filter{Dyno: "api"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	for _, l := range lines {
		joined.WriteString(l.Message + "\n")
	}
	if strings.Contains(joined.String(), "secret") || !strings.Contains(joined.String(), "Add drain https://u:xxxxx@logs.example.com/in") {
		t.Fatalf("api log lines:\n%s", joined.String())
	}
	// Removed by URL, by token, by ID.
	for _, ref := range []string{d.URL, h.Token} {
		e.must(http.StatusOK, "DELETE", "/apps/hello/log-drains/"+url.PathEscape(ref), nil, nil)
	}
	e.must(http.StatusOK, "GET", "/apps/hello/log-drains", nil, &list)
	if len(list) != 0 {
		t.Fatalf("after removal: %+v", list)
	}
	if status, _ := e.call("DELETE", "/apps/hello/log-drains/"+d.ID, nil); status != 404 {
		t.Fatalf("removing a removed drain: %d, want 404", status)
	}
}
