package build

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// The built-in buildpacks: small shell scripts run with the stack's own
// tools (/usr/local/go, /usr/bin/node and npm, /usr/bin/python3).
//
//go:embed builtin
var builtinFS embed.FS

// Builtins are the names of the built-in buildpacks in detection order: with
// no buildpack set, the first whose bin/detect accepts the app runs.
var Builtins = []string{"heroku/go", "heroku/nodejs", "heroku/python", "heroku/static", "procfile"}

// builtinDirs maps every accepted name of a built-in to its dir in builtin/.
var builtinDirs = map[string]string{
	"heroku/go": "go", "go": "go",
	"heroku/nodejs": "nodejs", "nodejs": "nodejs", "heroku/node": "nodejs", "node": "nodejs",
	"heroku/python": "python", "python": "python",
	"heroku/static": "static", "static": "static",
	"procfile": "procfile", "heroku/procfile": "procfile",
}

// Limits on fetched buildpacks.
const (
	maxBuildpackBytes = 200 << 20 // unpacked
	fetchTimeout      = 2 * time.Minute
)

// Buildpack is one buildpack of a build: a built-in, a tarball URL or a
// git URL (with an optional #ref: a branch, tag or commit).
type Buildpack struct {
	// URL is what the user set, normalised: "heroku/nodejs" for built-ins.
	URL     string
	builtin string // dir in builtin/; "" for fetched buildpacks
	tarball bool   // http(s) URL of a .tgz/.tar.gz
	src     string // the URL to fetch, without the #ref
	ref     string
}

// ParseBuildpack checks a buildpack as `buildpacks:set` takes it: the name
// of a built-in (heroku/go, heroku/nodejs, heroku/python, heroku/static,
// procfile), an http(s) URL of a .tgz or .tar.gz, or a git URL (https://,
// http://, git://, file:// or ssh://, optionally #ref).
func ParseBuildpack(s string) (Buildpack, error) {
	s = strings.TrimSpace(s)
	if dir, ok := builtinDirs[strings.ToLower(s)]; ok {
		name := strings.ToLower(s)
		for _, b := range Builtins {
			if builtinDirs[b] == dir {
				name = b
			}
		}
		return Buildpack{URL: name, builtin: dir}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" && u.Scheme != "file" || strings.ContainsAny(s, " \t\n\x00") {
		return Buildpack{}, fmt.Errorf("buildpack %q is neither a built-in (%s) nor a URL: use a tarball URL (https://.../buildpack.tgz) or a git URL", s, strings.Join(Builtins, ", "))
	}
	if u.Scheme == "file" && u.Path == "" {
		return Buildpack{}, fmt.Errorf("buildpack %q: a file:// URL needs a path", s)
	}
	ref := u.Fragment
	u.Fragment, u.RawFragment = "", ""
	switch u.Scheme {
	case "http", "https":
		if p := strings.ToLower(u.Path); strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz") {
			return Buildpack{URL: s, tarball: true, src: u.String()}, nil
		}
	case "git", "ssh", "file":
	default:
		return Buildpack{}, fmt.Errorf("buildpack %q: URL scheme %q is not supported: use https:// (a .tgz or a git repository), git:// or ssh://", s, u.Scheme)
	}
	if strings.HasPrefix(ref, "-") {
		return Buildpack{}, fmt.Errorf("buildpack %q: ref %q may not start with '-'", s, ref)
	}
	return Buildpack{URL: s, src: u.String(), ref: ref}, nil
}

// Builtin reports whether the buildpack ships inside Dyno.
func (b Buildpack) Builtin() bool { return b.builtin != "" }

// fetcher gets buildpacks onto the disk.
type fetcher struct {
	hc        *http.Client
	allowFile bool // file:// git URLs (tests; a server must not clone its own disk)
}

// fetch puts the buildpack into dir (which must not exist): bin/detect,
// bin/compile and bin/release at its root.
func (f *fetcher) fetch(ctx context.Context, bp Buildpack, dir string) error {
	switch {
	case bp.builtin != "":
		return writeBuiltin(bp.builtin, dir)
	case bp.tarball:
		if err := f.fetchTarball(ctx, bp.src, dir); err != nil {
			return fmt.Errorf("fetch buildpack %s: %w", bp.URL, err)
		}
	default:
		if err := f.clone(ctx, bp, dir); err != nil {
			return fmt.Errorf("fetch buildpack %s: %w", bp.URL, err)
		}
	}
	root, err := buildpackRoot(dir)
	if err != nil {
		return fmt.Errorf("buildpack %s: %w", bp.URL, err)
	}
	if root != dir {
		// A tarball with one top-level directory (GitHub's archives):
		// use that directory.
		tmp := dir + ".root"
		if err := os.Rename(root, tmp); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	return nil
}

// buildpackRoot finds bin/compile at dir or in its only subdirectory.
func buildpackRoot(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "bin", "compile")); err == nil {
		return dir, nil
	}
	entries, _ := os.ReadDir(dir)
	var subs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != ".git" {
			subs = append(subs, e.Name())
		}
	}
	if len(subs) == 1 {
		if _, err := os.Stat(filepath.Join(dir, subs[0], "bin", "compile")); err == nil {
			return filepath.Join(dir, subs[0]), nil
		}
	}
	return "", errors.New("it has no bin/compile: a buildpack needs bin/detect, bin/compile and bin/release")
}

// writeBuiltin copies an embedded buildpack and the shared lib.sh into dir.
func writeBuiltin(name, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	lib, err := builtinFS.ReadFile("builtin/lib.sh")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "lib.sh"), lib, 0o644); err != nil {
		return err
	}
	for _, script := range []string{"detect", "compile", "release"} {
		b, err := builtinFS.ReadFile(path.Join("builtin", name, "bin", script))
		if err != nil {
			return fmt.Errorf("built-in buildpack %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", script), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (f *fetcher) fetchTarball(ctx context.Context, u, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET answered %s: check the URL", resp.Status)
	}
	return untar(resp.Body, dir, maxBuildpackBytes)
}

// untar unpacks a gzipped tarball of a buildpack into dir with the same
// path rules as sources: nothing outside dir, no devices, bounded size.
func untar(r io.Reader, dir string, limit int64) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("corrupt tarball: %w", err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		// Refuse to write through a symlink an earlier entry made.
		if parent, err := filepath.EvalSymlinks(filepath.Dir(dst)); err == nil && !within(dir, parent) {
			return fmt.Errorf("%q is inside a link that leaves the buildpack", name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if total += hdr.Size; total > limit {
				return fmt.Errorf("it unpacks to more than %s", humanBytes(limit))
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := writeFile(dst, tr, os.FileMode(hdr.Mode&0o755|0o644)); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if path.IsAbs(hdr.Linkname) || !within(dir, filepath.Join(filepath.Dir(dst), hdr.Linkname)) {
				return fmt.Errorf("symlink %q points outside the buildpack", name)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("%q has an entry type buildpacks may not use (%q)", name, hdr.Typeflag)
		}
	}
}

func writeFile(dst string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// clone clones a git buildpack with the host's git, then checks out its ref.
func (f *fetcher) clone(ctx context.Context, bp Buildpack, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	protocols := "https:http:git:ssh"
	if f.allowFile {
		protocols += ":file"
	}
	if strings.HasPrefix(bp.src, "file:") && !f.allowFile {
		return errors.New("file:// buildpacks are not allowed on this server: use an https:// URL")
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ALLOW_PROTOCOL="+protocols,
			"GIT_SSH_COMMAND=ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := git("clone", "--quiet", "--", bp.src, dir); err != nil {
		return err
	}
	if bp.ref != "" {
		if err := git("-C", dir, "checkout", "--quiet", "--detach", bp.ref, "--"); err != nil {
			return fmt.Errorf("ref %q: %w", bp.ref, err)
		}
	}
	// The buildpack's history is of no use to the build.
	return os.RemoveAll(filepath.Join(dir, ".git"))
}
