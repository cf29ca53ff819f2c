package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

type entry struct {
	name, body, link string
	typ              byte
}

func tarball(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type sink struct {
	mu    sync.Mutex
	lines []string
}

func (s *sink) Publish(appID string, l model.LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, appID+" "+l.Dyno+" "+l.Message)
}

func testStore(t *testing.T) *store.Store {
	t.Helper()
	st, _ := storetest.New(t)
	return st
}

func TestBuild(t *testing.T) {
	st := testStore(t)
	logs := &sink{}
	b := New(st, logs, slog.New(slog.DiscardHandler))
	procfile := entry{name: "Procfile", body: "web: python3 app.py\nworker: python3 worker.py\n"}
	tests := []struct {
		name    string
		src     []byte
		wantErr string // in the output and the error; "" for success
	}{
		{name: "ok", src: tarball(t, entry{name: "./", typ: tar.TypeDir}, entry{name: "./Procfile", body: procfile.body},
			entry{name: "./app.py", body: "print(1)"}, entry{name: "lib/", typ: tar.TypeDir}, entry{name: "lib/x.py", body: "x"},
			entry{name: "lib/y.py", typ: tar.TypeSymlink, link: "x.py"}, entry{name: "lib/z.py", typ: tar.TypeLink, link: "lib/x.py"})},
		{name: "nothing recognised", src: tarball(t, entry{name: "notes.txt", body: "x"}), wantErr: "no buildpack recognised this app"},
		{name: "Procfile not at root", src: tarball(t, entry{name: "sub/Procfile", body: procfile.body}), wantErr: "no buildpack recognised this app"},
		{name: "no Procfile nor default types", src: tarball(t, entry{name: "lib.py", body: "x"}), wantErr: "no Procfile found"},
		{name: "malformed Procfile", src: tarball(t, entry{name: "Procfile", body: "web python3 app.py\n"}), wantErr: "Procfile line 1"},
		{name: "garbage", src: []byte("this is not a tarball at all"), wantErr: "not a gzipped tarball"},
		{name: "gzip of garbage", src: gz(t, strings.Repeat("garbage!", 200)), wantErr: "corrupt"},
		{name: "dotdot", src: tarball(t, procfile, entry{name: "../evil", body: "x"}), wantErr: "leaves the app root"},
		{name: "absolute", src: tarball(t, procfile, entry{name: "/etc/passwd", body: "x"}), wantErr: "absolute path"},
		{name: "device", src: tarball(t, procfile, entry{name: "dev", typ: tar.TypeChar}), wantErr: "device or fifo"},
		{name: "symlink escape", src: tarball(t, procfile, entry{name: "l", typ: tar.TypeSymlink, link: "../../etc"}), wantErr: "points outside"},
		{name: "through symlink", src: tarball(t, procfile, entry{name: "l", typ: tar.TypeSymlink, link: "/etc"}, entry{name: "l/passwd", body: "x"}), wantErr: "not a directory"},
		{name: "duplicate", src: tarball(t, procfile, entry{name: "a", typ: tar.TypeSymlink, link: "/etc/passwd"}, entry{name: "a", body: "x"}), wantErr: "appears twice"},
		{name: "dangling hard link", src: tarball(t, procfile, entry{name: "h", typ: tar.TypeLink, link: "nope"}), wantErr: "hard link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			slug, err := b.Build(ctx, "app1", bytes.NewReader(tc.src), &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(out.String(), tc.wantErr) {
					t.Fatalf("Build error = %v, output %q; want both to contain %q", err, out.String(), tc.wantErr)
				}
				if !errors.Is(err, ErrInvalidSource) {
					t.Errorf("error %v does not wrap ErrInvalidSource", err)
				}
				logs.mu.Lock()
				last := logs.lines[len(logs.lines)-1]
				logs.mu.Unlock()
				if !strings.HasPrefix(last, "app1 api Build failed: ") {
					t.Errorf("last log line %q, want a Build failed line", last)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build: %v\n%s", err, out.String())
			}
			if slug.ProcessTypes["web"] != "python3 app.py" || slug.ProcessTypes["worker"] != "python3 worker.py" {
				t.Errorf("process types %v", slug.ProcessTypes)
			}
			if !strings.HasPrefix(slug.Checksum, "SHA256:") || slug.Size == 0 || slug.ID == "" {
				t.Errorf("slug %+v", slug)
			}
			if !strings.Contains(out.String(), "Procfile declares types -> web, worker") {
				t.Errorf("output %q lacks the process types", out.String())
			}
			r, err := st.Slugs.Get(ctx, slug.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := listTar(t, r)
			want := "Procfile app.py lib/ lib/x.py lib/y.py->x.py lib/z.py=>lib/x.py"
			if got != want {
				t.Errorf("slug entries %q, want %q", got, want)
			}
		})
	}
}

func gz(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	zw.Close()
	return buf.Bytes()
}

func listTar(t *testing.T, r io.Reader) string {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := h.Name
		switch h.Typeflag {
		case tar.TypeSymlink:
			n += "->" + h.Linkname
		case tar.TypeLink:
			n += "=>" + h.Linkname
		}
		names = append(names, n)
	}
	return strings.Join(names, " ")
}
