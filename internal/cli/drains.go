package cli

import (
	"context"
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// Log drains: the heroku CLI's drains, drains:add and drains:remove, with
// each drain's health (last success, last error, dropped lines).

func (s *session) drainsCommand() *cobra.Command {
	return s.appListCommand("drains", "list an app's log drains and how they fare", "log-drains", func(ctx context.Context, c *client.Client, name string) error {
		drains, err := c.LogDrains(ctx, name)
		if err != nil {
			return err
		}
		if len(drains) == 0 {
			fmt.Fprintf(s.stdout, "%s has no drains.\n", name)
			return nil
		}
		fmt.Fprintln(s.stdout, "=== Drains")
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "URL\tToken\tLast success\tDropped\tLast error")
		for _, d := range drains {
			shown := d.URL
			if u, err := url.Parse(d.URL); err == nil {
				shown = u.Redacted()
			}
			success, lastErr, dropped := "-", "", "-"
			if h := d.Health; h != nil {
				if h.LastSuccessAt != nil {
					success = s.when(*h.LastSuccessAt)
				}
				dropped = fmt.Sprint(h.Dropped)
				if h.LastError != "" && h.LastErrorAt != nil {
					lastErr = s.when(*h.LastErrorAt) + " " + h.LastError
				}
			}
			fmt.Fprintf(tw, "%s\t(%s)\t%s\t%s\t%s\n", shown, d.Token, success, dropped, lastErr)
		}
		return tw.Flush()
	})
}

func (s *session) drainsAddCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "drains:add URL", Short: "forward an app's logs to a syslog://, syslog+tls:// or https:// URL", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		d, err := c.AddLogDrain(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "Successfully added drain %s\n", d.URL)
		return nil
	}
	return cmd
}

func (s *session) drainsRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "drains:remove URL|TOKEN", Short: "stop forwarding an app's logs to a drain", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		d, err := c.RemoveLogDrain(cmd.Context(), name, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "Successfully removed drain %s\n", d.URL)
		return nil
	}
	return cmd
}
