// Package gitserver gives every app a git remote over smart HTTP, as
// https://git.heroku.com/<app>.git does: `git push dyno main` builds and
// releases what is pushed. The protocol is git's own (`git http-backend`
// run as a CGI); Dyno adds authentication, one bare repository per app
// created on first use, and a pre-receive hook that hands the pushed tree to
// a Deployer and streams the build output back as `remote:` lines. A failed
// build fails the hook, so git rejects the push and no ref moves.
//
// The hook is the dyno binary itself (`dyno git-hook pre-receive`, see
// RunHook); it reaches the Deployer through an internal endpoint of this
// handler, authenticated by a token valid only for the push in progress.
package gitserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Authenticator checks an API key sent as the password of HTTP Basic auth.
type Authenticator interface {
	// Authenticate returns the user the key belongs to.
	Authenticate(key string) (user string, ok bool)
}

// AppFinder resolves an app name, the only name a remote URL accepts.
type AppFinder interface {
	// AppID returns the ID of the app named name; found is false when
	// there is no such app.
	AppID(ctx context.Context, name string) (id string, found bool, err error)
}

// Deployer builds and releases a pushed source tree.
type Deployer interface {
	// Deploy builds tarball (a gzipped tar of the pushed tree, the
	// Procfile at its root) for the app, writing the build's output to out
	// as it happens, and returns the new release's version. commit is the
	// pushed commit's ID (Heroku's SOURCE_VERSION). An error means nothing
	// was released; its text ends the push's output.
	Deploy(ctx context.Context, appName, user, commit string, tarball io.Reader, out io.Writer) (version int, err error)
}

// Config configures a Server.
type Config struct {
	// ReposDir holds one bare repository per app, <appID>.git.
	ReposDir string
	// HookCommand is the absolute path of the dyno binary: each
	// repository's pre-receive hook runs `HookCommand git-hook pre-receive`.
	HookCommand string
	// InternalURL is this handler's base URL on a loopback address (the
	// API's), where hooks send what was pushed.
	InternalURL string
	// Git is the git binary; "git" from PATH when empty.
	Git      string
	Auth     Authenticator
	Apps     AppFinder
	Deployer Deployer
	Logger   *slog.Logger
}

// Environment variables through which a push's hook finds its way back.
const (
	envDeployURL = "DYNO_DEPLOY_URL"
	envPushToken = "DYNO_PUSH_TOKEN"
	envGit       = "DYNO_GIT"
)

// deployPath is the internal endpoint, under the app's repository path.
const deployPath = "dyno/deploy"

// Server serves every app's repository.
type Server struct {
	cfg Config
	git string // resolved path of git
	log *slog.Logger

	mu     sync.Mutex
	locks  map[string]*sync.Mutex // per app ID: creation and pushes, one at a time
	pushes map[string]push        // by token: the pushes in progress
}

// push is one git-receive-pack request in progress.
type push struct {
	appID, appName, user string
}

// New returns a Server. It fails when git is missing, the hook command is
// not an absolute path or the repositories' directory cannot be made.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	git, err := exec.LookPath(cfg.Git)
	if err != nil {
		return nil, fmt.Errorf("git remotes need git installed (apt-get install git): %w", err)
	}
	if git, err = filepath.Abs(git); err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	if !filepath.IsAbs(cfg.HookCommand) {
		return nil, fmt.Errorf("git hook command %q must be an absolute path", cfg.HookCommand)
	}
	if cfg.Auth == nil || cfg.Apps == nil || cfg.Deployer == nil {
		return nil, errors.New("gitserver: Auth, Apps and Deployer are required")
	}
	if err := os.MkdirAll(cfg.ReposDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the git repositories' directory: %w", err)
	}
	cfg.InternalURL = strings.TrimRight(cfg.InternalURL, "/")
	return &Server{cfg: cfg, git: git, log: cfg.Logger, locks: map[string]*sync.Mutex{}, pushes: map[string]push{}}, nil
}

// IsGitPath reports whether an URL path is a repository's (its first
// segment ends in ".git"), so the API can hand the request to a Server.
func IsGitPath(p string) bool {
	name, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return len(name) > len(".git") && strings.HasSuffix(name, ".git")
}

// ServeHTTP serves /<app>.git/... : git's smart HTTP for pushes and
// clones, and the hooks' internal deploy endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	name = strings.TrimSuffix(name, ".git")
	if rest == deployPath {
		s.serveDeploy(w, r, name)
		return
	}
	user, ok := s.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="Dyno"`)
		http.Error(w, "Invalid credentials: use your Dyno API key as the password (`dyno git:remote -a APP` sets up a credential helper).", http.StatusUnauthorized)
		return
	}
	appID, found, err := s.cfg.Apps.AppID(r.Context(), name)
	if err != nil {
		s.log.Error("git: look up app", "app", name, "err", err)
		http.Error(w, "Internal error looking up the app: see the API server's log.", http.StatusInternalServerError)
		return
	}
	if !found {
		http.Error(w, fmt.Sprintf("No such app as %s: check the remote's URL (`dyno apps` lists your apps; `dyno git:remote -a APP` fixes it).", name), http.StatusNotFound)
		return
	}
	service := ""
	switch {
	case rest == "info/refs" && r.Method == http.MethodGet:
		service = r.URL.Query().Get("service")
	case (rest == "git-upload-pack" || rest == "git-receive-pack") && r.Method == http.MethodPost:
		service = rest
	}
	if service != "git-upload-pack" && service != "git-receive-pack" {
		http.Error(w, "Dyno serves git's smart HTTP protocol only: use a git client of version 1.6.6 or later.", http.StatusForbidden)
		return
	}
	// Pushes of an app take turns (the hook checks the ref it builds is
	// still the one the pusher saw); fetches need the lock only to create.
	lock := s.lock(appID)
	lock.Lock()
	err = s.ensureRepo(appID)
	if rest == "git-receive-pack" {
		defer lock.Unlock()
	} else {
		lock.Unlock()
	}
	if err != nil {
		s.log.Error("git: create repository", "app", name, "err", err)
		http.Error(w, "Internal error preparing the app's repository: see the API server's log.", http.StatusInternalServerError)
		return
	}
	env := []string{
		"GIT_PROJECT_ROOT=" + s.cfg.ReposDir,
		"GIT_HTTP_EXPORT_ALL=1",
		"REMOTE_USER=" + user, // enables receive-pack
		envGit + "=" + s.git,
	}
	if rest == "git-receive-pack" {
		token := newToken()
		s.mu.Lock()
		s.pushes[token] = push{appID: appID, appName: name, user: user}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.pushes, token)
			s.mu.Unlock()
		}()
		env = append(env, envDeployURL+"="+s.cfg.InternalURL+"/"+name+".git/"+deployPath, envPushToken+"="+token)
	}
	// The repository is addressed by the app's ID: a renamed app keeps it.
	req := r.Clone(r.Context())
	req.URL.Path = "/" + appID + ".git/" + rest
	// git sends big packs chunked; http-backend reads to EOF when no
	// CONTENT_LENGTH is set, which net/http/cgi refuses to arrange.
	req.TransferEncoding = nil
	h := &cgi.Handler{
		Path:   s.git,
		Args:   []string{"http-backend"},
		Dir:    s.cfg.ReposDir,
		Env:    env,
		Logger: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Stderr: logWriter{s.log, name},
	}
	h.ServeHTTP(flushWriter{w}, req)
}

func (s *Server) authenticate(r *http.Request) (string, bool) {
	_, key, ok := r.BasicAuth()
	if !ok || key == "" {
		return "", false
	}
	return s.cfg.Auth.Authenticate(key)
}

func (s *Server) lock(appID string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.locks[appID]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[appID] = l
	}
	return l
}

// repoDir is the bare repository of an app.
func (s *Server) repoDir(appID string) string { return filepath.Join(s.cfg.ReposDir, appID+".git") }

// ensureRepo creates the app's repository on first use (built aside and
// renamed into place, so a half-made one is never seen) and (re)writes its
// hook, so that a moved dyno binary is followed.
func (s *Server) ensureRepo(appID string) error {
	dir := s.repoDir(appID)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return s.writeHook(dir)
	}
	tmp, err := os.MkdirTemp(s.cfg.ReposDir, ".new-")
	if err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmds := [][]string{
		{"init", "--quiet", "--bare", "--initial-branch=main", tmp},
		// Force pushes are fine (Heroku takes them); deletions never are.
		{"-C", tmp, "config", "receive.denyDeletes", "true"},
	}
	for _, args := range cmds {
		if out, err := exec.Command(s.git, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := s.writeHook(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	return nil
}

func (s *Server) writeHook(repo string) error {
	script := "#!/bin/sh\n# Written by Dyno: builds and releases what is pushed.\nexec " +
		shellQuote(s.cfg.HookCommand) + " git-hook pre-receive\n"
	path := filepath.Join(repo, "hooks", "pre-receive")
	if old, err := os.ReadFile(path); err == nil && string(old) == script {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write git hook: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		return fmt.Errorf("write git hook: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write git hook: %w", err)
	}
	return nil
}

// RemoveRepo deletes an app's repository; the API calls it when the app is
// destroyed. A repository that was never made is no error.
func (s *Server) RemoveRepo(appID string) error {
	if appID == "" || strings.ContainsAny(appID, `/\`) || strings.HasPrefix(appID, ".") {
		return fmt.Errorf("remove repository: bad app ID %q", appID)
	}
	// Renamed away first, so a push arriving meanwhile starts afresh.
	trash, err := os.MkdirTemp(s.cfg.ReposDir, ".gone-")
	if err != nil {
		return fmt.Errorf("remove repository of %s: %w", appID, err)
	}
	defer os.RemoveAll(trash)
	if err := os.Rename(s.repoDir(appID), filepath.Join(trash, "repo")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove repository of %s: %w", appID, err)
	}
	return nil
}

// serveDeploy is the hooks' endpoint: the body is the pushed tree as a
// gzipped tarball; the answer streams the build output and ends with the
// outcome in the Dyno-Deploy-Status trailer ("ok v3" or "failed"), which
// build output cannot forge.
func (s *Server) serveDeploy(w http.ResponseWriter, r *http.Request, name string) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	p, ok := s.pushes[token]
	s.mu.Unlock()
	if r.Method != http.MethodPost || !ok || subtle.ConstantTimeCompare([]byte(p.appName), []byte(name)) != 1 {
		http.Error(w, "Not found: this endpoint serves the git hook of a push in progress only.", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", statusTrailer)
	w.WriteHeader(http.StatusOK)
	out := flushWriter{w}
	commit := r.Header.Get(commitHeader)
	if !commitRE.MatchString(commit) {
		commit = ""
	}
	version, err := s.cfg.Deployer.Deploy(r.Context(), name, p.user, commit, r.Body, out)
	if err != nil {
		fmt.Fprintf(out, "\n !     Push rejected to %s: %v\n", name, err)
		w.Header().Set(statusTrailer, "failed")
		return
	}
	w.Header().Set(statusTrailer, fmt.Sprintf("ok v%d", version))
}

const (
	statusTrailer = "Dyno-Deploy-Status"
	commitHeader  = "Dyno-Source-Version" // the pushed commit, from the hook
)

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// flushWriter sends every write at once, so that build output reaches the
// pusher as it happens (net/http buffers 4 KB otherwise). It hides the
// ResponseWriter's ReadFrom, which would bypass the flushes.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Header() http.Header  { return f.w.Header() }
func (f flushWriter) WriteHeader(code int) { f.w.WriteHeader(code) }
func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = http.NewResponseController(f.w).Flush()
	}
	return n, err
}

// logWriter sends git http-backend's stderr to the log.
type logWriter struct {
	log *slog.Logger
	app string
}

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Warn("git http-backend", "app", l.app, "stderr", strings.TrimSpace(string(p)))
	return len(p), nil
}

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
