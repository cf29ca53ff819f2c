package gitserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
)

// zeroRev is how git names a ref that does not exist (yet, or any more).
const zeroRev = "0000000000000000000000000000000000000000"

// deployRefs are the only branches a push deploys, as on Heroku.
var deployRefs = map[string]bool{"refs/heads/main": true, "refs/heads/master": true}

// RunHook runs `dyno git-hook <args>` inside a repository: for
// "pre-receive" it reads the pushed refs from stdin, sends the pushed tree
// to the deploy endpoint, copies the build output to stdout (git shows it
// as `remote:` lines) and returns 0 only when the build was released, so
// that git moves the ref. env is the hook's environment (os.Environ()).
func RunHook(args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	if len(args) != 1 || args[0] != "pre-receive" {
		fmt.Fprintln(stderr, "usage: dyno git-hook pre-receive (git runs it in an app's repository)")
		return 2
	}
	if err := preReceive(context.Background(), stdin, stdout, env); err != nil {
		if !errors.Is(err, errRejected) {
			fmt.Fprintf(stdout, "\n !     %v\n", err)
		}
		return 1
	}
	return 0
}

// errRejected is a failed build, whose reasons the build output gave.
var errRejected = errors.New("push rejected")

// update is one line of pre-receive's input.
type update struct{ old, new, ref string }

func preReceive(ctx context.Context, stdin io.Reader, out io.Writer, env []string) error {
	lookup := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	deployURL, token, git := lookup(envDeployURL), lookup(envPushToken), lookup(envGit)
	if deployURL == "" || token == "" || git == "" {
		return errors.New("this push did not come through Dyno's git server: push to the app's git URL (`dyno git:remote -a APP`)")
	}
	var deploy *update
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		u := update{old: f[0], new: f[1], ref: f[2]}
		switch {
		case !deployRefs[u.ref]:
			return fmt.Errorf("Pushing to %s is not allowed: only main (or master) deploys. Push with `git push dyno HEAD:main`.", u.ref)
		case u.new == zeroRev:
			return fmt.Errorf("Deleting %s is not allowed: it is what the app runs. Push another commit instead.", u.ref)
		case deploy != nil && deploy.new != u.new:
			return errors.New("Pushing main and master at once with different commits is ambiguous: push one of them.")
		}
		deploy = &u
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the pushed refs: %w", err)
	}
	if deploy == nil {
		return nil // nothing to deploy (git sends no line then anyway)
	}
	// Pushes of an app take turns; one that raced another is refused
	// before its build, not after it when git would fail to move the ref.
	cur, err := gitOutput(ctx, git, env, "rev-parse", "--verify", "--quiet", deploy.ref)
	if err != nil {
		cur = zeroRev
	}
	if cur != deploy.old {
		return fmt.Errorf("%s changed while you pushed: fetch, then push again.", deploy.ref)
	}

	// The tree, not the commit: a commit's archive starts with a pax
	// header holding its ID, which builders need not understand.
	archive := exec.CommandContext(ctx, git, "archive", "--format=tar.gz", deploy.new+"^{tree}")
	archive.Env = env
	var archiveErr bytes.Buffer
	archive.Stderr = &archiveErr
	tarball, err := archive.StdoutPipe()
	if err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	if err := archive.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	defer func() { _ = archive.Process.Kill(); _ = archive.Wait() }()
	// Only the tarball goes: ending Body early must not leave git archive
	// blocked on a full pipe.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, deployURL, tarball)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/gzip")
	req.Header.Set(commitHeader, deploy.new)
	fmt.Fprintf(out, "Building source (%s %.7s):\n", strings.TrimPrefix(deploy.ref, "refs/heads/"), deploy.new)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("Push failed: the Dyno API could not be reached to build it (%v).", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("Push failed: the Dyno API refused the build: %s %s", resp.Status, bytes.TrimSpace(msg))
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("Push failed: the build output was cut off (%v); check `dyno releases` for its outcome.", err)
	}
	if err := archive.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %v: %s", deploy.new, err, bytes.TrimSpace(archiveErr.Bytes()))
	}
	status := resp.Trailer.Get(statusTrailer)
	if !strings.HasPrefix(status, "ok ") {
		return errRejected
	}
	// A fresh repository's HEAD names main; one pushed to master only
	// then clones with master checked out.
	if deploy.ref == "refs/heads/master" && cur == zeroRev {
		if _, err := gitOutput(ctx, git, env, "rev-parse", "--verify", "--quiet", "refs/heads/main"); err != nil {
			_, _ = gitOutput(ctx, git, env, "symbolic-ref", "HEAD", deploy.ref)
		}
	}
	return nil
}

func gitOutput(ctx context.Context, git string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Env = env
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}
