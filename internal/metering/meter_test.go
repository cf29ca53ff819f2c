package metering

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// clock is the injected clock of the meter and the simulated hosts.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// simDyno is one process on a simulated host, recording as the agent does.
type simDyno struct {
	base  model.UsageSegment
	last  time.Time
	index int
	host  string
}

// sim plays dyno processes on hosts against the real usage stream, with
// checkpoints every `every`, and keeps what each dyno must be billed.
type sim struct {
	t      *testing.T
	st     *store.Store
	clk    *clock
	every  time.Duration
	live   map[string]*simDyno
	want   map[string]time.Duration // dyno ID → time it must be billed
	all    []model.UsageSegment     // every segment written, for replays
	outbox map[string][]model.UsageSegment
	away   map[string]bool // host cut off from NATS: segments wait
}

func (s *sim) write(host string, seg model.UsageSegment) {
	s.all = append(s.all, seg)
	if s.away[host] {
		s.outbox[host] = append(s.outbox[host], seg)
		return
	}
	if err := s.st.Usage.Append(context.Background(), seg); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sim) cut(d *simDyno, at time.Time, final bool) {
	seg := d.base
	seg.ID = model.UsageSegmentID(seg.DynoID, seg.ProcessStart, d.index)
	seg.Index, seg.Start, seg.End, seg.Final = d.index, d.last, at, final
	d.index++
	d.last = at
	s.want[seg.DynoID] += seg.End.Sub(seg.Start)
	s.write(d.host, seg)
}

// advance moves the clock to t, writing the checkpoints due on live hosts.
func (s *sim) advance(t time.Time) {
	ids := make([]string, 0, len(s.live))
	for id := range s.live {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := s.live[id]
		for next := d.base.ProcessStart.Add(time.Duration(d.index+1) * s.every); !next.After(t); next = d.base.ProcessStart.Add(time.Duration(d.index+1) * s.every) {
			s.cut(d, next, false)
		}
	}
	s.clk.set(t)
}

func (s *sim) start(at time.Time, id, name, size, host string) {
	s.advance(at)
	typ, _, _ := cut(name)
	s.live[id] = &simDyno{host: host, last: at, base: model.UsageSegment{
		DynoID: id, AppID: "app1", AppName: "demo", Type: typ, Name: name, Size: size, Host: host, ProcessStart: at,
	}}
}

// end is the process ending (crash, stop, one-off done): the final segment.
func (s *sim) end(at time.Time, id string) {
	s.advance(at)
	s.cut(s.live[id], at, true)
	delete(s.live, id)
}

// killHost is a host dying: its dynos write nothing more, so they are
// billed to their last checkpoint.
func (s *sim) killHost(at time.Time, host string) {
	s.advance(at)
	for id, d := range s.live {
		if d.host == host {
			delete(s.live, id)
		}
	}
}

func startMeter(t *testing.T, st *store.Store, clk *clock, cfg Config) (*Meter, func()) {
	t.Helper()
	m := NewMeter(cfg, st.Usage, st.Invoices, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("meter Run: %v", err)
		}
	})
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := m.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return m, stop
}

// caughtUp waits until the meter has read everything in the stream.
func caughtUp(t *testing.T, st *store.Store, m *Meter) {
	t.Helper()
	info, err := st.JetStream().Stream(context.Background(), store.UsageStreamName)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		seq := m.lastSeq
		m.mu.Unlock()
		if seq >= si.State.LastSeq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("meter at sequence %d, stream at %d", seq, si.State.LastSeq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTimelineBillsEverySecondOnce(t *testing.T) {
	st, _ := storetest.New(t)
	clk := &clock{}
	s := &sim{t: t, st: st, clk: clk, every: time.Minute, live: map[string]*simDyno{},
		want: map[string]time.Duration{}, outbox: map[string][]model.UsageSegment{}, away: map[string]bool{}}
	t0 := time.Date(2026, 11, 30, 23, 40, 0, 250e6, time.UTC) // a month boundary 20 minutes in
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cfg := DefaultConfig()
	cfg.InvoiceGrace = 0
	m, stopMeter := startMeter(t, st, clk, cfg)

	// Scale web to 2, then 3; a crash and its replacement; a one-off run;
	// a worker on a host cut off from NATS that comes back; a host death.
	s.start(at(0), "w1", "web.1", "standard-1X", "h1")
	s.start(at(1500*time.Millisecond), "w2", "web.2", "standard-1X", "h2")
	s.start(at(90*time.Second), "w3", "web.3", "standard-1X", "h1")
	s.end(at(200*time.Second+300*time.Millisecond), "w3")             // crashed
	s.start(at(201*time.Second), "w3b", "web.3", "standard-1X", "h1") // restarted at once
	s.start(at(300*time.Second), "r1", "run.1", "standard-2X", "h1")
	s.end(at(345*time.Second+500*time.Millisecond), "r1") // the one-off ends
	s.start(at(10*time.Second), "k1", "worker.1", "basic", "h3")
	s.away["h3"] = true // h3 loses NATS: its checkpoints wait
	s.advance(at(25 * time.Minute))
	s.away["h3"] = false // back: its late segments arrive, once
	for _, seg := range s.outbox["h3"] {
		s.write("h3", seg)
	}
	s.killHost(at(30*time.Minute+42*time.Second), "h2") // web.2 dies with h2: billed to its last checkpoint
	s.end(at(50*time.Minute), "k1")
	s.end(at(61*time.Minute+700*time.Millisecond), "w1") // scaled to 0
	s.end(at(61*time.Minute+700*time.Millisecond), "w3b")
	caughtUp(t, st, m)

	check := func(m *Meter, when string) {
		t.Helper()
		for id, want := range s.want {
			if got := m.DynoTime(id); got != want {
				t.Errorf("%s: dyno %s billed %v, ran %v", when, id, got, want)
			}
		}
		// web.2 ran from 1.5 s to its last checkpoint before h2 died.
		if got, want := s.want["w2"], 30*time.Minute; got != want {
			t.Errorf("web.2 on the dead host: %v to bill, want %v", got, want)
		}
		var total time.Duration
		for _, d := range s.want {
			total += d
		}
		ctx := context.Background()
		nov, _ := m.AppUsage(ctx, "app1", "2026-11")
		dec, _ := m.AppUsage(ctx, "app1", "2026-12")
		if got := time.Duration(nov.Seconds+dec.Seconds) * time.Second; (got - total).Abs() > time.Second {
			t.Errorf("%s: November %d s + December %d s ≠ %v run", when, nov.Seconds, dec.Seconds, total)
		}
		// November's web time: web.1 1199.75 s, web.2 1198.5 s, web.3
		// 110.3 s then 998.75 s; the rest is December's.
		for _, p := range nov.Processes {
			if p.Type == "web" && p.Seconds != 3507 {
				t.Errorf("%s: November web time %d s, want 3507 s", when, p.Seconds)
			}
		}
	}
	check(m, "live")

	// Replays: every segment again (JetStream drops them) and a copy the
	// stream cannot drop (a different message ID) of one segment.
	for _, seg := range s.all {
		if err := st.Usage.Append(context.Background(), seg); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := json.Marshal(s.all[3])
	if _, err := st.JetStream().Publish(context.Background(), "usage.app1", data, jetstream.WithMsgID("another-id")); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, st, m)
	check(m, "after replays")

	// A server restart: a new meter rebuilt from the stream agrees.
	stopMeter()
	m2, _ := startMeter(t, st, clk, cfg)
	caughtUp(t, st, m2)
	check(m2, "after a restart")
}

func TestInvoicesFreezeOnceIssued(t *testing.T) {
	st, _ := storetest.New(t)
	clk := &clock{now: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.InvoiceGrace = time.Hour
	m, stopMeter := startMeter(t, st, clk, cfg)
	ctx := context.Background()
	appendSeg := func(s model.UsageSegment) {
		if err := st.Usage.Append(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// 800 h of standard-1X in November: 50 billable hours.
	appendSeg(seg("d1", "web.1", "", nov, nov.Add(400*time.Hour), 0))
	appendSeg(seg("d2", "web.2", "", nov, nov.Add(400*time.Hour), 0))
	caughtUp(t, st, m)
	inv, err := m.Invoice(ctx, "2026-11")
	if err != nil || inv.State != model.InvoicePending {
		t.Fatalf("November's invoice during November: %+v, %v; want pending", inv, err)
	}
	clk.set(dec.Add(30 * time.Minute)) // within the grace: still pending
	if inv, _ := m.Invoice(ctx, "2026-11"); inv.State != model.InvoicePending {
		t.Errorf("invoice within the grace: %s, want pending", inv.State)
	}
	clk.set(dec.Add(2 * time.Hour))
	issued, err := m.Invoice(ctx, "2026-11")
	if err != nil || issued.State != model.InvoiceIssued || len(issued.Lines) != 1 || issued.Cost != round(50*25.0/720, 2) || issued.BillableHours != 50 {
		t.Fatalf("issued invoice %+v, %v; want 1 line, 50 billable hours, $%.2f", issued, err, 50*25.0/720)
	}
	// A late segment of November: counted nowhere.
	appendSeg(seg("d3", "web.3", "", nov.Add(500*time.Hour), nov.Add(600*time.Hour), 0))
	caughtUp(t, st, m)
	check := func(m *Meter, when string) {
		t.Helper()
		again, err := m.Invoice(ctx, "2026-11")
		if err != nil || again.Cost != issued.Cost || again.Seconds != issued.Seconds || !again.IssuedAt.Equal(issued.IssuedAt) {
			t.Errorf("%s: invoice changed: %+v, %v; issued %+v", when, again, err, issued)
		}
		if u, _ := m.AppUsage(ctx, "app1", "2026-11"); u.Seconds != 800*3600 || !u.Frozen {
			t.Errorf("%s: November usage %d s (frozen %v), want 2880000 s, frozen", when, u.Seconds, u.Frozen)
		}
	}
	check(m, "after a late segment")
	stopMeter()
	m2, _ := startMeter(t, st, clk, cfg)
	caughtUp(t, st, m2)
	check(m2, "after a restart")
	all, err := m2.Invoices(ctx)
	if err != nil || len(all) != 2 || all[0].Month != "2026-11" || all[1].Month != "2026-12" || all[1].State != model.InvoicePending {
		t.Errorf("Invoices = %+v, %v; want November issued, December pending", all, err)
	}
}
