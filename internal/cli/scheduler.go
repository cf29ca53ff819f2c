package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// Scheduled jobs: scheduler, scheduler:add, scheduler:remove and
// scheduler:runs. Heroku Scheduler's intervals (--every 10m|1h|1d, --at)
// plus --cron; each run is a one-off dyno scheduler.N.

func (s *session) schedulerCommands() []*cobra.Command {
	return []*cobra.Command{s.schedulerListCommand(), s.schedulerAddCommand(), s.schedulerRemoveCommand(), s.schedulerRunsCommand()}
}

// utcMinute is how due times are shown: schedules are in UTC.
const utcMinute = "2006-01-02 15:04Z"

func (s *session) schedulerListCommand() *cobra.Command {
	return s.appListCommand("scheduler", "list an app's scheduled jobs", "scheduler/jobs", func(ctx context.Context, c *client.Client, name string) error {
		jobs, err := c.SchedulerJobs(ctx, name)
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			fmt.Fprintf(s.stdout, "%s has no scheduled jobs. Add one with dyno scheduler:add -a %s --every 1h COMMAND.\n", name, name)
			return nil
		}
		fmt.Fprintln(s.stdout, "=== Scheduled jobs (UTC)")
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSchedule\tCommand\tNext due\tLast run\tResult")
		for _, j := range jobs {
			next, last, result := "-", "-", "-"
			if j.NextDueAt != nil {
				next = j.NextDueAt.UTC().Format(utcMinute)
			}
			if r := j.LastRun; r != nil {
				last = r.DueAt.UTC().Format(utcMinute)
				if r.Dyno != nil {
					last += " " + r.Dyno.Name
				}
				result = runResult(*r)
			}
			schedule := j.Schedule
			if j.AllowOverlap {
				schedule += " (overlap allowed)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortJobID(j.ID), schedule, j.Command, next, last, result)
		}
		return tw.Flush()
	})
}

func (s *session) schedulerAddCommand() *cobra.Command {
	var job client.NewSchedulerJob
	cmd := &cobra.Command{
		Use:   "scheduler:add (--every 10m|1h|1d [--at HH:MM] | --cron EXPR) COMMAND...",
		Short: "run a command on a schedule (UTC), each time as a one-off dyno scheduler.N",
		Long: "Runs COMMAND as a one-off dyno of the app's current release on a schedule, in UTC:\n" +
			"  --every 10m          at :00, :10, :20, :30, :40 and :50 of every hour\n" +
			"  --every 1h --at :MM  every hour at minute MM (:00 by default)\n" +
			"  --every 1d --at HH:MM every day at HH:MM (00:00 by default)\n" +
			"  --cron \"EXPR\"        a five-field cron expression: minute hour day-of-month month day-of-week\n" +
			"A run is skipped while the job's previous run still runs, unless --allow-overlap.\n" +
			"Flags go before COMMAND; everything from COMMAND on is the command.",
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().SetInterspersed(false)
	app := appFlag(cmd)
	cmd.Flags().StringVar(&job.Every, "every", "", "Heroku Scheduler's interval: 10m, 1h or 1d")
	cmd.Flags().StringVar(&job.At, "at", "", "with --every 1h, the minute (:MM); with --every 1d, the time of day (HH:MM, UTC)")
	cmd.Flags().StringVar(&job.Cron, "cron", "", "a five-field cron expression in UTC, such as \"*/15 * * * *\"")
	cmd.Flags().StringVarP(&job.Size, "size", "s", "", "the dyno size of each run (see GET /dyno-sizes)")
	cmd.Flags().BoolVar(&job.AllowOverlap, "allow-overlap", false, "start a run even while the previous one still runs")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		job.Command = commandLine(args)
		if job.Every == "" && job.Cron == "" {
			return errors.New("no schedule given: add --every 10m|1h|1d [--at HH:MM] or --cron \"EXPR\" before the command")
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		j, err := c.AddSchedulerJob(cmd.Context(), name, job)
		if err != nil {
			return err
		}
		next := "-"
		if j.NextDueAt != nil {
			next = j.NextDueAt.UTC().Format(utcMinute)
		}
		fmt.Fprintf(s.stdout, "Scheduled job %s on %s: %s, %s. First run %s.\n", shortJobID(j.ID), name, j.Command, j.Schedule, next)
		return nil
	}
	return cmd
}

func (s *session) schedulerRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "scheduler:remove ID", Short: "remove a scheduled job (a running run goes on)", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		j, err := c.RemoveSchedulerJob(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "Removed job %s (%s, %s) from %s.\n", shortJobID(j.ID), j.Command, j.Schedule, name)
		return nil
	}
	return cmd
}

func (s *session) schedulerRunsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "scheduler:runs ID", Short: "list a scheduled job's recent runs, newest first", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name, "scheduler", "jobs", args[0], "runs"))
		}
		runs, err := c.SchedulerRuns(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			fmt.Fprintln(s.stdout, "No runs yet.")
			return nil
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "Due (UTC)\tDyno\tStarted\tEnded\tResult")
		for _, r := range runs {
			dyno := "-"
			if r.Dyno != nil {
				dyno = r.Dyno.Name
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.DueAt.UTC().Format(utcMinute), dyno, clock(r.StartedAt), clock(r.EndedAt), runResult(r))
		}
		return tw.Flush()
	}
	return cmd
}

// runResult says how a run went: "exit 0", "missed", "skipped: still
// running", "failed to start: ...".
func runResult(r client.SchedulerRun) string {
	switch r.State {
	case "ended":
		if r.ExitStatus == nil || *r.ExitStatus < 0 {
			return "ended (exit status unknown)"
		}
		return fmt.Sprintf("exit %d", *r.ExitStatus)
	case "skipped":
		return "skipped: still running"
	case "failed":
		if r.Error != nil {
			return "failed to start: " + *r.Error
		}
		return "failed to start"
	}
	return r.State // starting, running, missed
}

func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("15:04:05Z")
}

func shortJobID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
