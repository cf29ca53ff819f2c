package build

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/runtime"
)

// TestMain lets the test binary act as a build container's init when
// libcontainer re-executes it.
func TestMain(m *testing.M) {
	runtime.InitHook()
	os.Exit(m.Run())
}

// containerRuntime is a real container runtime with the dyno network (NAT
// to the package registries), as the server gives builds.
func containerRuntime(t *testing.T) *runtime.ContainerRuntime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("build container tests need root (namespaces, cgroups, mounts, nftables); run them as root")
	}
	rt, err := runtime.NewContainerRuntime(runtime.ContainerConfig{
		StateDir: t.TempDir(), CgroupParent: "dyno-buildtest",
		Network: runtime.NetworkConfig{Enabled: true, Subnet: "10.215.0.0/24", Table: "dynobuildtest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Shutdown(context.Background()); err != nil {
			t.Errorf("shut down the runtime: %v", err)
		}
	})
	return rt
}

// TestContainerBuilds builds real apps with the built-in buildpacks in build
// containers: a Node.js app with an npm dependency from the registry (cold,
// then with the warm cache), a Go app, a standard-library Python app.
func TestContainerBuilds(t *testing.T) {
	rt := containerRuntime(t)
	b, st := newTestBuilder(t, Config{Runtime: rt})

	t.Run("nodejs", func(t *testing.T) {
		src := tarball(t,
			entry{name: "package.json", body: `{"name":"hello","version":"1.0.0","scripts":{"start":"node server.js"},"dependencies":{"is-number":"7.0.0"}}`},
			entry{name: "server.js", body: `require("is-number");`},
		)
		for _, round := range []string{"cold", "warm"} {
			start := time.Now()
			res, out, err := build(t, b, src, Options{AppID: "node-app"})
			if err != nil {
				t.Fatalf("%s build: %v\n%s", round, err, out)
			}
			t.Logf("Node.js build with a %s cache: %v", round, time.Since(start).Round(time.Millisecond))
			if strings.Contains(out, "WITHOUT isolation") || !strings.Contains(out, "Node.js app detected") {
				t.Errorf("output:\n%s", out)
			}
			if res.Slug.ProcessTypes["web"] != "npm start" {
				t.Errorf("process types %v, want web: npm start", res.Slug.ProcessTypes)
			}
			if files := slugFiles(t, st, res.Slug.ID); !strings.Contains(files["node_modules/is-number/package.json"], `"version": "7.0.0"`) {
				t.Errorf("slug lacks is-number 7.0.0; output:\n%s", out)
			}
		}
	})

	t.Run("go", func(t *testing.T) {
		src := tarball(t,
			entry{name: "go.mod", body: "module example.com/hello\n\ngo 1.22\n"},
			entry{name: "main.go", body: "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hi\\n\") }\n"},
		)
		res, out, err := build(t, b, src, Options{AppID: "go-app"})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		if res.Slug.ProcessTypes["web"] != "bin/hello" {
			t.Errorf("process types %v, want web: bin/hello; output:\n%s", res.Slug.ProcessTypes, out)
		}
		if _, ok := slugFiles(t, st, res.Slug.ID)["bin/hello"]; !ok {
			t.Errorf("slug lacks bin/hello; output:\n%s", out)
		}
	})

	t.Run("python", func(t *testing.T) {
		src := tarball(t,
			entry{name: "requirements.txt", body: "# the standard library is enough\n"},
			entry{name: "app.py", body: "import http.server\n"},
		)
		res, out, err := build(t, b, src, Options{AppID: "py-app", ConfigVars: map[string]string{"PIP_INDEX_URL": ""}})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		if res.Slug.ProcessTypes["web"] != "python3 app.py" || !strings.Contains(out, "No requirements to install") {
			t.Errorf("process types %v; output:\n%s", res.Slug.ProcessTypes, out)
		}
	})

	t.Run("compile runs as the build user, not root", func(t *testing.T) {
		pack := map[string]string{
			"bin/detect":  "#!/bin/sh\necho Whoami\n",
			"bin/compile": "#!/bin/sh\nid -u > \"$1/uid\"\ntouch /usr/x 2>/dev/null && echo usr-writable > \"$1/usr\"\nexit 0\n",
			"bin/release": "#!/bin/sh\necho ---\n",
		}
		src := tarball(t, entry{name: "Procfile", body: "web: ./serve\n"})
		res, out, err := build(t, b, src, Options{AppID: "whoami", Buildpacks: []string{serveTarball(t, packTarball(t, "", pack))}})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		files := slugFiles(t, st, res.Slug.ID)
		if uid := strings.TrimSpace(files["uid"]); uid < "199000" || uid > "199099" || files["usr"] != "" {
			t.Errorf("compile ran as uid %q (want 199000-199099), /usr writable: %q", uid, files["usr"])
		}
	})
}
