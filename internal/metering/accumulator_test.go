package metering

import (
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

var (
	nov = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	dec = nov.AddDate(0, 1, 0)
)

// seg is a segment of dyno id (web.N of app1, standard-1X unless size).
func seg(id, name, size string, start, end time.Time, index int) model.UsageSegment {
	if size == "" {
		size = "standard-1X"
	}
	typ, _, _ := cut(name)
	return model.UsageSegment{
		ID: model.UsageSegmentID(id, start, index), DynoID: id, AppID: "app1", AppName: "demo", Type: typ, Name: name,
		Size: size, Host: "h1", ProcessStart: start, Start: start, End: end, Index: index,
	}
}

func cut(name string) (string, string, bool) {
	for i := range name {
		if name[i] == '.' {
			return name[:i], name[i+1:], true
		}
	}
	return name, "", false
}

func TestAccumulatorPricing(t *testing.T) {
	h := time.Hour
	tests := []struct {
		name         string
		segs         []model.UsageSegment
		month        string
		wantSeconds  int64
		wantFreeUsed float64
		wantBillable float64
		wantCost     float64
	}{
		{"within the free hours", []model.UsageSegment{seg("d1", "web.1", "", nov, nov.Add(100*h), 0)},
			"2026-11", 360000, 100, 0, 0},
		{"crossing the 750 free hours within the month", []model.UsageSegment{
			seg("d1", "web.1", "", nov, nov.Add(400*h), 0),
			seg("d2", "web.2", "", nov.Add(10*h), nov.Add(410*h), 0),
		}, "2026-11", 800 * 3600, 750, 50, 50 * 25.0 / 720},
		{"monthly cap per dyno (December: 744 h)", []model.UsageSegment{
			seg("d1", "web.1", "", dec, dec.AddDate(0, 1, 0), 0),
			seg("d2", "web.2", "", dec, dec.AddDate(0, 1, 0), 0),
			seg("d3", "web.3", "", dec, dec.AddDate(0, 1, 0), 0),
		}, "2026-12", 3 * 744 * 3600, 750, 3*744 - 750, 25 + 25}, // web.1 free; web.2 (738 h) and web.3 (744 h) capped at $25
		{"dearer sizes take the free hours first", []model.UsageSegment{
			seg("d1", "web.1", "performance-L", nov, nov.Add(700*h), 0),
			seg("d2", "worker.1", "basic", nov, nov.Add(100*h), 0),
		}, "2026-11", 800 * 3600, 750, 50, 50 * 7.0 / 720},
		{"a segment across the month's end is split", []model.UsageSegment{
			seg("d1", "web.1", "", nov.Add(-90*time.Minute), nov.Add(30*time.Minute), 0),
		}, "2026-11", 1800, 0.5, 0, 0},
		{"the other side of the split", []model.UsageSegment{
			seg("d1", "web.1", "", nov.Add(-90*time.Minute), nov.Add(30*time.Minute), 0),
		}, "2026-10", 5400, 1.5, 0, 0},
		{"a replayed segment counts once", []model.UsageSegment{
			seg("d1", "web.1", "", nov, nov.Add(2*h), 0),
			seg("d1", "web.1", "", nov, nov.Add(2*h), 0),
			seg("d1", "web.1", "", nov, nov.Add(2*h), 0),
		}, "2026-11", 7200, 2, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator(DefaultConfig())
			for i, s := range tc.segs {
				a.Add(uint64(i+1), s)
			}
			u := a.AppUsage("app1", tc.month)
			if u.Seconds != tc.wantSeconds || u.FreeHoursUsed != round(tc.wantFreeUsed, 4) || u.BillableHours != round(tc.wantBillable, 4) || u.Cost != round(tc.wantCost, 2) {
				t.Errorf("usage: %d s, free %v h, billable %v h, cost %v; want %d s, %v h, %v h, %v",
					u.Seconds, u.FreeHoursUsed, u.BillableHours, u.Cost, tc.wantSeconds, tc.wantFreeUsed, tc.wantBillable, round(tc.wantCost, 2))
			}
			if left := round(750-tc.wantFreeUsed, 4); u.FreeHoursLeft != left {
				t.Errorf("free hours left %v, want %v", u.FreeHoursLeft, left)
			}
			var sum int64
			for _, p := range u.Processes {
				sum += p.Seconds
			}
			if sum != u.Seconds {
				t.Errorf("process lines sum to %d s, the total is %d s", sum, u.Seconds)
			}
		})
	}
}

func TestFrozenMonthTakesNoLateSegments(t *testing.T) {
	a := NewAccumulator(DefaultConfig())
	a.Add(1, seg("d1", "web.1", "", nov, nov.Add(time.Hour), 0))
	a.Freeze("2026-11", 1)
	if got := a.Add(2, seg("d1", "web.1", "", nov.Add(time.Hour), nov.Add(2*time.Hour), 1)); got != Late {
		t.Errorf("late segment: outcome %v, want Late", got)
	}
	// Across the boundary: the November part is late, December counts.
	if got := a.Add(3, seg("d2", "web.2", "", nov.AddDate(0, 1, 0).Add(-time.Hour), nov.AddDate(0, 1, 0).Add(time.Hour), 0)); got != Late {
		t.Errorf("straddling segment: outcome %v, want Late", got)
	}
	if u := a.AppUsage("app1", "2026-11"); u.Seconds != 3600 || !u.Frozen {
		t.Errorf("frozen November: %d s (frozen %v), want 3600 s", u.Seconds, u.Frozen)
	}
	if u := a.AppUsage("app1", "2026-12"); u.Seconds != 3600 {
		t.Errorf("December: %d s, want 3600", u.Seconds)
	}
	// A rebuild replays sequence 1 into the frozen month: it counts again.
	b := NewAccumulator(DefaultConfig())
	b.Freeze("2026-11", 1)
	b.Add(1, seg("d1", "web.1", "", nov, nov.Add(time.Hour), 0))
	b.Add(2, seg("d1", "web.1", "", nov.Add(time.Hour), nov.Add(2*time.Hour), 1))
	if u := b.AppUsage("app1", "2026-11"); u.Seconds != 3600 {
		t.Errorf("rebuilt frozen November: %d s, want 3600", u.Seconds)
	}
}

func TestParsePrices(t *testing.T) {
	got, err := ParsePrices(DefaultConfig().MonthlyPrices, "standard-1x=30, eco=0")
	if err != nil || got["standard-1X"] != 30 || got["eco"] != 0 || got["basic"] != 7 {
		t.Errorf("ParsePrices = %v, %v", got, err)
	}
	for _, bad := range []string{"huge=3", "basic", "basic=-1", "basic=x"} {
		if _, err := ParsePrices(nil, bad); err == nil {
			t.Errorf("ParsePrices(%q) accepted", bad)
		}
	}
}
