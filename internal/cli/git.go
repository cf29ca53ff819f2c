package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// defaultRemote is the git remote Dyno's commands add, as heroku's add "heroku".
const defaultRemote = "dyno"

func (s *session) gitRemoteCommand() *cobra.Command {
	var remote string
	cmd := &cobra.Command{
		Use:   "git:remote",
		Short: "add (or point) a git remote to an app, so that `git push dyno main` deploys it",
		Long: "git:remote adds the app's git URL as a remote of the repository in the current directory\n" +
			"(or updates it) and sets `dyno git:credentials` as the credential helper for the Dyno API,\n" +
			"so that git authenticates with your API key. The URL itself holds no secret.",
		Args: cobra.NoArgs,
	}
	app := appFlag(cmd)
	cmd.Flags().StringVarP(&remote, "remote", "r", defaultRemote, "name of the git remote")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		if !s.inGitWorkTree(cmd.Context()) {
			return errors.New("not inside a git repository: run `git init` first, or `dyno git:clone -a " + a.Name + "`")
		}
		was, existed := s.remoteURL(cmd.Context(), remote)
		if err := s.setGitRemote(cmd.Context(), remote, a.GitURL); err != nil {
			return err
		}
		if existed && was != a.GitURL {
			fmt.Fprintf(s.stdout, "updated git remote %s to %s (was %s)\n", remote, a.GitURL, was)
			return nil
		}
		fmt.Fprintf(s.stdout, "set git remote %s to %s\n", remote, a.GitURL)
		return nil
	}
	return cmd
}

func (s *session) gitCloneCommand() *cobra.Command {
	var remote string
	cmd := &cobra.Command{
		Use:   "git:clone [DIR]",
		Short: "clone an app's repository (into DIR, the app's name by default)",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.Flags().StringVarP(&remote, "remote", "r", defaultRemote, "name of the git remote")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		dir := a.Name
		if len(args) == 1 {
			dir = args[0]
		}
		helper, err := credentialHelper()
		if err != nil {
			return err
		}
		key := "credential." + urlBase(a.GitURL) + ".helper"
		// -c applies to the clone itself and stays in the new repository.
		_, err = s.git(cmd.Context(), true, "clone", "-o", remote, "-c", key+"=", "-c", key+"="+helper, a.GitURL, dir)
		return err
	}
	return cmd
}

// gitCredentialsCommand is a git credential helper: for the Dyno API's
// host it answers the API key (DYNO_API_KEY or the stored login) as the
// password, as Heroku's git remotes take theirs.
func (s *session) gitCredentialsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "git:credentials [get|store|erase]",
		Short: "git credential helper that answers your API key (git:remote sets it up)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] != "get" {
				return nil // store and erase: the key lives in DYNO_API_KEY or the login
			}
			asked := map[string]string{}
			sc := bufio.NewScanner(s.stdin)
			for sc.Scan() && sc.Text() != "" {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					asked[k] = v
				}
			}
			apiURL, key, err := s.apiKey()
			if err != nil {
				return err
			}
			u, err := url.Parse(apiURL)
			if err != nil {
				return fmt.Errorf("the API URL %q does not parse: %w", apiURL, err)
			}
			if asked["protocol"] != u.Scheme || asked["host"] != u.Host {
				// Another server's: the key is not for it. git asks elsewhere.
				fmt.Fprintf(s.stderr, "dyno git:credentials: %s://%s is not the Dyno API (%s); set DYNO_API_URL or `dyno login` to it\n", asked["protocol"], asked["host"], apiURL)
				return nil
			}
			if key == "" {
				fmt.Fprintln(s.stderr, "dyno git:credentials: no API key: run `dyno login` or set DYNO_API_KEY")
				return nil
			}
			_, err = fmt.Fprintf(s.stdout, "username=dyno\npassword=%s\n", key)
			return err
		},
	}
}

// apiKey resolves the API URL and key as api() does.
func (s *session) apiKey() (apiURL, key string, err error) {
	apiURL, key = s.env("DYNO_API_URL"), s.env("DYNO_API_KEY")
	if apiURL == "" || key == "" {
		creds, err := s.loadCredentials()
		if err != nil {
			return "", "", err
		}
		if apiURL == "" {
			apiURL = creds.APIURL
		}
		if key == "" && creds.APIKey != "" && strings.TrimRight(creds.APIURL, "/") == strings.TrimRight(apiURL, "/") {
			key = creds.APIKey
		}
	}
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	return strings.TrimRight(apiURL, "/"), key, nil
}

// setGitRemote adds remote (or changes its URL) in the current
// repository and makes `dyno git:credentials` the only credential helper
// for the URL's server, so a helper of the user's cannot answer a stale
// key first.
func (s *session) setGitRemote(ctx context.Context, remote, gitURL string) error {
	if gitURL == "" {
		return errors.New("the API gave the app no git URL: is this Dyno server too old for git pushes?")
	}
	if _, err := s.git(ctx, false, "remote", "get-url", remote); err == nil {
		if _, err := s.git(ctx, false, "remote", "set-url", remote, gitURL); err != nil {
			return err
		}
	} else if _, err := s.git(ctx, false, "remote", "add", remote, gitURL); err != nil {
		return err
	}
	helper, err := credentialHelper()
	if err != nil {
		return err
	}
	key := "credential." + urlBase(gitURL) + ".helper"
	if _, err := s.git(ctx, false, "config", "--replace-all", key, ""); err != nil {
		return err
	}
	_, err = s.git(ctx, false, "config", "--add", key, helper)
	return err
}

// inGitWorkTree reports whether git commands here act on a work tree.
func (s *session) inGitWorkTree(ctx context.Context) bool {
	out, err := s.git(ctx, false, "rev-parse", "--is-inside-work-tree")
	return err == nil && strings.TrimSpace(out) == "true"
}

// git runs git in the session's directory. With passThrough its output
// goes to the user; otherwise it is returned, and in the error on failure.
func (s *session) git(ctx context.Context, passThrough bool, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	if passThrough {
		cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	} else {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", errors.New("git is not installed: install it (https://git-scm.com) to push to Dyno")
		}
		return out.String(), fmt.Errorf("git %s: %w %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// credentialHelper is the helper value that runs this program.
func credentialHelper() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the dyno program for git's credential helper: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the dyno program for git's credential helper: %w", err)
	}
	return "!" + shellQuote(exe) + " git:credentials", nil
}

// urlBase is scheme://host of a URL: git's credential helpers are keyed
// by server (a path in the key would not match what git asks for).
func urlBase(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

// addCreatedRemote adds a new app's remote when apps:create runs in a git
// repository, as heroku's does. It never repoints an existing remote: the
// work tree may be an unrelated parent repository whose remote belongs to
// another app (git:remote repoints on request).
func (s *session) addCreatedRemote(ctx context.Context, remote, gitURL string) error {
	if remote == "" || gitURL == "" || !s.inGitWorkTree(ctx) {
		return nil
	}
	was, existed := s.remoteURL(ctx, remote)
	if existed && was != gitURL {
		name, _ := appOfGitURL(gitURL)
		fmt.Fprintf(s.stderr, "Git remote %s already points to %s: run dyno git:remote -a %s to point it here\n", remote, was, name)
		return nil
	}
	if err := s.setGitRemote(ctx, remote, gitURL); err != nil {
		return fmt.Errorf("the app was created, but adding its git remote failed: %w", err)
	}
	if !existed {
		fmt.Fprintf(s.stderr, "Git remote %s added\n", remote)
	}
	return nil
}

// remoteURL is the URL of the named remote of the current repository, and
// whether that remote exists.
func (s *session) remoteURL(ctx context.Context, remote string) (string, bool) {
	out, err := s.git(ctx, false, "remote", "get-url", remote)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(out), true
}
