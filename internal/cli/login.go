package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// credentials are what `dyno login` stores: one API and its key.
type credentials struct {
	APIURL string `json:"api_url"`
	APIKey string `json:"api_key"`
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
	var apiURL, apiKey string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "store the API URL and key the CLI uses",
		Long:  "login asks for the API URL and an API key (or takes --api-url and --api-key), checks them, and stores them in ~/.config/dyno/credentials.",
		Args:  cobra.NoArgs,
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
				answer, err := s.prompt(in, fmt.Sprintf("Dyno API URL [%s]: ", def))
				if err != nil {
					return err
				}
				apiURL = answer
				if apiURL == "" {
					apiURL = def
				}
			}
			if apiKey == "" {
				answer, err := s.prompt(in, "API key: ")
				if err != nil {
					return err
				}
				if apiKey = answer; apiKey == "" {
					return errors.New("no API key given: `dyno server` writes one to admin-api-key in its data directory")
				}
			}
			apiURL = strings.TrimRight(apiURL, "/")
			c := s.newClient(apiURL, apiKey)
			if _, err := c.Apps(cmd.Context()); err != nil {
				return err
			}
			path, err := s.storeCredentials(credentials{APIURL: apiURL, APIKey: apiKey})
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Logged in to %s (stored in %s)\n", apiURL, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&apiURL, "api-url", "", "the Dyno API's URL, such as "+DefaultAPIURL)
	cmd.Flags().StringVar(&apiKey, "api-key", "", "an API key")
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
		Short: "forget the stored API URL and key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := s.credentialsPath()
			if err != nil {
				return err
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("forget the login: %w", err)
			}
			fmt.Fprintln(s.stdout, "Logged out")
			return nil
		},
	}
}
