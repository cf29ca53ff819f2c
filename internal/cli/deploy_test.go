package cli

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// entry is what the fake API found in an uploaded tarball.
type entry struct {
	mode     fs.FileMode // permission bits and type
	linkname string
	body     string
}

// deployAPI fakes sources and builds; the build ends with status.
type deployAPI struct {
	*fakeAPI
	mu            sync.Mutex
	entries       map[string]entry
	contentLength int64
	uploadErr     error
}

func newDeployAPI(t *testing.T, status string, extraOutput ...string) *deployAPI {
	d := &deployAPI{fakeAPI: newFakeAPI(t)}
	d.handle("GET /apps/{app}", http.StatusOK, appJSON("hello", 0))
	d.mux.HandleFunc("POST /sources", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]any{"source_blob": map[string]string{
			"get_url": d.URL + "/sources/s1?token=secret", "put_url": d.URL + "/sources/s1?token=secret",
		}})
	})
	d.mux.HandleFunc("PUT /sources/s1", func(w http.ResponseWriter, r *http.Request) {
		entries, err := readTarball(r.Body)
		d.mu.Lock()
		d.entries, d.uploadErr, d.contentLength = entries, err, r.ContentLength
		d.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	build := map[string]any{
		"id": "b1", "status": "pending", "output_stream_url": d.URL + "/streams/b1?token=s",
		"source_blob": map[string]string{"url": d.URL + "/sources/s1?token=secret"}, "release": nil,
		"app": map[string]string{"id": "app-id", "name": "hello"},
	}
	d.handle("POST /apps/{app}/builds", http.StatusCreated, build)
	d.mux.HandleFunc("GET /streams/b1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "-----> Reading Procfile")
		w.(http.Flusher).Flush()
		fmt.Fprintln(w, "-----> Build "+status)
		for _, l := range extraOutput {
			fmt.Fprintln(w, l)
		}
	})
	done := map[string]any{}
	for k, v := range build {
		done[k] = v
	}
	done["status"] = status
	if status == "succeeded" {
		done["release"] = map[string]any{"id": "r1", "version": 1}
	}
	var gets int
	d.mux.HandleFunc("GET /apps/{app}/builds/b1", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		gets++
		first := gets == 1
		d.mu.Unlock()
		if first { // the status may lag the end of the output
			writeJSON(w, http.StatusOK, build)
			return
		}
		writeJSON(w, http.StatusOK, done)
	})
	return d
}

func readTarball(r io.Reader) (map[string]entry, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	entries := map[string]entry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not tar: %w", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		entries[hdr.Name] = entry{mode: hdr.FileInfo().Mode(), linkname: hdr.Linkname, body: string(body)}
	}
}

// makeApp writes an app directory with the kinds of files deploy packs and skips.
func makeApp(t *testing.T, procfile bool) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string, mode fs.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // despite the umask
			t.Fatal(err)
		}
	}
	if procfile {
		write("Procfile", "web: python3 app.py\n", 0o644)
	}
	write("app.py", "print('hi')\n", 0o600)
	write("bin/run", "#!/bin/sh\nexec python3 app.py\n", 0o755)
	write(".git/config", "[core]\n", 0o644)
	write("lib/.git", "gitdir: ../.git/modules/lib\n", 0o644)
	if err := os.Symlink("app.py", filepath.Join(dir, "main.py")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDeploy(t *testing.T) {
	api := newDeployAPI(t, "succeeded")
	dir := makeApp(t, true)
	r := run(t, api.fakeAPI, nil, "deploy", dir, "-a", "hello")
	wantOK(t, r)
	if want := "-----> Reading Procfile\n-----> Build succeeded\nReleased v1\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.uploadErr != nil {
		t.Fatalf("upload: %v", api.uploadErr)
	}
	if api.contentLength <= 0 {
		t.Errorf("upload Content-Length %d, want the size", api.contentLength)
	}
	want := map[string]entry{
		"Procfile": {mode: 0o644, body: "web: python3 app.py\n"},
		"app.py":   {mode: 0o600, body: "print('hi')\n"},
		"bin/":     {mode: fs.ModeDir | 0o755},
		"bin/run":  {mode: 0o755, body: "#!/bin/sh\nexec python3 app.py\n"},
		"lib/":     {mode: fs.ModeDir | 0o755},
		"main.py":  {mode: fs.ModeSymlink | 0o777, linkname: "app.py"},
	}
	if len(api.entries) != len(want) {
		t.Errorf("tarball holds %v, want %v", api.entries, want)
	}
	for name, w := range want {
		if got, ok := api.entries[name]; !ok || got != w {
			t.Errorf("%s: got %+v (present %v), want %+v", name, got, ok, w)
		}
	}
	builds := api.requests(http.MethodPost, "/apps/hello/builds")
	if len(builds) != 1 || !strings.Contains(builds[0].Body, `"source_blob":{"url":"`+api.URL+`/sources/s1?token=secret"}`) {
		t.Errorf("build request %+v", builds)
	}
	if puts := api.requests(http.MethodPut, "/sources/s1"); len(puts) != 1 || puts[0].Header.Get("Authorization") != "" {
		t.Errorf("upload requests %+v, want one without Authorization", puts)
	}
}

// TestDeployReleasedOnce checks "Released v1" is printed once when the
// build's output already says it, as the API's builds do.
func TestDeployReleasedOnce(t *testing.T) {
	api := newDeployAPI(t, "succeeded", "-----> Launching...", "       Released v1", "       http://hello.localhost:8080/ deployed to Dyno")
	r := run(t, api.fakeAPI, nil, "deploy", makeApp(t, true), "-a", "hello")
	wantOK(t, r)
	if n := strings.Count(r.stdout, "Released v1"); n != 1 {
		t.Errorf("stdout says Released v1 %d times, want once:\n%s", n, r.stdout)
	}
	if !strings.HasSuffix(r.stdout, "deployed to Dyno\n") {
		t.Errorf("stdout %q, want the build output's end last", r.stdout)
	}
}

func TestDeployFails(t *testing.T) {
	api := newDeployAPI(t, "failed")
	r := run(t, api.fakeAPI, nil, "deploy", makeApp(t, true), "-a", "hello")
	if r.code != 1 || !strings.HasSuffix(r.stderr, "Error: build failed\n") || !strings.Contains(r.stdout, "Build failed") {
		t.Errorf("failed build: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	// Without a Procfile the buildpacks decide: the source is uploaded.
	api = newDeployAPI(t, "succeeded")
	dir := makeApp(t, false)
	r = run(t, api.fakeAPI, nil, "deploy", dir, "-a", "hello")
	wantOK(t, r)
	if len(api.requests("POST", "/apps/hello/builds")) != 1 {
		t.Errorf("a deploy without a Procfile made no build: %+v", api.requests("", ""))
	}

	api = newDeployAPI(t, "succeeded")
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web python3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, api.fakeAPI, nil, "deploy", dir, "-a", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "Procfile line 1") || len(api.requests("", "")) != 0 {
		t.Errorf("bad Procfile: exit %d stderr %q", r.code, r.stderr)
	}
}
