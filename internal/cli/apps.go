package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func (s *session) appsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "list your apps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			if asJSON {
				return s.printRaw(cmd.Context(), c, "/apps")
			}
			apps, err := c.Apps(cmd.Context())
			if err != nil {
				return err
			}
			if len(apps) == 0 {
				fmt.Fprintln(s.stdout, "You have no apps.")
				return nil
			}
			sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
			fmt.Fprintln(s.stdout, "=== Apps")
			for _, a := range apps {
				fmt.Fprintln(s.stdout, a.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (s *session) appsCreateCommand() *cobra.Command {
	var asJSON bool
	var remote string
	cmd := &cobra.Command{
		Use:   "apps:create [NAME]",
		Short: "create an app",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			app, err := c.CreateApp(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stderr, "Creating %s... done\n", app.Name)
			if asJSON {
				if err := s.printRaw(cmd.Context(), c, appPath(app.Name)); err != nil {
					return err
				}
				return s.addCreatedRemote(cmd.Context(), remote, app.GitURL)
			}
			out := app.WebURL
			if out == "" {
				out = app.Name
			}
			if app.GitURL != "" {
				out += " | " + app.GitURL
			}
			fmt.Fprintln(s.stdout, out)
			return s.addCreatedRemote(cmd.Context(), remote, app.GitURL)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.Flags().StringVarP(&remote, "remote", "r", defaultRemote, "the git remote to add when run in a git repository (empty: none)")
	return cmd
}

func (s *session) appsInfoCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "apps:info [APP]",
		Short: "show an app's details",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 && *app == "" {
			*app = args[0]
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name))
		}
		a, err := c.App(cmd.Context(), name)
		if err != nil {
			return err
		}
		dynos, err := c.Dynos(cmd.Context(), name)
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for _, d := range dynos {
			counts[d.Type]++
		}
		var dynoSummary []string
		for typ, n := range counts {
			dynoSummary = append(dynoSummary, fmt.Sprintf("%s: %d", typ, n))
		}
		sort.Strings(dynoSummary)
		release := "none yet"
		if a.ReleaseVersion > 0 {
			release = fmt.Sprintf("v%d", a.ReleaseVersion)
		}
		// No Git URL: the API's git_url takes no pushes yet.
		fields := [][2]string{
			{"Dynos", strings.Join(dynoSummary, ", ")},
			{"Maintenance", fmt.Sprint(a.Maintenance)},
		}
		if a.Owner != nil && a.Owner.Email != "" {
			fields = append(fields, [2]string{"Owner", a.Owner.Email})
		}
		fields = append(fields, [2]string{"Release", release})
		if a.ReleasedAt != nil {
			fields = append(fields, [2]string{"Released At", s.when(*a.ReleasedAt)})
		}
		fields = append(fields,
			[2]string{"Web URL", a.WebURL},
			[2]string{"Created At", s.when(a.CreatedAt)},
		)
		fmt.Fprintf(s.stdout, "=== %s\n", a.Name)
		styledFields(s.stdout, fields)
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (s *session) appsDestroyCommand() *cobra.Command {
	var confirm string
	cmd := &cobra.Command{
		Use:   "apps:destroy [APP]",
		Short: "destroy an app, its dynos, releases and config vars",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			if *app != "" && *app != args[0] {
				return fmt.Errorf("two different apps given (%s and %s): name one", args[0], *app)
			}
			*app = args[0]
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if confirm != name {
			if confirm == "" {
				return fmt.Errorf("this destroys %s with its dynos, releases and config vars, for good: to proceed, run again with --confirm %s", name, name)
			}
			return fmt.Errorf("--confirm %s does not match the app %s: to destroy it, run again with --confirm %s", confirm, name, name)
		}
		if err := c.DestroyApp(cmd.Context(), name); err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Destroying %s... done\n", name)
		return nil
	}
	cmd.Flags().StringVar(&confirm, "confirm", "", "the app's name, to confirm")
	return cmd
}
