package build

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The per-app build cache lives in DataDir/cache/<appID>. A build works on
// a copy, so a failed build leaves the last good cache as it was; a
// successful one replaces it.

func (b *Builder) cacheDir(appID string) (string, bool) {
	if b.cfg.DataDir == "" || appID == "" || appID == "." || appID == ".." || strings.ContainsAny(appID, "/\\") {
		return "", false
	}
	return filepath.Join(b.cfg.DataDir, "cache", appID), true
}

// restoreCache copies the app's saved cache to dst (which must not exist),
// or makes dst empty when there is none.
func (b *Builder) restoreCache(appID, dst string) error {
	src, ok := b.cacheDir(appID)
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if ok {
		if _, err := os.Stat(src); err == nil {
			// cp -a keeps links, modes and times, and is fast.
			if out, err := exec.Command("cp", "-a", "--", src, dst).CombinedOutput(); err != nil {
				b.log.Warn("restore build cache", "app", appID, "err", err, "output", string(out))
				_ = os.RemoveAll(dst)
			}
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	return nil
}

// saveCache makes dir the app's saved cache, replacing the old one.
func (b *Builder) saveCache(appID, dir string) error {
	dst, ok := b.cacheDir(appID)
	if !ok {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	old := dst + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(dir, dst); err != nil {
		_ = os.Rename(old, dst)
		return err
	}
	return os.RemoveAll(old)
}

// RemoveCache deletes an app's build cache: call it when the app is deleted.
func (b *Builder) RemoveCache(appID string) error {
	dir, ok := b.cacheDir(appID)
	if !ok {
		return nil
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove build cache of app %s: %w", appID, err)
	}
	return os.RemoveAll(dir + ".old")
}
