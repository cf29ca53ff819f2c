package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/scheduler"
	"github.com/dyno-platform/dyno/internal/store"
)

// Scheduled jobs (Heroku Scheduler, plus cron): the API writes the
// scheduler-jobs bucket; the schedulers (package scheduler) claim and
// record runs; the API reads them back.

const (
	// maxJobsPerApp bounds the jobs of one app.
	maxJobsPerApp = 50
	// maxRunsShown bounds the runs listed, newest first.
	maxRunsShown = 100
	// maxJobCommand bounds a job's command line.
	maxJobCommand = 4096
)

type schedulerJobJSON struct {
	ID           string            `json:"id"`
	App          ref               `json:"app"`
	Command      string            `json:"command"`
	Schedule     string            `json:"schedule"` // in words
	Every        *string           `json:"every"`
	At           *string           `json:"at"`
	Cron         string            `json:"cron"`
	DynoSize     string            `json:"dyno_size"`
	AllowOverlap bool              `json:"allow_overlap"`
	NextDueAt    *string           `json:"next_due_at"`
	LastRun      *schedulerRunJSON `json:"last_run"`
	CreatedAt    string            `json:"created_at"`
	UpdatedAt    string            `json:"updated_at"`
}

type schedulerRunJSON struct {
	ID  string `json:"id"`
	Job struct {
		ID string `json:"id"`
	} `json:"job"`
	DueAt      string  `json:"due_at"`
	State      string  `json:"state"`
	Dyno       *ref    `json:"dyno"`
	ClaimedBy  string  `json:"claimed_by"`
	StartedAt  *string `json:"started_at"`
	EndedAt    *string `json:"ended_at"`
	ExitStatus *int    `json:"exit_status"`
	Error      *string `json:"error"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func runJSON(r model.SchedulerRun) *schedulerRunJSON {
	out := &schedulerRunJSON{
		ID: fmt.Sprintf("%s.%d", r.JobID, r.DueAt.Unix()), DueAt: r.DueAt.UTC().Format(timeFormat), State: r.State,
		ClaimedBy: r.ClaimedBy, StartedAt: optTime(r.StartedAt), EndedAt: optTime(r.EndedAt), ExitStatus: r.ExitStatus,
		Error: optString(r.Error),
	}
	out.Job.ID = r.JobID
	if r.DynoName != "" {
		out.Dyno = &ref{ID: r.DynoID, Name: r.DynoName}
	}
	return out
}

func (s *Server) jobJSON(app model.App, j model.SchedulerJob, last *model.SchedulerRun) schedulerJobJSON {
	out := schedulerJobJSON{
		ID: j.ID, App: ref{ID: app.ID, Name: app.Name}, Command: j.Command,
		Schedule: scheduler.Describe(j.Every, j.At, j.Cron), Every: optString(j.Every), At: optString(j.At), Cron: j.Cron,
		DynoSize: j.Size, AllowOverlap: j.AllowOverlap,
		CreatedAt: j.CreatedAt.UTC().Format(timeFormat), UpdatedAt: j.UpdatedAt.UTC().Format(timeFormat),
	}
	if out.DynoSize == "" {
		out.DynoSize = model.DefaultSize
	}
	if sched, err := scheduler.ParseCron(j.Cron); err == nil {
		out.NextDueAt = optTime(sched.Next(s.schedulerNow()))
	}
	if last != nil {
		out.LastRun = runJSON(*last)
	}
	return out
}

func (s *Server) schedulerNow() time.Time {
	if s.cfg.SchedulerNow != nil {
		return s.cfg.SchedulerNow()
	}
	return s.cfg.Now()
}

// appJobs lists an app's jobs, oldest first.
func (s *Server) appJobs(ctx context.Context, appID string) ([]model.SchedulerJob, error) {
	entries, err := s.st.SchedulerJobs.List(ctx, appID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]model.SchedulerJob, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.SchedulerJob) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// runsOf lists runs under a key prefix (an app's or a job's), newest first.
func (s *Server) runsOf(ctx context.Context, prefix string) ([]model.SchedulerRun, error) {
	entries, err := s.st.SchedulerRuns.List(ctx, prefix+".>")
	if err != nil {
		return nil, err
	}
	out := make([]model.SchedulerRun, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.SchedulerRun) int { return b.DueAt.Compare(a.DueAt) })
	return out, nil
}

// findJob finds a job of the app by its ID or a unique prefix of it (the
// CLI shows eight characters).
func (s *Server) findJob(r *http.Request) (model.App, model.SchedulerJob, error) {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return model.App{}, model.SchedulerJob{}, err
	}
	ref := strings.ToLower(r.PathValue("id"))
	if len(ref) >= 36 {
		j, _, err := s.st.SchedulerJobs.Get(r.Context(), model.SchedulerJobKey(app.ID, ref))
		if errors.Is(err, store.ErrNotFound) {
			return app, j, notFound("Couldn't find that job: see `dyno scheduler` for the app's jobs.")
		}
		return app, j, err
	}
	jobs, err := s.appJobs(r.Context(), app.ID)
	if err != nil {
		return app, model.SchedulerJob{}, err
	}
	var found []model.SchedulerJob
	for _, j := range jobs {
		if len(ref) >= 4 && strings.HasPrefix(j.ID, ref) {
			found = append(found, j)
		}
	}
	switch len(found) {
	case 0:
		return app, model.SchedulerJob{}, notFound("Couldn't find that job: see `dyno scheduler` for the app's jobs.")
	case 1:
		return app, found[0], nil
	}
	return app, model.SchedulerJob{}, invalid("%q is the start of %d jobs' IDs: give more of it.", ref, len(found))
}

func (s *Server) listSchedulerJobs(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	jobs, err := s.appJobs(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]schedulerJobJSON, 0, len(jobs))
	if len(jobs) > 0 {
		runs, err := s.runsOf(r.Context(), app.ID)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			var last *model.SchedulerRun
			if i := slices.IndexFunc(runs, func(r model.SchedulerRun) bool { return r.JobID == j.ID }); i >= 0 {
				last = &runs[i]
			}
			out = append(out, s.jobJSON(app, j, last))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSchedulerJob(w http.ResponseWriter, r *http.Request) error {
	app, j, err := s.findJob(r)
	if err != nil {
		return err
	}
	runs, err := s.runsOf(r.Context(), model.SchedulerJobKey(app.ID, j.ID))
	if err != nil {
		return err
	}
	var last *model.SchedulerRun
	if len(runs) > 0 {
		last = &runs[0]
	}
	return writeJSON(w, http.StatusOK, s.jobJSON(app, j, last))
}

// createSchedulerJobBody is POST /apps/{app}/scheduler/jobs.
type createSchedulerJobBody struct {
	Command      string `json:"command"`
	Every        string `json:"every"` // 10m, 1h, 1d
	At           string `json:"at"`    // HH:MM or :MM
	Cron         string `json:"cron"`
	Size         string `json:"size"`
	DynoSize     string `json:"dyno_size"`
	AllowOverlap bool   `json:"allow_overlap"`
}

func (s *Server) createSchedulerJob(w http.ResponseWriter, r *http.Request) error {
	var body createSchedulerJobBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	body.Command = strings.TrimSpace(body.Command)
	switch {
	case body.Command == "":
		return invalid("No command given: say what the job runs, such as `dyno scheduler:add --every 1h -a APP bin/cleanup`.")
	case len(body.Command) > maxJobCommand:
		return invalid("The command is longer than %d bytes: put it in a script in the app.", maxJobCommand)
	}
	now := s.schedulerNow().UTC()
	expr, _, err := scheduler.Spec{Every: body.Every, At: body.At, Cron: body.Cron}.Resolve(now)
	if err != nil {
		return invalid("%s", upperFirst(err.Error()))
	}
	size := body.Size
	if size == "" {
		size = body.DynoSize
	}
	if size != "" {
		sz, err := model.LookupSize(size)
		if err != nil {
			return invalid("%s", upperFirst(err.Error()))
		}
		size = sz.Name
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	jobs, err := s.appJobs(r.Context(), app.ID)
	if err != nil {
		return err
	}
	if len(jobs) >= maxJobsPerApp {
		return invalid("An app has at most %d scheduled jobs: remove one first (scheduler:remove).", maxJobsPerApp)
	}
	j := model.SchedulerJob{
		ID: newID(), AppID: app.ID, Command: body.Command, Every: strings.ToLower(strings.TrimSpace(body.Every)),
		At: strings.TrimSpace(body.At), Cron: expr, Size: size, AllowOverlap: body.AllowOverlap, CreatedAt: now, UpdatedAt: now,
	}
	if _, err := s.st.SchedulerJobs.Create(r.Context(), model.SchedulerJobKey(app.ID, j.ID), j); err != nil {
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Add scheduled job %s (%s): `%s` by user %s", j.ID[:8], scheduler.Describe(j.Every, j.At, j.Cron), j.Command, actor(r.Context())))
	return writeJSON(w, http.StatusCreated, s.jobJSON(app, j, nil))
}

func (s *Server) deleteSchedulerJob(w http.ResponseWriter, r *http.Request) error {
	app, j, err := s.findJob(r)
	if err != nil {
		return err
	}
	if err := s.st.SchedulerJobs.Delete(r.Context(), model.SchedulerJobKey(app.ID, j.ID), 0); err != nil {
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Remove scheduled job %s (`%s`) by user %s", j.ID[:min(8, len(j.ID))], j.Command, actor(r.Context())))
	return writeJSON(w, http.StatusOK, s.jobJSON(app, j, nil))
}

func (s *Server) listSchedulerRuns(w http.ResponseWriter, r *http.Request) error {
	app, j, err := s.findJob(r)
	if err != nil {
		return err
	}
	runs, err := s.runsOf(r.Context(), model.SchedulerJobKey(app.ID, j.ID))
	if err != nil {
		return err
	}
	if len(runs) > maxRunsShown {
		runs = runs[:maxRunsShown]
	}
	out := make([]*schedulerRunJSON, len(runs))
	for i, run := range runs {
		out[i] = runJSON(run)
	}
	return writeJSON(w, http.StatusOK, out)
}

// deleteAppJobs removes a deleted app's jobs; their runs expire with the
// runs bucket's TTL.
func (s *Server) deleteAppJobs(ctx context.Context, appID string) {
	jobs, err := s.st.SchedulerJobs.List(ctx, appID+".>")
	if err != nil {
		s.log.Error("list scheduled jobs of deleted app", "app", appID, "err", err)
		return
	}
	for _, e := range jobs {
		s.undo("scheduled job", s.st.SchedulerJobs.Delete(ctx, e.Key, 0))
	}
}

// SchedulerLauncher starts scheduled jobs' runs as one-off dynos
// scheduler.N (StartOneOff) and reads their ends from the store.
func (s *Server) SchedulerLauncher() scheduler.Launcher { return oneOffLauncher{s} }

type oneOffLauncher struct{ s *Server }

func (l oneOffLauncher) Launch(ctx context.Context, req scheduler.LaunchRequest) (scheduler.Dyno, error) {
	o, err := l.s.StartOneOff(ctx, req.AppID, OneOffRequest{Command: req.Command, Size: req.Size, Type: req.NamePrefix})
	if err != nil {
		return scheduler.Dyno{}, err
	}
	return scheduler.Dyno{ID: o.ID, Name: o.Name}, nil
}

// Exited reads the dyno's status (kept a few minutes after a one-off ends)
// and, without one, its request (there until the manifold is done with it).
func (l oneOffLauncher) Exited(ctx context.Context, appID, dynoID string) (int, bool, error) {
	key := model.StatusKey(appID, dynoID)
	st, _, err := l.s.st.Statuses.Get(ctx, key)
	switch {
	case err == nil:
		if !model.OneOffEnded(st) {
			return 0, false, nil
		}
		if st.ExitStatus == nil {
			return -1, true, nil
		}
		return *st.ExitStatus, true, nil
	case !errors.Is(err, store.ErrNotFound):
		return 0, false, err
	}
	if _, _, err := l.s.st.OneOffs.Get(ctx, key); err == nil {
		return 0, false, nil // waiting for a host
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, false, err
	}
	return -1, true, nil
}
