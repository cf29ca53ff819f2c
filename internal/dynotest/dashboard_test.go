package dynotest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which CI installs (.ci/run).
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser drives the web dashboard in headless Chromium as a
// user would: log in with email and password, open an app deployed by that
// user, scale web from 1 to 2 with the page's form, see web.2 come up in the
// page and the scaling in its live logs; then the admin logs in with an API
// key and sees the hosts. Screenshots go to DYNO_SCREENSHOT_DIR (kept) or
// the test's temp dir; the test logs their paths.
func TestDashboardInBrowser(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("needs Debian's chromium at %s (apt-get install chromium; CI's .ci/run installs it): %v", chromiumPath, err)
	}
	p := Start(t, dynoBin)
	const (
		email    = "dana@example.com"
		password = "dana-password"
		app      = "dash-app"
	)
	admin := p.user(t, p.APIKey)
	admin.must(password+"\n", "users:create", email, "--password-stdin")
	dana := p.user(t, "")
	dana.must(password+"\n", "login", "--api-url", p.APIURL, "--email", email, "--password-stdin")
	dana.must("", "apps:create", app)
	dana.must("", "deploy", versionApp(t, "dash", ""), "-a", app)

	shots := os.Getenv("DYNO_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, console := browser(t)

	step := func(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			screenshot(t, ctx, filepath.Join(shots, "dashboard-failed.png"))
			t.Fatalf("%s: %v\nbrowser console:\n%s", what, err, console())
		}
	}
	button := func(label string) chromedp.Search {
		return chromedp.Search(fmt.Sprintf(`//button[normalize-space()=%q]`, label))
	}
	dynoUp := func(name string) chromedp.Search {
		return chromedp.Search(fmt.Sprintf(`//tr[@data-dyno=%q]//span[normalize-space()="up"]`, name))
	}

	// A browser asking for "/" lands on the login form.
	step("open the dashboard", 30*time.Second,
		chromedp.Navigate(p.APIURL+"/"),
		chromedp.WaitVisible(chromedp.ID("login-email")))
	step("log in with email and password", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("login-email"), email),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(button("Log in")),
		chromedp.WaitVisible(chromedp.Search(`//a[normalize-space()="`+app+`"]`)))
	step("open the app", 90*time.Second,
		chromedp.Click(chromedp.Search(`//a[normalize-space()="`+app+`"]`)),
		chromedp.WaitVisible(chromedp.ID("scale-web-qty")),
		chromedp.WaitVisible(dynoUp("web.1")))

	step("scale web to 2", 30*time.Second,
		chromedp.SetValue(chromedp.ID("scale-web-qty"), "2"),
		chromedp.Click(button("Scale web")),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "Scaled web to 2")]`)))
	step("see web.2 come up", 90*time.Second, chromedp.WaitVisible(dynoUp("web.2")))
	if code, body := p.API("GET", "/apps/"+app+"/formation/web", nil); code != 200 || !strings.Contains(body, `"quantity": 2`) {
		t.Fatalf("the formation after scaling in the page: %d %s", code, body)
	}
	// The log tail shows the scaling as it happened.
	step("see the scaling in the live logs", 30*time.Second,
		chromedp.Poll[chromedp.Void](`document.getElementById("logs").textContent.includes("Scaled to web@2")`,
			chromedp.WithPollingTimeout(25*time.Second)))
	logText, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("logs")))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the logs panel shows:\n%s", logText)
	screenshot(t, ctx, filepath.Join(shots, "dashboard-app.png"))

	// Back to 1: web.2 goes, its usage is reported at once, and the chart
	// draws it.
	step("scale web back to 1", 60*time.Second,
		chromedp.SetValue(chromedp.ID("scale-web-qty"), "1"),
		chromedp.Click(button("Scale web")),
		chromedp.WaitNotPresent(chromedp.Search(`//tr[@data-dyno="web.2"]`)))
	Eventually(t, 30*time.Second, "web.2's usage", func() error {
		code, body := p.API("GET", "/apps/"+app+"/usage", nil)
		var u struct{ Seconds int64 }
		if err := json.Unmarshal([]byte(body), &u); code != 200 || err != nil || u.Seconds == 0 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	step("see the usage chart", 30*time.Second,
		chromedp.Click(button("Refresh usage")),
		chromedp.WaitVisible(chromedp.CSS("svg.chart rect.bar")),
		chromedp.ScrollIntoView(chromedp.ID("usage-title")))
	screenshot(t, ctx, filepath.Join(shots, "dashboard-usage.png"))
	// Every control has a name: a label, an aria-label or its own text.
	unnamed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input, select, button, textarea")]
		.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
		.map((e) => e.outerHTML)`))
	if err != nil || len(unnamed) > 0 {
		t.Errorf("controls without a label: %q (%v)", unnamed, err)
	}

	// A config var set in the page makes v2; rolling back to v1 makes v3
	// without it. The test answers the page's confirm() with yes.
	step("set a config var", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("config-key"), "GREETING"),
		chromedp.SendKeys(chromedp.ID("config-value"), "<b>hi</b>"),
		chromedp.Click(button("Save")),
		chromedp.WaitVisible(chromedp.Search(`//p[normalize-space()="Set GREETING."]`)),
		chromedp.Click(button("Reveal values")),
		chromedp.WaitVisible(chromedp.Search(`//td/code[text()="<b>hi</b>"]`)), // shown as text, not markup
		chromedp.WaitVisible(chromedp.Search(`//th[contains(., "v2") and contains(., "(current)")]`)))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.confirm = () => true, true`)); err != nil {
		t.Fatal(err)
	}
	step("roll back to v1", 30*time.Second,
		chromedp.Click(chromedp.Search(`//button[@aria-label="Roll back to v1"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[normalize-space()="Rolled back to v1: now v3."]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[normalize-space()="No config vars."]`)))

	// The admin logs in with an API key and sees the hosts.
	step("log out", 30*time.Second,
		chromedp.Click(button("Log out")),
		chromedp.WaitVisible(chromedp.ID("login-key")))
	step("log in with the admin's API key", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("login-key"), p.APIKey),
		chromedp.Click(button("Log in with the key")),
		chromedp.WaitVisible(chromedp.Search(`//a[normalize-space()="`+app+`"]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[normalize-space()="Hosts"]`)))
	step("see the hosts", 30*time.Second,
		chromedp.Click(chromedp.Search(`//a[normalize-space()="Hosts"]`)),
		chromedp.WaitVisible(chromedp.Search(`//caption[normalize-space()="1 host"]`)))
	screenshot(t, ctx, filepath.Join(shots, "dashboard-hosts.png"))

	// The page ran without script errors and the CSP blocked nothing.
	for _, line := range strings.Split(console(), "\n") {
		if strings.HasPrefix(line, "exception") || strings.Contains(line, "Content Security Policy") {
			t.Errorf("browser console: %s", line)
		}
	}
}

// browser starts headless Chromium with a fresh profile and no background
// traffic (the machine's network is closed beyond loopback) and returns its
// context and a func that reports what the page wrote to its console. Both
// end when the test does.
func browser(t *testing.T) (context.Context, func() string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)

	var mu sync.Mutex
	var lines []string
	messages := chromedp.Console(ctx) // starts the browser; subscribes now
	done := make(chan struct{})
	go func() { // ends when ctx does
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, m.String()+" "+m.URL)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		<-done
	})
	return ctx, func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}
}

// screenshot saves the whole page as a PNG at path and logs where.
func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("save the screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", path)
}
