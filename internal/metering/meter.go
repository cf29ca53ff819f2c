package metering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Source is the usage stream: every segment from the first, a Ready mark,
// then new ones. store.Usage implements it.
type Source interface {
	Follow(ctx context.Context) (<-chan store.UsageEvent, error)
}

// InvoiceStore keeps issued invoices by month; store.Bucket[model.Invoice]
// implements it.
type InvoiceStore interface {
	Get(ctx context.Context, key string) (model.Invoice, uint64, error)
	Create(ctx context.Context, key string, v model.Invoice) (uint64, error)
	List(ctx context.Context, filter string) ([]store.Entry[model.Invoice], error)
}

// Meter follows the usage stream into an Accumulator and answers usage
// and invoice queries. On start it rebuilds everything from the stream.
type Meter struct {
	cfg      Config
	src      Source
	invoices InvoiceStore
	now      func() time.Time
	log      *slog.Logger

	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.Mutex
	acc     *Accumulator
	lastSeq uint64 // last stream sequence added to acc
}

// NewMeter returns a meter pricing with cfg; Run feeds it. now may be nil
// (time.Now).
func NewMeter(cfg Config, src Source, invoices InvoiceStore, now func() time.Time, log *slog.Logger) *Meter {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Meter{cfg: cfg, src: src, invoices: invoices, now: now, log: log, ready: make(chan struct{}), acc: NewAccumulator(cfg)}
}

// Run loads the issued invoices, replays the usage stream from its start,
// then counts new segments as agents write them, until ctx ends.
func (m *Meter) Run(ctx context.Context) error {
	issued, err := m.invoices.List(ctx, ">")
	if err != nil {
		return fmt.Errorf("load issued invoices: %w", err)
	}
	m.mu.Lock()
	for _, e := range issued {
		m.acc.Freeze(e.Value.Month, e.Value.StreamSequence)
	}
	m.mu.Unlock()
	events, err := m.src.Follow(ctx)
	if err != nil {
		return err
	}
	for ev := range events {
		if ev.Ready {
			m.readyOnce.Do(func() { close(m.ready) })
			continue
		}
		m.add(ev.Sequence, ev.Segment)
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("the usage stream ended: is NATS reachable?")
}

func (m *Meter) add(seq uint64, seg model.UsageSegment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastSeq = max(m.lastSeq, seq)
	if m.acc.Add(seq, seg) == Late {
		m.log.Warn("usage for a month already invoiced is not billed",
			"segment", seg.ID, "app", seg.AppName, "dyno", seg.Name, "start", seg.Start, "end", seg.End, "host", seg.Host)
	}
}

// WaitReady returns once the meter has read every segment stored when it
// started, so its answers are complete.
func (m *Meter) WaitReady(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the meter is still reading the usage stream: try again in a moment (%w)", ctx.Err())
	}
}

// AppUsage is appID's usage in month ("2026-11"; "" is the current month).
func (m *Meter) AppUsage(ctx context.Context, appID, month string) (Usage, error) {
	if err := m.WaitReady(ctx); err != nil {
		return Usage{}, err
	}
	if month == "" {
		month = MonthOf(m.now())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acc.AppUsage(appID, month), nil
}

// DynoTime is the time counted for one dyno (by ID).
func (m *Meter) DynoTime(dynoID string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acc.DynoTime(dynoID)
}

// Invoice is the account's invoice for month. A month that has ended is
// issued on first request: stored, frozen, and the same ever after. The
// current month's is a pending draft.
func (m *Meter) Invoice(ctx context.Context, month string) (model.Invoice, error) {
	start, end, err := MonthBounds(month)
	if err != nil {
		return model.Invoice{}, fmt.Errorf("month %q: write it as YYYY-MM, e.g. 2026-11", month)
	}
	if err := m.WaitReady(ctx); err != nil {
		return model.Invoice{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acc.Frozen(month) {
		return m.storedInvoice(ctx, month)
	}
	now := m.now()
	inv := m.acc.Invoice(month)
	if now.Before(end.Add(m.cfg.InvoiceGrace)) {
		if now.Before(start) {
			inv.State = "future"
		}
		return inv, nil
	}
	inv.State, inv.IssuedAt, inv.StreamSequence = model.InvoiceIssued, now.UTC(), m.lastSeq
	if _, err := m.invoices.Create(ctx, month, inv); errors.Is(err, store.ErrExists) {
		// Another meter issued it first: theirs is the invoice.
		stored, err := m.storedInvoice(ctx, month)
		if err != nil {
			return model.Invoice{}, err
		}
		m.acc.Freeze(month, stored.StreamSequence)
		return stored, nil
	} else if err != nil {
		return model.Invoice{}, fmt.Errorf("issue the invoice of %s: %w", month, err)
	}
	m.acc.Freeze(month, inv.StreamSequence)
	m.log.Info("invoice issued", "month", month, "apps", len(inv.Lines), "cost", inv.Cost)
	return inv, nil
}

func (m *Meter) storedInvoice(ctx context.Context, month string) (model.Invoice, error) {
	inv, _, err := m.invoices.Get(ctx, month)
	if err != nil {
		return model.Invoice{}, fmt.Errorf("read the invoice of %s: %w", month, err)
	}
	return inv, nil
}

// Invoices lists the account's invoices, oldest first: every month with
// usage or an issued invoice, and the current month. Months that have
// ended are issued on the way.
func (m *Meter) Invoices(ctx context.Context) ([]model.Invoice, error) {
	if err := m.WaitReady(ctx); err != nil {
		return nil, err
	}
	issued, err := m.invoices.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list invoices: %w", err)
	}
	months := map[string]bool{MonthOf(m.now()): true}
	for _, e := range issued {
		months[e.Value.Month] = true
	}
	m.mu.Lock()
	for _, mo := range m.acc.Months() {
		months[mo] = true
	}
	m.mu.Unlock()
	list := make([]string, 0, len(months))
	for mo := range months {
		list = append(list, mo)
	}
	sort.Strings(list)
	out := make([]model.Invoice, 0, len(list))
	for _, mo := range list {
		inv, err := m.Invoice(ctx, mo)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}
