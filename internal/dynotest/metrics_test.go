package dynotest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/metricstest"
)

// TestMetricsAndLogs runs `dyno server --metrics ADDR --log-format json`,
// deploys an app with a secret config var, sends it a request, and reads
// every role's series from the one /metrics; the server's log is JSON and
// holds neither the config value nor the API key.
func TestMetricsAndLogs(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", FreePorts(t, 1)[0])
	p.Stop(45 * time.Second)
	p.args = append(p.args, "--metrics", metricsAddr, "--log-format", "json")
	p.start()

	const secret = "obs-secret-value-5d1e"
	app := "observed"
	p.MustCLI("apps:create", app)
	p.MustCLI("config:set", "DATABASE_URL="+secret, "-a", app)
	p.MustCLI("deploy", probeApp(t, fmt.Sprintf("obsmark%d", os.Getpid())), "-a", app)
	p.MustCLI("ps:wait", "-a", app)
	if code, _, _, err := p.Get(app, "/"); err != nil || code != 200 {
		t.Fatalf("GET the app: %d %v", code, err)
	}

	k := metricstest.Key
	url := "http://" + metricsAddr + "/metrics"
	var got metricstest.Series
	var text string
	Eventually(t, 30*time.Second, "every role's series", func() error {
		got, text = metricstest.Scrape(t, url)
		for _, s := range []string{
			k("dyno_dynos", "state", "up", "type", "web"),
			k("dyno_hosts", "state", "live"),
			k("dyno_manifold_running"),
			k("dyno_agent_dynos", "type", "web"),
			k("dyno_router_requests_total", "app", app, "code", "", "status", "200"),
		} {
			if got[s] < 1 {
				return fmt.Errorf("%s = %v", s, got[s])
			}
		}
		return nil
	})
	for _, c := range []struct {
		name string
		kv   []string
	}{
		{"dyno_api_requests_total", []string{"route", "/apps/{app}/config-vars", "method", "PATCH", "status", "200"}},
		{"dyno_api_requests_total", []string{"route", "/apps", "method", "POST", "status", "201"}},
		{"dyno_api_request_duration_seconds_count", []string{"route", "/apps/{app}/builds", "method", "POST"}},
		{"dyno_manifold_decisions_total", []string{"action", "create"}},
		{"dyno_host_memory_bytes", nil},
		{"dyno_host_memory_reserved_bytes", nil},
		{"dyno_agent_dyno_state_changes_total", []string{"state", "up"}},
	} {
		if v, ok := got.Find(c.name, c.kv...); !ok || v < 1 {
			t.Errorf("%s %v = %v (present %v)\n%s", c.name, c.kv, v, ok, text)
		}
	}

	logs := p.Output()
	requests := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue // the start-up banner on stdout
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %s", line)
			continue
		}
		if m["msg"] == "api request" && m["role"] == "api" {
			requests++
		}
	}
	if requests == 0 {
		t.Errorf("no api request lines with role=api in the log:\n%s", logs)
	}
	for _, s := range []string{secret, p.APIKey} {
		if strings.Contains(logs, s) || strings.Contains(text, s) {
			t.Errorf("secret %q is in the server's log or metrics", s)
		}
	}
}
