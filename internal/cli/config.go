package cli

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

func (s *session) configCommand() *cobra.Command {
	var asJSON, shell bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "show an app's config vars",
		Args:  cobra.NoArgs,
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name, "config-vars"))
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		if shell {
			keys := make([]string, 0, len(vars))
			for k := range vars {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(s.stdout, "%s=%s\n", k, shellQuote(vars[k]))
			}
			return nil
		}
		if len(vars) == 0 {
			fmt.Fprintf(s.stdout, "%s has no config vars.\n", name)
			return nil
		}
		fmt.Fprintf(s.stdout, "=== %s Config Vars\n", name)
		styledObject(s.stdout, vars)
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.Flags().BoolVarP(&shell, "shell", "s", false, "print as KEY=value lines a shell can read")
	return cmd
}

func (s *session) configGetCommand() *cobra.Command {
	var shell bool
	cmd := &cobra.Command{
		Use:   "config:get KEY",
		Short: "print one config var's value",
		Args:  cobra.ExactArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		// Like heroku: an unset var prints an empty line, not an error.
		if shell {
			fmt.Fprintf(s.stdout, "%s=%s\n", args[0], shellQuote(vars[args[0]]))
			return nil
		}
		fmt.Fprintln(s.stdout, vars[args[0]])
		return nil
	}
	cmd.Flags().BoolVarP(&shell, "shell", "s", false, "print as KEY=value")
	return cmd
}

func (s *session) configSetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config:set KEY=VALUE...",
		Short: "set config vars, making a new release",
		Args:  cobra.MinimumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		changes := map[string]*string{}
		var keys []string
		for _, arg := range args {
			k, v, ok := strings.Cut(arg, "=")
			if !ok || k == "" {
				return fmt.Errorf("%q is not of the form KEY=VALUE: use dyno config:set KEY1=VALUE1 [KEY2=VALUE2 ...]", arg)
			}
			if _, dup := changes[k]; !dup {
				keys = append(keys, k)
			}
			changes[k] = &v
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		if !changesAnything(vars, changes) {
			// The API makes no release for this: say so, not "restarting".
			fmt.Fprintf(s.stderr, "%s already %s on %s; nothing changed\n", strings.Join(keys, ", "), plural(len(keys), "has that value", "have those values"), name)
		} else {
			if vars, err = c.SetConfigVars(cmd.Context(), name, changes); err != nil {
				return err
			}
			fmt.Fprintf(s.stderr, "Setting %s and restarting %s... done%s\n", strings.Join(keys, ", "), name, s.latestRelease(cmd.Context(), c, name))
		}
		set := map[string]string{}
		for _, k := range keys {
			set[k] = vars[k]
		}
		styledObject(s.stdout, set)
		return nil
	}
	return cmd
}

func (s *session) configUnsetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config:unset KEY...",
		Short: "remove config vars, making a new release",
		Args:  cobra.MinimumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, keys []string) error {
		changes := map[string]*string{}
		for _, k := range keys {
			changes[k] = nil
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		vars, err := c.ConfigVars(cmd.Context(), name)
		if err != nil {
			return err
		}
		var present []string
		for _, k := range keys {
			if _, ok := vars[k]; ok && !slices.Contains(present, k) {
				present = append(present, k)
			}
		}
		if len(present) == 0 {
			// The API makes no release for this: say so, not "restarting".
			fmt.Fprintf(s.stderr, "%s %s not set on %s; nothing changed\n", strings.Join(keys, ", "), plural(len(keys), "is", "are"), name)
			return nil
		}
		if _, err := c.SetConfigVars(cmd.Context(), name, changes); err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Unsetting %s and restarting %s... done%s\n", strings.Join(present, ", "), name, s.latestRelease(cmd.Context(), c, name))
		return nil
	}
	return cmd
}

// changesAnything reports whether applying changes (nil: remove) to vars
// would change them, which is when the API makes a new release.
func changesAnything(vars map[string]string, changes map[string]*string) bool {
	for k, v := range changes {
		old, had := vars[k]
		if v == nil && had || v != nil && (!had || old != *v) {
			return true
		}
	}
	return false
}

// plural picks one or many by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// latestRelease is ", v7" for the app's newest release, or "" if that cannot
// be learned (the change itself succeeded, so that is no error).
func (s *session) latestRelease(ctx context.Context, c *client.Client, app string) string {
	rels, err := c.Releases(ctx, app, client.ListRange{Max: 1, Descending: true})
	if err != nil || len(rels) == 0 {
		return ""
	}
	return fmt.Sprintf(", v%d", rels[0].Version)
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes v for a POSIX shell when it needs it.
func shellQuote(v string) string {
	if shellSafe.MatchString(v) {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
