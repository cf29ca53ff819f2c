package dynotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBuildpackNodeAndGo deploys a Node.js app with an npm dependency (the
// nodejs buildpack set explicitly through the CLI) and a Go app (its
// buildpack detected), both built in build containers, and gets their
// answers through the router. A second deploy of the Node.js app uses the
// warm build cache.
func TestBuildpackNodeAndGo(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)

	node := writeApp(t, map[string]string{
		"package.json": `{"name":"hello-node","version":"1.0.0","scripts":{"start":"node server.js"},"dependencies":{"is-number":"7.0.0"}}`,
		"server.js": `const http = require("http");
const isNumber = require("is-number");
http.createServer((req, res) => res.end("node says " + isNumber(42) + "\n")).listen(process.env.PORT);
`,
		"Procfile": "web: npm start\n",
	})
	p.MustCLI("apps:create", "hello-node")
	p.MustCLI("buildpacks:set", "heroku/nodejs", "-a", "hello-node")
	if out := p.MustCLI("buildpacks", "-a", "hello-node"); !strings.Contains(out, "heroku/nodejs") {
		t.Errorf("buildpacks -a hello-node:\n%s", out)
	}
	for _, round := range []string{"cold", "warm"} {
		start := time.Now()
		out := p.MustCLI("deploy", node, "-a", "hello-node")
		built := time.Since(start)
		for _, want := range []string{"Using buildpack: heroku/nodejs", "Node.js app detected", "Procfile declares types -> web"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s deploy output lacks %q:\n%s", round, want, out)
			}
		}
		live := Eventually(t, 90*time.Second, "the Node.js app answers", answers(p, "hello-node", "node says true"))
		t.Logf("Node.js app, %s build cache: deploy (build + release) %v, then live after %v more", round, built.Round(time.Millisecond), live.Round(time.Millisecond))
		if round == "cold" {
			t.Logf("cold build output:\n%s", out)
		}
	}

	goApp := writeApp(t, map[string]string{
		"go.mod": "module example.com/hello\n\ngo 1.22\n",
		"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "go says hi") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`,
		"Procfile": "web: bin/hello\n",
	})
	p.MustCLI("apps:create", "hello-go")
	start := time.Now()
	out := p.MustCLI("deploy", goApp, "-a", "hello-go")
	if !strings.Contains(out, "Go app detected") || !strings.Contains(out, "bin/hello") {
		t.Errorf("Go deploy output:\n%s", out)
	}
	Eventually(t, 90*time.Second, "the Go app answers", answers(p, "hello-go", "go says hi"))
	t.Logf("Go app (cold): push to live %v", time.Since(start).Round(time.Millisecond))

	if out := p.MustCLI("buildpacks:clear", "-a", "hello-node"); !strings.Contains(out, "cleared") {
		t.Errorf("buildpacks:clear: %s", out)
	}
	if out := p.MustCLI("buildpacks", "-a", "hello-node"); !strings.Contains(out, "no Buildpack URL set") {
		t.Errorf("buildpacks after clear:\n%s", out)
	}
}

func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func answers(p *Platform, app, want string) func() error {
	return func() error {
		code, body, _, err := p.Get(app, "/")
		if err != nil {
			return err
		}
		if code != 200 || !strings.Contains(body, want) {
			return fmt.Errorf("GET / answered %d %q, want 200 with %q", code, body, want)
		}
		return nil
	}
}
