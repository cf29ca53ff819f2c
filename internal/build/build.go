// Package build turns an uploaded source tarball into a slug: it checks the
// tarball (gzip+tar, safe paths, no devices, bounded size), unpacks it,
// removes what .slugignore names, runs the app's buildpacks on it (Heroku's
// classic API: bin/detect, bin/compile BUILD_DIR CACHE_DIR ENV_DIR,
// bin/release) in build containers with a per-app cache, packs the result as
// the gzipped tarball agents unpack into /app, and stores it in the slug
// object store. Making a release of the slug is the API server's job, so
// that every release is created in one place.
//
// Files: build.go (Builder, source checks), compile.go (running the
// buildpacks), buildpack.go (built-in, tarball and git buildpacks),
// sandbox.go (build containers), slug.go (.slugignore, packing), cache.go,
// builtin/ (the built-in buildpacks' scripts).
package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Limits on what a source may unpack to; a gzip bomb stops at these.
const (
	// MaxUnpackedBytes bounds the total size of the files in a source.
	MaxUnpackedBytes = 4 << 30
	// MaxEntries bounds the number of files, directories and links.
	MaxEntries = 200_000
)

// ErrInvalidSource marks a build that failed because of the source (not a
// tarball, unsafe path, no Procfile...), as opposed to the platform.
var ErrInvalidSource = errors.New("invalid source")

// LogSink receives app log lines (logplex.Logplex is one).
type LogSink interface {
	Publish(appID string, line model.LogLine)
}

// Config configures a Builder.
type Config struct {
	Store  *store.Store
	Logs   LogSink // where "Build failed" lines go; nil: nowhere
	Logger *slog.Logger
	// DataDir holds the builds' workspaces (builds/) and the per-app build
	// caches (cache/<appID>). Empty: workspaces in the system's temp dir
	// and no cache kept between builds.
	DataDir string
	// Runtime runs the buildpacks' programs in containers. Nil, or one that
	// is not isolated: they run as plain processes of the server, without
	// any isolation (the build output says so).
	Runtime Runtime
	// UIDs are the users build containers run as (DefaultBuildUIDs when nil).
	UIDs UIDs
	// Env is the platform's environment for builds, under the app's config
	// vars: GOPROXY, NPM_CONFIG_REGISTRY, PIP_INDEX_URL...
	Env map[string]string
	// MemoryMB is a build container's memory limit (2048 when 0).
	MemoryMB int
	// Timeout bounds a whole build (15 min when 0).
	Timeout time.Duration
	// MaxSlugBytes bounds the compressed slug (DefaultMaxSlugBytes when 0).
	MaxSlugBytes int64
	// AllowFileBuildpacks lets buildpacks be cloned from file:// URLs, i.e.
	// from the server's own disk: for tests only.
	AllowFileBuildpacks bool
	// HTTPClient fetches tarball buildpacks (http.DefaultClient when nil).
	HTTPClient *http.Client
}

// Options are what one build needs to know about its app.
type Options struct {
	AppID string
	// ConfigVars are the current release's config vars: ENV_DIR's files.
	ConfigVars map[string]string
	// Buildpacks are the app's buildpacks in order, as ParseBuildpack takes
	// them; none: the built-ins are detected.
	Buildpacks []string
	// SourceVersion is the commit being built, if known (SOURCE_VERSION).
	SourceVersion string
}

// Result is a successful build.
type Result struct {
	Slug model.Slug
	// ConfigVars are the defaults the buildpacks' bin/release asked for;
	// Heroku sets those the app does not have yet.
	ConfigVars map[string]string
	// Buildpacks are the buildpacks that ran, in order.
	Buildpacks []string
}

// Builder builds slugs from source tarballs.
type Builder struct {
	cfg   Config
	st    *store.Store
	logs  LogSink
	log   *slog.Logger
	fetch *fetcher

	cacheMu sync.Mutex // serialises the swap of an app's saved cache
}

// New returns a Builder that stores slugs in st and reports failures to
// the app's log through logs. Its buildpacks run unisolated and keep no
// cache: servers use NewWithConfig.
func New(st *store.Store, logs LogSink, logger *slog.Logger) *Builder {
	return NewWithConfig(Config{Store: st, Logs: logs, Logger: logger})
}

// NewWithConfig returns a Builder configured by cfg. It removes the
// workspaces an earlier process left in cfg.DataDir.
func NewWithConfig(cfg Config) *Builder {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UIDs == nil {
		cfg.UIDs = DefaultBuildUIDs()
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = 2048
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.MaxSlugBytes <= 0 {
		cfg.MaxSlugBytes = DefaultMaxSlugBytes
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.DataDir != "" {
		if err := os.RemoveAll(filepath.Join(cfg.DataDir, "builds")); err != nil {
			cfg.Logger.Warn("remove old build workspaces", "err", err)
		}
	}
	return &Builder{
		cfg: cfg, st: cfg.Store, logs: cfg.Logs, log: cfg.Logger,
		fetch: &fetcher{hc: cfg.HTTPClient, allowFile: cfg.AllowFileBuildpacks},
	}
}

// Build builds with the built-in buildpacks and no config vars: see BuildApp.
func (b *Builder) Build(ctx context.Context, appID string, src io.Reader, out io.Writer) (model.Slug, error) {
	res, err := b.BuildApp(ctx, src, out, Options{AppID: appID})
	return res.Slug, err
}

// BuildApp reads a gzipped tar source from src, runs the buildpacks on it,
// writes human build output to out as it goes, and stores the compiled app
// as a slug under a new ID. On failure it writes the reason to out,
// publishes "Build failed: <reason>" to the app's log as app[api], stores
// nothing and returns an error (wrapping ErrInvalidSource when the source
// is to blame, ErrBuildpack when a buildpack failed, ErrSlugTooLarge).
func (b *Builder) BuildApp(ctx context.Context, src io.Reader, out io.Writer, opts Options) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	res, err := b.build(ctx, src, out, opts)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("the build took longer than %s and was stopped: make it faster, or ask the operator for a longer build timeout", b.cfg.Timeout)
		}
		reason := err.Error()
		if errors.Is(err, ErrInvalidSource) {
			reason = strings.TrimPrefix(reason, ErrInvalidSource.Error()+": ")
		}
		fmt.Fprintf(out, " !     %s\n !     Build failed\n", reason)
		if b.logs != nil {
			b.logs.Publish(opts.AppID, model.LogLine{Time: time.Now(), Source: model.SourceApp, Dyno: "api", Message: "Build failed: " + reason})
		}
		return Result{}, fmt.Errorf("build app %s: %w", opts.AppID, err)
	}
	return res, nil
}

func (b *Builder) build(ctx context.Context, src io.Reader, out io.Writer, opts Options) (Result, error) {
	fmt.Fprintln(out, "-----> Unpacking source")
	tmp, err := os.CreateTemp("", "dyno-source-*.tgz")
	if err != nil {
		return Result{}, fmt.Errorf("create source file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	res, err := repack(ctx, ctxReader{ctx, src}, tmp)
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(out, "       %d files, %s\n", res.files, humanBytes(res.bytes))
	if res.procfile != nil {
		// A broken Procfile fails now rather than after a long compile.
		if _, err := model.ParseProcfile(res.procfile); err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrInvalidSource, err)
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Result{}, fmt.Errorf("rewind source file: %w", err)
	}
	ws, cleanup, err := b.workspace()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	if err := extract(ctx, tmp, ws.build); err != nil {
		return Result{}, err
	}
	if n, err := slugignore(ws.build); err != nil {
		return Result{}, err
	} else if n > 0 {
		fmt.Fprintf(out, "-----> Removed %d entries named in .slugignore\n", n)
	}
	compiled, err := b.compile(ctx, ws, out, opts)
	if err != nil {
		return Result{}, err
	}
	slug, err := b.store(ctx, ws.build, out, compiled.processTypes)
	if err != nil {
		return Result{}, err
	}
	return Result{Slug: slug, ConfigVars: compiled.configVars, Buildpacks: compiled.buildpacks}, nil
}

// workspace makes a build's dirs; cleanup removes them.
func (b *Builder) workspace() (*workspace, func(), error) {
	var root string
	var err error
	if b.cfg.DataDir != "" {
		parent := filepath.Join(b.cfg.DataDir, "builds")
		if err = os.MkdirAll(parent, 0o700); err == nil {
			root, err = os.MkdirTemp(parent, "build-")
		}
	} else {
		root, err = os.MkdirTemp("", "dyno-build-")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create build workspace: %w", err)
	}
	cleanup := func() {
		if err := os.RemoveAll(root); err != nil {
			b.log.Warn("remove build workspace", "dir", root, "err", err)
		}
	}
	ws, err := newWorkspace(root)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return ws, cleanup, nil
}

// store packs the compiled app and stores it as a slug.
func (b *Builder) store(ctx context.Context, dir string, out io.Writer, types map[string]string) (model.Slug, error) {
	fmt.Fprintln(out, "-----> Compressing...")
	tmp, err := os.CreateTemp("", "dyno-slug-*.tgz")
	if err != nil {
		return model.Slug{}, fmt.Errorf("create slug file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := pack(ctx, dir, tmp, b.cfg.MaxSlugBytes); err != nil {
		return model.Slug{}, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return model.Slug{}, fmt.Errorf("rewind slug file: %w", err)
	}
	id := newID()
	size, sum, err := b.st.Slugs.Put(ctx, id, ctxReader{ctx, tmp})
	if err != nil {
		// A failed put may leave chunks behind; the build owns them.
		if derr := b.st.Slugs.Delete(context.WithoutCancel(ctx), id); derr != nil {
			b.log.Warn("delete partial slug", "slug", id, "err", derr)
		}
		return model.Slug{}, fmt.Errorf("store slug: %w", err)
	}
	fmt.Fprintf(out, "       Done: %s\n", humanBytes(size))
	return model.Slug{ID: id, Checksum: sum, Size: size, ProcessTypes: types, CreatedAt: time.Now().UTC()}, nil
}

type repacked struct {
	files    int
	bytes    int64
	procfile []byte // nil when there is no Procfile at the root
}

// repack copies the entries of the gzipped tarball src to dst as a new
// gzipped tarball with clean relative names, plain permissions and no
// owners, refusing anything an unpacker could be tricked by.
func repack(ctx context.Context, src io.Reader, dst io.Writer) (repacked, error) {
	var res repacked
	zr, err := gzip.NewReader(src)
	if err != nil {
		return res, fmt.Errorf("%w: the source is not a gzipped tarball (%v): make it with tar czf", ErrInvalidSource, err)
	}
	tr := tar.NewReader(zr)
	zw := gzip.NewWriter(dst)
	tw := tar.NewWriter(zw)
	kinds := map[string]byte{} // clean name -> typeflag
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("%w: the source tarball is corrupt: %v", ErrInvalidSource, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return res, err
		}
		if name == "" {
			continue // the root directory itself
		}
		if entries++; entries > MaxEntries {
			return res, fmt.Errorf("%w: the source has more than %d entries", ErrInvalidSource, MaxEntries)
		}
		// Nothing may be written through a link an earlier entry made.
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if k, ok := kinds[dir]; ok && k != tar.TypeDir {
				return res, fmt.Errorf("%w: %q is inside %q, which is not a directory", ErrInvalidSource, name, dir)
			}
		}
		out := &tar.Header{Name: name, ModTime: hdr.ModTime, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if k, ok := kinds[name]; ok && k != tar.TypeDir {
				return res, fmt.Errorf("%w: %q appears twice in the source", ErrInvalidSource, name)
			}
			out.Typeflag, out.Name, out.Mode = tar.TypeDir, name+"/", hdr.Mode&0o777|0o700
		case tar.TypeReg:
			out.Typeflag, out.Mode, out.Size = tar.TypeReg, hdr.Mode&0o777|0o400, hdr.Size
			if res.bytes += hdr.Size; res.bytes > MaxUnpackedBytes {
				return res, fmt.Errorf("%w: the source unpacks to more than %s", ErrInvalidSource, humanBytes(MaxUnpackedBytes))
			}
			res.files++
		case tar.TypeSymlink:
			if strings.ContainsRune(hdr.Linkname, 0) || hdr.Linkname == "" {
				return res, fmt.Errorf("%w: symlink %q has an invalid target", ErrInvalidSource, name)
			}
			// Absolute targets resolve inside the dyno; relative ones must
			// stay inside /app.
			if !path.IsAbs(hdr.Linkname) {
				if t := path.Join(path.Dir(name), hdr.Linkname); t == ".." || strings.HasPrefix(t, "../") {
					return res, fmt.Errorf("%w: symlink %q points outside the app (%s)", ErrInvalidSource, name, hdr.Linkname)
				}
			}
			out.Typeflag, out.Linkname, out.Mode = tar.TypeSymlink, hdr.Linkname, 0o777
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil {
				return res, err
			}
			if kinds[target] != tar.TypeReg {
				return res, fmt.Errorf("%w: hard link %q must point to a file earlier in the source, not %q", ErrInvalidSource, name, hdr.Linkname)
			}
			out.Typeflag, out.Linkname, out.Mode = tar.TypeLink, target, hdr.Mode&0o777
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return res, fmt.Errorf("%w: %q is a device or fifo; sources may hold only files, directories and links", ErrInvalidSource, name)
		default:
			return res, fmt.Errorf("%w: %q has unsupported tar entry type %q", ErrInvalidSource, name, hdr.Typeflag)
		}
		if _, dup := kinds[name]; dup && out.Typeflag != tar.TypeDir {
			return res, fmt.Errorf("%w: %q appears twice in the source", ErrInvalidSource, name)
		}
		kinds[name] = out.Typeflag
		if name == "Procfile" && out.Typeflag != tar.TypeReg {
			return res, fmt.Errorf("%w: Procfile must be a regular file", ErrInvalidSource)
		}
		if err := tw.WriteHeader(out); err != nil {
			return res, fmt.Errorf("write slug: %w", err)
		}
		if out.Typeflag != tar.TypeReg {
			continue
		}
		var body io.Reader = tr
		if name == "Procfile" {
			data, err := io.ReadAll(io.LimitReader(tr, model.MaxProcfileSize+1))
			if err != nil {
				return res, fmt.Errorf("%w: read Procfile: %v", ErrInvalidSource, err)
			}
			if len(data) > model.MaxProcfileSize {
				return res, fmt.Errorf("%w: the Procfile is larger than %d bytes", ErrInvalidSource, model.MaxProcfileSize)
			}
			res.procfile = data
			body = io.MultiReader(bytes.NewReader(data), tr)
		}
		if _, err := io.Copy(tw, body); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("%w: read %q: %v", ErrInvalidSource, name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return res, fmt.Errorf("write slug: %w", err)
	}
	if err := zw.Close(); err != nil {
		return res, fmt.Errorf("write slug: %w", err)
	}
	return res, nil
}

// cleanName turns a tar entry name into a clean relative path ("" for the
// root) or refuses it.
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry %q has an invalid name", ErrInvalidSource, name)
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("%w: entry %q has an absolute path; paths must be relative to the app root", ErrInvalidSource, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: entry %q leaves the app root (..)", ErrInvalidSource, name)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// newID returns a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
