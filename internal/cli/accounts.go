package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/dyno-platform/dyno/internal/client"
)

// Accounts: the current key and user (auth:*), API keys (authorizations),
// users (admin only) and an app's collaborators (access), as in the
// heroku CLI. Login and logout are in login.go.

func (s *session) accountCommands() []*cobra.Command {
	return []*cobra.Command{
		s.authTokenCommand(), s.authWhoamiCommand(),
		s.authorizationsCommand(), s.authorizationsCreateCommand(), s.authorizationsRevokeCommand(),
		s.usersCommand(), s.usersCreateCommand(),
		s.accessCommand(), s.accessAddCommand(), s.accessRemoveCommand(),
	}
}

// currentKey is the API key commands use: DYNO_API_KEY, else the stored
// login's (as api() chooses it).
func (s *session) currentKey() (string, error) {
	if key := s.env("DYNO_API_KEY"); key != "" {
		return key, nil
	}
	creds, err := s.loadCredentials()
	if err != nil {
		return "", err
	}
	apiURL := s.env("DYNO_API_URL")
	if apiURL != "" && strings.TrimRight(creds.APIURL, "/") != strings.TrimRight(apiURL, "/") {
		return "", fmt.Errorf("no API key for %s: run `dyno login` or set DYNO_API_KEY", apiURL)
	}
	if creds.APIKey == "" {
		return "", errors.New("no API key: run `dyno login` or set DYNO_API_KEY")
	}
	return creds.APIKey, nil
}

func (s *session) authTokenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "auth:token",
		Short: "print the API key the CLI uses (keep it secret)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			key, err := s.currentKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, key)
			return nil
		},
	}
}

func (s *session) authWhoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "auth:whoami",
		Short: "print the email of the user the CLI acts as",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			a, err := c.Account(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, a.Email)
			return nil
		},
	}
}

func (s *session) authorizationsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "authorizations",
		Short: "list your API keys (their IDs, not the keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			auths, err := c.Authorizations(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
			for _, a := range auths {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, a.Description, a.CreatedAt.Local().Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
}

func (s *session) authorizationsCreateCommand() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "authorizations:create",
		Short: "make another API key (for a CI job, say) and print it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			a, err := c.CreateAuthorization(cmd.Context(), description)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stderr, "Created API key %s: it is shown only now.\n", a.ID)
			fmt.Fprintln(s.stdout, a.AccessToken.Token)
			return nil
		},
	}
	cmd.Flags().StringVarP(&description, "description", "d", "", "what the key is for")
	return cmd
}

func (s *session) authorizationsRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "authorizations:revoke ID",
		Short: "revoke one of your API keys: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			if _, err := c.RevokeAuthorization(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Revoked API key %s\n", args[0])
			return nil
		},
	}
}

func (s *session) usersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "users",
		Short: "list the platform's users (admin only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			users, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, "=== Users")
			for _, u := range users {
				fmt.Fprintln(s.stdout, u.Email)
			}
			return nil
		},
	}
}

func (s *session) usersCreateCommand() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "users:create EMAIL",
		Short: "create a user who logs in with a password (admin only)",
		Long:  "users:create asks for the new user's password twice, or reads it from the first line of stdin with --password-stdin.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.api()
			if err != nil {
				return err
			}
			in := bufio.NewReader(s.stdin)
			password, err := s.readPassword(in, "Password: ", fromStdin)
			if err != nil {
				return err
			}
			if !fromStdin {
				again, err := s.readPassword(in, "Password (again): ", false)
				if err != nil {
					return err
				}
				if again != password {
					return errors.New("the passwords differ: run the command again")
				}
			}
			u, err := c.CreateUser(cmd.Context(), args[0], password)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Created user %s: they log in with `dyno login`\n", u.Email)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from stdin")
	return cmd
}

// readPassword reads one line: from a terminal without echo after asking,
// from stdin as it comes with fromStdin.
func (s *session) readPassword(in *bufio.Reader, question string, fromStdin bool) (string, error) {
	if !fromStdin {
		fmt.Fprint(s.stderr, question)
		if f, ok := s.stdin.(*os.File); ok {
			if t := openTerminal(f); t != nil {
				if restore, err := noEcho(t.fd); err == nil {
					defer fmt.Fprintln(s.stderr) // the Enter was not echoed
					defer restore()
				}
			}
		}
	}
	line, err := in.ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if err != nil && line == "" {
		return "", errors.New("no password on stdin: type it, or pipe it with --password-stdin")
	}
	if line == "" {
		return "", errors.New("the password is empty")
	}
	return line, nil
}

// noEcho turns the terminal's echo off until restore.
func noEcho(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ECHONL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

func (s *session) accessCommand() *cobra.Command {
	return s.appListCommand("access", "list who has access to an app", "collaborators", func(ctx context.Context, c *client.Client, name string) error {
		cols, err := c.Collaborators(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "=== %s Access List\n", name)
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		for _, col := range cols {
			fmt.Fprintf(tw, "%s\t%s\n", col.User.Email, col.Role)
		}
		return tw.Flush()
	})
}

func (s *session) accessAddCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "access:add EMAIL", Short: "give a user access to an app (its owner only)", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Adding %s access to the app %s... ", args[0], name)
		if _, err := c.AddCollaborator(cmd.Context(), name, args[0]); err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		return nil
	}
	return cmd
}

func (s *session) accessRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "access:remove EMAIL", Short: "take a user's access to an app away (its owner only)", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Removing %s access from the app %s... ", args[0], name)
		if _, err := c.RemoveCollaborator(cmd.Context(), name, args[0]); err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		return nil
	}
	return cmd
}

// loginWithPassword makes a key for email on the API at apiURL.
func (s *session) loginWithPassword(ctx context.Context, apiURL, email, password string) (*client.Authorization, error) {
	host, _ := os.Hostname()
	a, err := s.newClient(apiURL, "").Login(ctx, email, password, "dyno login from "+host)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
		return nil, errors.New("wrong email or password: try again, or ask the platform's admin")
	}
	return a, err
}
