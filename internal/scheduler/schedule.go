package scheduler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule gives a job's due times.
type Schedule interface {
	// Next is the first due time strictly after t, in UTC; the zero time
	// if there is none within five years.
	Next(t time.Time) time.Time
}

// cronParser reads standard five-field cron (minute hour day-of-month
// month day-of-week) with names (jan, mon) and the @hourly/@daily/...
// shorthands. Day of month and day of week follow Vixie cron: when both
// are restricted, a day matching either is due.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a five-field cron expression, evaluated in UTC.
func ParseCron(expr string) (Schedule, error) {
	expr = strings.Join(strings.Fields(expr), " ")
	switch {
	case expr == "":
		return nil, errors.New("empty cron expression: give five fields, such as \"*/15 * * * *\"")
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, fmt.Errorf("cron expression %q: schedules are in UTC; remove the time zone", expr)
	case strings.HasPrefix(expr, "@every"):
		return nil, fmt.Errorf("cron expression %q: @every is not cron; use --every 10m|1h|1d or five fields", expr)
	}
	// The parser would use the machine's zone; every node must agree.
	s, err := cronParser.Parse("CRON_TZ=UTC " + expr)
	if err != nil {
		return nil, fmt.Errorf("cron expression %q: %w (want minute hour day-of-month month day-of-week, such as \"30 2 * * 1-5\")", expr, err)
	}
	return utcSchedule{s}, nil
}

type utcSchedule struct{ s cron.Schedule }

func (u utcSchedule) Next(t time.Time) time.Time {
	n := u.s.Next(t.UTC())
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Spec is a job's schedule as a user gives it: Heroku Scheduler's
// interval (Every "10m", "1h" or "1d" with At "HH:MM" or ":MM") or a cron
// expression.
type Spec struct {
	Every, At, Cron string
}

// Resolve checks a Spec and returns its effective cron expression and its
// schedule. Heroku's intervals become cron: every 10 minutes at :00, :10,
// ...; every hour at :MM (the minute of At, :00 by default); every day at
// HH:MM UTC (00:00 by default).
func (sp Spec) Resolve(now time.Time) (string, Schedule, error) {
	expr, err := sp.cron()
	if err != nil {
		return "", nil, err
	}
	s, err := ParseCron(expr)
	if err != nil {
		return "", nil, err
	}
	if s.Next(now).IsZero() {
		return "", nil, fmt.Errorf("cron expression %q is never due (such as 30 February): check the day and month", expr)
	}
	return expr, s, nil
}

func (sp Spec) cron() (string, error) {
	every := strings.ToLower(strings.TrimSpace(sp.Every))
	switch {
	case every != "" && sp.Cron != "":
		return "", errors.New("give either --every or --cron, not both")
	case every == "" && sp.Cron == "":
		return "", errors.New("give a schedule: --every 10m|1h|1d [--at HH:MM] or --cron \"EXPR\"")
	case sp.Cron != "":
		if sp.At != "" {
			return "", errors.New("--at goes with --every; put the time in the cron expression")
		}
		return strings.Join(strings.Fields(sp.Cron), " "), nil
	}
	hour, minute, hasHour, err := parseAt(sp.At)
	if err != nil {
		return "", err
	}
	switch every {
	case "10m", "10min":
		if sp.At != "" {
			return "", errors.New("--at does not go with --every 10m: such jobs run at :00, :10, :20, :30, :40 and :50")
		}
		return "*/10 * * * *", nil
	case "1h", "60m":
		return fmt.Sprintf("%d * * * *", minute), nil
	case "1d", "24h":
		if sp.At != "" && !hasHour {
			return "", fmt.Errorf("--at %q: a daily job needs a time of day, HH:MM in UTC", sp.At)
		}
		return fmt.Sprintf("%d %d * * *", minute, hour), nil
	}
	return "", fmt.Errorf("--every %q: Heroku Scheduler's intervals are 10m, 1h and 1d; use --cron for others", sp.Every)
}

// parseAt reads "HH:MM" or ":MM".
func parseAt(at string) (hour, minute int, hasHour bool, err error) {
	at = strings.TrimSpace(at)
	if at == "" {
		return 0, 0, false, nil
	}
	h, m, ok := strings.Cut(at, ":")
	bad := fmt.Errorf("--at %q: want HH:MM (UTC, such as 09:30) or :MM (such as :30)", at)
	if !ok || len(m) != 2 {
		return 0, 0, false, bad
	}
	if minute, err = strconv.Atoi(m); err != nil || minute < 0 || minute > 59 {
		return 0, 0, false, bad
	}
	if h == "" {
		return 0, minute, false, nil
	}
	if hour, err = strconv.Atoi(h); err != nil || hour < 0 || hour > 23 || len(h) > 2 {
		return 0, 0, false, bad
	}
	return hour, minute, true, nil
}

// Describe says a job's schedule in words: "every 10 minutes", "every hour
// at :30", "every day at 09:00 UTC", "cron 5 4 * * 1".
func Describe(every, at, cronExpr string) string {
	hour, minute, _, err := parseAt(at)
	if err != nil {
		hour, minute = 0, 0
	}
	switch strings.ToLower(every) {
	case "10m", "10min":
		return "every 10 minutes"
	case "1h", "60m":
		return fmt.Sprintf("every hour at :%02d", minute)
	case "1d", "24h":
		return fmt.Sprintf("every day at %02d:%02d UTC", hour, minute)
	}
	return "cron " + cronExpr
}
