package apiserver

import (
	"context"
	"net/http"
	"time"

	"github.com/dyno-platform/dyno/internal/metering"
	"github.com/dyno-platform/dyno/internal/model"
)

// Meter answers usage and invoice questions; *metering.Meter implements it.
type Meter interface {
	AppUsage(ctx context.Context, appID, month string) (metering.Usage, error)
	Invoice(ctx context.Context, month string) (model.Invoice, error)
	Invoices(ctx context.Context) ([]model.Invoice, error)
}

// meterWait bounds how long a usage request waits for a meter still
// replaying the usage stream after a start.
const meterWait = 20 * time.Second

func (s *Server) meter() (Meter, error) {
	if s.cfg.Meter == nil {
		return nil, notFound("Metering is off on this platform.")
	}
	return s.cfg.Meter, nil
}

// validMonth checks a ?month= or {month} value: "2026-11".
func validMonth(month string) error {
	if _, err := time.Parse(model.MonthLayout, month); err != nil {
		return invalid("Month %q is not a month: write it as YYYY-MM, e.g. 2026-11.", month)
	}
	return nil
}

// getUsage is GET /apps/{app}/usage?month=2026-11 (default: this month).
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meter()
	if err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	month := r.URL.Query().Get("month")
	if month == "" {
		month = metering.MonthOf(s.cfg.Now())
	}
	if err := validMonth(month); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), meterWait)
	defer cancel()
	u, err := m.AppUsage(ctx, app.ID, month)
	if err != nil {
		return err
	}
	u.App = model.AppRef{ID: app.ID, Name: app.Name}
	return writeJSON(w, http.StatusOK, u)
}

// listInvoices is GET /account/invoices: every month's invoice, oldest first.
func (s *Server) listInvoices(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meter()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), meterWait)
	defer cancel()
	invs, err := m.Invoices(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, invs)
}

// getInvoice is GET /account/invoices/{month}: issued (and frozen) on the
// first request after the month ended.
func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meter()
	if err != nil {
		return err
	}
	month := r.PathValue("month")
	if err := validMonth(month); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), meterWait)
	defer cancel()
	inv, err := m.Invoice(ctx, month)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, inv)
}
