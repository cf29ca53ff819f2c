package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// maintenanceCommands are Heroku's maintenance, maintenance:on and
// maintenance:off: the router answers 503 H80 while it is on.
func (s *session) maintenanceCommands() []*cobra.Command {
	show := &cobra.Command{Use: "maintenance", Short: "show whether the app is in maintenance mode", Args: cobra.NoArgs}
	showApp := appFlag(show)
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*showApp)
		if err != nil {
			return err
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		if a.Maintenance {
			fmt.Fprintln(s.stdout, "on")
		} else {
			fmt.Fprintln(s.stdout, "off")
		}
		return nil
	}
	set := func(on bool) *cobra.Command {
		word := map[bool]string{true: "on", false: "off"}[on]
		cmd := &cobra.Command{Use: "maintenance:" + word, Short: "turn maintenance mode " + word, Args: cobra.NoArgs}
		app := appFlag(cmd)
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			c, name, err := s.target(*app)
			if err != nil {
				return err
			}
			verb := map[bool]string{true: "Enabling", false: "Disabling"}[on]
			fmt.Fprintf(s.stderr, "%s maintenance mode for %s... ", verb, name)
			if _, err := c.Raw(cmd.Context(), "PATCH", appPath(name), map[string]bool{"maintenance": on}); err != nil {
				fmt.Fprintln(s.stderr, "failed")
				return err
			}
			fmt.Fprintln(s.stderr, "done")
			return nil
		}
		return cmd
	}
	return []*cobra.Command{show, set(true), set(false)}
}
