package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/dyno-platform/dyno/internal/store"
)

// slugCache unpacks each slug once per host; every dyno of a release shares
// the unpacked tree as its read-only /app layer.
type slugCache struct {
	dir   string
	blobs store.Blobs
	gid   int // the slug group: owns every unpacked file

	mu       sync.Mutex
	inflight map[string]*slugFetch // guarded by mu
}

type slugFetch struct {
	done chan struct{}
	err  error
}

func newSlugCache(dir string, blobs store.Blobs, gid int) *slugCache {
	return &slugCache{dir: dir, blobs: blobs, gid: gid, inflight: map[string]*slugFetch{}}
}

// fetchTimeout bounds one download and unpack of a slug.
const fetchTimeout = 10 * time.Minute

// Dir returns the directory of the unpacked slug, fetching, checking and
// unpacking it first if this host has not yet. One caller fetches, in its
// own goroutine; the others wait for it, and take over if it gave up.
func (c *slugCache) Dir(ctx context.Context, slug model.Slug) (string, error) {
	dir := filepath.Join(c.dir, slug.ID)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
		c.mu.Lock()
		f, fetching := c.inflight[slug.ID]
		if !fetching {
			f = &slugFetch{done: make(chan struct{})}
			c.inflight[slug.ID] = f
		}
		c.mu.Unlock()
		if !fetching {
			fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
			f.err = c.fetch(fctx, slug, dir)
			cancel()
			c.mu.Lock()
			delete(c.inflight, slug.ID)
			c.mu.Unlock()
			close(f.done)
			if f.err != nil {
				return "", f.err
			}
			return dir, nil
		}
		select {
		case <-f.done:
			// The fetcher was stopped: try again for ourselves.
			if f.err != nil && ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
				continue
			}
			if f.err != nil {
				return "", f.err
			}
			return dir, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (c *slugCache) fetch(ctx context.Context, slug model.Slug, dir string) error {
	if err := os.MkdirAll(c.dir, 0o711); err != nil {
		return fmt.Errorf("create slug cache: %w", err)
	}
	r, err := c.blobs.Get(ctx, slug.ID)
	if err != nil {
		return fmt.Errorf("fetch slug %s: %w", slug.ID, err)
	}
	defer r.Close()
	// Check the whole slug before unpacking any of it (R17 on Heroku).
	tmp, err := os.CreateTemp(c.dir, slug.ID+".download-*")
	if err != nil {
		return fmt.Errorf("fetch slug %s: %w", slug.ID, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		return fmt.Errorf("fetch slug %s: %w", slug.ID, err)
	}
	if got := "SHA256:" + hex.EncodeToString(h.Sum(nil)); slug.Checksum != "" && got != slug.Checksum {
		return &checksumError{slug: slug.ID, got: got, want: slug.Checksum}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fetch slug %s: %w", slug.ID, err)
	}
	// UnpackSlug writes to a temporary directory and renames it into place,
	// so a half-unpacked slug is never used.
	if err := runtime.UnpackSlug(tmp, dir, c.gid); err != nil {
		return fmt.Errorf("unpack slug %s: %w", slug.ID, err)
	}
	return nil
}

// checksumError is a slug whose bytes are not the ones its release names
// (R17): damaged or replaced in the store.
type checksumError struct {
	slug, got, want string
}

func (e *checksumError) Error() string {
	return fmt.Sprintf("slug %s checksum is %s, want %s: the stored slug is damaged", e.slug, e.got, e.want)
}
