package model

import (
	"fmt"
	"time"
)

// One-off dyno defaults (heroku.md §1.8).
const (
	// OneOffType is the type of dynos started by `dyno run`: run.N.
	OneOffType = "run"
	// OneOffMaxTTL is the longest a one-off may live, and its default.
	OneOffMaxTTL = 24 * time.Hour
)

// OneOff is a request for a one-off dyno (`dyno run`, the scheduler). The
// API writes it, under StatusKey(AppID, ID) in the oneoffs bucket, and sets
// StopRequested to end it; the manifold turns it into an assignment with
// the same ID and deletes it once the dyno is done, so that a finished
// one-off is never started again.
type OneOff struct {
	ID      string `json:"id"`
	AppID   string `json:"app_id"`
	AppName string `json:"app_name"`
	Type    string `json:"type"` // "run", "scheduler"
	Name    string `json:"name"` // run.4821
	// Command is the command line, with a Procfile type already replaced
	// by its command.
	Command string `json:"command"`
	Size    string `json:"size"`
	// Env is added to the release's config vars (dyno run -e K=V).
	Env map[string]string `json:"env,omitempty"`
	// Attach, when set, connects the dyno's stdio to a client through the
	// rendezvous; without it the output goes to the app's logs.
	Attach    *Attach   `json:"attach,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	// Pinned, when set, is the release the dyno runs instead of the app's
	// current one: the release phase runs a release before it goes live.
	Pinned *Release `json:"pinned,omitempty"`
	// StopRequested is when `ps:stop run.N` asked for the dyno to end.
	StopRequested time.Time `json:"stop_requested,omitzero"`
	CreatedAt     time.Time `json:"created_at"`
}

// Attach is how an agent joins an attached one-off to its client.
type Attach struct {
	// Rendezvous is the TLS address ("host:port") the agent dials.
	Rendezvous string `json:"rendezvous"`
	// Token is the secret the agent presents ("DYNO <token>\r\n"); it is
	// not the client's secret.
	Token string `json:"token"`
	// TTY gives the dyno a pseudo-terminal; without it the client's bytes
	// are its stdin and its stdout and stderr go to the client.
	TTY bool `json:"tty,omitempty"`
}

// ValidateOneOffType reports why typ cannot name one-off dynos (run,
// scheduler), or nil.
func ValidateOneOffType(typ string) error {
	if err := ValidateProcessType(typ); err != nil {
		return fmt.Errorf("one-off dyno type: %w", err)
	}
	return nil
}

// OneOffEnded reports whether a one-off's status says its process is over:
// it crashed (or could not start), or it is down with an exit status.
func OneOffEnded(st DynoStatus) bool {
	return st.State == StateCrashed || (st.State == StateDown && st.ExitStatus != nil)
}
