package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

func (s *session) psCommand() *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "ps [TYPE...]",
		Short: "list an app's dynos, grouped by process type",
		Long: "ps lists an app's dynos, grouped by process type. One-off dynos (dyno run, the scheduler,\n" +
			"the release phase) that have ended stay known for a few minutes with their exit status:\n" +
			"--all lists them too.",
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, types []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name, "dynos"))
		}
		dynos, err := c.Dynos(cmd.Context(), name)
		if err != nil {
			return err
		}
		hidden := 0
		if !all {
			n := len(dynos)
			dynos = withoutEndedOneOffs(dynos)
			hidden = n - len(dynos)
		}
		if len(types) > 0 {
			keep := dynos[:0]
			for _, d := range dynos {
				for _, t := range types {
					if d.Type == t {
						keep = append(keep, d)
					}
				}
			}
			dynos = keep
		}
		if line := s.quotaLine(cmd.Context(), c, name); line != "" {
			fmt.Fprintf(s.stdout, "%s\n\n", line)
		}
		if len(dynos) == 0 {
			if hidden > 0 && len(types) == 0 {
				fmt.Fprintf(s.stdout, "No dynos on %s (%d ended one-off dynos: `dyno ps --all` lists them)\n", name, hidden)
				return nil
			}
			fmt.Fprintf(s.stdout, "No dynos on %s\n", name)
			return nil
		}
		s.printDynos(dynos)
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.Flags().BoolVar(&all, "all", false, "also list one-off dynos that have ended")
	return cmd
}

// endedOneOff reports whether d is a one-off whose process is over (it is
// kept a while for its exit status), as model.OneOffEnded says.
func endedOneOff(d client.Dyno) bool {
	return isOneOff(d) && (d.State == "crashed" || (d.State == "down" && d.ExitStatus != nil))
}

// withoutEndedOneOffs drops the one-offs that have ended from dynos.
func withoutEndedOneOffs(dynos []client.Dyno) []client.Dyno {
	keep := make([]client.Dyno, 0, len(dynos))
	for _, d := range dynos {
		if !endedOneOff(d) {
			keep = append(keep, d)
		}
	}
	return keep
}

// pendingNote is what ps adds to the line of a dyno that waits for a host.
func pendingNote(d client.Dyno) string {
	if d.PendingReason == "" {
		return ""
	}
	return " (pending: " + d.PendingReason + ")"
}

// isOneOff tells one-off dynos (heroku run) from formation dynos.
func isOneOff(d client.Dyno) bool {
	switch d.Type {
	case "run", "scheduler", "release": // dyno run, the scheduler, the release phase
		return true
	}
	return strings.HasPrefix(d.Name, "run.")
}

// dynoIndex is the number in web.12, for sorting web.2 before web.12.
func dynoIndex(name string) int {
	_, n, _ := strings.Cut(name, ".")
	i, _ := strconv.Atoi(n)
	return i
}

// printDynos prints dynos as `heroku ps` does: one-off dynos first, then one
// group per process type, size and command.
func (s *session) printDynos(dynos []client.Dyno) {
	sort.SliceStable(dynos, func(i, j int) bool {
		if dynos[i].Type != dynos[j].Type {
			return dynos[i].Type < dynos[j].Type
		}
		return dynoIndex(dynos[i].Name) < dynoIndex(dynos[j].Name)
	})
	type group struct {
		key   string
		dynos []client.Dyno
	}
	var oneOff []client.Dyno
	var groups []*group
	byKey := map[string]*group{}
	for _, d := range dynos {
		if isOneOff(d) {
			oneOff = append(oneOff, d)
			continue
		}
		key := fmt.Sprintf("%s (%s): %s", d.Type, d.Size, d.Command)
		g := byKey[key]
		if g == nil {
			g = &group{key: key}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.dynos = append(g.dynos, d)
	}
	first := true
	sep := func() {
		if !first {
			fmt.Fprintln(s.stdout)
		}
		first = false
	}
	if len(oneOff) > 0 {
		sep()
		fmt.Fprintf(s.stdout, "=== run: one-off processes (%d)\n", len(oneOff))
		for _, d := range oneOff {
			note := pendingNote(d)
			if d.ExitStatus != nil && (d.State == "crashed" || d.State == "down") {
				note += fmt.Sprintf(" (exit status %d)", *d.ExitStatus)
			}
			fmt.Fprintf(s.stdout, "%s (%s): %s %s: %s%s\n", d.Name, d.Size, d.State, s.when(d.UpdatedAt), d.Command, note)
		}
	}
	for _, g := range groups {
		sep()
		// A dyno that is down is on its way out (being replaced or
		// stopped): it is listed, but not counted in the formation.
		running := 0
		for _, d := range g.dynos {
			if d.State != "down" {
				running++
			}
		}
		fmt.Fprintf(s.stdout, "=== %s (%d)\n", g.key, running)
		for _, d := range g.dynos {
			note := pendingNote(d)
			if d.State == "down" {
				note += " (stopping)"
			}
			fmt.Fprintf(s.stdout, "%s: %s %s%s\n", d.Name, d.State, s.when(d.UpdatedAt), note)
		}
	}
}

// scaleRE is the heroku CLI's form of a ps:scale argument: web=3,
// web=2:standard-2x, worker+1, worker-1.
var scaleRE = regexp.MustCompile(`^([\w-]+)([=+-]\d+)(?::([\w-]+))?$`)

// parseScale turns ps:scale arguments into formation updates; quantities
// stay strings so that relative changes reach the API as "+1".
func parseScale(args []string) ([]client.FormationUpdate, error) {
	updates := make([]client.FormationUpdate, 0, len(args))
	for _, arg := range args {
		m := scaleRE.FindStringSubmatch(arg)
		if m == nil {
			return nil, fmt.Errorf("cannot read %q: use TYPE=QUANTITY[:SIZE], TYPE+N or TYPE-N, such as web=3:standard-2x worker+1", arg)
		}
		updates = append(updates, client.FormationUpdate{
			Type:     m[1],
			Quantity: strings.TrimPrefix(m[2], "="),
			Size:     m[3],
		})
	}
	return updates, nil
}

// formationSummary describes process types as "web=3:standard-1X", sorted
// by type; only, if not nil, picks the types to describe.
func formationSummary(f []client.Formation, sep string, only map[string]bool) []string {
	sort.Slice(f, func(i, j int) bool { return f[i].Type < f[j].Type })
	var parts []string
	for _, p := range f {
		if only != nil && !only[p.Type] {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s%s%d:%s", p.Type, sep, p.Quantity, p.SizeName()))
	}
	return parts
}

func (s *session) psScaleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ps:scale [TYPE=QUANTITY[:SIZE]|TYPE+N|TYPE-N...]",
		Short: "scale process types; no arguments shows the formation",
		Example: "  dyno ps:scale web=3 worker=1 -a hello\n" +
			"  dyno ps:scale web=2:standard-2x worker+1 -a hello",
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		updates, err := parseScale(args)
		if err != nil {
			return err
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if len(updates) == 0 {
			f, err := c.Formation(cmd.Context(), name)
			if err != nil {
				return err
			}
			if len(f) == 0 {
				fmt.Fprintf(s.stdout, "No dynos on %s\n", name)
				return nil
			}
			fmt.Fprintln(s.stdout, strings.Join(formationSummary(f, "=", nil), " "))
			return nil
		}
		f, err := c.BatchUpdateFormation(cmd.Context(), name, updates)
		if err != nil {
			return err
		}
		changed := map[string]bool{}
		for _, u := range updates {
			changed[u.Type] = true
		}
		summary := strings.Join(formationSummary(f, " at ", changed), ", ")
		fmt.Fprintf(s.stderr, "Scaling dynos on %s... done, now running %s\n", name, summary)
		return nil
	}
	return cmd
}

// dynoTarget reads the dyno or process type a ps:restart/ps:stop acts on,
// from the argument or the -d/-p flags.
func dynoTarget(args []string, dyno, ptype string) (string, error) {
	var given []string
	for _, t := range append(append([]string{}, args...), dyno, ptype) {
		if t != "" {
			given = append(given, t)
		}
	}
	switch len(given) {
	case 0:
		return "", nil
	case 1:
		return given[0], nil
	}
	return "", fmt.Errorf("several dynos given (%s): name one dyno or process type", strings.Join(given, ", "))
}

// targetNoun names what a restart or stop acts on, for the progress line.
func targetNoun(target string) string {
	switch {
	case target == "":
		return "dynos"
	case client.IsDynoName(target):
		return target + " dyno"
	}
	return target + " dynos"
}

func (s *session) psRestartCommand() *cobra.Command {
	var dyno, ptype string
	cmd := &cobra.Command{
		Use:   "ps:restart [DYNO|TYPE]",
		Short: "restart one dyno (web.2), a process type (web), or every dyno",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		target, err := dynoTarget(args, dyno, ptype)
		if err != nil {
			return err
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if err := c.RestartDynos(cmd.Context(), name, target); err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Restarting %s on %s... done\n", targetNoun(target), name)
		return nil
	}
	cmd.Flags().StringVarP(&dyno, "dyno-name", "d", "", "the dyno to restart, such as web.2")
	cmd.Flags().StringVarP(&ptype, "process-type", "p", "", "the process type to restart, such as web")
	return cmd
}

func (s *session) psStopCommand() *cobra.Command {
	var dyno, ptype string
	cmd := &cobra.Command{
		Use:   "ps:stop DYNO|TYPE",
		Short: "stop one dyno (web.2) or a process type (web); formation dynos start again",
		Args:  cobra.MaximumNArgs(1),
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		target, err := dynoTarget(args, dyno, ptype)
		if err != nil {
			return err
		}
		if target == "" {
			return errors.New("no dyno given: name a dyno (web.2) or a process type (web) to stop; ps:scale TYPE=0 stops a type for good")
		}
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if err := c.StopDynos(cmd.Context(), name, target); err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Stopping %s on %s... done\n", targetNoun(target), name)
		return nil
	}
	cmd.Flags().StringVarP(&dyno, "dyno-name", "d", "", "the dyno to stop, such as web.2")
	cmd.Flags().StringVarP(&ptype, "process-type", "p", "", "the process type to stop, such as web")
	return cmd
}

// waitProgress is one look at how far an app is from running its release.
type waitProgress struct {
	version   int
	up, total int // dynos up as the formation wants them, and how many it wants
	others    int // dynos starting, crashed, stopping, or of an old release or size
}

func (p waitProgress) done() bool { return p.up == p.total && p.others == 0 }

// waitView is a waitProgress with the dynos behind it.
type waitView struct {
	waitProgress
	notUp   []string      // "web.1 crashed", "web.3 down (v2)": what keeps the wait going
	missing int           // dynos the formation wants that do not exist yet
	crashed []client.Dyno // crashed dynos of the current release
}

// progress measures, for the app's current release, the dynos up with that
// release and their formation's size against the formation's quantity of the
// types the release runs. Any other dyno still listed (an old release's, one
// being replaced or stopped, a crashed one) means the app is not there yet.
func progress(ctx context.Context, c *client.Client, app, onlyType string) (waitView, error) {
	a, err := c.App(ctx, app)
	if err != nil {
		return waitView{}, err
	}
	v := waitView{waitProgress: waitProgress{version: a.ReleaseVersion}}
	if v.version == 0 {
		return v, fmt.Errorf("%s has no release yet: deploy it first (dyno deploy DIR -a %s)", app, app)
	}
	formation, err := c.Formation(ctx, app)
	if err != nil {
		return v, err
	}
	// A type the release's Procfile lacks runs nothing; the API shows it
	// without a command, unless it shows no commands at all.
	withCommand := false
	for _, f := range formation {
		withCommand = withCommand || f.Command != ""
	}
	sizes := map[string]string{} // the counted types and their sizes
	for _, f := range formation {
		if (onlyType != "" && f.Type != onlyType) || (withCommand && f.Command == "") {
			continue
		}
		sizes[f.Type] = f.SizeName()
		v.total += f.Quantity
	}
	dynos, err := c.Dynos(ctx, app)
	if err != nil {
		return v, err
	}
	current := 0 // dynos of the current release and a counted type
	for _, d := range dynos {
		if isOneOff(d) || (onlyType != "" && d.Type != onlyType) {
			continue
		}
		size, counted := sizes[d.Type]
		sameSize := size == "" || d.Size == "" || strings.EqualFold(size, d.Size)
		ofRelease := d.Release.Version == v.version
		if counted && ofRelease {
			current++
		}
		if counted && sameSize && d.State == "up" && ofRelease {
			v.up++
			continue
		}
		v.others++
		what := d.Name + " " + d.State
		if !ofRelease {
			what += fmt.Sprintf(" (v%d)", d.Release.Version)
		}
		v.notUp = append(v.notUp, what)
		if ofRelease && d.State == "crashed" {
			v.crashed = append(v.crashed, d)
		}
	}
	v.missing = max(0, v.total-current)
	return v, nil
}

// timeoutError says how long ps:wait waited and what was still not up.
func timeoutError(timeout time.Duration, v waitView) error {
	msg := fmt.Sprintf("timed out after %s waiting for every dyno to be running v%d (%d / %d up)", timeout, v.version, v.up, v.total)
	still := append([]string(nil), v.notUp...)
	if v.missing > 0 {
		still = append(still, fmt.Sprintf("%d not started yet", v.missing))
	}
	if len(still) > 0 {
		msg += ": " + strings.Join(still, ", ")
	}
	return errors.New(msg)
}

func (s *session) psWaitCommand() *cobra.Command {
	interval := secondsOrDuration(250 * time.Millisecond)
	timeout := secondsOrDuration(10 * time.Minute)
	var onlyType string
	cmd := &cobra.Command{
		Use:   "ps:wait",
		Short: "wait until every dyno of the app runs its current release",
		Args:  cobra.NoArgs,
	}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Duration(timeout))
		defer cancel()
		var last waitView
		shown := false
		told := map[string]bool{} // crashed dynos (by ID) already reported
		for {
			v, err := progress(ctx, c, name, onlyType)
			if err != nil {
				if ctx.Err() == context.DeadlineExceeded && cmd.Context().Err() == nil {
					return timeoutError(time.Duration(timeout), last)
				}
				return err
			}
			if v.done() {
				fmt.Fprintf(s.stderr, "Waiting for every dyno to be running v%d... done\n", v.version)
				return nil
			}
			if !shown || v.waitProgress != last.waitProgress {
				fmt.Fprintf(s.stderr, "Waiting for every dyno to be running v%d... %d / %d\n", v.version, v.up, v.total)
				shown = true
			}
			// A crash restarts the dyno (after a back-off), so keep
			// waiting, but say once per crash where to look.
			for _, d := range v.crashed {
				if told[d.ID] {
					continue
				}
				told[d.ID] = true
				exit := ""
				if d.ExitStatus != nil {
					exit = fmt.Sprintf(" (exit status %d)", *d.ExitStatus)
				}
				fmt.Fprintf(s.stderr, "%s crashed%s: see 'dyno logs -a %s --dyno %s'\n", d.Name, exit, name, d.Name)
			}
			last = v
			t := time.NewTimer(time.Duration(interval))
			select {
			case <-ctx.Done():
				t.Stop()
				if cmd.Context().Err() != nil {
					return cmd.Context().Err()
				}
				return timeoutError(time.Duration(timeout), v)
			case <-t.C:
			}
		}
	}
	cmd.Flags().Var(&interval, "wait-interval", "how often to ask the API (250ms, 2s, or seconds)")
	cmd.Flags().Var(&timeout, "timeout", "give up after this long (10m, 30s, or seconds)")
	cmd.Flags().StringVarP(&onlyType, "type", "t", "", "wait only for dynos of this process type")
	return cmd
}

// secondsOrDuration is a duration flag that also takes plain seconds, as the
// heroku CLI's --wait-interval does.
type secondsOrDuration time.Duration

func (d *secondsOrDuration) String() string { return time.Duration(*d).String() }
func (d *secondsOrDuration) Type() string   { return "duration" }

func (d *secondsOrDuration) Set(v string) error {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		*d = secondsOrDuration(secs * float64(time.Second))
	} else if dur, err := time.ParseDuration(v); err == nil {
		*d = secondsOrDuration(dur)
	} else {
		return fmt.Errorf("%q is not a duration: use 250ms, 2s, 10m or a number of seconds", v)
	}
	if *d <= 0 {
		return fmt.Errorf("%q is not a positive duration", v)
	}
	return nil
}
