package client

import (
	"context"
	"net/http"
	"time"
)

// SchedulerJob is a scheduled job of an app: its command runs as a one-off
// dyno scheduler.N at every due time.
type SchedulerJob struct {
	ID           string        `json:"id"`
	App          Ref           `json:"app"`
	Command      string        `json:"command"`
	Schedule     string        `json:"schedule"` // in words: "every day at 09:30 UTC"
	Every        *string       `json:"every"`    // 10m, 1h, 1d; nil for cron jobs
	At           *string       `json:"at"`
	Cron         string        `json:"cron"` // the effective schedule
	DynoSize     string        `json:"dyno_size"`
	AllowOverlap bool          `json:"allow_overlap"`
	NextDueAt    *time.Time    `json:"next_due_at"`
	LastRun      *SchedulerRun `json:"last_run"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// SchedulerRun is one due time of a job: run, missed or skipped.
type SchedulerRun struct {
	ID  string `json:"id"`
	Job struct {
		ID string `json:"id"`
	} `json:"job"`
	DueAt time.Time `json:"due_at"`
	// State is starting, running, ended, failed (could not start), missed
	// (no scheduler ran at the due time) or skipped (the previous run still
	// ran).
	State      string     `json:"state"`
	Dyno       *Ref       `json:"dyno"`
	ClaimedBy  string     `json:"claimed_by"`
	StartedAt  *time.Time `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	ExitStatus *int       `json:"exit_status"`
	Error      *string    `json:"error"`
}

// NewSchedulerJob is a job to add: Every ("10m", "1h", "1d") with At
// ("HH:MM", ":MM"), or Cron (five fields, UTC).
type NewSchedulerJob struct {
	Command      string `json:"command"`
	Every        string `json:"every,omitempty"`
	At           string `json:"at,omitempty"`
	Cron         string `json:"cron,omitempty"`
	Size         string `json:"size,omitempty"`
	AllowOverlap bool   `json:"allow_overlap,omitempty"`
}

// SchedulerJobs lists an app's scheduled jobs, oldest first.
func (c *Client) SchedulerJobs(ctx context.Context, app string) ([]SchedulerJob, error) {
	return list[SchedulerJob](ctx, c, "/apps/"+esc(app)+"/scheduler/jobs", ListRange{})
}

// AddSchedulerJob adds a scheduled job.
func (c *Client) AddSchedulerJob(ctx context.Context, app string, job NewSchedulerJob) (*SchedulerJob, error) {
	var j SchedulerJob
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/scheduler/jobs", job, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// RemoveSchedulerJob removes a job given by its ID or a unique prefix.
func (c *Client) RemoveSchedulerJob(ctx context.Context, app, id string) (*SchedulerJob, error) {
	var j SchedulerJob
	if _, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app)+"/scheduler/jobs/"+esc(id), nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// SchedulerRuns lists a job's recent runs, newest first.
func (c *Client) SchedulerRuns(ctx context.Context, app, id string) ([]SchedulerRun, error) {
	var runs []SchedulerRun
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/scheduler/jobs/"+esc(id)+"/runs", nil, nil, &runs); err != nil {
		return nil, err
	}
	return runs, nil
}
