// Package scheduler runs scheduled jobs (Heroku Scheduler's, plus cron
// expressions) as one-off dynos scheduler.N. Every control-plane node may
// run a Scheduler: each due time of each job is claimed by creating its run
// record in the scheduler-runs bucket (a KV create, which only one node can
// win), so every due time runs exactly once across the cluster. Due times
// that passed while no scheduler ran are recorded as missed and reported in
// the app's log, never run late in a burst; a job whose previous run still
// runs is skipped unless it allows overlap.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// DynoType is the type, and name prefix, of scheduled jobs' dynos.
const DynoType = "scheduler"

// LaunchRequest is a one-off dyno to start for a run.
type LaunchRequest struct {
	AppID      string
	Command    string
	Size       string // empty: the platform's default
	NamePrefix string // "scheduler": the dyno is scheduler.N
}

// Dyno is a started one-off dyno.
type Dyno struct {
	ID   string
	Name string // scheduler.N
}

// Launcher starts one-off dynos and tells when they end. The API server's
// one-off dynos are the real one (apiserver.Server.SchedulerLauncher).
type Launcher interface {
	// Launch starts a one-off dyno of the app's current release.
	Launch(ctx context.Context, req LaunchRequest) (Dyno, error)
	// Exited returns the dyno's exit status once it has ended (ok=false
	// while it runs or waits for a host). A dyno the platform no longer
	// knows has ended: ok with status -1.
	Exited(ctx context.Context, appID, dynoID string) (status int, ok bool, err error)
}

// LogSink takes app log lines; *logplex.Logplex is one.
type LogSink interface {
	Publish(appID string, line model.LogLine)
}

// Config configures a Scheduler. Zero values pick the defaults.
type Config struct {
	// Node names this scheduler in the runs it claims (the host ID).
	Node string
	// Grace is how late a due time may be handled and still run (1 min);
	// older unhandled due times are missed.
	Grace time.Duration
	// PollInterval is how often running dynos are checked for their exit
	// status (2 s).
	PollInterval time.Duration
	// StartTimeout fails a run left "starting" this long by a scheduler
	// that stopped between claiming it and starting its dyno (1 min).
	StartTimeout time.Duration
	// Lookback bounds how far back missed runs are looked for: runs older
	// than store.SchedulerRunsTTL are gone, so one cannot tell whether
	// they happened (SchedulerRunsTTL less an hour).
	Lookback time.Duration
	// MaxMissedRecords bounds the missed runs recorded one by one after an
	// outage (100); the log line counts them all.
	MaxMissedRecords int
	Clock            Clock
	Logs             LogSink
	Logger           *slog.Logger
}

// Stats counts what a scheduler did since it started.
type Stats struct {
	Claimed int64 // due times this scheduler claimed and started
	Lost    int64 // due times another scheduler claimed first
	Missed  int64 // missed due times this scheduler recorded
	Skipped int64 // due times skipped because the previous run still ran
	Failed  int64 // claimed runs whose dyno could not start
}

// Scheduler runs the jobs of every app. Run it on as many nodes as you
// like: they share the work through the store.
type Scheduler struct {
	cfg      Config
	jobs     store.Bucket[model.SchedulerJob]
	runs     store.Bucket[model.SchedulerRun]
	launcher Launcher
	log      *slog.Logger

	claimed, lost, missed, skipped, failed atomic.Int64

	mu      sync.Mutex
	closed  bool
	cancel  context.CancelFunc
	running chan struct{} // closed when Run returns

	// Owned by Run's goroutine.
	state    map[string]*jobState // by job key
	lastDue  map[string]time.Time // latest due time with a record, by job key
	open     map[string]openRun   // runs whose dyno may still run, by run key
	revs     map[string]uint64    // latest revision seen, by run key
	nextPoll time.Time
}

type jobState struct {
	job     model.SchedulerJob
	sched   Schedule
	retryAt time.Time // after a store error, when to try again
}

type openRun struct {
	run model.SchedulerRun
	rev uint64
}

// New returns a Scheduler over the store's scheduler buckets, starting
// dynos with l.
func New(cfg Config, jobs store.Bucket[model.SchedulerJob], runs store.Bucket[model.SchedulerRun], l Launcher) *Scheduler {
	if cfg.Grace <= 0 {
		cfg.Grace = time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = time.Minute
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = store.SchedulerRunsTTL - time.Hour
	}
	if cfg.MaxMissedRecords <= 0 {
		cfg.MaxMissedRecords = 100
	}
	if cfg.Clock == nil {
		cfg.Clock = WallClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Node == "" {
		cfg.Node = "scheduler"
	}
	return &Scheduler{cfg: cfg, jobs: jobs, runs: runs, launcher: l, log: cfg.Logger.With("role", "scheduler", "node", cfg.Node)}
}

// Stats returns what this scheduler did so far.
func (s *Scheduler) Stats() Stats {
	return Stats{Claimed: s.claimed.Load(), Lost: s.lost.Load(), Missed: s.missed.Load(), Skipped: s.skipped.Load(), Failed: s.failed.Load()}
}

// Run schedules until ctx ends or Close is called. A watch that breaks
// (the store restarting) is opened again after a second.
func (s *Scheduler) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.running != nil {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.cancel = cancel
	s.running = make(chan struct{})
	s.mu.Unlock()
	defer close(s.running)

	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("scheduler lost its view of the store; starting again in 1 s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// Close stops Run and waits for it to return. It is idempotent.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel, running := s.cancel, s.running
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-running
	}
	return nil
}

// session watches both buckets and, once their current contents are in,
// handles due times and running dynos until a watch ends.
func (s *Scheduler) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.state, s.lastDue = map[string]*jobState{}, map[string]time.Time{}
	s.open, s.revs = map[string]openRun{}, map[string]uint64{}
	jobEvents, err := s.jobs.Watch(ctx, ">")
	if err != nil {
		return err
	}
	runEvents, err := s.runs.Watch(ctx, ">")
	if err != nil {
		return err
	}
	jobsReady, runsReady := false, false
	for {
		var timer <-chan time.Time
		// Acting before both views are complete could take a run pruned
		// from view for a missed one.
		if jobsReady && runsReady {
			wake := s.tick(ctx)
			timer = s.cfg.Clock.After(wake.Sub(s.now()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-jobEvents:
			if !ok {
				return errors.New("the jobs watch ended")
			}
			jobsReady = s.applyJob(ev) || jobsReady
		case ev, ok := <-runEvents:
			if !ok {
				return errors.New("the runs watch ended")
			}
			runsReady = s.applyRun(ev) || runsReady
		case <-timer:
		}
		// Take whatever else is queued before acting again.
		for drained := false; !drained; {
			select {
			case ev, ok := <-jobEvents:
				if !ok {
					return errors.New("the jobs watch ended")
				}
				jobsReady = s.applyJob(ev) || jobsReady
			case ev, ok := <-runEvents:
				if !ok {
					return errors.New("the runs watch ended")
				}
				runsReady = s.applyRun(ev) || runsReady
			default:
				drained = true
			}
		}
	}
}

func (s *Scheduler) now() time.Time { return s.cfg.Clock.Now().UTC() }

// applyJob takes a change of the jobs bucket; it reports the end of the
// initial values.
func (s *Scheduler) applyJob(ev store.Event[model.SchedulerJob]) bool {
	switch {
	case ev.Ready:
		return true
	case ev.Deleted:
		delete(s.state, ev.Key)
	default:
		sched, err := ParseCron(ev.Value.Cron)
		if err != nil {
			s.log.Error("scheduled job has a bad schedule; it will not run", "job", ev.Key, "err", err)
			delete(s.state, ev.Key)
			return false
		}
		s.state[ev.Key] = &jobState{job: ev.Value, sched: sched}
	}
	return false
}

// applyRun takes a change of the runs bucket; it reports the end of the
// initial values. Events older than what this scheduler wrote itself are
// ignored.
func (s *Scheduler) applyRun(ev store.Event[model.SchedulerRun]) bool {
	if ev.Ready {
		return true
	}
	if ev.Revision <= s.revs[ev.Key] {
		return false
	}
	s.revs[ev.Key] = ev.Revision
	if ev.Deleted {
		delete(s.open, ev.Key)
		return false
	}
	jobKey, due, err := model.ParseSchedulerRunKey(ev.Key)
	if err != nil {
		return false
	}
	s.noteDue(jobKey, due)
	s.track(ev.Key, ev.Value, ev.Revision)
	return false
}

func (s *Scheduler) noteDue(jobKey string, due time.Time) {
	if due.After(s.lastDue[jobKey]) {
		s.lastDue[jobKey] = due
	}
}

// track records a run's latest known revision and whether it is open.
func (s *Scheduler) track(key string, r model.SchedulerRun, rev uint64) {
	if rev > s.revs[key] {
		s.revs[key] = rev
	}
	if r.Open() {
		s.open[key] = openRun{run: r, rev: rev}
	} else {
		delete(s.open, key)
	}
}

// tick handles every job's due times up to now and checks running dynos;
// it returns when to look again.
func (s *Scheduler) tick(ctx context.Context) time.Time {
	now := s.now()
	wake := now.Add(time.Hour)
	if len(s.open) > 0 && !now.Before(s.nextPoll) {
		s.pollOpen(ctx, now)
		s.nextPoll = now.Add(s.cfg.PollInterval)
	}
	for key, js := range s.state {
		if ctx.Err() != nil {
			return wake
		}
		if next := s.handleJob(ctx, key, js, now); next.Before(wake) && !next.IsZero() {
			wake = next
		}
	}
	if len(s.open) > 0 && s.nextPoll.Before(wake) {
		wake = s.nextPoll
	}
	return wake
}

// handleJob records the job's missed due times, runs its latest one if it
// is within the grace, and returns the job's next due time.
func (s *Scheduler) handleJob(ctx context.Context, key string, js *jobState, now time.Time) time.Time {
	if now.Before(js.retryAt) {
		return js.retryAt
	}
	base := js.job.CreatedAt.UTC()
	if last := s.lastDue[key]; last.After(base) {
		base = last
	}
	if floor := now.Add(-s.cfg.Lookback); base.Before(floor) {
		base = floor
	}
	// The due times in (base, now]: count them all, keep the latest few.
	var dues []time.Time
	n := 0
	for d := js.sched.Next(base); !d.IsZero() && !d.After(now); d = js.sched.Next(d) {
		n++
		dues = append(dues, d)
		if len(dues) > s.cfg.MaxMissedRecords+1 {
			dues = dues[1:]
		}
	}
	if n > 0 {
		latest := dues[len(dues)-1]
		missed, nMissed := dues, n
		runLatest := now.Sub(latest) <= s.cfg.Grace
		if runLatest {
			missed, nMissed = dues[:len(dues)-1], n-1
		} else if len(missed) > s.cfg.MaxMissedRecords {
			missed = missed[1:]
		}
		ok := s.recordMissed(ctx, key, js, missed, nMissed)
		if ok && runLatest {
			ok = s.claim(ctx, key, js, latest, now)
		}
		if !ok {
			js.retryAt = now.Add(5 * time.Second)
			return js.retryAt
		}
	}
	return js.sched.Next(now)
}

// recordMissed creates a missed record for each due time, oldest first,
// and reports them in the app's log. Another scheduler racing it fails on
// the first record and stops there, so only one reports. It returns false
// after a store error.
func (s *Scheduler) recordMissed(ctx context.Context, key string, js *jobState, missed []time.Time, total int) bool {
	created := 0
	for _, d := range missed {
		rec := model.SchedulerRun{JobID: js.job.ID, AppID: js.job.AppID, DueAt: d, State: model.RunMissed, ClaimedBy: s.cfg.Node,
			Error: "no scheduler was running at the due time"}
		rev, err := s.runs.Create(ctx, model.SchedulerRunKey(js.job.AppID, js.job.ID, d), rec)
		if errors.Is(err, store.ErrExists) {
			s.noteDue(key, d) // another scheduler is recording these
			break
		}
		if err != nil {
			s.log.Error("record a missed run", "job", key, "due", d, "err", err)
			return false
		}
		s.noteDue(key, d)
		s.track(model.SchedulerRunKey(js.job.AppID, js.job.ID, d), rec, rev)
		created++
	}
	if created == 0 {
		return true
	}
	if created == len(missed) {
		created = total // the ones beyond MaxMissedRecords count too
	}
	s.missed.Add(int64(created))
	runs := "runs"
	if created == 1 {
		runs = "run"
	}
	s.appLog(js.job.AppID, fmt.Sprintf("Missed %d %s of job %s (%s) while the platform was down; the last was due at %s",
		created, runs, shortID(js.job.ID), js.job.Command, missed[len(missed)-1].Format(time.RFC3339)))
	return true
}

// claim creates the run record of due: the scheduler whose create wins
// starts the dyno (or records the run skipped, when the previous one still
// runs). It returns false after a store error.
func (s *Scheduler) claim(ctx context.Context, key string, js *jobState, due, now time.Time) bool {
	runKey := model.SchedulerRunKey(js.job.AppID, js.job.ID, due)
	rec := model.SchedulerRun{JobID: js.job.ID, AppID: js.job.AppID, DueAt: due, State: model.RunStarting, ClaimedBy: s.cfg.Node, StartedAt: now}
	var prev *model.SchedulerRun
	if !js.job.AllowOverlap {
		prev = s.openRunOf(key)
	}
	if prev != nil {
		rec.State, rec.StartedAt = model.RunSkipped, time.Time{}
		rec.Error = fmt.Sprintf("the previous run (%s) was still running", describeRun(*prev))
	}
	rev, err := s.runs.Create(ctx, runKey, rec)
	if errors.Is(err, store.ErrExists) {
		s.lost.Add(1)
		s.noteDue(key, due)
		s.log.Debug("due time claimed by another scheduler", "job", key, "due", due)
		return true
	}
	if err != nil {
		s.log.Error("claim a scheduled run", "job", key, "due", due, "err", err)
		return false
	}
	s.noteDue(key, due)
	s.track(runKey, rec, rev)
	if prev != nil {
		s.skipped.Add(1)
		s.appLog(js.job.AppID, fmt.Sprintf("Skipped job %s (%s) due at %s: its previous run %s is still running (scheduler:add --allow-overlap runs anyway)",
			shortID(js.job.ID), js.job.Command, due.Format(time.RFC3339), describeRun(*prev)))
		return true
	}
	s.claimed.Add(1)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	dyno, lerr := s.launcher.Launch(lctx, LaunchRequest{AppID: js.job.AppID, Command: js.job.Command, Size: js.job.Size, NamePrefix: DynoType})
	cancel()
	if lerr != nil {
		s.failed.Add(1)
		rec.State, rec.Error, rec.EndedAt = model.RunFailed, lerr.Error(), s.now()
		s.appLog(js.job.AppID, fmt.Sprintf("Job %s (%s) could not start: %v", shortID(js.job.ID), js.job.Command, lerr))
	} else {
		rec.State, rec.DynoID, rec.DynoName = model.RunRunning, dyno.ID, dyno.Name
		s.log.Info("started scheduled run", "job", key, "due", due, "dyno", dyno.Name)
	}
	s.update(ctx, runKey, rec, rev)
	return true
}

// openRunOf is a run of the job that may still be running.
func (s *Scheduler) openRunOf(jobKey string) *model.SchedulerRun {
	for key, o := range s.open {
		if strings.HasPrefix(key, jobKey+".") {
			r := o.run
			return &r
		}
	}
	return nil
}

// pollOpen asks about every running dyno of a run; it records the exit
// status of those that ended. Any scheduler may do it, so runs whose
// scheduler stopped still end.
func (s *Scheduler) pollOpen(ctx context.Context, now time.Time) {
	for key, o := range s.open {
		r := o.run
		switch {
		case r.State == model.RunStarting:
			if now.Sub(r.StartedAt) < s.cfg.StartTimeout {
				continue
			}
			r.State, r.EndedAt = model.RunFailed, now
			r.Error = fmt.Sprintf("the scheduler that claimed the run (%s) stopped before starting its dyno", r.ClaimedBy)
		case r.DynoID == "":
			continue
		default:
			status, ended, err := s.launcher.Exited(ctx, r.AppID, r.DynoID)
			if err != nil {
				s.log.Warn("check a scheduled run's dyno", "run", key, "dyno", r.DynoName, "err", err)
				continue
			}
			if !ended {
				continue
			}
			r.State, r.EndedAt, r.ExitStatus = model.RunEnded, now, &status
		}
		s.update(ctx, key, r, o.rev)
	}
}

// update writes a run at its known revision; losing to another scheduler
// that wrote it first is fine (its watch event brings the news).
func (s *Scheduler) update(ctx context.Context, key string, r model.SchedulerRun, rev uint64) {
	nrev, err := s.runs.Update(ctx, key, r, rev)
	switch {
	case errors.Is(err, store.ErrConflict):
		return
	case err != nil:
		s.log.Error("update a scheduled run", "run", key, "err", err)
		return
	}
	s.track(key, r, nrev)
}

func (s *Scheduler) appLog(appID, msg string) {
	s.log.Info(msg, "app", appID)
	if s.cfg.Logs != nil {
		s.cfg.Logs.Publish(appID, model.LogLine{Time: s.now(), Source: model.SourceApp, Dyno: DynoType, Message: msg})
	}
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// describeRun names a run by its dyno, or by its due time before it has one.
func describeRun(r model.SchedulerRun) string {
	if r.DynoName != "" {
		return r.DynoName
	}
	return "due at " + r.DueAt.Format(time.RFC3339)
}
