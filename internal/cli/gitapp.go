package cli

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
)

// gitLookupTimeout bounds the git commands that find the app of the
// current directory: a hung git must not hang every command.
const gitLookupTimeout = 10 * time.Second

// gitApp is the app the git remotes of the current directory's work tree
// name, as heroku's CLI infers its app: the remote named dyno when its URL
// is <API URL>/NAME.git, else the one remote on the API URL. It returns ""
// and no error when the remotes name no app (or this is no git work tree),
// and an error when they name several or the dyno remote is another
// server's, so that the user is told rather than silently given one.
func (s *session) gitApp() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitLookupTimeout)
	defer cancel()
	if !s.inGitWorkTree(ctx) {
		return "", nil
	}
	remotes := s.gitRemoteURLs(ctx)
	if len(remotes) == 0 {
		return "", nil
	}
	apiURL, _, err := s.apiKey()
	if err != nil {
		return "", err
	}
	return appFromRemotes(remotes, apiURL)
}

// gitRemoteURLs maps each remote of the current repository to its URLs.
func (s *session) gitRemoteURLs(ctx context.Context) map[string][]string {
	// Exits 1 when there is no remote at all: the empty map says so.
	out, _ := s.git(ctx, false, "config", "--get-regexp", `^remote\..*\.url$`)
	remotes := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		key, u, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(key, "remote.") || !strings.HasSuffix(key, ".url") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(key, "remote."), ".url")
		remotes[name] = append(remotes[name], strings.TrimSpace(u))
	}
	return remotes
}

// appFromRemotes picks the app from remotes (name → URLs) for the API at
// apiURL; see gitApp.
func appFromRemotes(remotes map[string][]string, apiURL string) (string, error) {
	appOf := func(name string) string {
		for _, u := range remotes[name] {
			if app := appOnAPI(u, apiURL); app != "" {
				return app
			}
		}
		return ""
	}
	if app := appOf(defaultRemote); app != "" {
		return app, nil
	}
	apps := map[string][]string{} // app → the remotes naming it
	for name := range remotes {
		if app := appOf(name); app != "" {
			apps[app] = append(apps[app], name)
		}
	}
	switch len(apps) {
	case 1:
		for app := range apps {
			return app, nil
		}
	case 0:
		if urls, ok := remotes[defaultRemote]; ok {
			return "", fmt.Errorf("no app given, and the git remote %s points to %s, not to an app of the Dyno API at %s: use -a APP, set DYNO_APP, or run `dyno git:remote -a APP` to point it there",
				defaultRemote, strings.Join(urls, ", "), apiURL)
		}
		return "", nil
	}
	var named []string
	for app, names := range apps {
		sort.Strings(names)
		named = append(named, strings.Join(names, ", ")+" → "+app)
	}
	sort.Strings(named)
	return "", fmt.Errorf("no app given, and the git remotes name several apps (%s): use -a APP, or name one remote %s with `dyno git:remote -a APP`",
		strings.Join(named, "; "), defaultRemote)
}

// appOnAPI is NAME when gitURL is <apiURL>/NAME.git, else "". Credentials
// in gitURL are ignored; scheme and host compare as URLs do.
func appOnAPI(gitURL, apiURL string) string {
	g, err := url.Parse(gitURL)
	if err != nil {
		return ""
	}
	a, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || !strings.EqualFold(g.Scheme, a.Scheme) || !strings.EqualFold(g.Host, a.Host) {
		return ""
	}
	dir, file := path.Split(g.Path)
	if strings.TrimRight(dir, "/") != a.Path {
		return ""
	}
	name, ok := strings.CutSuffix(file, ".git")
	if !ok || name == "" {
		return ""
	}
	return name
}

// appOfGitURL is NAME of a git URL ending in /NAME.git.
func appOfGitURL(gitURL string) (string, bool) {
	u, err := url.Parse(gitURL)
	if err != nil {
		return "", false
	}
	name, ok := strings.CutSuffix(path.Base(u.Path), ".git")
	return name, ok && name != ""
}
