package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tarEntry is one entry of a test tarball.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func makeTarball(t testing.TB, entries []tarEntry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestUnpackSlugRejects(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr string
	}{
		{"dot-dot", []tarEntry{{name: "../evil", body: "x"}}, `".."`},
		{"nested dot-dot", []tarEntry{{name: "a/../../evil", body: "x"}}, `".."`},
		{"absolute", []tarEntry{{name: "/etc/evil", body: "x"}}, "absolute"},
		{"symlink then file", []tarEntry{
			{name: "link", typ: tar.TypeSymlink, link: "OUTSIDE"},
			{name: "link/evil", body: "x"},
		}, "symlink"},
		{"symlink to inside then file", []tarEntry{
			{name: "d/", typ: tar.TypeDir, mode: 0o755},
			{name: "link", typ: tar.TypeSymlink, link: "d"},
			{name: "link/evil", body: "x"},
		}, "symlink"},
		{"device", []tarEntry{{name: "null", typ: tar.TypeChar}}, "not allowed"},
		{"fifo", []tarEntry{{name: "fifo", typ: tar.TypeFifo}}, "not allowed"},
		{"hard link outside", []tarEntry{{name: "h", typ: tar.TypeLink, link: "../x"}}, `".."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range tt.entries {
				tt.entries[i].link = strings.ReplaceAll(tt.entries[i].link, "OUTSIDE", outside)
			}
			dir := filepath.Join(base, "slugs", "s1")
			err := UnpackSlug(makeTarball(t, tt.entries), dir, -1)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if _, err := os.Lstat(dir); err == nil {
				t.Error("a rejected slug left its dir behind")
			}
			left, _ := os.ReadDir(filepath.Dir(dir))
			if len(left) != 0 {
				t.Errorf("temporary dirs left: %v", left)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("wrote outside: %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(base, "evil")); err == nil {
				t.Error("wrote outside the slug dir")
			}
		})
	}
}

func TestUnpackSlugKeepsGoodFiles(t *testing.T) {
	gid := -1
	if os.Geteuid() == 0 {
		gid = testSlugGID
	}
	entries := []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./Procfile", body: "web: bin/web\n"},
		{name: "./bin/web", body: "#!/bin/sh\n", mode: 0o755},
		{name: "./bin/suid", body: "x", mode: 0o4755},
		{name: "./ro/", typ: tar.TypeDir, mode: 0o555},
		{name: "./ro/file", body: "ro", mode: 0o444},
		{name: "./web-link", typ: tar.TypeSymlink, link: "bin/web"},
		{name: "./abs-link", typ: tar.TypeSymlink, link: "/app/bin/web"},
		{name: "./hard", typ: tar.TypeLink, link: "./Procfile"},
		{name: "./Procfile", body: "web: bin/web --new\n"}, // later entries win
		{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777},
	}
	dir := filepath.Join(t.TempDir(), "slug")
	// Without root, the 0555 dir would stop TempDir's removal.
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "ro"), 0o755) })
	if err := UnpackSlug(makeTarball(t, entries), dir, gid); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		mode fs.FileMode
		body string
		link string
	}{
		{".", fs.ModeDir | 0o775, "", ""},
		{"Procfile", 0o664, "web: bin/web --new\n", ""},
		{"bin", fs.ModeDir | 0o775, "", ""}, // created as a parent
		{"bin/web", 0o775, "#!/bin/sh\n", ""},
		{"bin/suid", 0o775, "x", ""},
		{"ro", fs.ModeDir | 0o555, "", ""},
		{"ro/file", 0o444, "ro", ""},
		{"web-link", fs.ModeSymlink | 0o777, "", "bin/web"},
		{"abs-link", fs.ModeSymlink | 0o777, "", "/app/bin/web"},
		{"hard", 0o664, "web: bin/web\n", ""},
		{"tmp", fs.ModeDir | fs.ModeSticky | 0o777, "", ""},
	}
	for _, c := range checks {
		p := filepath.Join(dir, c.name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.name, fi.Mode(), c.mode)
		}
		if gid >= 0 {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || int(st.Gid) != gid {
				t.Errorf("%s: owner %d:%d, want 0:%d", c.name, st.Uid, st.Gid, gid)
			}
		}
		if c.body != "" {
			if b, _ := os.ReadFile(p); string(b) != c.body {
				t.Errorf("%s: content %q, want %q", c.name, b, c.body)
			}
			if !fi.ModTime().Equal(time.Unix(1700000000, 0)) && c.name != "hard" {
				t.Errorf("%s: mtime %v not kept", c.name, fi.ModTime())
			}
		}
		if c.link != "" {
			if l, _ := os.Readlink(p); l != c.link {
				t.Errorf("%s: link %q, want %q", c.name, l, c.link)
			}
		}
	}
	// Unpacking again into the same dir reports that it exists.
	err := UnpackSlug(makeTarball(t, entries), dir, gid)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second unpack: %v, want fs.ErrExist", err)
	}
}

func TestUnpackSlugSizeLimit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slug")
	tarball := makeTarball(t, []tarEntry{{name: "a", body: strings.Repeat("x", 600)}, {name: "b", body: strings.Repeat("y", 600)}})
	err := unpackSlug(tarball, dir, -1, 1000)
	if err == nil || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Fatalf("error %v, want a size error", err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Error("a rejected slug left its dir behind")
	}
}
