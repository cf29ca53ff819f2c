package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// newestList is a command that lists an app's newest items of collection
// (ranged by field, newest first, --num of them), printing the API's JSON
// with --json and calling print otherwise.
func (s *session) newestList(use, short, collection, field string,
	print func(ctx context.Context, c *client.Client, name string, rng client.ListRange) error) *cobra.Command {
	var asJSON bool
	var num int
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if num < 1 {
			return errors.New("--num must be at least 1")
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		rng := client.ListRange{Field: field, Max: num, Descending: true}
		if asJSON {
			raw, err := c.RawRange(cmd.Context(), appPath(name, collection), rng)
			if err != nil {
				return err
			}
			return s.printJSON(raw)
		}
		return print(cmd.Context(), c, name, rng)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.Flags().IntVarP(&num, "num", "n", 15, "how many "+collection+" to show")
	return cmd
}

func (s *session) releasesCommand() *cobra.Command {
	return s.newestList("releases", "list an app's newest releases", "releases", "version",
		func(ctx context.Context, c *client.Client, name string, rng client.ListRange) error {
			rels, err := c.Releases(ctx, name, rng)
			if err != nil {
				return err
			}
			if len(rels) == 0 {
				fmt.Fprintf(s.stdout, "No releases on %s\n", name)
				return nil
			}
			header := fmt.Sprintf("=== %s Releases", name)
			for _, r := range rels {
				if r.Current {
					header += fmt.Sprintf(" - Current: v%d", r.Version)
				}
			}
			fmt.Fprintln(s.stdout, header)
			rows := make([][]string, len(rels))
			for i, r := range rels {
				rows[i] = []string{fmt.Sprintf("v%d", r.Version), describeRelease(r), r.User.Email, s.when(r.CreatedAt)}
			}
			printTable(s, rows)
			return nil
		})
}

func (s *session) buildsCommand() *cobra.Command {
	return s.newestList("builds", "list an app's newest builds, with their status and release", "builds", "created_at",
		func(ctx context.Context, c *client.Client, name string, rng client.ListRange) error {
			builds, err := c.Builds(ctx, name, rng)
			if err != nil {
				return err
			}
			if len(builds) == 0 {
				fmt.Fprintf(s.stdout, "No builds on %s: `git push` or `dyno deploy` makes one\n", name)
				return nil
			}
			fmt.Fprintf(s.stdout, "=== %s Builds\n", name)
			rows := make([][]string, len(builds))
			for i, b := range builds {
				rel := "-"
				if b.Release != nil {
					rel = fmt.Sprintf("v%d", b.Release.Version)
				}
				rows[i] = []string{b.ID, b.Status, rel, b.User.Email, s.when(b.CreatedAt)}
			}
			printTable(s, rows)
			return nil
		})
}

func (s *session) buildsOutputCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "builds:output [BUILD_ID]",
		Short: "print a build's output (default: the newest build), following it while it runs",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		var b *client.Build
		if len(args) == 1 {
			if b, err = c.Build(cmd.Context(), name, args[0]); err != nil {
				return err
			}
		} else {
			builds, err := c.Builds(cmd.Context(), name, client.ListRange{Field: "created_at", Max: 1, Descending: true})
			if err != nil {
				return err
			}
			if len(builds) == 0 {
				return fmt.Errorf("no builds on %s: `git push` or `dyno deploy` makes one", name)
			}
			b = &builds[0]
		}
		if b.OutputStreamURL == "" {
			return fmt.Errorf("build %s has no output URL: is the API older than this CLI?", b.ID)
		}
		out, err := c.StreamOutput(cmd.Context(), b.OutputStreamURL)
		if err != nil {
			return err
		}
		defer out.Close()
		if _, err := io.Copy(s.stdout, out); err != nil {
			return fmt.Errorf("read the output of build %s: %w", b.ID, err)
		}
		return nil
	}
	return cmd
}

// describeRelease is the release's description, with its status when it is
// not a plain success.
func describeRelease(r client.Release) string {
	if r.Status != "" && r.Status != "succeeded" {
		return fmt.Sprintf("%s (%s)", r.Description, r.Status)
	}
	return r.Description
}

// printTable prints rows with columns aligned and two spaces between them.
func printTable(s *session, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			if i < len(row)-1 {
				fmt.Fprintf(&b, "%-*s  ", widths[i], cell)
			} else {
				b.WriteString(cell)
			}
		}
		fmt.Fprintln(s.stdout, strings.TrimRight(b.String(), " "))
	}
}

func (s *session) releasesInfoCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "releases:info [VERSION]",
		Short: "show one release (the newest if no version is given)",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		version := ""
		if len(args) == 1 {
			version = strings.TrimPrefix(args[0], "v")
		} else {
			rels, err := c.Releases(cmd.Context(), name, client.ListRange{Max: 1, Descending: true})
			if err != nil {
				return err
			}
			if len(rels) == 0 {
				return fmt.Errorf("%s has no releases yet: deploy it first (dyno deploy DIR -a %s)", name, name)
			}
			version = fmt.Sprint(rels[0].Version)
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name, "releases", url.PathEscape(version)))
		}
		r, err := c.Release(cmd.Context(), name, version)
		if err != nil {
			return err
		}
		slug := "none"
		if r.Slug != nil {
			slug = r.Slug.ID
		}
		fmt.Fprintf(s.stdout, "=== Release v%d\n", r.Version)
		styledFields(s.stdout, [][2]string{
			{"By", r.User.Email},
			{"Change", r.Description},
			{"Current", fmt.Sprint(r.Current)},
			{"Slug", slug},
			{"Status", r.Status},
			{"When", s.when(r.CreatedAt)},
		})
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

// rollbackCommand is `heroku rollback [vN]`: without a version, the release
// before the current one.
func (s *session) rollbackCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollback [VERSION]",
		Short: "make a new release with the code and config vars of an earlier one (default: the one before the current)",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		version := ""
		if len(args) == 1 {
			version = strings.TrimPrefix(args[0], "v")
		} else {
			a, err := c.App(cmd.Context(), name)
			if err != nil {
				return err
			}
			if a.ReleaseVersion < 2 {
				return fmt.Errorf("%s has no earlier release to roll back to", name)
			}
			version = fmt.Sprint(a.ReleaseVersion - 1)
		}
		fmt.Fprintf(s.stderr, "Rolling back ⬢ %s to v%s... ", name, version)
		rel, err := c.Rollback(cmd.Context(), name, version)
		if err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		if rel.Status == "pending" { // its release phase runs first
			fmt.Fprintf(s.stderr, "v%d, running the release phase... ", rel.Version)
			for rel.Status == "pending" {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(500 * time.Millisecond):
				}
				if rel, err = c.Release(cmd.Context(), name, fmt.Sprint(rel.Version)); err != nil {
					return err
				}
			}
			if rel.Status == "failed" {
				fmt.Fprintln(s.stderr, "failed")
				return fmt.Errorf("v%d failed its release phase and %s stays on the release it runs: see dyno logs -a %s --dyno release", rel.Version, name, name)
			}
		}
		fmt.Fprintf(s.stderr, "done, v%d\n", rel.Version)
		fmt.Fprintln(s.stderr, " ▸    Rollback affects code and config vars; it doesn't add or remove process types' scale.")
		return nil
	}
	return cmd
}
