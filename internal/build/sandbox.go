package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/internal/runtime"
)

// Runtime starts the build's containers: the agent's runtime (a
// runtime.ContainerRuntime as root).
type Runtime interface {
	Start(ctx context.Context, spec runtime.Spec) (runtime.Dyno, error)
	Isolated() bool
}

// UIDs hands out the unprivileged users builds run as.
type UIDs interface {
	Get() (int, error)
	Put(uid int)
}

// Where a build's dirs are seen inside its container.
const (
	containerBuildDir = "/tmp/build"
	containerCacheDir = "/tmp/cache"
	containerEnvDir   = "/tmp/env"
	containerPackDir  = "/tmp/buildpacks" // buildpack i at /tmp/buildpacks/<i>
)

// workspace is one build's dirs on the host, below its root.
type workspace struct {
	root       string
	build      string // BUILD_DIR: the source, compiled in place
	cache      string // CACHE_DIR
	env        string // ENV_DIR: a file per config var
	buildpacks string // one dir per buildpack
	home       string // an empty dir: the container's /app (HOME) lower layer
}

func newWorkspace(root string) (*workspace, error) {
	w := &workspace{
		root: root, build: filepath.Join(root, "build"), cache: filepath.Join(root, "cache"),
		env: filepath.Join(root, "env"), buildpacks: filepath.Join(root, "buildpacks"), home: filepath.Join(root, "home"),
	}
	for _, d := range []string{w.build, w.env, w.buildpacks, w.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create build workspace: %w", err)
		}
	}
	return w, nil
}

// sandbox runs the buildpacks' programs.
type sandbox interface {
	// dirs are BUILD_DIR, CACHE_DIR, ENV_DIR as the programs see them.
	dirs() (build, cache, env string)
	// buildpackDir is where buildpack i is seen.
	buildpackDir(i int) string
	// run runs argv with the build's environment and returns its exit
	// status; err is for the platform's failures, not the program's.
	run(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error)
}

// buildEnv is the environment of the buildpacks' programs. Config vars are
// not in it: buildpacks read them from ENV_DIR.
func buildEnv(platform map[string]string, home, sourceVersion string) []string {
	env := []string{
		"PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "STACK=dyno", "LANG=C.UTF-8",
	}
	if sourceVersion != "" {
		env = append(env, "SOURCE_VERSION="+sourceVersion)
	}
	for k, v := range platform {
		if k != "PATH" && k != "HOME" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// containerSandbox runs each program in a container of its own through the
// runtime: its own user, memory limit and network namespace, the
// workspace's dirs bound in, the stack (/usr, /bin, /lib...) read-only.
type containerSandbox struct {
	rt       Runtime
	ws       *workspace
	uid      int
	memoryMB int
	env      []string
	packs    int
	seq      int
}

func (c *containerSandbox) dirs() (string, string, string) {
	return containerBuildDir, containerCacheDir, containerEnvDir
}

func (c *containerSandbox) buildpackDir(i int) string {
	return fmt.Sprintf("%s/%d", containerPackDir, i)
}

func (c *containerSandbox) run(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	c.seq++
	id := newID()
	mounts := []runtime.Mount{
		{Source: c.ws.build, Destination: containerBuildDir},
		{Source: c.ws.cache, Destination: containerCacheDir},
		{Source: c.ws.env, Destination: containerEnvDir, ReadOnly: true},
	}
	for i := range c.packs {
		mounts = append(mounts, runtime.Mount{Source: filepath.Join(c.ws.buildpacks, fmt.Sprint(i)), Destination: c.buildpackDir(i), ReadOnly: true})
	}
	d, err := c.rt.Start(ctx, runtime.Spec{
		ID: id, Hostname: "build", Command: shellQuote(argv), Env: c.env,
		SlugDir: c.ws.home, WorkDir: filepath.Join(c.ws.root, fmt.Sprintf("container-%d", c.seq)),
		UID: c.uid, GID: c.uid, MemoryMB: c.memoryMB, CPUShares: 1024, PidsLimit: 4096,
		Stdout: stdout, Stderr: stderr, Mounts: mounts,
	})
	if err != nil {
		return -1, fmt.Errorf("start build container: %w", err)
	}
	defer d.Close()
	done := make(chan runtime.Result, 1)
	go func() { done <- d.Wait() }()
	select {
	case res := <-done:
		if res.OOMKilled {
			fmt.Fprintf(stderr, " !     The build ran out of memory (limit %d MB)\n", c.memoryMB)
		}
		return res.ExitStatus, nil
	case <-ctx.Done():
		_ = d.Signal(syscall.SIGKILL)
		<-done
		return -1, ctx.Err()
	}
}

// processSandbox runs the programs as plain processes on the host, with the
// host's paths: no isolation at all, for servers that are not root.
type processSandbox struct {
	ws  *workspace
	env []string
}

func (p *processSandbox) dirs() (string, string, string) { return p.ws.build, p.ws.cache, p.ws.env }

func (p *processSandbox) buildpackDir(i int) string {
	return filepath.Join(p.ws.buildpacks, fmt.Sprint(i))
}

func (p *processSandbox) run(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = p.env, p.ws.build, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("run %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal()), nil
			}
			return ee.ExitCode(), nil
		}
		if err != nil {
			return -1, err
		}
		return 0, nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return -1, ctx.Err()
	}
}

// shellQuote joins argv into one sh command line.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return "exec " + strings.Join(q, " ")
}

// chownTree gives everything below dir to uid (the build's user).
func chownTree(dir string, uid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

// uidRange hands out the numbers lo..hi, each to one build at a time.
type uidRange struct {
	free chan int
}

// DefaultBuildUIDs are the users builds run as: 199000-199099, below the
// agent's dyno users (200000-299999) and its slug group (199999).
func DefaultBuildUIDs() UIDs { return newUIDRange(199000, 199099) }

func newUIDRange(lo, hi int) *uidRange {
	r := &uidRange{free: make(chan int, hi-lo+1)}
	for u := lo; u <= hi; u++ {
		r.free <- u
	}
	return r
}

// Get returns a free uid, or an error when every one is in use.
func (r *uidRange) Get() (int, error) {
	select {
	case u := <-r.free:
		return u, nil
	case <-time.After(time.Second):
		return 0, errors.New("every build user is busy: too many builds at once, try again in a few minutes")
	}
}

// Put gives a uid back.
func (r *uidRange) Put(uid int) { r.free <- uid }
