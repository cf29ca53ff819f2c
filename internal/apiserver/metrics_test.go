package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dyno-platform/dyno/internal/metricstest"
)

// syncBuffer is a log destination the handlers of many requests share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// observedEnv is an env whose requests go through Observe, logging JSON
// into logs, with the metrics served by a real /metrics server.
func observedEnv(t *testing.T) (e *env, logs *syncBuffer, metricsURL, rawURL string) {
	t.Helper()
	logs = &syncBuffer{}
	e = newEnv(t, 0, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		rawURL = c.PublicURL
	})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	api := httptest.NewServer(e.srv.Observe(e.srv.Handler(), m))
	t.Cleanup(api.Close)
	e.url = api.URL
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(ms.Close)
	return e, logs, ms.URL + "/metrics", rawURL
}

func TestAPIMetrics(t *testing.T) {
	e, logs, metricsURL, _ := observedEnv(t)
	e.createApp("observed")
	e.must(200, "GET", "/apps/observed", nil, nil)
	e.must(200, "GET", "/apps/observed", nil, nil)
	e.must(404, "GET", "/apps/no-such-app", nil, nil)
	e.must(404, "GET", "/no/such/endpoint", nil, nil)
	e.must(200, "PATCH", "/apps/observed/config-vars", map[string]string{"K": "v"}, nil)
	if st, _ := e.call("BREW", "/apps", nil); st == 0 {
		t.Fatal("no answer to BREW")
	}
	resp := e.raw("GET", "/apps", nil, "Authorization", "Bearer not-a-key")
	resp.Body.Close()

	got, text := metricstest.Scrape(t, metricsURL)
	k := metricstest.Key
	for _, c := range []struct {
		series string
		want   float64
	}{
		{k("dyno_api_requests_total", "route", "/apps", "method", "POST", "status", "201"), 1},
		{k("dyno_api_requests_total", "route", "/apps/{app}", "method", "GET", "status", "200"), 2},
		{k("dyno_api_requests_total", "route", "/apps/{app}", "method", "GET", "status", "404"), 1},
		{k("dyno_api_requests_total", "route", "/", "method", "GET", "status", "404"), 1},
		{k("dyno_api_requests_total", "route", "/apps/{app}/config-vars", "method", "PATCH", "status", "200"), 1},
		{k("dyno_api_requests_total", "route", "/apps", "method", "GET", "status", "401"), 1},
		{k("dyno_api_request_duration_seconds_count", "route", "/apps/{app}", "method", "GET"), 3},
		{k("dyno_api_request_duration_seconds_bucket", "route", "/apps", "method", "POST", "le", "+Inf"), 1},
		{k("dyno_api_requests_in_flight"), 0},
	} {
		if v, ok := got[c.series]; !ok || v != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, v, ok, c.want)
		}
	}
	if !got.Has("dyno_api_requests_total", "method", "OTHER") {
		t.Errorf("a made-up method is not counted as OTHER:\n%s", text)
	}
	if strings.Contains(text, "BREW") || strings.Contains(text, "no-such-app") || strings.Contains(text, "observed") {
		t.Errorf("a method, path or app name became a label:\n%s", text)
	}

	// The access log: one JSON line per request with the same keys.
	var seen int
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if line["msg"] != "api request" {
			continue
		}
		seen++
		for _, key := range []string{"level", "method", "route", "path", "status", "duration", "bytes", "request_id"} {
			if _, ok := line[key]; !ok {
				t.Errorf("log line without %q: %s", key, sc.Text())
			}
		}
		if line["method"] == "POST" && line["route"] == "/apps" && (line["status"] != 201.0 || line["level"] != "INFO") {
			t.Errorf("app creation logged as %s", sc.Text())
		}
	}
	if seen != 8 {
		t.Errorf("%d access log lines, want 8:\n%s", seen, logs.String())
	}
}

// TestObserveKeepsStreaming: a log session (text/event-stream, flushed as
// it goes) answers through the wrapper, and its secret URL token is in no
// log line and no metric.
func TestObserveKeepsStreaming(t *testing.T) {
	e, logs, metricsURL, rawURL := observedEnv(t)
	e.createApp("streamed")
	e.must(200, "PATCH", "/apps/streamed/config-vars", map[string]string{"X": "1"}, nil)
	if err := e.logs.Flush(context.Background()); err != nil { // the release's line is stored before it is read
		t.Fatal(err)
	}
	var ls map[string]any
	e.must(201, "POST", "/apps/streamed/log-sessions", map[string]any{"lines": 10}, &ls)
	url := strings.Replace(ls["logplex_url"].(string), rawURL, e.url, 1)
	token := url[strings.Index(url, "token=")+len("token="):]
	resp := e.raw("GET", url, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(string(body), "app[api]: Release v1") {
		t.Fatalf("log session through Observe: %s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	got, text := metricstest.Scrape(t, metricsURL)
	if v := got[metricstest.Key("dyno_api_requests_total", "route", "/log-sessions/{id}", "method", "GET", "status", "200")]; v != 1 {
		t.Errorf("log session stream counted %v times, want 1:\n%s", v, text)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(text, token) {
		t.Errorf("the log session's secret token %s is in the logs or metrics", token)
	}
}

// TestNoSecretsInLogsOrMetrics drives requests that carry API keys,
// passwords and config var values and checks none of them is in the logs
// or the metrics.
func TestNoSecretsInLogsOrMetrics(t *testing.T) {
	e, logs, metricsURL, _ := observedEnv(t)
	userKey := e.newUser("watcher@example.com") // a password login, then the user's key
	const value = "s3cr3t-config-value-8c1f"
	e.mustAs(userKey, 201, "POST", "/apps", map[string]string{"name": "secretive"}, nil)
	e.mustAs(userKey, 200, "PATCH", "/apps/secretive/config-vars", map[string]string{"DATABASE_URL": value}, nil)
	e.mustAs(userKey, 200, "GET", "/apps/secretive/config-vars", nil, nil)
	// Bad credentials carry secrets too: a wrong key, a wrong password.
	resp := e.raw("GET", "/apps", nil, "Authorization", "Bearer wrong-key-3b9d7e")
	resp.Body.Close()
	resp = e.raw("POST", "/oauth/authorizations", nil, "Authorization", "Basic "+basic("watcher@example.com", "wrong-password-77a"))
	resp.Body.Close()
	// An internal error path: a config var value in a request that fails.
	e.mustAs(userKey, 422, "PATCH", "/apps/secretive/config-vars", map[string]string{"bad key=" + value: value}, nil)

	_, text := metricstest.Scrape(t, metricsURL)
	logText := logs.String()
	if !strings.Contains(logText, `"route":"/apps/{app}/config-vars"`) {
		t.Fatalf("the requests were not logged:\n%s", logText)
	}
	for _, secret := range []string{value, userKey, testKey, "wrong-key-3b9d7e", "wrong-password-77a", "pw-watcher@example.com",
		basic("watcher@example.com", "wrong-password-77a")} {
		if strings.Contains(logText, secret) {
			t.Errorf("secret %q is in the logs:\n%s", secret, logText)
		}
		if strings.Contains(text, secret) {
			t.Errorf("secret %q is in the metrics", secret)
		}
	}
}
