package cli

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// typeRE is a ps:type argument: web=standard-2x, or a bare size for every
// process type.
var typeRE = regexp.MustCompile(`^(?:([\w-]+)=)?([\w-]+)$`)

// parseType turns ps:type arguments into size updates. A bare size applies
// to every type of formation (which the caller fetches only if needed).
func parseType(args []string, formation func() ([]client.Formation, error)) ([]client.FormationUpdate, error) {
	var updates []client.FormationUpdate
	for _, arg := range args {
		m := typeRE.FindStringSubmatch(arg)
		if m == nil {
			return nil, fmt.Errorf("cannot read %q: use TYPE=SIZE, such as web=standard-2x worker=basic, or a size for every type", arg)
		}
		if m[1] != "" {
			updates = append(updates, client.FormationUpdate{Type: m[1], Size: m[2]})
			continue
		}
		f, err := formation()
		if err != nil {
			return nil, err
		}
		for _, p := range f {
			updates = append(updates, client.FormationUpdate{Type: p.Type, Size: m[2]})
		}
	}
	return updates, nil
}

func (s *session) psTypeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ps:type [TYPE=SIZE...|SIZE]",
		Aliases: []string{"ps:resize"},
		Short:   "show the dyno size of each process type, or change sizes",
		Example: "  dyno ps:type -a hello\n" +
			"  dyno ps:type web=standard-2x worker=basic -a hello\n" +
			"  dyno ps:type standard-2x -a hello",
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		updates, err := parseType(args, func() ([]client.Formation, error) { return c.Formation(ctx, name) })
		if err != nil {
			return err
		}
		if len(updates) > 0 {
			if _, err := c.BatchUpdateFormation(ctx, name, updates); err != nil {
				return err
			}
			fmt.Fprintf(s.stderr, "Scaling dynos on %s... done\n", name)
		}
		f, err := c.Formation(ctx, name)
		if err != nil {
			return err
		}
		if len(f) == 0 {
			fmt.Fprintf(s.stdout, "No process types on %s: deploy the app first\n", name)
			return nil
		}
		sizes, err := c.DynoSizes(ctx)
		if err != nil {
			return err
		}
		s.printTypes(f, sizes)
		return nil
	}
	return cmd
}

// printTypes prints the formation's sizes as `heroku ps:type` does, with
// each size's memory in place of its price, then the dynos per size.
func (s *session) printTypes(f []client.Formation, sizes []client.DynoSize) {
	memory := map[string]string{}
	for _, sz := range sizes {
		memory[strings.ToLower(sz.Name)] = formatMemory(sz)
	}
	sort.Slice(f, func(i, j int) bool { return f[i].Type < f[j].Type })
	rows := [][]string{{"Type", "Size", "Qty", "Memory"}}
	totals := map[string]int{}
	var order []string
	for _, p := range f {
		size := p.SizeName()
		rows = append(rows, []string{p.Type, size, fmt.Sprint(p.Quantity), memory[strings.ToLower(size)]})
		if _, seen := totals[size]; !seen {
			order = append(order, size)
		}
		totals[size] += p.Quantity
	}
	fmt.Fprintln(s.stdout, "=== Process Types")
	printTable(s, rows)
	fmt.Fprintln(s.stdout)
	fmt.Fprintln(s.stdout, "=== Dyno Totals")
	rows = [][]string{{"Size", "Total"}}
	for _, size := range order {
		rows = append(rows, []string{size, fmt.Sprint(totals[size])})
	}
	printTable(s, rows)
}

// formatMemory shows a size's memory as the dyno-types table does: 512 MB,
// 1 GB, 2.5 GB.
func formatMemory(sz client.DynoSize) string {
	if sz.Memory < 1 {
		mb := sz.MemoryMB
		if mb == 0 {
			mb = int(sz.Memory * 1024)
		}
		return fmt.Sprintf("%d MB", mb)
	}
	return fmt.Sprintf("%g GB", sz.Memory)
}
