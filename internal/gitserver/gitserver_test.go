package gitserver

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain makes the test binary the hook, as the dyno binary is in
// production: repositories' hooks exec `<test binary> git-hook pre-receive`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "git-hook" {
		os.Exit(RunHook(os.Args[2:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
	}
	os.Exit(m.Run())
}

const testKey = "secret-key"

// fakePlatform knows two apps and one key, and "builds" by listing the
// tarball's files; a tree with a file named FAIL fails its build.
type fakePlatform struct {
	mu     sync.Mutex
	builds [][]string // the files of each build, in order
	okays  int
	seen   chan struct{} // when set, builds wait for it after their first line
}

func (f *fakePlatform) Authenticate(key string) (string, bool) {
	return "admin@dyno.local", key == testKey
}

func (f *fakePlatform) AppID(_ context.Context, name string) (string, bool, error) {
	ids := map[string]string{"hello": "11111111-aaaa-4bbb-8ccc-000000000001", "other": "11111111-aaaa-4bbb-8ccc-000000000002"}
	id, ok := ids[name]
	return id, ok, nil
}

func (f *fakePlatform) Deploy(_ context.Context, app, user, commit string, tarball io.Reader, out io.Writer) (int, error) {
	if !commitRE.MatchString(commit) {
		return 0, fmt.Errorf("no commit ID given: %q", commit)
	}
	files, err := listTarball(tarball)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.builds = append(f.builds, files)
	if err != nil {
		return 0, fmt.Errorf("bad tarball: %w", err)
	}
	fmt.Fprintf(out, "-----> Fake build of %s for %s: %s\n", app, user, strings.Join(files, ","))
	if f.seen != nil {
		// Wait, without the lock, until the pusher has shown the line.
		f.mu.Unlock()
		select {
		case <-f.seen:
			fmt.Fprintln(out, "       the pusher saw the first line live")
		case <-time.After(10 * time.Second):
		}
		f.mu.Lock()
	}
	for _, name := range files {
		if name == "FAIL" {
			fmt.Fprintln(out, " !     The tree has a FAIL file")
			return 0, errors.New("build failed")
		}
	}
	f.okays++
	fmt.Fprintf(out, "       Released v%d\n", f.okays)
	return f.okays, nil
}

func (f *fakePlatform) buildCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.builds)
}

func listTarball(r io.Reader) ([]string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

type testEnv struct {
	t     *testing.T
	srv   *Server
	url   string // http://127.0.0.1:port
	fake  *fakePlatform
	repos string
}

func start(t *testing.T) *testEnv {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git (apt-get install git)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	e := &testEnv{t: t, url: ts.URL, fake: &fakePlatform{}, repos: filepath.Join(t.TempDir(), "repos")}
	e.srv, err = New(Config{
		ReposDir: e.repos, HookCommand: exe, InternalURL: ts.URL,
		Auth: e.fake, Apps: e.fake, Deployer: e.fake,
	})
	if err != nil {
		t.Fatal(err)
	}
	h = e.srv
	return e
}

// remote is an app's URL with credentials in it.
func (e *testEnv) remote(app, key string) string {
	return strings.Replace(e.url, "http://", "http://git:"+key+"@", 1) + "/" + app + ".git"
}

// git runs the real git client in dir, isolated from the machine's config.
func git(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := git(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// workTree makes a repository with files and commits them.
func workTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	mustGit(t, dir, "init", "--quiet", "--initial-branch=main")
	commit(t, dir, files)
	return dir
}

func commit(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustGit(t, dir, "add", "-A")
	mustGit(t, dir, "commit", "--quiet", "-m", "change")
}

func TestPushDeploysAndRejects(t *testing.T) {
	e := start(t)
	dir := workTree(t, map[string]string{"Procfile": "web: ./server\n"})
	mustGit(t, dir, "remote", "add", "dyno", e.remote("hello", testKey))

	out := mustGit(t, dir, "push", "dyno", "main")
	for _, want := range []string{"remote: Building source (main", "remote: -----> Fake build of hello for admin@dyno.local: Procfile", "remote:        Released v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	first := strings.TrimSpace(mustGit(t, dir, "rev-parse", "HEAD"))

	tests := []struct {
		name    string
		files   map[string]string // committed before the push, if any
		push    []string
		wantOut []string
		builds  int // builds the push adds
	}{
		{"failing build", map[string]string{"FAIL": "x"}, []string{"push", "dyno", "main"},
			[]string{"remote:  !     The tree has a FAIL file", "Push rejected to hello: build failed", "pre-receive hook declined"}, 1},
		{"other branch", nil, []string{"push", "dyno", "HEAD:refs/heads/feature"},
			[]string{"only main (or master) deploys", "git push dyno HEAD:main"}, 0},
		{"delete main", nil, []string{"push", "dyno", ":main"}, []string{"main"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.files != nil {
				commit(t, dir, tt.files)
			}
			before := e.fake.buildCount()
			out, err := git(t, dir, tt.push...)
			if err == nil {
				t.Fatalf("push succeeded:\n%s", out)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if got := e.fake.buildCount() - before; got != tt.builds {
				t.Errorf("%d builds, want %d", got, tt.builds)
			}
			remote := mustGit(t, dir, "ls-remote", "dyno")
			if !strings.Contains(remote, first+"\trefs/heads/main") || strings.Count(remote, "refs/heads/") != 1 {
				t.Errorf("remote refs changed:\n%s", remote)
			}
		})
	}

	// A fix deploys v2; a clone gets what was pushed.
	mustGit(t, dir, "rm", "--quiet", "FAIL")
	commit(t, dir, map[string]string{"app.txt": "v2"})
	if out := mustGit(t, dir, "push", "dyno", "main"); !strings.Contains(out, "Released v2") {
		t.Errorf("second push:\n%s", out)
	}
	clone := t.TempDir()
	mustGit(t, clone, "clone", "--quiet", e.remote("hello", testKey), "app")
	if b, err := os.ReadFile(filepath.Join(clone, "app", "app.txt")); err != nil || string(b) != "v2" {
		t.Errorf("clone has app.txt %q, %v", b, err)
	}
}

func TestAccess(t *testing.T) {
	e := start(t)
	tests := []struct {
		name, remote string
		wantOut      string
	}{
		{"wrong key", e.remote("hello", "wrong"), "Authentication failed"},
		{"no key", e.url + "/hello.git", "could not read Username"},
		{"unknown app", e.remote("nope", testKey), "No such app as nope"},
	}
	dir := workTree(t, map[string]string{"Procfile": "web: ./server\n"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := git(t, dir, "push", tt.remote, "main")
			if err == nil || !strings.Contains(out, tt.wantOut) {
				t.Errorf("push: %v, want failure with %q:\n%s", err, tt.wantOut, out)
			}
		})
	}
	if n := e.fake.buildCount(); n != 0 {
		t.Errorf("%d builds ran", n)
	}

	// What git sees, precisely: 401 with a Basic challenge, 404 in words.
	for _, tt := range []struct {
		path, key string
		status    int
		header    string
	}{
		{"/hello.git/info/refs?service=git-receive-pack", "", 401, `Basic realm="Dyno"`},
		{"/hello.git/info/refs?service=git-receive-pack", "wrong", 401, `Basic realm="Dyno"`},
		{"/nope.git/info/refs?service=git-receive-pack", testKey, 404, ""},
		{"/hello.git/info/refs", testKey, 403, ""},     // dumb protocol
		{"/hello.git/" + deployPath, testKey, 404, ""}, // no push token
		{"/hello.git/info/refs?service=git-upload-pack", testKey, 200, ""},
	} {
		req, _ := http.NewRequest("GET", e.url+tt.path, nil)
		if tt.key != "" {
			req.SetBasicAuth("anyone", tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("WWW-Authenticate") != tt.header {
			t.Errorf("GET %s (key %q): %d %q, want %d %q", tt.path, tt.key, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tt.status, tt.header)
		}
	}
}

// Build output reaches the pusher while the build runs.
func TestOutputIsLive(t *testing.T) {
	e := start(t)
	seen, once := make(chan struct{}), sync.Once{}
	e.fake.seen = seen
	dir := workTree(t, map[string]string{"Procfile": "web: ./server\n"})
	cmd := exec.Command("git", "push", "--progress", e.remote("hello", testKey), "main")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := stderr.Read(buf)
		all.Write(buf[:n])
		if strings.Contains(all.String(), "Fake build of hello") {
			once.Do(func() { close(seen) })
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("push: %v\n%s", err, all.String())
	}
	if !strings.Contains(all.String(), "the pusher saw the first line live") {
		t.Errorf("the first build line arrived only at the end:\n%s", all.String())
	}
}

// A pack bigger than git's post buffer (1 MiB) is sent chunked.
func TestLargePush(t *testing.T) {
	e := start(t)
	blob := make([]byte, 3<<20)
	_, _ = rand.Read(blob)
	dir := workTree(t, map[string]string{"Procfile": "web: ./server\n", "big.bin": string(blob)})
	out := mustGit(t, dir, "push", e.remote("hello", testKey), "main")
	if !strings.Contains(out, "Procfile,big.bin") {
		t.Errorf("push output:\n%s", out)
	}
}

func TestMasterAndRemoveRepo(t *testing.T) {
	e := start(t)
	dir := t.TempDir()
	mustGit(t, dir, "init", "--quiet", "--initial-branch=master")
	commit(t, dir, map[string]string{"Procfile": "web: ./server\n"})
	mustGit(t, dir, "push", e.remote("other", testKey), "master")
	clone := t.TempDir()
	if out := mustGit(t, clone, "clone", e.remote("other", testKey), "app"); strings.Contains(out, "warning") {
		t.Errorf("clone of a master-only repository warns:\n%s", out)
	}
	id, _, _ := e.fake.AppID(context.Background(), "other")
	if err := e.srv.RemoveRepo(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.srv.repoDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repository still there: %v", err)
	}
	if err := e.srv.RemoveRepo(id); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	// The app's next push starts a fresh repository.
	if out := mustGit(t, dir, "push", e.remote("other", testKey), "master"); !strings.Contains(out, "Released v2") {
		t.Errorf("push after removal:\n%s", out)
	}
}

func TestIsGitPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/hello.git/info/refs": true, "/hello.git": true, "/.git/x": false, "/apps/hello.git": false,
		"/apps": false, "/": false, "/hello.gitx/info/refs": false,
	} {
		if got := IsGitPath(p); got != want {
			t.Errorf("IsGitPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestHookOutsideDyno(t *testing.T) {
	var out, errOut strings.Builder
	if code := RunHook([]string{"pre-receive"}, strings.NewReader(""), &out, &errOut, nil); code != 1 || !strings.Contains(out.String(), "did not come through Dyno") {
		t.Errorf("RunHook without env: %d %q", code, out.String())
	}
	if code := RunHook([]string{"post-receive"}, strings.NewReader(""), &out, &errOut, nil); code != 2 {
		t.Errorf("RunHook post-receive: %d", code)
	}
}

// Two pushes of unrelated histories at once: one deploys, the other is
// refused (by the hook or by git) and releases nothing.
func TestConcurrentPushes(t *testing.T) {
	e := start(t)
	dirs := []string{
		workTree(t, map[string]string{"Procfile": "web: ./one\n"}),
		workTree(t, map[string]string{"Procfile": "web: ./two\n"}),
	}
	var wg sync.WaitGroup
	errs := make([]error, len(dirs))
	outs := make([]string, len(dirs))
	for i, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = git(t, dir, "push", e.remote("hello", testKey), "main")
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("want exactly one push to succeed:\n%v\n%s\n%v\n%s", errs[0], outs[0], errs[1], outs[1])
	}
	e.fake.mu.Lock()
	defer e.fake.mu.Unlock()
	if e.fake.okays != 1 {
		t.Errorf("%d releases, want 1", e.fake.okays)
	}
}
