// Package build turns an uploaded source tarball into a slug: it checks the
// tarball (gzip+tar, safe paths, no devices, bounded size), reads the
// Procfile at its root, re-packs the checked files as the gzipped tarball
// agents unpack into /app, and stores it in the slug object store. Making a
// release of the slug is the API server's job, so that every release is
// created in one place.
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
	"os"
	"path"
	"slices"
	"strings"
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

// Builder builds slugs from source tarballs.
type Builder struct {
	st   *store.Store
	logs LogSink
	log  *slog.Logger
}

// New returns a Builder that stores slugs in st and reports failures to
// the app's log through logs.
func New(st *store.Store, logs LogSink, logger *slog.Logger) *Builder {
	if logger == nil {
		logger = slog.Default()
	}
	return &Builder{st: st, logs: logs, log: logger}
}

// Build reads a gzipped tar source from src, writes human build output to
// out as it goes, and stores the checked files re-packed as a slug under a
// new ID. On failure it writes the reason to out, publishes "Build failed:
// <reason>" to the app's log as app[api], stores nothing and returns an
// error (wrapping ErrInvalidSource when the source is to blame).
func (b *Builder) Build(ctx context.Context, appID string, src io.Reader, out io.Writer) (model.Slug, error) {
	slug, err := b.build(ctx, src, out)
	if err != nil {
		reason := err.Error()
		if errors.Is(err, ErrInvalidSource) {
			reason = strings.TrimPrefix(reason, ErrInvalidSource.Error()+": ")
		}
		fmt.Fprintf(out, " !     %s\n !     Build failed\n", reason)
		if b.logs != nil {
			b.logs.Publish(appID, model.LogLine{Time: time.Now(), Source: model.SourceApp, Dyno: "api", Message: "Build failed: " + reason})
		}
		return model.Slug{}, fmt.Errorf("build app %s: %w", appID, err)
	}
	return slug, nil
}

func (b *Builder) build(ctx context.Context, src io.Reader, out io.Writer) (model.Slug, error) {
	fmt.Fprintln(out, "-----> Unpacking source")
	tmp, err := os.CreateTemp("", "dyno-slug-*.tgz")
	if err != nil {
		return model.Slug{}, fmt.Errorf("create slug file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	res, err := repack(ctx, ctxReader{ctx, src}, tmp)
	if err != nil {
		return model.Slug{}, err
	}
	fmt.Fprintf(out, "       %d files, %s\n", res.files, humanBytes(res.bytes))
	if res.procfile == nil {
		return model.Slug{}, fmt.Errorf("%w: no Procfile found at the root of the source: add one with a line such as \"web: python3 app.py\"", ErrInvalidSource)
	}
	types, err := model.ParseProcfile(res.procfile)
	if err != nil {
		return model.Slug{}, fmt.Errorf("%w: %v", ErrInvalidSource, err)
	}
	names := make([]string, 0, len(types))
	for t := range types {
		names = append(names, t)
	}
	slices.Sort(names)
	fmt.Fprintf(out, "-----> Procfile declares types -> %s\n", strings.Join(names, ", "))

	fmt.Fprintln(out, "-----> Compressing...")
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
