// Package metering turns dyno usage segments into usage and money: seconds
// per app, UTC calendar month, process type and size; the free dyno-hours
// each app gets per month; a price per dyno-hour per size, capped at the
// size's monthly price per dyno; and monthly invoices, frozen once issued
// for a month that has ended.
//
// The Accumulator is pure (no I/O, no clock); the Meter feeds it from the
// usage stream and issues invoices into the invoices bucket.
package metering

import (
	"fmt"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// Config is the platform's billing configuration.
type Config struct {
	// FreeHours is each app's free dyno-hours per calendar month, applied
	// before any charge (Heroku's 750).
	FreeHours float64
	// MonthlyPrices is each size's price per dyno per month in Currency:
	// the most one dyno costs in a month. The hourly price is
	// monthly / HoursPerMonth.
	MonthlyPrices map[string]float64
	// HoursPerMonth turns monthly prices into hourly ones (720 = 30 days).
	HoursPerMonth float64
	Currency      string
	// InvoiceGrace is how long after a month ends its invoice stays
	// pending, for the last checkpoints of running dynos to arrive.
	InvoiceGrace time.Duration
}

// DefaultConfig is Heroku's: 750 free hours per app, eco $5, basic $7,
// standard-1X $25, standard-2X $50, performance-M $250, performance-L $500
// per dyno per month, prorated to the second.
func DefaultConfig() Config {
	return Config{
		FreeHours: 750,
		MonthlyPrices: map[string]float64{
			"eco": 5, "basic": 7, "standard-1X": 25, "standard-2X": 50, "performance-M": 250, "performance-L": 500,
		},
		HoursPerMonth: 720,
		Currency:      "USD",
		InvoiceGrace:  10 * time.Minute,
	}
}

// ParsePrices reads "size=monthly,size=monthly" (standard-1X=25,eco=5) over
// the defaults, for the server's --dyno-prices flag.
func ParsePrices(base map[string]float64, spec string) (map[string]float64, error) {
	out := make(map[string]float64, len(base))
	for k, v := range base {
		out[k] = v
	}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, price, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("dyno price %q: write SIZE=MONTHLY_PRICE, e.g. standard-1X=25", part)
		}
		size, err := model.LookupSize(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		var p float64
		if _, err := fmt.Sscanf(strings.TrimSpace(price), "%g", &p); err != nil || p < 0 {
			return nil, fmt.Errorf("dyno price %q: the monthly price must be a number ≥ 0", part)
		}
		out[size.Name] = p
	}
	return out, nil
}

// monthly is the size's monthly price; a size without a price is free.
func (c Config) monthly(size string) float64 {
	if p, ok := c.MonthlyPrices[size]; ok {
		return p
	}
	for k, p := range c.MonthlyPrices {
		if strings.EqualFold(k, size) {
			return p
		}
	}
	return 0
}

// hourly is the size's price per dyno-hour.
func (c Config) hourly(size string) float64 {
	if c.HoursPerMonth <= 0 {
		return 0
	}
	return c.monthly(size) / c.HoursPerMonth
}
