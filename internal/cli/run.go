package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
	"github.com/dyno-platform/dyno/internal/rendezvous"
)

// exitStatusError makes the CLI exit with a status of its own choosing:
// `dyno run` exits with the remote command's.
type exitStatusError struct{ code int }

func (e *exitStatusError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// runFlags are the flags `run` and `run:detached` share.
type runFlags struct {
	size string
	env  []string
	ttl  int
}

func (f *runFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.size, "size", "s", "", "dyno size (standard-1X, standard-2X, ...)")
	cmd.Flags().StringArrayVarP(&f.env, "env", "e", nil, "environment variables: K=V, several as K=V;K2=V2 or repeated -e")
	cmd.Flags().IntVar(&f.ttl, "ttl", 0, "seconds the dyno may live (at most and by default 86400)")
	// Everything after the command belongs to it: dyno run ls -la.
	cmd.Flags().SetInterspersed(false)
}

// parseEnv turns -e values into a map.
func parseEnv(values []string) (map[string]string, error) {
	env := map[string]string{}
	for _, v := range values {
		for _, kv := range strings.Split(v, ";") {
			if strings.TrimSpace(kv) == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("-e %q: write variables as KEY=value", kv)
			}
			env[k] = val
		}
	}
	return env, nil
}

// commandLine joins the arguments into the command the dyno's shell runs.
// A lone argument is the command line as it is (dyno run 'echo $PORT'
// expands $PORT in the dyno). Several keep the boundaries and the meaning
// they had in the local shell: each one that needs it is single-quoted, so
// dyno run -- sh -c 'x=5; echo "x=$x"' runs exactly that. (Heroku's CLI
// double-quotes instead, which breaks on apostrophes and on $ meant for an
// inner shell.)
func commandLine(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

func (s *session) runCommand() *cobra.Command {
	var (
		f               runFlags
		noTTY, exitCode bool
	)
	cmd := &cobra.Command{
		Use:   "run [flags] COMMAND...",
		Short: "run a one-off dyno attached to this terminal; exits with the command's status",
		Long: "dyno run starts a one-off dyno (run.N) with the app's current release and joins its input and output\n" +
			"to this terminal. With a terminal, keys go to the dyno as typed (Ctrl-C included) and the window size\n" +
			"follows; without one (or with --no-tty) stdin is piped and its end is sent, and Ctrl-C sends SIGINT to\n" +
			"the dyno (a second one detaches). The CLI exits with the command's exit status.",
		Args: cobra.MinimumNArgs(1),
	}
	app := appFlag(cmd)
	f.add(cmd)
	cmd.Flags().BoolVar(&noTTY, "no-tty", false, "do not give the dyno a terminal")
	cmd.Flags().BoolVarP(&exitCode, "exit-code", "x", false, "exit with the command's status (always done; for heroku compatibility)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return s.runAttached(cmd.Context(), *app, f, args, noTTY)
	}
	return cmd
}

func (s *session) runDetachedCommand() *cobra.Command {
	var (
		f    runFlags
		tail bool
	)
	cmd := &cobra.Command{
		Use:   "run:detached [flags] COMMAND...",
		Short: "run a one-off dyno in the background; its output goes to the app's logs",
		Args:  cobra.MinimumNArgs(1),
	}
	app := appFlag(cmd)
	f.add(cmd)
	cmd.Flags().BoolVarP(&tail, "tail", "t", false, "follow the dyno's logs until it ends")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		env, err := parseEnv(f.env)
		if err != nil {
			return err
		}
		line := commandLine(args)
		fmt.Fprintf(s.stderr, "Running `%s` on ⬢ %s... ", line, name)
		d, err := c.CreateDyno(cmd.Context(), name, client.DynoCreate{Command: line, Size: f.size, Env: env, TimeToLive: f.ttl})
		if err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintf(s.stderr, "done, %s\n", d.Name)
		if !tail {
			fmt.Fprintf(s.stderr, "Run `dyno logs -a %s --dyno %s` to view the output.\n", name, d.Name)
			return nil
		}
		return s.tailUntilEnded(cmd.Context(), c, name, d.Name)
	}
	return cmd
}

// tailUntilEnded prints a dyno's log lines until the dyno has ended.
func (s *session) tailUntilEnded(ctx context.Context, c *client.Client, app, dyno string) error {
	sess, err := c.CreateLogSession(ctx, app, client.LogSessionOpts{Lines: 1500, Tail: true, Dyno: dyno})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		s.awaitEnd(ctx, c, app, dyno)
		select { // the last lines are on their way
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}()
	err = c.StreamLogSession(ctx, sess.LogplexURL, func(line string) error {
		_, err := fmt.Fprintln(s.stdout, line)
		return err
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// awaitEnd polls the dyno until it ended or is gone; it returns its exit
// status (-1 when unknown).
func (s *session) awaitEnd(ctx context.Context, c *client.Client, app, dyno string) int {
	for {
		d, err := c.Dyno(ctx, app, dyno)
		switch {
		case client.IsNotFound(err):
			return -1
		case err == nil && d.ExitStatus != nil && (d.State == "crashed" || d.State == "down"):
			return *d.ExitStatus
		case err == nil && d.State == "crashed":
			return -1
		}
		select {
		case <-ctx.Done():
			return -1
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runAttached is `dyno run`.
func (s *session) runAttached(ctx context.Context, appFlag string, f runFlags, args []string, noTTY bool) error {
	c, name, err := s.target(appFlag)
	if err != nil {
		return err
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	stdinFile, _ := s.stdin.(*os.File)
	var term *terminal
	if stdinFile != nil && !noTTY {
		term = openTerminal(stdinFile)
	}
	tty := term != nil
	if tty {
		// As Heroku's CLI: the terminal's type and size go in the env.
		if _, ok := env["TERM"]; !ok {
			env["TERM"] = cmp(s.env("TERM"), "xterm-256color")
		}
		if cols, rows, err := term.size(); err == nil && cols > 0 {
			env["COLUMNS"], env["LINES"] = strconv.Itoa(int(cols)), strconv.Itoa(int(rows))
		}
	}
	roots, err := s.platformRoots(ctx, c)
	if err != nil {
		return err
	}
	line := commandLine(args)
	fmt.Fprintf(s.stderr, "Running `%s` on ⬢ %s... ", line, name)
	d, err := c.CreateDyno(ctx, name, client.DynoCreate{Command: line, Attach: true, Size: f.size, Env: env,
		TimeToLive: f.ttl, ForceNoTTY: !tty})
	if err != nil {
		fmt.Fprintln(s.stderr, "failed")
		return err
	}
	if d.AttachURL == nil {
		fmt.Fprintln(s.stderr, "failed")
		return errors.New("the API gave no attach URL: use dyno run:detached")
	}
	conn, err := rendezvous.Attach(ctx, *d.AttachURL, roots)
	if err != nil {
		fmt.Fprintln(s.stderr, "failed")
		return fmt.Errorf("attach to %s: %w", d.Name, err)
	}
	defer conn.Close()
	fmt.Fprintf(s.stderr, "up, %s\n", d.Name)
	ctrl, err := rendezvous.DialControl(ctx, *d.AttachURL, roots)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", d.Name, err)
	}
	defer ctrl.Close()

	// Ctrl-C no longer cancels ctx's work: the session ends with the dyno.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	if tty {
		if err := term.makeRaw(); err == nil {
			defer term.restore()
		}
	}
	go func() { // our input: typed bytes, or a pipe whose end is sent
		n, _ := io.Copy(conn, s.stdin)
		if !tty {
			_ = ctrl.Send(rendezvous.ControlMessage{EOF: true, Sent: n})
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(s.stdout, conn)
	}()
	interrupts := 0
loop:
	for {
		select {
		case <-done:
			break loop
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGWINCH && tty:
				if cols, rows, err := term.size(); err == nil {
					_ = ctrl.Send(rendezvous.ControlMessage{Resize: &rendezvous.WindowSize{Cols: cols, Rows: rows}})
				}
			case sig == os.Interrupt:
				interrupts++
				if interrupts > 1 { // a second Ctrl-C detaches: the dyno gets SIGHUP
					conn.Close()
					break loop
				}
				_ = ctrl.Send(rendezvous.ControlMessage{Signal: "INT"})
			}
		}
	}
	if tty {
		term.restore()
	}
	// The agent writes the exit status before it hangs up.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	code := s.awaitEnd(wctx, c, name, d.Name)
	if code < 0 {
		return fmt.Errorf("%s ended without an exit status (stopped, or the connection broke)", d.Name)
	}
	if code != 0 {
		return &exitStatusError{code: code}
	}
	return nil
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// platformRoots is the platform CA the rendezvous certificate is signed
// by, fetched from the API the CLI already trusts with its key;
// DYNO_CA_FILE names a PEM file to use instead.
func (s *session) platformRoots(ctx context.Context, c *client.Client) (*x509.CertPool, error) {
	var pemBytes []byte
	var err error
	if path := s.env("DYNO_CA_FILE"); path != "" {
		pemBytes, err = os.ReadFile(path)
	} else {
		pemBytes, err = c.CA(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("get the platform CA to verify the rendezvous: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("the platform CA is not a PEM certificate")
	}
	return pool, nil
}
