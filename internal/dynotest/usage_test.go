package dynotest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUsageCountsEveryDynoSecond scales a tiny app to 3 web dynos for about
// 20 s of process life each, then to 0, and checks the meter billed 60 s.
func TestUsageCountsEveryDynoSecond(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web: exec python3 -m http.server $PORT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := "meter"
	p.MustCLI("apps:create", app)
	p.MustCLI("deploy", dir, "-a", app)
	// The first release starts web.1; take it out so only the measured
	// run counts.
	p.MustCLI("ps:scale", "web=0", "-a", app)
	noDynos := func() error {
		if out := p.MustCLI("ps", "-a", app); !strings.Contains(out, "No dynos") {
			return errString("dynos still listed:\n" + out)
		}
		return nil
	}
	Eventually(t, 60*time.Second, "web.1 stopped", noDynos)
	webSeconds := func() int64 {
		var u struct {
			Seconds   int64 `json:"seconds"`
			Processes []struct {
				Type    string `json:"type"`
				Seconds int64  `json:"seconds"`
			} `json:"processes"`
		}
		out := p.MustCLI("usage", "-a", app, "--json")
		if err := json.Unmarshal([]byte(out), &u); err != nil {
			t.Fatalf("usage --json: %v\n%s", err, out)
		}
		var web int64
		for _, pr := range u.Processes {
			if pr.Type == "web" {
				web += pr.Seconds
			}
		}
		return web
	}
	var before int64
	Eventually(t, 30*time.Second, "web.1's final segment", func() error {
		if before = webSeconds(); before == 0 {
			return errString("no usage yet for web.1")
		}
		return nil
	})

	start := time.Now()
	p.MustCLI("ps:scale", "web=3", "-a", app)
	p.MustCLI("ps:wait", "-a", app)
	// A web dyno lives 2 s more after its scale-down (out of the routers
	// first, then SIGTERM): scale down 18 s in for 20 s of life.
	time.Sleep(time.Until(start.Add(18 * time.Second)))
	p.MustCLI("ps:scale", "web=0", "-a", app)
	Eventually(t, 60*time.Second, "web dynos stopped", noDynos)

	var got int64
	Eventually(t, 30*time.Second, "usage of 60 s ± 2 s", func() error {
		got = webSeconds() - before
		if got < 58 || got > 62 {
			return errString("web usage " + time.Duration(got*int64(time.Second)).String() + ", want 60 s ± 2 s")
		}
		return nil
	})
	t.Logf("3 web dynos for ~20 s: billed %d s", got)
	if out := p.MustCLI("ps", "-a", app); !strings.Contains(out, "Free dyno hours quota remaining this month: ") {
		t.Errorf("ps has no quota line:\n%s", out)
	}
	if out := p.MustCLI("usage", "-a", app); !strings.Contains(out, "standard-1X") || !strings.Contains(out, "Free hours left") {
		t.Errorf("usage output:\n%s", out)
	}
	if out := p.MustCLI("invoices"); !strings.Contains(out, time.Now().UTC().Format("2006-01")) {
		t.Errorf("invoices output lacks this month:\n%s", out)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
