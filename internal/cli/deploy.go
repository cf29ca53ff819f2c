package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
	"github.com/dyno-platform/dyno/internal/model"
)

// buildPollInterval is how often deploy asks for the build's status once its
// output has ended.
const buildPollInterval = 250 * time.Millisecond

func (s *session) deployCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy [DIR]",
		Short: "build DIR (default .) and release it: upload, build, release, start",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dir := "."
		if len(args) == 1 {
			dir = args[0]
		}
		name, err := s.appName(*app)
		if err != nil {
			return err
		}
		if err := checkSourceDir(dir); err != nil {
			return err
		}
		c, err := s.api()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if _, err := c.App(ctx, name); err != nil {
			return err
		}
		getURL, err := s.upload(ctx, c, dir)
		if err != nil {
			return err
		}
		build, err := c.CreateBuild(ctx, name, getURL)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Building %s (build %s)...\n", name, build.ID)
		out := &tailWriter{w: s.stdout}
		if build.OutputStreamURL != "" {
			if err := s.copyOutput(ctx, c, build.OutputStreamURL, out); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// The build goes on without us; its status is what matters.
				fmt.Fprintf(s.stderr, "(build output cut short: %v)\n", err)
			}
		}
		build, err = s.awaitBuild(ctx, c, name, build)
		if err != nil {
			return err
		}
		if build.Status != client.BuildSucceeded {
			return errors.New("build failed")
		}
		version := 0
		if build.Release != nil {
			version = build.Release.Version
		} else if a, err := c.App(ctx, name); err == nil {
			version = a.ReleaseVersion
		}
		// The build's output names the release as Heroku's does; say it
		// only if that line never came (an older API, a cut stream).
		if !out.saidReleased(version) {
			fmt.Fprintf(s.stdout, "Released v%d\n", version)
		}
		return nil
	}
	return cmd
}

// tailWriter passes build output through and keeps its last bytes, to
// tell whether the output already announced the release.
type tailWriter struct {
	w    io.Writer
	tail []byte
}

// tailKeep is how much of the output's end is kept: the release line is
// among the last few of a build's output.
const tailKeep = 4 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - tailKeep; over > 0 {
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return t.w.Write(p)
}

// saidReleased reports whether a line of the output's end reads
// "Released v<version>" (indented, as the build prints it).
func (t *tailWriter) saidReleased(version int) bool {
	want := fmt.Sprintf("Released v%d", version)
	for _, line := range strings.Split(string(t.tail), "\n") {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

// checkSourceDir fails before any upload when dir cannot be an app: not a
// directory, or a Procfile at its root that is not valid. Without a
// Procfile the build's buildpacks say which processes the app has.
func checkSourceDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot deploy %s: %w", dir, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("cannot deploy %s: it is not a directory", dir)
	}
	procfile := filepath.Join(dir, "Procfile")
	pi, err := os.Lstat(procfile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", procfile, err)
	}
	if !pi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: make it one", procfile)
	}
	data, err := os.ReadFile(procfile)
	if err != nil {
		return fmt.Errorf("read %s: %w", procfile, err)
	}
	if _, err := model.ParseProcfile(data); err != nil {
		return fmt.Errorf("%s: %w", procfile, err)
	}
	return nil
}

// upload packs dir into a temporary file (so that the PUT carries a
// Content-Length), uploads it, and returns the URL builds read it from.
func (s *session) upload(ctx context.Context, c *client.Client, dir string) (string, error) {
	spool, err := os.CreateTemp("", "dyno-source-*.tar.gz")
	if err != nil {
		return "", fmt.Errorf("make a temporary file for the source: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	files, err := writeTarball(spool, dir, spool.Name())
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	size, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	fmt.Fprintf(s.stderr, "Packing %s... done, %d files, %s\n", dir, files, humanBytes(size))
	src, err := c.CreateSource(ctx)
	if err != nil {
		return "", err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind the packed source: %w", err)
	}
	if err := c.UploadSource(ctx, src.SourceBlob.PutURL, spool, size); err != nil {
		return "", fmt.Errorf("upload the source: %w", err)
	}
	fmt.Fprintf(s.stderr, "Uploading source... done\n")
	return src.SourceBlob.GetURL, nil
}

// copyOutput streams the build's output to w as it arrives.
func (s *session) copyOutput(ctx context.Context, c *client.Client, url string, w io.Writer) error {
	body, err := c.StreamOutput(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(w, body)
	return err
}

// awaitBuild asks for the build until it is no longer pending: its output
// stream may end a moment before its status is written.
func (s *session) awaitBuild(ctx context.Context, c *client.Client, app string, b *client.Build) (*client.Build, error) {
	for {
		cur, err := c.Build(ctx, app, b.ID)
		if err != nil {
			return nil, err
		}
		if cur.Status != client.BuildPending {
			return cur, nil
		}
		t := time.NewTimer(buildPollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// writeTarball writes dir as a gzipped tarball to w, streaming each file:
// regular files, directories and symlinks with their modes, paths relative
// to dir, no .git. skip is a path left out (the spool file itself, should it
// be inside dir). It returns the number of entries written.
func writeTarball(w io.Writer, dir, skip string) (int, error) {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	absSkip, _ := filepath.Abs(skip)
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a submodule's .git file
		}
		if abs, _ := filepath.Abs(path); abs == absSkip {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch mode := info.Mode(); {
		case mode.IsRegular(), mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil // sockets, pipes and devices are no part of an app
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		// Owners mean nothing on the platform; modes do.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n++
		if !info.Mode().IsRegular() {
			return nil
		}
		return copyFile(tw, path, hdr.Size)
	})
	if err != nil {
		return n, err
	}
	if err := tw.Close(); err != nil {
		return n, err
	}
	return n, gz.Close()
}

// copyFile copies exactly size bytes of path, the size its header promised,
// even if the file changes meanwhile.
func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("%s changed while being packed: %w", path, err)
	}
	return nil
}

// humanBytes is a size as people read it: 1.2 KB, 3.4 MB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "KMGTPE"[exp])
}
