// Package runtime runs dynos: one Procfile command of a slug, either as a Linux
// container (runc's libcontainer used as a library: PID, mount, UTS and IPC
// namespaces, a read-only system, the slug at /app on an overlay, cgroup limits,
// an unprivileged user of its own without capabilities, Docker's default
// seccomp profile, and optionally a network namespace behind an nftables
// firewall) or, when the agent is not root, as a plain process group without
// any isolation.
//
// Binaries that import this package must call InitHook first thing in main's
// init: libcontainer starts a container by re-executing the current binary with
// the argument "init". Build them with `-tags seccomp` (cgo and libseccomp
// needed): without the tag dynos run without a seccomp filter, and
// SeccompEnabled reports false.
//
// Files: runtime.go (API), container.go (libcontainer dynos), config.go (their
// configuration and generated /etc), network.go and firewall.go (network
// namespaces, veths, nftables), seccomp*.go, slug.go (unpacking slugs for the
// slug group), process.go (the unisolated runtime), stats.go.
package runtime

import (
	"context"
	"io"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	// nsexec, the C constructor that joins the namespaces before the Go
	// runtime starts, must be linked into every binary that starts containers.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Spec describes one dyno to start.
type Spec struct {
	ID       string   // unique dyno id (uuid); the container id and cgroup name
	Hostname string   // e.g. "web.1", the UTS hostname inside
	Command  string   // run as /bin/sh -c Command, like Heroku runs Procfile commands
	Env      []string // the complete environment, "K=V"
	SlugDir  string   // host dir holding the unpacked slug (read-only lower layer of /app)
	WorkDir  string   // host dir private to this dyno (writable layer, rootfs); removed by Close
	UID, GID int      // unprivileged user the processes run as; give every running dyno its own
	// AdditionalGroups are supplementary groups of the dyno's processes:
	// the slug group that UnpackSlug gave the slug's files to.
	AdditionalGroups []int
	Port             int       // the PORT of a web dyno (0 for others): the one port the host may connect to
	MemoryMB         int       // memory cgroup limit (hard, no swap)
	CPUShares        int       // cgroup v1 cpu.shares
	PidsLimit        int       // pids cgroup limit; keep it >= 256
	Stdout           io.Writer // the dyno's standard output (nil discards it)
	Stderr           io.Writer // the dyno's standard error (nil discards it)
	// Stdin is the dyno's standard input (nil: /dev/null). It is read
	// until it ends; a caller whose Stdin blocks must unblock it (close
	// the connection) after the dyno ended.
	Stdin io.Reader
	// TTY runs the command on a pseudo-terminal of its own, the
	// controlling terminal of its session: Stdin is typed into it, its
	// output (stdout and stderr) goes to Stdout, and the Dyno implements
	// Resizer. Cols and Rows are its first size (0: the kernel's default).
	// Only the container runtime has it.
	TTY        bool
	Cols, Rows uint16
	// Mounts are extra host directories bound into the container after its
	// own mounts (builds use them for their build, cache, env and buildpack
	// dirs). Dynos have none. Only the container runtime honours them.
	Mounts []Mount
	// OutputFIFO, when set (and Stdin is nil and TTY off), is the path of a
	// named pipe the container runtime makes for the dyno's stdout and
	// stderr instead of pipes to the agent, so that the dyno survives a
	// restart of the agent and the next one reads on (adopt.go).
	OutputFIFO string
}

// Mount binds a host directory into a container.
type Mount struct {
	Source      string // absolute host path of an existing directory
	Destination string // absolute path inside, below /tmp or /app (or a new top-level dir)
	ReadOnly    bool
}

// Result is how a dyno ended.
type Result struct {
	ExitStatus int  // exit code, or 128+signal (137 for SIGKILL, 143 for SIGTERM)
	OOMKilled  bool // killed by the memory cgroup's OOM killer
}

// Dyno is a started dyno.
type Dyno interface {
	// Pid is the host pid of the dyno's first process.
	Pid() int
	// Addr is the IP address the host dials to reach the dyno's PORT: the
	// dyno's own address in its network namespace, or 127.0.0.1 when it
	// shares the host's network.
	Addr() string
	// Signal sends sig to every process of the dyno, not just the first.
	Signal(sig syscall.Signal) error
	// Wait blocks until the first process ended and all output is copied.
	// It may be called many times and from many goroutines.
	Wait() Result
	// Close kills what is left and removes everything the dyno used on the
	// host. It is idempotent.
	Close() error
}

// Runtime starts dynos.
type Runtime interface {
	// Start starts a dyno and returns once its command is running.
	Start(ctx context.Context, spec Spec) (Dyno, error)
	// Cleanup removes what an earlier process of the agent left behind
	// (processes, state, cgroups, work dirs). Call it once at agent start,
	// before the first Start.
	Cleanup(ctx context.Context) error
	// Isolated reports whether dynos run in containers.
	Isolated() bool
}

// InitHook must be called at the very start of the program (the init of
// package main, or TestMain of a test package): when the binary was
// re-executed by libcontainer as a container's init ("<binary> init"), it sets
// the container up, execs the dyno's command and never returns. Otherwise it
// returns at once.
func InitHook() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns; exits 255 on failure
	}
}

// exitStatus turns a wait status into a shell-style exit status.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// copyOutput copies r to w until EOF or error and then closes r.
// Errors of w are ignored after the first one: output keeps being drained so
// that the dyno never blocks on a full pipe.
func copyOutput(w io.Writer, r *os.File) {
	defer r.Close()
	if w == nil {
		w = io.Discard
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != io.Discard {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = io.Discard
			}
		}
		if err != nil {
			return
		}
	}
}

// sameWriter reports whether a and b are the same writer, in which case one
// pipe feeds both (as os/exec does) so lines are not interleaved mid-write.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil { // uncomparable dynamic types
			same = false
		}
	}()
	return a != nil && a == b
}

// outputPipes makes the pipes for the dyno's stdout and stderr. The caller
// passes the write ends to the child, closes them after start, and copies from
// the read ends.
type outputPipes struct {
	stdoutR, stdoutW *os.File
	stderrR, stderrW *os.File // nil when stderr shares stdout's pipe
}

func newOutputPipes(stdout, stderr io.Writer) (*outputPipes, error) {
	p := &outputPipes{}
	var err error
	if p.stdoutR, p.stdoutW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if sameWriter(stdout, stderr) {
		return p, nil
	}
	if p.stderrR, p.stderrW, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

// childStderr is the file the child writes its stderr to.
func (p *outputPipes) childStderr() *os.File {
	if p.stderrW != nil {
		return p.stderrW
	}
	return p.stdoutW
}

func (p *outputPipes) closeWriteEnds() {
	p.stdoutW.Close()
	if p.stderrW != nil {
		p.stderrW.Close()
	}
}

func (p *outputPipes) closeAll() {
	for _, f := range []*os.File{p.stdoutR, p.stdoutW, p.stderrR, p.stderrW} {
		if f != nil {
			f.Close()
		}
	}
}

// startCopying starts the copy goroutines; the returned channel is closed when
// both reached EOF.
func (p *outputPipes) startCopying(stdout, stderr io.Writer) <-chan struct{} {
	done := make(chan struct{})
	n := 1
	if p.stderrR != nil {
		n = 2
	}
	finished := make(chan struct{}, 2)
	go func() { copyOutput(stdout, p.stdoutR); finished <- struct{}{} }()
	if p.stderrR != nil {
		go func() { copyOutput(stderr, p.stderrR); finished <- struct{}{} }()
	}
	go func() {
		for i := 0; i < n; i++ {
			<-finished
		}
		close(done)
	}()
	return done
}
