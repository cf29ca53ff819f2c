package runtime

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Limits of UnpackSlug.
const (
	MaxSlugBytes   = 2 << 30   // total size of the files of an unpacked slug
	MaxSlugEntries = 1_000_000 // number of tar entries
)

// UnpackSlug extracts a gzipped tar slug (the contents of /app) into dir,
// which must not exist yet. Entries are taken relative to dir ("./x" and "x"
// alike); absolute names, ".." and paths through symlinks are rejected;
// symlinks are created as they are but never followed; devices and fifos are
// rejected. Everything is owned by root and the slug group gid (-1 keeps the
// unpacking user, for agents that are not root), and gets group permissions
// equal to the owner's (dirs g+rwx, files g+rw, g+x when u+x), without
// setuid/setgid: every dyno, each with a uid of its own but all in the slug
// group, can read and change /app's files through its overlay copy-up while
// owning none of them. The slug is unpacked into a temporary dir next to dir
// and renamed into place, so dir is either complete or absent. If dir
// appeared meanwhile (a concurrent unpack of the same slug), the error wraps
// fs.ErrExist.
func UnpackSlug(r io.Reader, dir string, gid int) error {
	if err := unpackSlug(r, dir, gid, MaxSlugBytes); err != nil {
		return fmt.Errorf("unpack slug into %s: %w", dir, err)
	}
	return nil
}

func unpackSlug(r io.Reader, dir string, gid int, maxBytes int64) error {
	uid := -1
	if gid >= 0 {
		uid = 0
	}
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return fs.ErrExist
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".unpacking-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, uid: uid, gid: gid, max: maxBytes, dirs: map[string]*tar.Header{}}
	if err := u.extract(r); err != nil {
		return err
	}
	if err := u.finishDirs(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o775); err != nil {
		return err
	}
	if err := u.chown("."); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if errors.Is(err, fs.ErrExist) { // EEXIST or ENOTEMPTY
			return fmt.Errorf("%w: %v", fs.ErrExist, err)
		}
		return err
	}
	done = true
	return nil
}

type unpacker struct {
	root     *os.Root
	uid, gid int
	total    int64
	max      int64                  // of total
	dirs     map[string]*tar.Header // modes and times are set last
}

func (u *unpacker) extract(r io.Reader) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		if n >= MaxSlugEntries {
			return fmt.Errorf("slug has more than %d entries: make it smaller", MaxSlugEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// cleanName validates a tar path and makes it relative to the root.
func cleanName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") {
		return "", errors.New("absolute or empty path: slugs hold paths relative to /app")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", errors.New(`path contains "..": slugs must not reach outside /app`)
		}
	}
	return path.Clean(name), nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the slug's root is dir itself
	}
	if err := u.parents(name); err != nil {
		return err
	}
	mode := groupLikeOwner(fs.FileMode(hdr.Mode).Perm())
	if hdr.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky // kept; setuid and setgid are dropped
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := u.root.Lstat(name); err == nil && fi.IsDir() {
			// exists already (created as a parent)
		} else if err := u.replace(name); err != nil {
			return err
		} else if err := u.root.Mkdir(name, 0o700); err != nil {
			return err
		}
		h := *hdr
		h.Mode = int64(mode.Perm())
		if mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		u.dirs[name] = &h
		return u.chown(name)
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || u.total+hdr.Size > u.max {
			return fmt.Errorf("slug is larger than %d bytes unpacked: make it smaller", u.max)
		}
		u.total += hdr.Size
		if err := u.replace(name); err != nil {
			return err
		}
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.CopyN(f, r, hdr.Size); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := u.chown(name); err != nil {
			return err
		}
		// Chmod after chown: chown clears setuid bits, and the mode must be
		// exactly the one recorded.
		if err := u.root.Chmod(name, mode); err != nil {
			return err
		}
		return u.root.Chtimes(name, hdr.AccessTime, hdr.ModTime)
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.Contains(hdr.Linkname, "\x00") {
			return errors.New("empty symlink target")
		}
		if err := u.replace(name); err != nil {
			return err
		}
		// The target is stored as is: it is only ever resolved inside the
		// dyno, never while unpacking.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return u.chown(name)
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if err := u.parents(target); err != nil {
			return err
		}
		if fi, err := u.root.Lstat(target); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link to %q: only links to earlier regular files are allowed", hdr.Linkname)
		}
		if err := u.replace(name); err != nil {
			return err
		}
		return u.root.Link(target, name)
	default:
		return fmt.Errorf("entry type %q is not allowed in a slug (only files, dirs and links)", hdr.Typeflag)
	}
}

// parents creates the missing parent dirs of name and fails if any of them
// is a symlink or not a dir, so no write ever goes through a symlink.
func (u *unpacker) parents(name string) error {
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		fi, err := u.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := u.root.Mkdir(p, 0o755); err != nil {
				return err
			}
			if err := u.root.Chmod(p, 0o775); err != nil { // umask-proof
				return err
			}
			if err := u.chown(p); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("path goes through the symlink %q: not allowed in a slug", p)
		case !fi.IsDir():
			return fmt.Errorf("parent %q is not a directory", p)
		}
	}
	return nil
}

// replace removes an earlier entry of the same name (later tar entries win),
// but never a directory with contents.
func (u *unpacker) replace(name string) error {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		delete(u.dirs, name)
	}
	return u.root.Remove(name)
}

func (u *unpacker) chown(name string) error {
	if u.uid < 0 && u.gid < 0 {
		return nil
	}
	return u.root.Lchown(name, u.uid, u.gid)
}

// groupLikeOwner gives the group the owner's permissions: the owner is root,
// the dynos are the group.
func groupLikeOwner(m fs.FileMode) fs.FileMode {
	return m&^0o070 | (m&0o700)>>3
}

// finishDirs sets the dirs' modes and times once all their contents exist.
func (u *unpacker) finishDirs() error {
	for name, hdr := range u.dirs {
		mode := fs.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		if err := u.root.Chmod(name, mode); err != nil {
			return err
		}
	}
	// Times last: chmod of a child dir does not change its parent's mtime,
	// but keep the order independent anyway.
	for name, hdr := range u.dirs {
		if !hdr.ModTime.IsZero() {
			if err := u.root.Chtimes(name, time.Time{}, hdr.ModTime); err != nil {
				return err
			}
		}
	}
	return nil
}
