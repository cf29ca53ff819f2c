package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dyno-platform/dyno/internal/gitserver"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// newGit makes the apps' git remotes (<PublicURL>/<app>.git), whose pushes
// run this server's build pipeline. Without a config there are none; a
// config that fails (git not installed) is logged and the remotes answer
// 503 with the reason, the rest of the API being unaffected.
func (s *Server) newGit(cfg *GitConfig) {
	if cfg == nil {
		return
	}
	p := gitPlatform{s}
	g, err := gitserver.New(gitserver.Config{
		ReposDir: cfg.ReposDir, HookCommand: cfg.HookCommand, InternalURL: cfg.InternalURL,
		Auth: p, Apps: p, Deployer: p, Logger: s.log,
	})
	if err != nil {
		s.log.Error("git remotes are off", "err", err)
		s.gitErr = err
		return
	}
	s.git = g
}

// GitConfig turns on the apps' git remotes; see gitserver.Config.
type GitConfig struct {
	ReposDir    string // one bare repository per app
	HookCommand string // absolute path of the dyno binary
	InternalURL string // the API's loopback URL, for the push hooks
}

// serveGit hands /<app>.git/... to the git server.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.git != nil:
		if !s.admitGit(w, r) { // access.go: pushes and clones of the user's apps only
			return
		}
		s.git.ServeHTTP(w, r)
	case s.gitErr != nil:
		http.Error(w, fmt.Sprintf("Git remotes are off on this Dyno server (%v): use `dyno deploy`, or ask its operator.", s.gitErr), http.StatusServiceUnavailable)
	default:
		http.Error(w, "Git remotes are not enabled on this Dyno server: use `dyno deploy`.", http.StatusNotFound)
	}
}

// removeRepo deletes a destroyed app's repository.
func (s *Server) removeRepo(appID string) {
	if s.git != nil {
		s.undo("git repository", s.git.RemoveRepo(appID))
	}
}

// gitPlatform is the Server as the git server sees it.
type gitPlatform struct{ s *Server }

// Authenticate returns the email of the key's user; admitGit has checked
// their access to the app before the git server asks.
func (p gitPlatform) Authenticate(key string) (string, bool) {
	pr, err := p.s.authenticateKey(p.s.ctx, key)
	if err != nil {
		return "", false
	}
	return pr.Email, true
}

func (p gitPlatform) AppID(ctx context.Context, name string) (string, bool, error) {
	if model.ValidateAppName(name) != nil {
		return "", false, nil
	}
	n, _, err := p.s.st.AppNames.Get(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up app %s: %w", name, err)
	}
	return n.ID, true, nil
}

// Deploy runs a pushed tree through the same pipeline as POST
// /apps/{app}/builds: the tarball becomes a source, the build is listed in
// the app's builds, releases vN and follows the new dynos until they are
// up. It waits for the build's end even if the pusher leaves, so that the
// source can go: the repository keeps the code.
func (p gitPlatform) Deploy(ctx context.Context, appName, user, commit string, tarball io.Reader, out io.Writer) (int, error) {
	s := p.s
	id, found, err := p.AppID(ctx, appName)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no such app as %s", appName)
	}
	app, _, err := s.st.Apps.Get(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("read app %s: %w", appName, err)
	}
	sourceID := newID()
	limited := &io.LimitedReader{R: tarball, N: s.cfg.MaxSourceBytes + 1}
	if _, _, err := s.st.Sources.Put(ctx, sourceID, limited); err != nil {
		s.undo("partial source", s.st.Sources.Delete(context.WithoutCancel(ctx), sourceID))
		return 0, fmt.Errorf("store the pushed source: %w", err)
	}
	defer func() { s.undo("pushed source", s.st.Sources.Delete(context.WithoutCancel(ctx), sourceID)) }()
	if limited.N == 0 {
		return 0, fmt.Errorf("the pushed tree is larger than the %d bytes allowed: leave build artifacts and dependencies out of the repository", s.cfg.MaxSourceBytes)
	}

	// As Heroku shows a pushed build: the repository and the commit.
	src, _ := json.Marshal(map[string]string{"url": s.cfg.PublicURL + "/" + app.Name + ".git", "version": commit})
	now := s.cfg.Now().UTC()
	b := &buildRun{id: newID(), appID: app.ID, user: user, out: newOutput(), status: "pending", source: src, createdAt: now, updatedAt: now}
	if err := s.startBuild(ctx, app, b, sourceID); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return 0, errors.New("the Dyno API is shutting down: push again shortly")
		}
		return 0, err
	}

	// Copy the output until the build ends; a pusher gone away stops
	// reading, not waiting.
	for next := 0; ; {
		lines, n, done, wait := b.out.since(next)
		next = n
		for _, l := range lines {
			if ctx.Err() == nil {
				_, _ = io.WriteString(out, l+"\n")
			}
		}
		if done {
			break
		}
		<-wait
	}
	s.mu.Lock()
	status, rel, failure := b.status, b.release, b.failure
	s.mu.Unlock()
	switch {
	case status == "succeeded" && rel != nil:
		return rel.Version, nil
	case rel != nil && errors.Is(failure, errReleasePhase):
		return 0, fmt.Errorf("v%d failed its release phase; the app stays on the release it runs", rel.Version)
	case rel != nil && errors.Is(failure, ErrDeployRolledBack):
		return 0, fmt.Errorf("v%d did not come up and was rolled back", rel.Version)
	case rel != nil:
		return 0, fmt.Errorf("v%d: %v", rel.Version, failure)
	}
	return 0, errors.New("the build failed")
}
