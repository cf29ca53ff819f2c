// Package cli holds Dyno's user commands (apps, deploy, ps, logs, config,
// releases, login...), whose verbs, flags and output mirror the heroku CLI.
// They talk to the Platform API only through internal/client.
//
// Data goes to stdout, progress and errors to stderr ("Error: <message>"),
// and every failure gives a non-zero exit status.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// Version is the CLI's version, sent in its User-Agent; the build sets it
// with -ldflags "-X github.com/dyno-platform/dyno/internal/cli.Version=1.2.3".
var Version = "dev"

// DefaultAPIURL is where the CLI looks for the API when nothing says otherwise.
const DefaultAPIURL = "http://127.0.0.1:5000"

// Exit statuses.
const (
	exitOK          = 0
	exitError       = 1
	exitInterrupted = 130
)

// Run runs one CLI command. args are the command line without the program
// name (os.Args[1:]); env looks up environment variables (os.Getenv). It
// returns the exit status; Ctrl-C cancels the command.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	s := &session{
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		env:    env,
		hc:     &http.Client{}, // no Timeout: build output and logs are streams
		now:    time.Now,
	}
	return s.run(ctx, args)
}

// session is what every command needs: its streams, its environment, an
// HTTP client and a clock (tests inject the last two).
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string
	hc             *http.Client
	now            func() time.Time

	// dir is where git commands run (apps:create, git:remote); the
	// process's working directory when empty.
	dir string

	apiURL string // resolved by api(), for error messages
	hasKey bool
}

func (s *session) run(ctx context.Context, args []string) int {
	root := s.rootCommand()
	root.SetArgs(args)
	root.SetIn(s.stdin)
	root.SetOut(s.stdout)
	root.SetErr(s.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var status *exitStatusError
	if errors.As(err, &status) { // dyno run: the remote command's status, nothing printed
		return status.code
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintln(s.stderr, "Error: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(s.stderr, "Error: %s\n", s.describe(err))
	return exitError
}

func (s *session) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "dyno",
		Short: "Dyno: a self-hosted dyno platform",
		Long: "Dyno runs apps as dynos. `dyno server` starts the platform; every other command is the CLI,\n" +
			"which reads DYNO_API_URL, DYNO_API_KEY (or the stored `dyno login`) and DYNO_APP.",
		Version:       Version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate(versionLine() + "\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(s.maintenanceCommands()...)
	root.AddCommand(s.schedulerCommands()...)
	root.AddCommand(s.buildpacksCommands()...)
	root.AddCommand(s.hostsCommands()...)
	root.AddCommand(s.accountCommands()...)
	root.AddCommand(platformCommands()...) // help entries only: see platformhelp.go
	root.AddCommand(
		s.appsCommand(), s.appsCreateCommand(), s.appsInfoCommand(), s.appsDestroyCommand(),
		s.deployCommand(), s.gitRemoteCommand(), s.gitCloneCommand(), s.gitCredentialsCommand(),
		s.psCommand(), s.psScaleCommand(), s.psTypeCommand(), s.psRestartCommand(), s.psStopCommand(), s.psWaitCommand(),
		s.logsCommand(), s.runCommand(), s.runDetachedCommand(),
		s.configCommand(), s.configGetCommand(), s.configSetCommand(), s.configUnsetCommand(),
		s.releasesCommand(), s.releasesInfoCommand(), s.rollbackCommand(), s.buildsCommand(), s.buildsOutputCommand(),
		s.domainsCommand(), s.domainsAddCommand(), s.domainsRemoveCommand(),
		s.drainsCommand(), s.drainsAddCommand(), s.drainsRemoveCommand(),
		s.certsCommand(), s.certsAddCommand(), s.certsRemoveCommand(), s.certsCACommand(),
		s.usageCommand(), s.invoicesCommand(), s.invoiceCommand(),
		s.loginCommand(), s.logoutCommand(), s.versionCommand(), serverCommand(),
	)
	return root
}

// serverCommand only documents `dyno server` in the help: the dyno binary
// runs the server before the CLI ever sees its arguments (its flags are
// the standard library's, not cobra's).
func serverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "server [flags]",
		Short: "start the platform: API, scheduler, dyno host and router (`dyno server --help` lists its flags)",
		Long: "dyno server starts the whole platform on this machine: the Platform API, the scheduler, a host\n" +
			"agent that runs dynos, and the HTTP router. Its flags (--data-dir, --api, --http, --domain, ...)\n" +
			"are listed by `dyno server --help`.",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("`dyno server` is run by the dyno binary itself, not by the CLI: start it with the dyno command")
		},
	}
}

// describe turns an error into the one line a user reads after "Error: ".
func (s *session) describe(err error) string {
	var unreachable *client.UnreachableError
	if errors.As(err, &unreachable) {
		where := s.apiURL
		if where == "" {
			if u, perr := url.Parse(unreachable.URL); perr == nil {
				where = u.Scheme + "://" + u.Host
			}
		}
		return fmt.Sprintf("cannot reach the Dyno API at %s: is `dyno server` running?", where)
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
		// The API's message speaks of headers; the user needs a key.
		if !s.hasKey {
			return "no API key: run `dyno login` or set DYNO_API_KEY"
		}
		return "the API key was refused: check DYNO_API_KEY or run `dyno login`"
	}
	return err.Error()
}

// api builds a client from DYNO_API_URL and DYNO_API_KEY, falling back to
// the credentials `dyno login` stored (the key only for the URL it was
// stored with).
func (s *session) api() (*client.Client, error) {
	apiURL, key := s.env("DYNO_API_URL"), s.env("DYNO_API_KEY")
	if apiURL == "" || key == "" {
		creds, err := s.loadCredentials()
		if err != nil {
			return nil, err
		}
		if apiURL == "" {
			apiURL = creds.APIURL
		}
		if key == "" && creds.APIKey != "" && strings.TrimRight(creds.APIURL, "/") == strings.TrimRight(apiURL, "/") {
			key = creds.APIKey
		}
	}
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	return s.newClient(apiURL, key), nil
}

func (s *session) newClient(apiURL, key string) *client.Client {
	s.apiURL = strings.TrimRight(apiURL, "/")
	s.hasKey = key != ""
	return client.New(apiURL, key, s.hc).WithUserAgent("dyno-cli/" + Version)
}

// appFlag adds -a/--app to cmd and returns where its value lands.
func appFlag(cmd *cobra.Command) *string {
	var app string
	cmd.Flags().StringVarP(&app, "app", "a", "", "app to run the command against (default $DYNO_APP)")
	return &app
}

// appName is the app from -a/--app, else DYNO_APP, else the app of the
// current directory's git remote.
func (s *session) appName(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if app := s.env("DYNO_APP"); app != "" {
		return app, nil
	}
	if app, err := s.gitApp(); app != "" || err != nil { // see gitapp.go
		return app, err
	}
	return "", errors.New("no app given: use -a APP or set DYNO_APP, or run it inside a git repository with a dyno remote")
}

// target resolves the app and builds the client, the start of most commands.
func (s *session) target(appFlagValue string) (*client.Client, string, error) {
	app, err := s.appName(appFlagValue)
	if err != nil {
		return nil, "", err
	}
	c, err := s.api()
	if err != nil {
		return nil, "", err
	}
	return c, app, nil
}

// printRaw prints the API's JSON answer indented.
// appListCommand is an app's read-only listing: with --json it prints the
// API's JSON of the app's resource, else show prints it for people.
func (s *session) appListCommand(use, short, resource string, show func(ctx context.Context, c *client.Client, app string) error) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		if asJSON {
			return s.printRaw(cmd.Context(), c, appPath(name, resource))
		}
		return show(cmd.Context(), c, name)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (s *session) printRaw(ctx context.Context, c *client.Client, path string) error {
	raw, err := c.Raw(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return s.printJSON(raw)
}

func (s *session) printJSON(raw json.RawMessage) error {
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return fmt.Errorf("the API answered JSON that does not parse: %w", err)
	}
	_, err = s.stdout.Write(append(out, '\n'))
	return err
}

// appPath is the API path of an app, with more segments appended.
func appPath(app string, rest ...string) string {
	p := "/apps/" + url.PathEscape(app)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// when formats t as the heroku CLI does: "2026/11/26 14:00:00 +0000 (~ 5s ago)".
func (s *session) when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	now := s.now()
	msg := t.In(now.Location()).Format("2006/01/02 15:04:05 -0700")
	elapsed := int(now.Sub(t).Seconds())
	switch {
	case elapsed < 0:
		return msg
	case elapsed <= 60:
		return fmt.Sprintf("%s (~ %ds ago)", msg, elapsed)
	case elapsed <= 60*60:
		return fmt.Sprintf("%s (~ %dm ago)", msg, (elapsed+30)/60)
	case elapsed <= 25*60*60:
		return fmt.Sprintf("%s (~ %dh ago)", msg, (elapsed+1800)/3600)
	}
	return msg
}

// styledObject prints keys aligned as "KEY: value", in sorted order.
func styledObject(w io.Writer, obj map[string]string) {
	keys := make([]string, 0, len(obj))
	width := 0
	for k := range obj {
		keys = append(keys, k)
		width = max(width, len(k)+1)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%-*s %s\n", width, k+":", obj[k])
	}
}

// styledFields prints ordered "Key: value" pairs aligned.
func styledFields(w io.Writer, fields [][2]string) {
	width := 0
	for _, f := range fields {
		width = max(width, len(f[0])+1)
	}
	for _, f := range fields {
		fmt.Fprintf(w, "%-*s %s\n", width, f[0]+":", f[1])
	}
}

// versionCommand prints the CLI's version.
func (s *session) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "show the CLI's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(s.stdout, versionLine())
			return err
		},
	}
}

// versionLine is what `dyno version` and `dyno --version` print.
func versionLine() string {
	return fmt.Sprintf("dyno-cli/%s %s-%s %s", Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
