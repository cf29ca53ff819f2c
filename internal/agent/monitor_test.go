package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/runtime"
)

func TestMonitorLogsR14AndMetrics(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		env         map[string]string
		rssMB       []uint64 // one sample every 5 s
		wantR14     int
		wantMetrics int
		wantText    string
	}{
		{name: "under quota, no metrics", rssMB: []uint64{100, 200, 300}},
		{name: "over quota logs R14 every 20 s", rssMB: []uint64{600, 600, 600, 600, 600, 600}, wantR14: 2, wantText: "Process running mem=600M(117.2%)"},
		{name: "metrics on", env: map[string]string{MetricsVar: "true"}, rssMB: []uint64{100, 100, 100, 100, 100}, wantMetrics: 2,
			wantText: "sample#memory_rss=100.00MB sample#memory_cache=1.00MB sample#memory_swap=0.00MB sample#memory_pgpgin=7pages sample#memory_pgpgout=3pages sample#memory_quota=512.00MB"},
		{name: "metrics off by false", env: map[string]string{MetricsVar: "false"}, rssMB: []uint64{100, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &recordingLogs{}
			clock := now
			a := &Agent{cfg: Config{Logs: logs, Now: func() time.Time { return clock }, MetricsPeriod: 20 * time.Second}}
			r := newRunner(a, model.Assignment{ID: "d1", AppID: "app1", Name: "web.1", Env: tc.env})
			m := newMonitor(r, 512)
			for _, mb := range tc.rssMB {
				m.sample(runtime.Stats{RSSBytes: mb << 20, CacheBytes: 1 << 20, PgpgIn: 7, PgpgOut: 3, Runnable: 1}, 5*time.Second)
				clock = clock.Add(5 * time.Second)
			}
			var r14, metrics int
			found := tc.wantText == ""
			for _, l := range logs.lines {
				if l.Source != model.SourceHeroku || l.Dyno != "web.1" {
					t.Errorf("line from %s[%s], want heroku[web.1]", l.Source, l.Dyno)
				}
				if l.Message == "Error R14 (Memory quota exceeded)" {
					r14++
				}
				if strings.Contains(l.Message, "sample#load_avg_1m=1.00") {
					metrics++
				}
				found = found || strings.Contains(l.Message, tc.wantText)
			}
			if r14 != tc.wantR14 || metrics != tc.wantMetrics || !found {
				t.Errorf("R14 lines %d (want %d), metrics lines %d (want %d), %q found %v; lines: %v", r14, tc.wantR14, metrics, tc.wantMetrics, tc.wantText, found, logs.lines)
			}
		})
	}
}
