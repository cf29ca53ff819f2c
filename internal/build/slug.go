package build

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultMaxSlugBytes is Heroku's limit on a compiled slug (compressed).
const DefaultMaxSlugBytes = 500 << 20

// ErrSlugTooLarge marks a build whose compiled slug is over the limit.
var ErrSlugTooLarge = errors.New("slug too large")

// extract unpacks a tarball that repack made (so already checked: clean
// relative names, nothing through links, no devices) into dir.
func extract(ctx context.Context, r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("read checked source: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read checked source: %w", err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(hdr.Name, "/")))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, os.FileMode(hdr.Mode&0o777))
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				err = writeFile(dst, tr, os.FileMode(hdr.Mode&0o777))
			}
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				err = os.Symlink(hdr.Linkname, dst)
			}
		case tar.TypeLink:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				err = os.Link(filepath.Join(dir, filepath.FromSlash(hdr.Linkname)), dst)
			}
		}
		if err != nil {
			return fmt.Errorf("unpack source: %w", err)
		}
	}
}

// slugignore removes what the app's .slugignore names before the
// buildpacks run, as Heroku does. Each line is a glob pattern (# starts a
// comment): with no '/' it matches a name at any depth, with a leading or
// inner '/' a path from the root; a trailing '/' matches directories only.
// It returns how many files and directories went.
func slugignore(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, ".slugignore"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read .slugignore: %w", err)
	}
	type pattern struct {
		glob     string
		anchored bool
		dirOnly  bool
	}
	var pats []pattern
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := pattern{}
		p.dirOnly = strings.HasSuffix(line, "/")
		line = strings.Trim(line, "/")
		p.anchored = strings.Contains(line, "/") || strings.HasPrefix(sc.Text(), "/")
		if _, err := path.Match(line, ""); err != nil || line == "" {
			return 0, fmt.Errorf("%w: .slugignore: bad pattern %q", ErrInvalidSource, sc.Text())
		}
		p.glob = line
		pats = append(pats, p)
	}
	removed := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		for _, pat := range pats {
			if pat.dirOnly && !d.IsDir() {
				continue
			}
			subject := path.Base(rel)
			if pat.anchored {
				subject = rel
			}
			if ok, _ := path.Match(pat.glob, subject); ok {
				removed++
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("apply .slugignore: %w", err)
	}
	return removed, nil
}

// countingWriter counts the bytes written through it, and stops passing them
// on (but keeps counting) past a limit.
type countingWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.n > c.limit {
		return len(p), nil
	}
	return c.w.Write(p)
}

// pack writes dir as the slug's gzipped tarball to dst: plain permissions,
// no owners, symlinks and hard links kept, anything else (sockets, fifos,
// devices) left out. It fails with ErrSlugTooLarge, naming the size, when
// the compressed result is over limit.
func pack(ctx context.Context, dir string, dst io.Writer, limit int64) (int64, error) {
	cw := &countingWriter{w: dst, limit: limit}
	zw := gzip.NewWriter(cw)
	tw := tar.NewWriter(zw)
	inodes := map[uint64]string{} // hard links: first name of each inode
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", int64(fi.Mode().Perm()|0o700)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, int64(fi.Mode().Perm()|0o400), fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				if first, seen := inodes[st.Ino]; seen {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					inodes[st.Ino] = name
				}
			}
		default:
			return nil // sockets, fifos, devices: nothing a slug can hold
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		// A file that grows while packed must not overrun its header.
		_, err = io.Copy(tw, io.LimitReader(f, hdr.Size))
		return err
	})
	if err != nil {
		return cw.n, fmt.Errorf("pack slug: %w", err)
	}
	if err := tw.Close(); err != nil {
		return cw.n, fmt.Errorf("pack slug: %w", err)
	}
	if err := zw.Close(); err != nil {
		return cw.n, fmt.Errorf("pack slug: %w", err)
	}
	if cw.n > limit {
		return cw.n, fmt.Errorf("%w: compiled slug size: %s is too large (max is %s); add a .slugignore for files the app does not need at run time, such as tests, docs and build inputs",
			ErrSlugTooLarge, humanBytes(cw.n), humanBytes(limit))
	}
	return cw.n, nil
}
