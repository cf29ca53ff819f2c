package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
	"github.com/nats-io/nats.go"
)

// runner owns one dyno from its assignment to its end: it starts the
// process, tells when it is up, reports its exit, and stops it when asked.
type runner struct {
	a  *Agent
	as model.Assignment

	stopCh   chan struct{}
	stopOnce sync.Once

	mu     sync.Mutex
	remove bool // the assignment is gone: delete the status once stopped
	fenced bool // the agent lost the control plane: stop at once (fence.go)
	left   bool // the agent stops but leaves the dyno running (adopt.go)

	usage *usageRecorder // the running process's, for leave (adopt.go)

	status  model.DynoStatus // written only by the runner's goroutine
	counted string           // the state last counted in the metrics (metrics.go)
}

func newRunner(a *Agent, as model.Assignment) *runner {
	return &runner{a: a, as: as, stopCh: make(chan struct{})}
}

// stop asks the runner to stop its dyno; remove says the assignment is gone.
func (r *runner) stop(remove bool) {
	r.mu.Lock()
	r.remove = r.remove || remove
	r.mu.Unlock()
	r.stopOnce.Do(func() { close(r.stopCh) })
}

func (r *runner) removing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remove
}

// logDyno writes a heroku[web.1] line: the dyno manager speaking.
func (r *runner) logDyno(format string, args ...any) {
	r.a.cfg.Logs.Publish(r.as.AppID, model.LogLine{
		Time: r.a.cfg.Now(), Source: model.SourceHeroku, Dyno: r.as.Name, Message: fmt.Sprintf(format, args...),
	})
}

// setState records the dyno's state in its status and logs the change.
func (r *runner) setState(state string) {
	prev := r.status.State
	r.status.State = state
	r.status.UpdatedAt = r.a.cfg.Now()
	if state == model.StateUp {
		r.status.UpAt = r.status.UpdatedAt
	}
	if state != model.StateUp {
		r.status.Endpoint = "" // out of every route table first
	}
	r.writeStatus()
	if prev != "" && prev != state {
		r.logDyno("State changed from %s to %s", prev, state)
	}
}

func (r *runner) writeStatus() {
	if r.status.State != r.counted {
		r.counted = r.status.State
		r.a.cfg.Metrics.stateChanged(r.counted)
	}
	key := model.StatusKey(r.as.AppID, r.as.ID)
	giveUp := time.Now().Add(statusRetryFor)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.a.cfg.putStatus(ctx, key, r.status)
		cancel()
		switch {
		case err == nil:
			return
		case r.stopping() || errors.Is(err, nats.ErrConnectionClosed) || time.Now().Add(wait).After(giveUp):
			r.a.log.Warn("report dyno status: giving up", "dyno", r.as.Name, "id", r.as.ID, "state", r.status.State, "err", err)
			return
		}
		r.a.log.Warn("report dyno status (will retry)", "dyno", r.as.Name, "id", r.as.ID, "state", r.status.State, "err", err)
		select {
		case <-time.After(wait):
		case <-r.stopCh:
		}
	}
}

// stopping reports whether the dyno was asked to stop.
func (r *runner) stopping() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// statusRetryFor is how long a runner tries to store a status the store
// refuses: JetStream refuses writes for a few seconds while its cluster
// elects a leader, and a lost "up" would keep the dyno out of every route
// table (a lost "crashed", in them). A dyno being stopped tries once: a
// stop (the agent's shutdown on a node losing its cluster) must not wait
// for a store that may not come back.
const statusRetryFor = 30 * time.Second

func (r *runner) deleteStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.a.st.Statuses.Delete(ctx, model.StatusKey(r.as.AppID, r.as.ID), 0); err != nil {
		r.a.log.Warn("remove dyno status", "dyno", r.as.Name, "id", r.as.ID, "err", err)
	}
}

// run is the dyno's whole life. It returns once the dyno is stopped.
func (r *runner) run(ctx context.Context) {
	as := r.as
	now := r.a.cfg.Now()
	r.status = model.DynoStatus{
		ID: as.ID, HostID: r.a.cfg.HostID, AppID: as.AppID, AppName: as.AppName, Type: as.Type, Name: as.Name,
		Release: as.Release, Size: as.Size, Command: as.Command, StartedAt: now,
	}
	r.setState(model.StateStarting)
	r.logDyno("Starting process with command `%s`", as.Command)

	spec, quotaMB, giveBack, err := r.prepare(ctx)
	if err != nil {
		r.failStart(err)
		return
	}
	// An attached one-off starts once its client is there (oneoff.go).
	var att *attachment
	if as.Attach != nil {
		if att, err = r.attach(ctx, &spec); err != nil {
			giveBack()
			r.failAttach(err)
			return
		}
		defer att.close()
	}
	dyno, err := r.a.cfg.Runtime.Start(ctx, spec)
	if err != nil {
		giveBack()
		r.failStart(err)
		return
	}
	var detached <-chan struct{} // nil: never
	if att != nil {
		detached = att.serve(dyno)
	}
	// A crashed dyno's container, layer, port and user go at once; its
	// status stays until the manifold replaces it.
	release := sync.OnceFunc(func() {
		if r.leftRunning() {
			return // the next agent adopts it
		}
		if err := dyno.Close(); err != nil {
			r.a.log.Warn("clean up dyno", "dyno", as.Name, "id", as.ID, "err", err)
		}
		giveBack()
	})
	defer release()
	// Billing counts from here, the process started, to its end.
	usage := r.startUsage(r.a.cfg.Now())
	r.usage = usage
	defer usage.wait()
	r.saveMeta(spec)
	exited := make(chan runtime.Result, 1)
	waited := make(chan struct{})
	go func() {
		res := dyno.Wait()
		usage.end(r.a.cfg.Now())
		close(waited)
		exited <- res
	}()
	go newMonitor(r, quotaMB).run(dyno, waited)

	if r.awaitUp(dyno, spec.Port, exited) {
		select {
		case res := <-exited:
			if as.OneOff {
				r.oneOffEnded(res)
			} else {
				r.crashed(res)
			}
		case <-detached:
			res, ok := r.detach(dyno, exited)
			if !ok {
				return // stopped meanwhile
			}
			r.oneOffEnded(res)
		case <-r.stopCh:
			r.stopDyno(dyno, exited)
			return
		}
	} else if r.status.State != model.StateCrashed {
		return // stopped while starting
	}
	if att != nil {
		att.close() // after the final status: the client reads it when the output ends
	}
	release()
	r.awaitRemoval()
}

// awaitRemoval keeps a crashed dyno's status until the manifold replaces
// the dyno (and deletes its assignment) or the agent stops.
func (r *runner) awaitRemoval() {
	<-r.stopCh
	if r.removing() {
		r.deleteStatus()
	}
}

// prepare gets what the dyno needs before it can start: its slug on this
// host, a port if it is web, a user of its own. giveBack returns the port
// and the user.
func (r *runner) prepare(ctx context.Context) (spec runtime.Spec, quotaMB int, giveBack func(), err error) {
	as := r.as
	fetchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.stopCh:
			cancel()
		case <-fetchCtx.Done():
		}
	}()
	slugDir, err := r.a.slugs.Dir(fetchCtx, as.Slug)
	if err != nil {
		return spec, 0, nil, err
	}
	var held []func()
	giveBack = func() {
		for _, f := range held {
			f()
		}
	}
	port := 0
	if as.Type == "web" {
		if port, err = r.a.ports.Get(); err != nil {
			return spec, 0, nil, err
		}
		held = append(held, func() { r.a.ports.Put(port) })
	}
	uid, err := r.a.uids.Get()
	if err != nil {
		giveBack()
		return spec, 0, nil, err
	}
	held = append(held, func() { r.a.uids.Put(uid) })
	size, err := model.LookupSize(as.Size)
	if err != nil {
		size, _ = model.LookupSize(model.DefaultSize)
	}
	out := newLineWriter(func(line string) {
		r.a.cfg.Logs.Publish(as.AppID, model.LogLine{Time: r.a.cfg.Now(), Source: model.SourceApp, Dyno: as.Name, Message: line})
	})
	spec = runtime.Spec{
		ID:       as.ID,
		Hostname: as.Name,
		Command:  as.Command,
		Env:      r.env(port),
		SlugDir:  slugDir,
		WorkDir:  filepath.Join(r.a.cfg.DataDir, "dynos", as.ID),
		Port:     port,
		UID:      uid,
		GID:      uid,
		// The shared slug group lets the dyno change its /app files.
		AdditionalGroups: []int{r.a.cfg.SlugGID},
		// The hard limit is twice the quota: R14 between, R15 at the limit.
		MemoryMB:  2 * size.MemoryMB,
		CPUShares: size.CPUShares,
		PidsLimit: r.a.cfg.PidsLimit,
		Stdout:    out,
		Stderr:    out,
		// A FIFO, not a pipe, so that the dyno outlives the agent (adopt.go).
		OutputFIFO: r.outputFIFO(),
	}
	return spec, size.MemoryMB, giveBack, nil
}

// awaitUp waits until the dyno is up: at once for a process that is not
// web, once PORT accepts a connection for web. It reports whether the dyno
// is up and running; if not, it has already crashed or been stopped.
func (r *runner) awaitUp(dyno runtime.Dyno, port int, exited <-chan runtime.Result) bool {
	if port == 0 {
		r.setState(model.StateUp)
		return true
	}
	// A dyno with a network of its own is reached at its own address; one
	// on the host's network at the host's.
	host := dyno.Addr()
	if host == "127.0.0.1" || r.a.cfg.PublishPorts {
		host = r.a.cfg.Address // published there (runtime.NetworkConfig.Publish)
	}
	r.status.Endpoint = net.JoinHostPort(host, strconv.Itoa(port))
	up := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if path := r.as.Env[HealthCheckVar]; path != "" {
		go waitForHealthy(ctx, net.JoinHostPort(dyno.Addr(), strconv.Itoa(port)), path, up)
	} else {
		go waitForPort(ctx, net.JoinHostPort(dyno.Addr(), strconv.Itoa(port)), up)
	}
	boot := time.NewTimer(r.a.cfg.BootTimeout)
	defer boot.Stop()
	select {
	case <-up:
		r.setState(model.StateUp)
		return true
	case res := <-exited:
		r.crashed(res)
	case <-boot.C:
		if path := r.as.Env[HealthCheckVar]; path != "" {
			r.logDyno("Error R10 (Boot timeout) -> Web process did not answer its health check %s within %d seconds of launch", path, int(r.a.cfg.BootTimeout.Seconds()))
		} else {
			r.logDyno("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within %d seconds of launch", int(r.a.cfg.BootTimeout.Seconds()))
		}
		r.logDyno("Stopping process with SIGKILL")
		dyno.Signal(syscall.SIGKILL)
		r.crashed(<-exited)
	case <-r.stopCh:
		r.stopDyno(dyno, exited)
	}
	return false
}

// failStart reports a dyno that could not even start as crashed.
func (r *runner) failStart(err error) {
	r.a.log.Warn("start dyno", "dyno", r.as.Name, "id", r.as.ID, "err", err)
	var sum *checksumError
	if errors.As(err, &sum) {
		r.logDyno("Error R17 (Checksum error) -> Checksum does not match expected value. Expected: %s Actual: %s", sum.want, sum.got)
	} else {
		r.logDyno("Error R99 (Platform error) -> Failed to start the dyno: %v", err)
	}
	r.setState(model.StateCrashed)
	r.awaitRemoval()
}

func (r *runner) crashed(res runtime.Result) {
	if res.OOMKilled {
		r.logDyno("Error R15 (Memory quota vastly exceeded)")
		r.logDyno("Stopping process with SIGKILL")
	}
	r.logDyno("Process exited with status %d", res.ExitStatus)
	status := res.ExitStatus
	r.status.ExitStatus = &status
	r.setState(model.StateCrashed)
}

// stopDyno is Heroku's shutdown: out of the routers first, a moment for
// them to notice and for requests under way to finish, then SIGTERM to
// every process, StopTimeout of grace, then SIGKILL.
func (r *runner) stopDyno(dyno runtime.Dyno, exited <-chan runtime.Result) {
	if r.leftRunning() {
		r.leave()
		return
	}
	if r.isFenced() {
		r.fenceStop(dyno, exited)
		return
	}
	prev, routed := r.status.State, r.status.Endpoint != ""
	// "down" at once, so that no router sends it more requests nor waits
	// for it; the log tells the change when the process has ended.
	r.status.State, r.status.Endpoint, r.status.UpdatedAt = model.StateDown, "", r.a.cfg.Now()
	r.writeStatus()
	if routed {
		drain := time.NewTimer(r.a.cfg.DrainDelay)
		select {
		case <-drain.C:
		case res := <-exited:
			drain.Stop()
			r.ended(prev, res)
			return
		}
	}
	r.logDyno("Stopping all processes with SIGTERM")
	dyno.Signal(syscall.SIGTERM)
	grace := time.NewTimer(r.a.cfg.StopTimeout)
	defer grace.Stop()
	var res runtime.Result
	select {
	case res = <-exited:
	case <-grace.C:
		r.logDyno("Error R12 (Exit timeout) -> At least one process failed to exit within %d seconds of SIGTERM", int(r.a.cfg.StopTimeout.Seconds()))
		r.logDyno("Stopping remaining processes with SIGKILL")
		dyno.Signal(syscall.SIGKILL)
		res = <-exited
	}
	r.ended(prev, res)
}

// ended records a stopped dyno's exit; its status goes with its assignment.
func (r *runner) ended(prev string, res runtime.Result) {
	r.logDyno("Process exited with status %d", res.ExitStatus)
	r.logDyno("State changed from %s to %s", prev, model.StateDown)
	if r.removing() {
		r.deleteStatus()
		return
	}
	status := res.ExitStatus
	r.status.ExitStatus = &status
	r.writeStatus()
}

// env is the dyno's environment: config vars, then what the platform sets.
func (r *runner) env(port int) []string {
	keys := make([]string, 0, len(r.as.Env))
	for k := range r.as.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+6)
	platform := map[string]bool{"DYNO": true, "PORT": true, "HOME": true}
	for _, k := range keys {
		if !platform[k] {
			env = append(env, k+"="+r.as.Env[k])
		}
	}
	if _, ok := r.as.Env["PATH"]; !ok {
		env = append(env, "PATH=/app/bin:/usr/local/bin:/usr/bin:/bin")
	}
	env = append(env, "DYNO="+r.as.Name, "HOME=/app", "PS1=\\[\\033[01;34m\\]\\w\\[\\033[00m\\] \\[\\033[01;32m\\]$ \\[\\033[00m\\]")
	if port != 0 {
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	return env
}

// waitForPort closes up once addr accepts a TCP connection.
func waitForPort(ctx context.Context, addr string, up chan<- struct{}) {
	d := net.Dialer{Timeout: time.Second}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			close(up)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
