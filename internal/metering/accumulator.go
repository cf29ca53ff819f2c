package metering

import (
	"math"
	"sort"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// Outcome says what Add did with a segment.
type Outcome int

// Outcomes of Add.
const (
	Counted   Outcome = iota // every second of it counted
	Duplicate                // its ID was seen before: nothing counted
	Late                     // some or all of it fell in a frozen month: that part counted nowhere
)

// Accumulator sums usage segments into seconds per app, month, process type,
// size and dyno name. Every segment ID counts once; a segment crossing the
// start of a month is split at it; a frozen month takes no more segments.
// It is not safe for concurrent use (the Meter guards it).
type Accumulator struct {
	cfg    Config
	seen   map[string]struct{}
	frozen map[string]uint64 // month → last stream sequence counted in it
	months map[string]map[string]*appMonth
	dynos  map[string]time.Duration // dyno ID → time counted, all months
}

// appMonth is one app's usage in one month.
type appMonth struct {
	name  string
	units map[unit]time.Duration
}

// unit is what a monthly cap applies to: one dyno (by name, so that a
// restarted web.1 is the same dyno) of one size and type.
type unit struct{ Type, Size, Name string }

// NewAccumulator returns an empty accumulator pricing with cfg.
func NewAccumulator(cfg Config) *Accumulator {
	return &Accumulator{
		cfg:    cfg,
		seen:   map[string]struct{}{},
		frozen: map[string]uint64{},
		months: map[string]map[string]*appMonth{},
		dynos:  map[string]time.Duration{},
	}
}

// MonthOf is the billing month of t: "2026-11" (UTC).
func MonthOf(t time.Time) string { return t.UTC().Format(model.MonthLayout) }

// MonthBounds is the UTC start of month and of the month after it.
func MonthBounds(month string) (start, end time.Time, err error) {
	start, err = time.Parse(model.MonthLayout, month)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return start, start.AddDate(0, 1, 0), nil
}

// Add counts seg, read at stream sequence seq (sequences grow; tests may
// pass any growing number).
func (a *Accumulator) Add(seq uint64, seg model.UsageSegment) Outcome {
	if _, ok := a.seen[seg.ID]; ok {
		return Duplicate
	}
	a.seen[seg.ID] = struct{}{}
	out := Counted
	start, end := seg.Start.UTC(), seg.End.UTC()
	for start.Before(end) {
		month := MonthOf(start)
		_, next, _ := MonthBounds(month)
		pieceEnd := end
		if next.Before(end) {
			pieceEnd = next
		}
		if last, ok := a.frozen[month]; ok && seq > last {
			out = Late
		} else {
			a.count(month, seg, pieceEnd.Sub(start))
		}
		start = pieceEnd
	}
	return out
}

func (a *Accumulator) count(month string, seg model.UsageSegment, d time.Duration) {
	apps := a.months[month]
	if apps == nil {
		apps = map[string]*appMonth{}
		a.months[month] = apps
	}
	am := apps[seg.AppID]
	if am == nil {
		am = &appMonth{units: map[unit]time.Duration{}}
		apps[seg.AppID] = am
	}
	if seg.AppName != "" {
		am.name = seg.AppName
	}
	am.units[unit{seg.Type, seg.Size, seg.Name}] += d
	a.dynos[seg.DynoID] += d
}

// Freeze closes month: segments read after stream sequence lastSeq count
// nowhere in it. A month frozen twice keeps its first sequence.
func (a *Accumulator) Freeze(month string, lastSeq uint64) {
	if _, ok := a.frozen[month]; !ok {
		a.frozen[month] = lastSeq
	}
}

// Frozen reports whether month is frozen.
func (a *Accumulator) Frozen(month string) bool {
	_, ok := a.frozen[month]
	return ok
}

// DynoTime is the time counted for one dyno (by ID) over every month.
func (a *Accumulator) DynoTime(dynoID string) time.Duration { return a.dynos[dynoID] }

// Months lists the months with usage, oldest first.
func (a *Accumulator) Months() []string {
	out := make([]string, 0, len(a.months))
	for m := range a.months {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Usage is one app's usage and charge in one month.
type Usage struct {
	App                model.AppRef   `json:"app"`
	Month              string         `json:"month"`
	PeriodStart        time.Time      `json:"period_start"`
	PeriodEnd          time.Time      `json:"period_end"`
	Frozen             bool           `json:"frozen"`
	Seconds            int64          `json:"seconds"`
	Hours              float64        `json:"hours"`
	FreeHoursAllowance float64        `json:"free_hours_allowance"`
	FreeHoursUsed      float64        `json:"free_hours_used"`
	FreeHoursLeft      float64        `json:"free_hours_left"`
	BillableHours      float64        `json:"billable_hours"`
	Cost               float64        `json:"cost"`
	Currency           string         `json:"currency"`
	Processes          []ProcessUsage `json:"processes"`
}

// ProcessUsage is the usage of one process type at one size.
type ProcessUsage struct {
	Type          string  `json:"type"`
	Size          string  `json:"size"`
	Dynos         int     `json:"dynos"` // distinct dyno names (web.1, web.2) that ran
	Seconds       int64   `json:"seconds"`
	Hours         float64 `json:"hours"`
	FreeHours     float64 `json:"free_hours"`
	BillableHours float64 `json:"billable_hours"`
	HourlyPrice   float64 `json:"hourly_price"`
	MonthlyCap    float64 `json:"monthly_cap"` // per dyno
	Cost          float64 `json:"cost"`
}

// AppUsage is appID's usage and charge in month (an empty usage if it ran
// nothing). Free hours go first to the dearest sizes, the choice that
// costs the user least before caps.
func (a *Accumulator) AppUsage(appID, month string) Usage {
	start, end, _ := MonthBounds(month)
	u := Usage{
		App: model.AppRef{ID: appID}, Month: month, PeriodStart: start, PeriodEnd: end, Frozen: a.Frozen(month),
		FreeHoursAllowance: a.cfg.FreeHours, Currency: a.cfg.Currency, Processes: []ProcessUsage{},
	}
	am := a.months[month][appID]
	if am == nil {
		u.FreeHoursLeft = a.cfg.FreeHours
		return u
	}
	u.App.Name = am.name
	units := make([]unit, 0, len(am.units))
	for k := range am.units {
		units = append(units, k)
	}
	sort.Slice(units, func(i, j int) bool {
		pi, pj := a.cfg.hourly(units[i].Size), a.cfg.hourly(units[j].Size)
		if pi != pj {
			return pi > pj
		}
		if units[i].Type != units[j].Type {
			return units[i].Type < units[j].Type
		}
		if units[i].Size != units[j].Size {
			return units[i].Size < units[j].Size
		}
		return units[i].Name < units[j].Name
	})
	free := hoursToDuration(a.cfg.FreeHours)
	var total, freeUsed, billable time.Duration
	var cost float64
	byProc := map[[2]string]*ProcessUsage{}
	procTime := map[[2]string]time.Duration{}
	var order [][2]string
	for _, k := range units {
		d := am.units[k]
		f := min(free, d)
		free -= f
		b := d - f
		c := min(b.Hours()*a.cfg.hourly(k.Size), a.cfg.monthly(k.Size))
		total, freeUsed, billable, cost = total+d, freeUsed+f, billable+b, cost+c
		key := [2]string{k.Type, k.Size}
		p := byProc[key]
		if p == nil {
			p = &ProcessUsage{Type: k.Type, Size: k.Size, HourlyPrice: round(a.cfg.hourly(k.Size), 6), MonthlyCap: a.cfg.monthly(k.Size)}
			byProc[key] = p
			order = append(order, key)
		}
		p.Dynos++
		procTime[key] += d
		p.Hours += d.Hours()
		p.FreeHours += f.Hours()
		p.BillableHours += b.Hours()
		p.Cost += c
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i][0] != order[j][0] {
			return order[i][0] < order[j][0]
		}
		return order[i][1] < order[j][1]
	})
	for _, key := range order {
		p := byProc[key]
		p.Seconds = seconds(procTime[key])
		p.Hours, p.FreeHours, p.BillableHours, p.Cost = round(p.Hours, 4), round(p.FreeHours, 4), round(p.BillableHours, 4), round(p.Cost, 2)
		u.Processes = append(u.Processes, *p)
	}
	u.Seconds = seconds(total)
	u.Hours = round(total.Hours(), 4)
	u.FreeHoursUsed = round(freeUsed.Hours(), 4)
	u.FreeHoursLeft = round(a.cfg.FreeHours-freeUsed.Hours(), 4)
	u.BillableHours = round(billable.Hours(), 4)
	u.Cost = round(cost, 2)
	return u
}

// Invoice is the account's invoice for month as the usage stands now: one
// line per app that ran, by app name. It is a draft ("pending"); the Meter
// issues it.
func (a *Accumulator) Invoice(month string) model.Invoice {
	inv := model.Invoice{Month: month, State: model.InvoicePending, Currency: a.cfg.Currency, Lines: []model.InvoiceLine{}}
	for appID := range a.months[month] {
		u := a.AppUsage(appID, month)
		inv.Lines = append(inv.Lines, model.InvoiceLine{
			App: u.App, Seconds: u.Seconds, Hours: u.Hours, FreeHours: u.FreeHoursUsed, BillableHours: u.BillableHours, Cost: u.Cost,
		})
	}
	sort.Slice(inv.Lines, func(i, j int) bool {
		if inv.Lines[i].App.Name != inv.Lines[j].App.Name {
			return inv.Lines[i].App.Name < inv.Lines[j].App.Name
		}
		return inv.Lines[i].App.ID < inv.Lines[j].App.ID
	})
	for _, l := range inv.Lines {
		inv.Seconds += l.Seconds
		inv.Hours += l.Hours
		inv.FreeHours += l.FreeHours
		inv.BillableHours += l.BillableHours
		inv.Cost += l.Cost
	}
	inv.Hours, inv.FreeHours, inv.BillableHours, inv.Cost = round(inv.Hours, 4), round(inv.FreeHours, 4), round(inv.BillableHours, 4), round(inv.Cost, 2)
	return inv
}

// seconds rounds d to whole seconds.
func seconds(d time.Duration) int64 { return int64(d.Round(time.Second) / time.Second) }

func hoursToDuration(h float64) time.Duration {
	if h <= 0 {
		return 0
	}
	return time.Duration(h * float64(time.Hour))
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
