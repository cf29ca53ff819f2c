package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// credentials are what `dyno login` stores: one API and its key, and for a
// password login the user and the key's authorization ID (which `dyno
// logout` revokes).
type credentials struct {
	APIURL          string `json:"api_url"`
	APIKey          string `json:"api_key"`
	Email           string `json:"email,omitempty"`
	AuthorizationID string `json:"authorization_id,omitempty"`
}

// credentialsPath is ~/.config/dyno/credentials.
func (s *session) credentialsPath() (string, error) {
	home := s.env("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("find the home directory for the stored login: %w", err)
		}
	}
	return filepath.Join(home, ".config", "dyno", "credentials"), nil
}

// loadCredentials reads the stored login; none stored is not an error.
func (s *session) loadCredentials() (credentials, error) {
	var creds credentials
	path, err := s.credentialsPath()
	if err != nil {
		return creds, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return creds, nil
	}
	if err != nil {
		return creds, fmt.Errorf("read the stored login: %w", err)
	}
	if err := json.Unmarshal(data, &creds); err != nil {
		return creds, fmt.Errorf("the stored login %s is damaged (%v): run `dyno login` again", path, err)
	}
	return creds, nil
}

// storeCredentials writes the login readable by its owner only, replacing
// the old file in one rename so that a crash never leaves half a file.
func (s *session) storeCredentials(creds credentials) (string, error) {
	path, err := s.credentialsPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("store the login: %w", err)
	}
	data, err := json.MarshalIndent(creds, "", "  ")
	if err != nil {
		return "", fmt.Errorf("store the login: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return "", fmt.Errorf("store the login: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("store the login: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("store the login: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("store the login: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("store the login: %w", err)
	}
	return path, nil
}

func (s *session) loginCommand() *cobra.Command {
	var apiURL, apiKey, email string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "log in: store the API URL and a key the CLI uses",
		Long: "login asks for the API URL, then your email and password (or takes --api-url, --email and\n" +
			"--password-stdin) and makes a new API key, or takes an existing key (--api-key, or typed\n" +
			"instead of the email); it checks the key and stores it in ~/.config/dyno/credentials.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := bufio.NewReader(s.stdin)
			if apiURL == "" {
				def := s.env("DYNO_API_URL")
				if def == "" {
					if creds, err := s.loadCredentials(); err == nil {
						def = creds.APIURL
					}
				}
				if def == "" {
					def = DefaultAPIURL
				}
				// With the password on stdin, stdin holds nothing else: the
				// URL comes from the flag, the environment or the default.
				answer := ""
				if !passwordStdin && apiKey == "" {
					var err error
					if answer, err = s.prompt(in, fmt.Sprintf("Dyno API URL [%s]: ", def)); err != nil {
						return err
					}
				}
				apiURL = answer
				if apiURL == "" {
					apiURL = def
				}
			}
			if apiKey == "" && email == "" {
				answer, err := s.prompt(in, "Email (or an API key): ")
				if err != nil {
					return err
				}
				if strings.Contains(answer, "@") {
					email = answer
				} else if apiKey = answer; apiKey == "" {
					return errors.New("no email or API key given: the platform's admin creates users (`dyno users:create`); `dyno server` writes the admin's key to admin-api-key in its data directory")
				}
			}
			apiURL = strings.TrimRight(apiURL, "/")
			creds := credentials{APIURL: apiURL, APIKey: apiKey}
			if email != "" {
				password, err := s.readPassword(in, "Password: ", passwordStdin)
				if err != nil {
					return err
				}
				a, err := s.loginWithPassword(cmd.Context(), apiURL, email, password)
				if err != nil {
					return err
				}
				creds.APIKey, creds.Email, creds.AuthorizationID = a.AccessToken.Token, a.User.Email, a.ID
			}
			c := s.newClient(apiURL, creds.APIKey)
			if _, err := c.Apps(cmd.Context()); err != nil {
				return err
			}
			path, err := s.storeCredentials(creds)
			if err != nil {
				return err
			}
			who := ""
			if creds.Email != "" {
				who = " as " + creds.Email
			}
			fmt.Fprintf(s.stdout, "Logged in to %s%s (stored in %s)\n", apiURL, who, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&apiURL, "api-url", "", "the Dyno API's URL, such as "+DefaultAPIURL)
	cmd.Flags().StringVar(&apiKey, "api-key", "", "an API key")
	cmd.Flags().StringVar(&email, "email", "", "your email: log in with your password")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	return cmd
}

// prompt asks on stderr and reads one line of stdin.
func (s *session) prompt(in *bufio.Reader, question string) (string, error) {
	fmt.Fprint(s.stderr, question)
	line, err := in.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no answer on stdin: give --api-url and --api-key instead")
		}
		return "", fmt.Errorf("read the answer: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func (s *session) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "revoke the key `dyno login` made and forget the stored login",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := s.credentialsPath()
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintln(s.stdout, "Not logged in.")
				return nil
			}
			if creds, err := s.loadCredentials(); err == nil && creds.AuthorizationID != "" {
				// A key the login made is the login's to end; one given
				// with --api-key is left alone.
				_, err := s.newClient(creds.APIURL, creds.APIKey).RevokeAuthorization(cmd.Context(), creds.AuthorizationID)
				var apiErr *client.Error
				if err != nil && !(errors.As(err, &apiErr) && (apiErr.StatusCode == http.StatusUnauthorized || apiErr.StatusCode == http.StatusNotFound)) {
					fmt.Fprintf(s.stderr, "Warning: could not revoke the API key %s (%s): revoke it with `dyno authorizations:revoke %s`\n", creds.AuthorizationID, s.describe(err), creds.AuthorizationID)
				}
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("forget the login: %w", err)
			}
			fmt.Fprintln(s.stdout, "Logged out")
			return nil
		},
	}
}
