package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// buildpacksCommands are Heroku's buildpacks, buildpacks:set, :add, :remove
// and :clear. The list is read, changed and written back whole.
func (s *session) buildpacksCommands() []*cobra.Command {
	list := &cobra.Command{Use: "buildpacks", Short: "list the app's buildpacks", Args: cobra.NoArgs}
	listApp := appFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*listApp)
		if err != nil {
			return err
		}
		bps, err := c.Buildpacks(cmd.Context(), name)
		if err != nil {
			return err
		}
		if len(bps) == 0 {
			fmt.Fprintf(s.stdout, "%s has no Buildpack URL set: builds detect a built-in buildpack.\n", name)
			return nil
		}
		s.printBuildpacks(name, urls(bps))
		return nil
	}

	// change reads the list, applies edit and writes it back.
	change := func(ctx context.Context, app string, edit func([]string) ([]string, error)) ([]string, error) {
		c, name, err := s.target(app)
		if err != nil {
			return nil, err
		}
		cur, err := c.Buildpacks(ctx, name)
		if err != nil {
			return nil, err
		}
		next, err := edit(urls(cur))
		if err != nil {
			return nil, err
		}
		got, err := c.SetBuildpacks(ctx, name, next)
		if err != nil {
			return nil, err
		}
		return urls(got), nil
	}
	index := func(cmd *cobra.Command) *int {
		return cmd.Flags().IntP("index", "i", 0, "the buildpack's place in the list, from 1")
	}
	done := func(app, verb string, bps []string) {
		name, _ := s.appName(app)
		if len(bps) == 1 {
			fmt.Fprintf(s.stdout, "Buildpack %s. Next release on %s will use %s.\n", verb, name, bps[0])
		} else {
			fmt.Fprintf(s.stdout, "Buildpack %s. Next release on %s will use:\n", verb, name)
			for i, b := range bps {
				fmt.Fprintf(s.stdout, "  %d. %s\n", i+1, b)
			}
		}
		fmt.Fprintf(s.stdout, "Run `dyno deploy` or `git push` to create a new release using these buildpacks.\n")
	}

	set := &cobra.Command{Use: "buildpacks:set URL", Short: "set the app's buildpack (replaces the list, or the one at --index)", Args: cobra.ExactArgs(1)}
	setApp, setIndex := appFlag(set), index(set)
	set.RunE = func(cmd *cobra.Command, args []string) error {
		bps, err := change(cmd.Context(), *setApp, func(cur []string) ([]string, error) {
			if *setIndex == 0 {
				return []string{args[0]}, nil
			}
			if *setIndex < 1 || *setIndex > len(cur)+1 {
				return nil, fmt.Errorf("--index %d is out of range: the app has %d buildpacks", *setIndex, len(cur))
			}
			if *setIndex == len(cur)+1 {
				return append(cur, args[0]), nil
			}
			cur[*setIndex-1] = args[0]
			return cur, nil
		})
		if err != nil {
			return err
		}
		done(*setApp, "set", bps)
		return nil
	}

	add := &cobra.Command{Use: "buildpacks:add URL", Short: "add a buildpack to the app's list (last, or at --index)", Args: cobra.ExactArgs(1)}
	addApp, addIndex := appFlag(add), index(add)
	add.RunE = func(cmd *cobra.Command, args []string) error {
		bps, err := change(cmd.Context(), *addApp, func(cur []string) ([]string, error) {
			if slices.Contains(cur, args[0]) {
				return nil, fmt.Errorf("the buildpack %s is already set on the app", args[0])
			}
			at := len(cur)
			if *addIndex != 0 {
				if *addIndex < 1 {
					return nil, fmt.Errorf("--index must be 1 or more")
				}
				at = min(*addIndex-1, len(cur))
			}
			return slices.Insert(cur, at, args[0]), nil
		})
		if err != nil {
			return err
		}
		done(*addApp, "added", bps)
		return nil
	}

	remove := &cobra.Command{Use: "buildpacks:remove [URL]", Short: "remove a buildpack (by URL or --index)", Args: cobra.MaximumNArgs(1)}
	removeApp, removeIndex := appFlag(remove), index(remove)
	remove.RunE = func(cmd *cobra.Command, args []string) error {
		bps, err := change(cmd.Context(), *removeApp, func(cur []string) ([]string, error) {
			i := *removeIndex - 1
			if len(args) == 1 {
				i = slices.Index(cur, args[0])
			}
			if i < 0 || i >= len(cur) {
				return nil, fmt.Errorf("no such buildpack on the app: give its URL or --index (see dyno buildpacks)")
			}
			return slices.Delete(cur, i, i+1), nil
		})
		if err != nil {
			return err
		}
		if len(bps) == 0 {
			fmt.Fprintln(s.stdout, "Buildpack removed. The next release will detect a built-in buildpack.")
			return nil
		}
		done(*removeApp, "removed", bps)
		return nil
	}

	clearCmd := &cobra.Command{Use: "buildpacks:clear", Short: "clear the app's buildpacks: builds detect a built-in again", Args: cobra.NoArgs}
	clearApp := appFlag(clearCmd)
	clearCmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if _, err := change(cmd.Context(), *clearApp, func([]string) ([]string, error) { return nil, nil }); err != nil {
			return err
		}
		name, _ := s.appName(*clearApp)
		fmt.Fprintf(s.stdout, "Buildpacks cleared. Next release on %s will detect buildpacks normally.\n", name)
		return nil
	}
	return []*cobra.Command{list, set, add, remove, clearCmd}
}

func (s *session) printBuildpacks(app string, bps []string) {
	if len(bps) == 1 {
		fmt.Fprintf(s.stdout, "=== %s Buildpack URL\n%s\n", app, bps[0])
		return
	}
	fmt.Fprintf(s.stdout, "=== %s Buildpack URLs\n", app)
	for i, b := range bps {
		fmt.Fprintf(s.stdout, "%d. %s\n", i+1, b)
	}
}

func urls(bps []client.BuildpackInstallation) []string {
	out := make([]string, len(bps))
	for i, b := range bps {
		out[i] = b.Buildpack.URL
	}
	return out
}
