package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
)

// Agent restarts without killing dynos (Config.KeepDynos): a stopping
// agent leaves its dynos running (leaveAll), and a starting one adopts
// those that still have an assignment (adoptOrCleanup) and cleans up the
// rest. What a dyno needs from the agent that outlives the agent is kept
// on disk: its output goes through a FIFO in its work dir (runtime's
// adopt.go), and metaFile records its port, user and start.
//
// Lost in the gap between two agents: nothing of the output (it waits in
// the FIFO, up to 1 MiB, then the dyno's writes block); the exit status
// of a dyno that ends after the restart (runtime.ExitStatusUnknown); and
// memory checks (R14) until the new agent samples again. Usage: a stopping
// agent closes the run's usage at its stop and the new one starts a new
// run at adoption, so the gap is not billed (a SIGKILLed agent's dynos are
// billed up to their last checkpoint).

// Adopter is a runtime whose dynos can outlive the agent;
// runtime.ContainerRuntime is one.
type Adopter interface {
	Running() []string
	Adopt(ctx context.Context, spec runtime.Spec) (runtime.Dyno, error)
	CleanupExcept(ctx context.Context, keep map[string]bool) error
}

// dynoMeta is what a new agent needs to adopt a dyno, in its work dir.
type dynoMeta struct {
	ID        string    `json:"id"`
	Port      int       `json:"port,omitempty"`
	UID       int       `json:"uid"`
	SlugDir   string    `json:"slug_dir"`
	StartedAt time.Time `json:"started_at"`
}

const metaFile = "dyno.json"

func (a *Agent) workDir(id string) string { return filepath.Join(a.cfg.DataDir, "dynos", id) }

// outputFIFO is the dyno's output FIFO when the agent keeps its dynos.
func (r *runner) outputFIFO() string {
	if !r.a.cfg.KeepDynos {
		return ""
	}
	return filepath.Join(r.a.workDir(r.as.ID), "output.fifo")
}

// saveMeta records a started dyno for the next agent.
func (r *runner) saveMeta(spec runtime.Spec) {
	if !r.a.cfg.KeepDynos {
		return
	}
	b, _ := json.Marshal(dynoMeta{ID: spec.ID, Port: spec.Port, UID: spec.UID, SlugDir: spec.SlugDir, StartedAt: r.status.StartedAt})
	if err := os.WriteFile(filepath.Join(spec.WorkDir, metaFile), b, 0o600); err != nil {
		r.a.log.Warn("record dyno for adoption: a restart of the agent will stop it", "dyno", r.as.Name, "err", err)
	}
}

func (r *runner) leftRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.left
}

// leave lets go of a running dyno: its usage closes now, the process runs on.
func (r *runner) leave() {
	if r.usage != nil {
		r.usage.end(r.a.cfg.Now())
	}
}

// leaveAll lets every dyno run on and waits for the runners to let go.
func (a *Agent) leaveAll() {
	a.mu.Lock()
	for _, r := range a.runners {
		r.mu.Lock()
		r.left = true
		r.mu.Unlock()
		r.stop(false)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// adoptOrCleanup adopts the running dynos that still have an assignment
// on this host and removes everything else an earlier run left: other
// containers, their networks and work dirs.
func (a *Agent) adoptOrCleanup(ctx context.Context) {
	keep := map[string]bool{}
	ad, ok := a.cfg.Runtime.(Adopter)
	var err error
	if ok && a.cfg.KeepDynos {
		a.adoptAll(ctx, ad, keep)
		err = ad.CleanupExcept(ctx, keep)
	} else {
		err = a.cfg.Runtime.Cleanup(ctx)
	}
	if err != nil {
		a.log.Warn("cleaning up dynos of an earlier run", "err", err)
	}
	// Writable layers of dynos that no longer run.
	old, _ := os.ReadDir(filepath.Join(a.cfg.DataDir, "dynos"))
	for _, d := range old {
		if !keep[d.Name()] {
			os.RemoveAll(filepath.Join(a.cfg.DataDir, "dynos", d.Name()))
		}
	}
}

func (a *Agent) adoptAll(ctx context.Context, ad Adopter, keep map[string]bool) {
	running := ad.Running()
	if len(running) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	assigns, err := a.st.Assignments.List(lctx, a.cfg.HostID+".>")
	cancel()
	if err != nil {
		a.log.Warn("list assignments to adopt dynos: stopping them instead", "err", err)
		return
	}
	byID := map[string]model.Assignment{}
	for _, e := range assigns {
		byID[e.Value.ID] = e.Value
	}
	for _, id := range running {
		as, ok := byID[id]
		if !ok {
			continue
		}
		if err := a.adopt(ctx, ad, as); err != nil {
			a.log.Warn("adopt dyno: stopping it", "dyno", as.Name, "id", id, "err", err)
			continue
		}
		keep[id] = true
	}
	if len(keep) > 0 {
		a.log.Info("adopted the dynos an earlier run of the agent left running", "dynos", len(keep))
	}
}

// adopt takes over one running dyno and starts its runner.
func (a *Agent) adopt(ctx context.Context, ad Adopter, as model.Assignment) error {
	workDir := a.workDir(as.ID)
	b, err := os.ReadFile(filepath.Join(workDir, metaFile))
	if err != nil {
		return fmt.Errorf("read its record: %w", err)
	}
	var m dynoMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("read its record: %w", err)
	}
	if m.Port != 0 && !a.ports.take(m.Port) || !a.uids.take(m.UID) {
		return fmt.Errorf("its port %d or user %d is taken", m.Port, m.UID)
	}
	giveBack := func() {
		if m.Port != 0 {
			a.ports.Put(m.Port)
		}
		a.uids.Put(m.UID)
	}
	r := newRunner(a, as)
	dyno, err := ad.Adopt(ctx, runtime.Spec{
		ID: as.ID, Hostname: as.Name, Command: as.Command, SlugDir: m.SlugDir, WorkDir: workDir,
		Port: m.Port, UID: m.UID, GID: m.UID, Stdout: r.appOutput(), OutputFIFO: r.outputFIFO(),
	})
	if err != nil {
		giveBack()
		return err
	}
	a.mu.Lock()
	a.runners[as.ID] = r
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		r.runAdopted(dyno, m, giveBack)
		a.mu.Lock()
		delete(a.runners, as.ID)
		a.mu.Unlock()
	}()
	return nil
}

// appOutput turns the dyno's output into app log lines.
func (r *runner) appOutput() *lineWriter {
	return newLineWriter(func(line string) {
		r.a.cfg.Logs.Publish(r.as.AppID, model.LogLine{Time: r.a.cfg.Now(), Source: model.SourceApp, Dyno: r.as.Name, Message: line})
	})
}

// take marks n as held if nobody holds it.
func (p *numberPool) take(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[n] {
		return false
	}
	p.used[n] = true
	return true
}

// runAdopted is run for a dyno adopted already running: it is up again
// once its port answers, and it is watched, stopped and cleaned up as any.
func (r *runner) runAdopted(dyno runtime.Dyno, m dynoMeta, giveBack func()) {
	as := r.as
	r.status = model.DynoStatus{
		ID: as.ID, HostID: r.a.cfg.HostID, AppID: as.AppID, AppName: as.AppName, Type: as.Type, Name: as.Name,
		Release: as.Release, Size: as.Size, Command: as.Command, StartedAt: m.StartedAt,
	}
	release := sync.OnceFunc(func() {
		if r.leftRunning() {
			return
		}
		if err := dyno.Close(); err != nil {
			r.a.log.Warn("clean up dyno", "dyno", as.Name, "id", as.ID, "err", err)
		}
		giveBack()
	})
	defer release()
	usage := r.startUsage(r.a.cfg.Now())
	r.usage = usage
	defer usage.wait()
	exited := make(chan runtime.Result, 1)
	waited := make(chan struct{})
	go func() {
		res := dyno.Wait()
		usage.end(r.a.cfg.Now())
		close(waited)
		exited <- res
	}()
	size, err := model.LookupSize(as.Size)
	if err != nil {
		size, _ = model.LookupSize(model.DefaultSize)
	}
	go newMonitor(r, size.MemoryMB).run(dyno, waited)
	if r.awaitUp(dyno, m.Port, exited) {
		select {
		case res := <-exited:
			if as.OneOff {
				r.oneOffEnded(res)
			} else {
				r.crashed(res)
			}
		case <-r.stopCh:
			r.stopDyno(dyno, exited)
			return
		}
	} else if r.status.State != model.StateCrashed {
		return
	}
	release()
	r.awaitRemoval()
}
