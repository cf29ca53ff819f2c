package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/store"
)

// A buildpack that shows what it was given: its compile writes what it saw
// of CACHE_DIR (a counter kept there) and ENV_DIR into the app.
var customPack = map[string]string{
	"bin/detect": "#!/bin/sh\necho Custom\n",
	"bin/compile": `#!/bin/sh
set -e
build=$1 cache=$2 env=$3
n=$(cat "$cache/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$cache/count"
echo "builds=$n" > "$build/cache-count"
ls "$env" | tr '\n' ' ' > "$build/env-names"
cat "$env/GREETING" > "$build/greeting"
if [ -e "$build/debug.log" ]; then echo yes > "$build/saw-ignored"; fi
echo "-----> Compiling with the custom buildpack"
echo "       step one done"
`,
	"bin/release": `#!/bin/sh
cat <<EOF
---
addons: []
config_vars:
  FROM_BUILDPACK: yes-it-is
default_process_types:
  web: ./serve
  worker: ./work
EOF
`,
}

// packTarball makes a gzipped tarball of files (scripts under bin/ are
// executable), below a top-level dir like GitHub's archives.
func packTarball(t *testing.T, top string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: top + name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func serveTarball(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/custom-buildpack.tgz"
}

func newTestBuilder(t *testing.T, cfg Config) (*Builder, *store.Store) {
	t.Helper()
	st := testStore(t)
	cfg.Store, cfg.Logs, cfg.Logger = st, &sink{}, slog.New(slog.DiscardHandler)
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	return NewWithConfig(cfg), st
}

// slugFiles reads the regular files of a stored slug.
func slugFiles(t *testing.T, st *store.Store, id string) map[string]string {
	t.Helper()
	r, err := st.Slugs.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
}

func build(t *testing.T, b *Builder, src []byte, opts Options) (Result, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := b.BuildApp(ctx, bytes.NewReader(src), &out, opts)
	return res, out.String(), err
}

func TestCustomBuildpackFromTarball(t *testing.T) {
	b, st := newTestBuilder(t, Config{})
	url := serveTarball(t, packTarball(t, "heroku-buildpack-custom-main/", customPack))
	src := tarball(t,
		entry{name: "Procfile", body: "worker: ./work --from-procfile\n"},
		entry{name: "debug.log", body: "noise"},
		entry{name: "docs/", typ: tar.TypeDir}, entry{name: "docs/guide.md", body: "x"},
		entry{name: "keep/debug.log.txt", body: "kept"},
		entry{name: ".slugignore", body: "# not needed at run time\n*.log\n/docs\n"},
	)
	opts := Options{AppID: "app1", Buildpacks: []string{url}, ConfigVars: map[string]string{"GREETING": "hello there", "DATABASE_URL": "postgres://x"}}
	for round := 1; round <= 2; round++ {
		res, out, err := build(t, b, src, opts)
		if err != nil {
			t.Fatalf("build %d: %v\n%s", round, err, out)
		}
		for _, want := range []string{"-----> Fetching buildpack " + url, "-----> Custom app detected", "       step one done",
			"Procfile declares types -> worker", "Default types for buildpack -> web, worker", "Removed 2 entries named in .slugignore"} {
			if !strings.Contains(out, want) {
				t.Errorf("build %d output lacks %q:\n%s", round, want, out)
			}
		}
		if got := res.Slug.ProcessTypes; got["web"] != "./serve" || got["worker"] != "./work --from-procfile" || len(got) != 2 {
			t.Errorf("process types %v, want the buildpack's web and the Procfile's worker", got)
		}
		if res.ConfigVars["FROM_BUILDPACK"] != "yes-it-is" {
			t.Errorf("config vars %v, want the buildpack's FROM_BUILDPACK", res.ConfigVars)
		}
		files := slugFiles(t, st, res.Slug.ID)
		want := map[string]string{
			"cache-count": "builds=" + string(rune('0'+round)) + "\n", "env-names": "DATABASE_URL GREETING ",
			"greeting": "hello there", "keep/debug.log.txt": "kept",
		}
		for name, body := range want {
			if files[name] != body {
				t.Errorf("build %d: slug file %s = %q, want %q", round, name, files[name], body)
			}
		}
		for _, gone := range []string{"debug.log", "docs/guide.md", "saw-ignored"} {
			if _, ok := files[gone]; ok {
				t.Errorf("build %d: slug has %s, which .slugignore removes before compile", round, gone)
			}
		}
	}
	if err := b.RemoveCache("app1"); err != nil {
		t.Fatal(err)
	}
	res, out, err := build(t, b, src, opts)
	if err != nil {
		t.Fatalf("build after RemoveCache: %v\n%s", err, out)
	}
	if got := slugFiles(t, st, res.Slug.ID)["cache-count"]; got != "builds=1\n" {
		t.Errorf("after RemoveCache the build saw %q, want a cold cache", got)
	}
}

func TestCustomBuildpackFromGit(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(version string) {
		os.MkdirAll(filepath.Join(repo, "bin"), 0o755)
		os.WriteFile(filepath.Join(repo, "bin/detect"), []byte("#!/bin/sh\necho Gitpack\n"), 0o755)
		os.WriteFile(filepath.Join(repo, "bin/compile"), []byte("#!/bin/sh\necho version="+version+" > \"$1/version\"\n"), 0o755)
		os.WriteFile(filepath.Join(repo, "bin/release"), []byte("#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: ./v"+version+"\\n'\n"), 0o755)
	}
	git("init", "-q", "-b", "main")
	write("1")
	git("add", ".")
	git("commit", "-q", "-m", "v1")
	git("tag", "v1")
	write("2")
	git("commit", "-q", "-am", "v2")

	src := tarball(t, entry{name: "app.txt", body: "x"})
	tests := []struct {
		url, want string
	}{
		{"file://" + repo, "version=2\n"},
		{"file://" + repo + "#v1", "version=1\n"},
	}
	b, st := newTestBuilder(t, Config{AllowFileBuildpacks: true})
	for _, tt := range tests {
		res, out, err := build(t, b, src, Options{AppID: "app1", Buildpacks: []string{tt.url}})
		if err != nil {
			t.Fatalf("build with %s: %v\n%s", tt.url, err, out)
		}
		if got := slugFiles(t, st, res.Slug.ID)["version"]; got != tt.want || !strings.Contains(out, "Gitpack app detected") {
			t.Errorf("build with %s made version %q, want %q; output:\n%s", tt.url, got, tt.want, out)
		}
	}

	strict, _ := newTestBuilder(t, Config{})
	if _, out, err := build(t, strict, src, Options{AppID: "app1", Buildpacks: []string{"file://" + repo}}); !errors.Is(err, ErrBuildpack) || !strings.Contains(out, "file:// buildpacks are not allowed") {
		t.Errorf("file:// buildpack on a strict builder: err %v, output %q; want it refused", err, out)
	}
}

func TestBuildpackFailures(t *testing.T) {
	failing := map[string]string{
		"bin/detect":  "#!/bin/sh\necho Failing\n",
		"bin/compile": "#!/bin/sh\necho '-----> Installing'\necho '       the dependency foo@9 does not exist' >&2\nexit 3\n",
		"bin/release": "#!/bin/sh\necho ---\n",
	}
	refuses := map[string]string{"bin/detect": "#!/bin/sh\nexit 1\n", "bin/compile": "#!/bin/sh\n", "bin/release": "#!/bin/sh\n"}
	badYAML := map[string]string{"bin/detect": "#!/bin/sh\n", "bin/compile": "#!/bin/sh\n", "bin/release": "#!/bin/sh\necho 'default_process_types: [oops'\n"}
	src := tarball(t, entry{name: "Procfile", body: "web: ./serve\n"})
	big := make([]byte, 64<<10)
	rand.Read(big)
	tests := []struct {
		name       string
		buildpacks []string
		src        []byte
		limit      int64
		want       []string
		is         error
	}{
		{"failing compile", []string{serveTarball(t, packTarball(t, "", failing))}, src, 0,
			[]string{"foo@9 does not exist", "bin/compile exited with status 3"}, ErrBuildpack},
		{"non-last buildpack does not apply", []string{serveTarball(t, packTarball(t, "", refuses)), "procfile"}, src, 0,
			[]string{"app not compatible with buildpack"}, ErrBuildpack},
		{"bad release YAML", []string{serveTarball(t, packTarball(t, "", badYAML))}, src, 0,
			[]string{"does not parse"}, ErrBuildpack},
		{"unknown buildpack name", []string{"heroku/cobol"}, src, 0, []string{"neither a built-in"}, ErrBuildpack},
		{"tarball 404", []string{serveTarball(t, nil) + "?x"}, src, 0, []string{"not a gzipped tarball"}, ErrBuildpack},
		{"slug over the limit", nil, tarball(t, entry{name: "Procfile", body: "web: ./serve\n"}, entry{name: "random.bin", body: string(big)}), 32 << 10,
			[]string{"Compiled slug size: 64.", "is too large (max is 32.0K)"}, ErrSlugTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBuilder(t, Config{MaxSlugBytes: tt.limit})
			_, out, err := build(t, b, tt.src, Options{AppID: "app1", Buildpacks: tt.buildpacks})
			if !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v; output:\n%s", err, tt.is, out)
			}
			for _, w := range append(tt.want, "Build failed") {
				if !strings.Contains(strings.ToLower(out), strings.ToLower(w)) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestBuiltinDetectOrder runs the built-ins' bin/detect in Builtins order
// over sample apps: the first that accepts wins.
func TestBuiltinDetectOrder(t *testing.T) {
	tests := []struct {
		files []string
		want  string
	}{
		{[]string{"go.mod", "main.go", "package.json", "Procfile"}, "Go"},
		{[]string{"package.json", "index.html", "Procfile"}, "Node.js"},
		{[]string{"requirements.txt"}, "Python"},
		{[]string{"app.py", "index.html"}, "Python"},
		{[]string{"index.html"}, "Static HTML"},
		{[]string{"public/index.html"}, "Static HTML"},
		{[]string{"Procfile", "run.sh"}, "Procfile"},
		{[]string{"README"}, ""},
	}
	packs := t.TempDir()
	for i, name := range Builtins {
		bp, err := ParseBuildpack(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeBuiltin(bp.builtin, filepath.Join(packs, string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range tests {
		app := t.TempDir()
		for _, f := range tt.files {
			os.MkdirAll(filepath.Dir(filepath.Join(app, f)), 0o755)
			os.WriteFile(filepath.Join(app, f), []byte("x"), 0o644)
		}
		got := ""
		for i := range Builtins {
			out, err := exec.Command(filepath.Join(packs, string(rune('0'+i)), "bin", "detect"), app).Output()
			if err == nil {
				got = strings.TrimSpace(string(out))
				break
			}
		}
		if got != tt.want {
			t.Errorf("app with %v detected as %q, want %q", tt.files, got, tt.want)
		}
	}
}

func TestParseBuildpack(t *testing.T) {
	tests := []struct {
		in, url string
		builtin bool
		tarball bool
		ref     string
		bad     bool
	}{
		{in: "heroku/nodejs", url: "heroku/nodejs", builtin: true},
		{in: "nodejs", url: "heroku/nodejs", builtin: true},
		{in: "Heroku/Go", url: "heroku/go", builtin: true},
		{in: "procfile", url: "procfile", builtin: true},
		{in: "https://example.com/bp/v1.tgz", url: "https://example.com/bp/v1.tgz", tarball: true},
		{in: "https://example.com/bp.tar.gz", url: "https://example.com/bp.tar.gz", tarball: true},
		{in: "https://github.com/heroku/heroku-buildpack-go.git#v170", url: "https://github.com/heroku/heroku-buildpack-go.git#v170", ref: "v170"},
		{in: "https://github.com/x/y", url: "https://github.com/x/y"},
		{in: "file:///srv/packs/custom", url: "file:///srv/packs/custom"},
		{in: "heroku/cobol", bad: true},
		{in: "ftp://example.com/bp.tgz", bad: true},
		{in: "https://example.com/x#-uflag", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		bp, err := ParseBuildpack(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseBuildpack(%q) = %+v, want an error", tt.in, bp)
			}
			continue
		}
		if err != nil || bp.URL != tt.url || bp.Builtin() != tt.builtin || bp.tarball != tt.tarball || bp.ref != tt.ref {
			t.Errorf("ParseBuildpack(%q) = %+v, %v", tt.in, bp, err)
		}
	}
}

func TestBuildTimeout(t *testing.T) {
	slow := map[string]string{"bin/detect": "#!/bin/sh\n", "bin/compile": "#!/bin/sh\nexec sleep 30\n", "bin/release": "#!/bin/sh\n"}
	b, _ := newTestBuilder(t, Config{Timeout: time.Second})
	start := time.Now()
	_, out, err := build(t, b, tarball(t, entry{name: "Procfile", body: "web: ./serve\n"}), Options{AppID: "app1", Buildpacks: []string{serveTarball(t, packTarball(t, "", slow))}})
	if err == nil || !strings.Contains(out, "took longer than 1s") || time.Since(start) > 10*time.Second {
		t.Fatalf("slow build: err %v after %v, output:\n%s", err, time.Since(start), out)
	}
}
