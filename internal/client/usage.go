package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Usage is an app's dyno usage and charge in one UTC calendar month.
type Usage struct {
	App                Ref            `json:"app"`
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
	Dynos         int     `json:"dynos"`
	Seconds       int64   `json:"seconds"`
	Hours         float64 `json:"hours"`
	FreeHours     float64 `json:"free_hours"`
	BillableHours float64 `json:"billable_hours"`
	HourlyPrice   float64 `json:"hourly_price"`
	MonthlyCap    float64 `json:"monthly_cap"`
	Cost          float64 `json:"cost"`
}

// Invoice is the account's bill for one month: "pending" while the month
// runs, "issued" (and frozen) once it has ended.
type Invoice struct {
	Month         string        `json:"month"`
	State         string        `json:"state"`
	IssuedAt      time.Time     `json:"issued_at"`
	Lines         []InvoiceLine `json:"lines"`
	Seconds       int64         `json:"seconds"`
	Hours         float64       `json:"hours"`
	FreeHours     float64       `json:"free_hours"`
	BillableHours float64       `json:"billable_hours"`
	Cost          float64       `json:"cost"`
	Currency      string        `json:"currency"`
}

// InvoiceLine is one app's line in an invoice.
type InvoiceLine struct {
	App           Ref     `json:"app"`
	Seconds       int64   `json:"seconds"`
	Hours         float64 `json:"hours"`
	FreeHours     float64 `json:"free_hours"`
	BillableHours float64 `json:"billable_hours"`
	Cost          float64 `json:"cost"`
}

// UsagePath is the API path of an app's usage in month ("" = this month).
func UsagePath(app, month string) string {
	p := "/apps/" + esc(app) + "/usage"
	if month != "" {
		p += "?month=" + url.QueryEscape(month)
	}
	return p
}

// AppUsage gets app's usage in month ("2026-11"; "" = this month).
func (c *Client) AppUsage(ctx context.Context, app, month string) (*Usage, error) {
	var u Usage
	if _, err := c.do(ctx, http.MethodGet, UsagePath(app, month), nil, nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// Invoices lists the account's invoices, oldest first.
func (c *Client) Invoices(ctx context.Context) ([]Invoice, error) {
	var invs []Invoice
	if _, err := c.do(ctx, http.MethodGet, "/account/invoices", nil, nil, &invs); err != nil {
		return nil, err
	}
	return invs, nil
}

// Invoice gets the account's invoice for month ("2026-11").
func (c *Client) Invoice(ctx context.Context, month string) (*Invoice, error) {
	var inv Invoice
	if _, err := c.do(ctx, http.MethodGet, "/account/invoices/"+esc(month), nil, nil, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}
