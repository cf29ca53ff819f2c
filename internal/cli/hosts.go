package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// Hosts (admin): hosts lists the machines that run dynos with their
// memory, dynos and state; hosts:drain moves a host's dynos away before
// maintenance and hosts:undrain lets it take dynos again.

func (s *session) hostsCommands() []*cobra.Command {
	var asJSON bool
	list := &cobra.Command{Use: "hosts", Short: "list the hosts that run dynos: memory, dynos, state (live, lost, draining, drained)", Args: cobra.NoArgs}
	list.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := s.api()
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, "/hosts")
		}
		hosts, err := c.Hosts(cmd.Context())
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			fmt.Fprintln(s.stdout, "No host has registered: start one with `dyno server` or `dyno agent`.")
			return nil
		}
		fmt.Fprintln(s.stdout, "=== Hosts")
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tState\tAddress\tMemory (MB)\tFree (MB)\tCPUs\tDynos\tHeartbeat\tStarted")
		for _, h := range hosts {
			age := time.Duration(h.HeartbeatAge * float64(time.Second)).Round(100 * time.Millisecond)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s ago\t%s\n", h.ID, h.State, h.Address,
				h.MemoryReservedMB, h.MemoryMB, h.MemoryFreeMB, h.CPUs, h.Dynos, age, s.when(h.StartedAt))
		}
		return tw.Flush()
	}
	action := func(verb, short string, do func(c *client.Client, cmd *cobra.Command, id string) (*client.Host, error), done string) *cobra.Command {
		cmd := &cobra.Command{Use: "hosts:" + verb + " HOST", Short: short, Args: cobra.ExactArgs(1)}
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			h, err := do(c, cmd, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, done+"\n", h.ID, h.State, h.Dynos)
			return nil
		}
		return cmd
	}
	drain := action("drain", "move a host's dynos to other hosts and place no new ones on it",
		func(c *client.Client, cmd *cobra.Command, id string) (*client.Host, error) {
			return c.DrainHost(cmd.Context(), id)
		},
		"Draining %s (now %s, %d dynos): its dynos move to other hosts, web ones once their replacements are up.\nIt is drained when `dyno hosts` says so.")
	undrain := action("undrain", "let a drained host take dynos again",
		func(c *client.Client, cmd *cobra.Command, id string) (*client.Host, error) {
			return c.UndrainHost(cmd.Context(), id)
		},
		"%s takes dynos again (now %s, %d dynos).")
	return []*cobra.Command{list, drain, undrain}
}
