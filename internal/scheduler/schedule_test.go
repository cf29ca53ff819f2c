package scheduler

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// nextN lists the first n due times after from.
func nextN(s Schedule, from time.Time, n int) []string {
	var out []string
	for d := s.Next(from); len(out) < n && !d.IsZero(); d = s.Next(d) {
		out = append(out, d.Format("2006-01-02 15:04 Mon"))
	}
	return out
}

func TestParseCron(t *testing.T) {
	// 2026-03-02 is a Monday.
	from := utc("2026-03-02 10:07")
	tests := []struct {
		name, expr string
		want       []string
	}{
		{"every minute", "* * * * *", []string{"2026-03-02 10:08 Mon", "2026-03-02 10:09 Mon", "2026-03-02 10:10 Mon"}},
		{"step", "*/5 * * * *", []string{"2026-03-02 10:10 Mon", "2026-03-02 10:15 Mon", "2026-03-02 10:20 Mon"}},
		{"range with step", "10-20/5 * * * *", []string{"2026-03-02 10:10 Mon", "2026-03-02 10:15 Mon", "2026-03-02 10:20 Mon", "2026-03-02 11:10 Mon"}},
		{"single value", "30 4 * * *", []string{"2026-03-03 04:30 Tue", "2026-03-04 04:30 Wed"}},
		{"list", "0,15,45 10 * * *", []string{"2026-03-02 10:15 Mon", "2026-03-02 10:45 Mon", "2026-03-03 10:00 Tue"}},
		{"hour range", "0 9-11 * * *", []string{"2026-03-02 11:00 Mon", "2026-03-03 09:00 Tue"}},
		{"weekday range", "0 12 * * 1-5", []string{"2026-03-02 12:00 Mon", "2026-03-03 12:00 Tue", "2026-03-04 12:00 Wed", "2026-03-05 12:00 Thu", "2026-03-06 12:00 Fri", "2026-03-09 12:00 Mon"}},
		{"day names", "0 8 * * sat,SUN", []string{"2026-03-07 08:00 Sat", "2026-03-08 08:00 Sun", "2026-03-14 08:00 Sat"}},
		{"month names", "0 0 1 jan,JUL *", []string{"2026-07-01 00:00 Wed", "2027-01-01 00:00 Fri"}},
		{"day of month", "0 6 15 * *", []string{"2026-03-15 06:00 Sun", "2026-04-15 06:00 Wed"}},
		// Both day fields restricted: either matches (Vixie cron).
		{"dom or dow", "0 0 13 * 5", []string{"2026-03-06 00:00 Fri", "2026-03-13 00:00 Fri", "2026-03-20 00:00 Fri", "2026-03-27 00:00 Fri", "2026-04-03 00:00 Fri", "2026-04-10 00:00 Fri", "2026-04-13 00:00 Mon"}},
		// One day field is *: the other alone decides.
		{"dom only", "0 0 13 * *", []string{"2026-03-13 00:00 Fri", "2026-04-13 00:00 Mon"}},
		{"dow only", "0 0 * * 0", []string{"2026-03-08 00:00 Sun", "2026-03-15 00:00 Sun"}},
		{"shorthand", "@daily", []string{"2026-03-03 00:00 Tue", "2026-03-04 00:00 Wed"}},
		{"extra spaces", "  0   0 *  * * ", []string{"2026-03-03 00:00 Tue"}},
		{"leap day", "0 0 29 2 *", []string{"2028-02-29 00:00 Tue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCron(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got := nextN(s, from, len(tt.want))
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("%q from %s:\n got %v\nwant %v", tt.expr, from, got, tt.want)
			}
		})
	}
}

func TestParseCronUTC(t *testing.T) {
	s, err := ParseCron("0 9 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// A time in another zone is the same instant: 09:00 UTC whatever zone
	// the caller or the machine is in.
	tokyo := time.FixedZone("JST", 9*3600)
	got := s.Next(time.Date(2026, 3, 2, 17, 0, 0, 0, tokyo)) // 08:00 UTC
	if want := utc("2026-03-02 09:00"); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("got %v, want %v in UTC", got, want)
	}
}

func TestParseCronErrors(t *testing.T) {
	for _, expr := range []string{
		"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 8", "a * * * *", "5-1 * * * *", "*/0 * * * *", "@every 5m", "TZ=Europe/Paris 0 0 * * *",
		"CRON_TZ=UTC 0 0 * * *", "@fortnightly",
	} {
		if _, err := ParseCron(expr); err == nil {
			t.Errorf("ParseCron(%q) succeeded; want an error", expr)
		}
	}
}

func TestSpecResolve(t *testing.T) {
	now := utc("2026-03-02 10:07")
	tests := []struct {
		name      string
		spec      Spec
		cron      string
		next      []string
		describes string
	}{
		{"10 minutes", Spec{Every: "10m"}, "*/10 * * * *", []string{"2026-03-02 10:10 Mon", "2026-03-02 10:20 Mon"}, "every 10 minutes"},
		{"hourly", Spec{Every: "1h"}, "0 * * * *", []string{"2026-03-02 11:00 Mon", "2026-03-02 12:00 Mon"}, "every hour at :00"},
		{"hourly at :MM", Spec{Every: "1h", At: ":30"}, "30 * * * *", []string{"2026-03-02 10:30 Mon", "2026-03-02 11:30 Mon"}, "every hour at :30"},
		{"hourly takes the minute of HH:MM", Spec{Every: "1h", At: "17:05"}, "5 * * * *", []string{"2026-03-02 11:05 Mon"}, "every hour at :05"},
		{"daily", Spec{Every: "1d"}, "0 0 * * *", []string{"2026-03-03 00:00 Tue"}, "every day at 00:00 UTC"},
		{"daily at", Spec{Every: "1d", At: "09:30"}, "30 9 * * *", []string{"2026-03-03 09:30 Tue", "2026-03-04 09:30 Wed"}, "every day at 09:30 UTC"},
		{"daily at, one-digit hour", Spec{Every: "1d", At: "9:05"}, "5 9 * * *", []string{"2026-03-03 09:05 Tue"}, "every day at 09:05 UTC"},
		{"daily later today", Spec{Every: "1d", At: "23:50"}, "50 23 * * *", []string{"2026-03-02 23:50 Mon"}, "every day at 23:50 UTC"},
		{"cron", Spec{Cron: "15 */6 * * *"}, "15 */6 * * *", []string{"2026-03-02 12:15 Mon", "2026-03-02 18:15 Mon"}, "cron 15 */6 * * *"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expr, s, err := tt.spec.Resolve(now)
			if err != nil {
				t.Fatal(err)
			}
			if expr != tt.cron {
				t.Errorf("cron %q, want %q", expr, tt.cron)
			}
			if got := nextN(s, now, len(tt.next)); strings.Join(got, "|") != strings.Join(tt.next, "|") {
				t.Errorf("next %v, want %v", got, tt.next)
			}
			if got := Describe(tt.spec.Every, tt.spec.At, expr); got != tt.describes {
				t.Errorf("Describe = %q, want %q", got, tt.describes)
			}
		})
	}
}

func TestSpecResolveErrors(t *testing.T) {
	for _, sp := range []Spec{
		{},
		{Every: "5m"},
		{Every: "2h"},
		{Every: "10m", At: ":05"},
		{Every: "1h", At: "30"},
		{Every: "1h", At: ":60"},
		{Every: "1d", At: "24:00"},
		{Every: "1d", At: ":30"},
		{Every: "1d", At: "9:5"},
		{Every: "1d", Cron: "* * * * *"},
		{Cron: "* * * * *", At: "10:00"},
		{Cron: "0 0 30 2 *"}, // never due
	} {
		if _, _, err := sp.Resolve(utc("2026-03-02 10:07")); err == nil {
			t.Errorf("%+v resolved; want an error", sp)
		}
	}
}
