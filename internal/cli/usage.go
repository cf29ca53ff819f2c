package cli

import (
	"context"
	"fmt"
	"math"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// usageCommand is `dyno usage -a APP [--month 2026-11] [--json]`.
func (s *session) usageCommand() *cobra.Command {
	var month string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "an app's dyno usage in a month: time by process type and size, free hours, cost",
		Args:  cobra.NoArgs,
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, client.UsagePath(name, month))
		}
		u, err := c.AppUsage(cmd.Context(), name, month)
		if err != nil {
			return err
		}
		now := time.Now()
		state := "this month so far"
		switch {
		case u.Frozen:
			state = "invoiced"
		case !u.PeriodEnd.IsZero() && !now.Before(u.PeriodEnd):
			state = "closed, not yet invoiced"
		case !u.PeriodStart.IsZero() && now.Before(u.PeriodStart):
			state = "not started yet"
		}
		fmt.Fprintf(s.stdout, "=== %s dyno usage %s (%s, UTC)\n", name, u.Month, state)
		if len(u.Processes) > 0 {
			tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "Type\tSize\tDynos\tTime\tHours\tFree hours\tBillable hours\tCost")
			for _, p := range u.Processes {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.4f\t%.4f\t%.4f\t%s\n", p.Type, p.Size, p.Dynos, duration(p.Seconds), p.Hours, p.FreeHours, p.BillableHours, money(p.Cost, u.Currency))
			}
			tw.Flush()
			fmt.Fprintln(s.stdout)
		}
		styledFields(s.stdout, [][2]string{
			{"Dyno time", fmt.Sprintf("%s (%d s, %.4f h)", duration(u.Seconds), u.Seconds, u.Hours)},
			{"Free hours used", fmt.Sprintf("%.4f of %g", u.FreeHoursUsed, u.FreeHoursAllowance)},
			{"Free hours left", fmt.Sprintf("%.4f", u.FreeHoursLeft)},
			{"Billable hours", fmt.Sprintf("%.4f", u.BillableHours)},
			{"Cost", money(u.Cost, u.Currency)},
		})
		return nil
	}
	cmd.Flags().StringVar(&month, "month", "", "the month, YYYY-MM in UTC (default: this month)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

// invoicesCommand is `dyno invoices`: one line per month.
func (s *session) invoicesCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "invoices",
		Short: "the account's monthly invoices (months that ended are issued and frozen)",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := s.api()
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, "/account/invoices")
		}
		invs, err := c.Invoices(cmd.Context())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "Month\tState\tApps\tHours\tFree hours\tBillable hours\tTotal")
		for _, inv := range invs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.4f\t%.4f\t%.4f\t%s\n", inv.Month, inv.State, len(inv.Lines), inv.Hours, inv.FreeHours, inv.BillableHours, money(inv.Cost, inv.Currency))
		}
		return tw.Flush()
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

// invoiceCommand is `dyno invoice --month 2026-11`: one line per app.
func (s *session) invoiceCommand() *cobra.Command {
	var month string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "invoice --month YYYY-MM",
		Short: "the account's invoice for a month: one line per app, totals",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if month == "" {
			month = s.now().UTC().Format("2006-01")
		}
		c, err := s.api()
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, "/account/invoices/"+month)
		}
		inv, err := c.Invoice(cmd.Context(), month)
		if err != nil {
			return err
		}
		head := fmt.Sprintf("=== Invoice %s (%s", inv.Month, inv.State)
		if !inv.IssuedAt.IsZero() {
			head += ", issued " + inv.IssuedAt.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		fmt.Fprintln(s.stdout, head+")")
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "App\tTime\tHours\tFree hours\tBillable hours\tCost")
		for _, l := range inv.Lines {
			fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.4f\t%.4f\t%s\n", l.App.Name, duration(l.Seconds), l.Hours, l.FreeHours, l.BillableHours, money(l.Cost, inv.Currency))
		}
		fmt.Fprintf(tw, "Total\t%s\t%.4f\t%.4f\t%.4f\t%s\n", duration(inv.Seconds), inv.Hours, inv.FreeHours, inv.BillableHours, money(inv.Cost, inv.Currency))
		return tw.Flush()
	}
	cmd.Flags().StringVar(&month, "month", "", "the month, YYYY-MM in UTC (default: this month)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

// quotaLine is what `ps` prints first, as Heroku's does for eco hours:
// "Free dyno hours quota remaining this month: 749h 58m (99%)". It is
// empty when the API has no metering (an older server).
func (s *session) quotaLine(ctx context.Context, c *client.Client, app string) string {
	u, err := c.AppUsage(ctx, app, "")
	if err != nil || u.FreeHoursAllowance <= 0 {
		return ""
	}
	minutes := int64(math.Floor(u.FreeHoursLeft * 60))
	pct := int(math.Floor(100 * u.FreeHoursLeft / u.FreeHoursAllowance))
	return fmt.Sprintf("Free dyno hours quota remaining this month: %dh %dm (%d%%)", minutes/60, minutes%60, pct)
}

// duration writes seconds as 1h 2m 3s.
func duration(sec int64) string {
	h, m, s := sec/3600, sec/60%60, sec%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh %dm %ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

func money(v float64, currency string) string {
	if currency == "" || currency == "USD" {
		return fmt.Sprintf("$%.2f", v)
	}
	return fmt.Sprintf("%.2f %s", v, currency)
}
