package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SchedulerJob is a scheduled job (`dyno scheduler:add`): Command runs as a
// one-off dyno scheduler.N of the app's current release at every due time
// of Cron (five-field cron, UTC). Written by the API under
// SchedulerJobKey(AppID, ID); every scheduler reads it.
type SchedulerJob struct {
	ID      string `json:"id"`
	AppID   string `json:"app_id"`
	Command string `json:"command"`
	// Every is Heroku Scheduler's interval ("10m", "1h", "1d") and At its
	// time ("HH:MM" or ":MM"), as the user gave them; both empty for a
	// job given as a cron expression. Cron is the effective schedule
	// either way.
	Every string `json:"every,omitempty"`
	At    string `json:"at,omitempty"`
	Cron  string `json:"cron"`
	Size  string `json:"size"`
	// AllowOverlap starts a run even while the previous one still runs.
	AllowOverlap bool      `json:"allow_overlap,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// SchedulerJobKey is a job's key in the scheduler-jobs bucket: an app's
// jobs share the prefix appID.
func SchedulerJobKey(appID, jobID string) string { return appID + "." + jobID }

// Run states of a scheduled job's run.
const (
	RunStarting = "starting" // claimed; the dyno is being started
	RunRunning  = "running"  // the dyno runs
	RunEnded    = "ended"    // the dyno ended; ExitStatus says how
	RunFailed   = "failed"   // the dyno could not be started (Error)
	RunMissed   = "missed"   // due while no scheduler ran: not run
	RunSkipped  = "skipped"  // the previous run still ran: not run
)

// SchedulerRun is one due time of a job. Its key, SchedulerRunKey, is
// created exactly once (a KV create), by whichever scheduler claims the due
// time first: that is what makes a run happen once across the cluster.
// The claimer, or any scheduler that sees the dyno end, updates it.
type SchedulerRun struct {
	JobID string    `json:"job_id"`
	AppID string    `json:"app_id"`
	DueAt time.Time `json:"due_at"`
	State string    `json:"state"`
	// ClaimedBy names the scheduler (node) that created the record.
	ClaimedBy string    `json:"claimed_by"`
	DynoID    string    `json:"dyno_id,omitempty"`
	DynoName  string    `json:"dyno_name,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// ExitStatus is the dyno's exit status once it ended; -1 when the
	// platform lost track of the dyno.
	ExitStatus *int `json:"exit_status,omitempty"`
	// Error says why a run failed to start or was skipped.
	Error string `json:"error,omitempty"`
}

// Open reports whether the run's dyno is (or may still be) running.
func (r SchedulerRun) Open() bool { return r.State == RunStarting || r.State == RunRunning }

// SchedulerRunKey is a run's key in the scheduler-runs bucket:
// <appID>.<jobID>.<unix seconds of the due time>.
func SchedulerRunKey(appID, jobID string, due time.Time) string {
	return fmt.Sprintf("%s.%s.%d", appID, jobID, due.Unix())
}

// ParseSchedulerRunKey splits a run key into its job key
// (SchedulerJobKey) and due time.
func ParseSchedulerRunKey(key string) (jobKey string, due time.Time, err error) {
	i := strings.LastIndexByte(key, '.')
	if i <= 0 {
		return "", time.Time{}, fmt.Errorf("scheduler run key %q: want <app>.<job>.<unix>", key)
	}
	sec, err := strconv.ParseInt(key[i+1:], 10, 64)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("scheduler run key %q: due time: %w", key, err)
	}
	return key[:i], time.Unix(sec, 0).UTC(), nil
}
