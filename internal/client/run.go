package client

import (
	"context"
	"net/http"
)

// DynoCreate is a one-off dyno to start (POST /apps/{app}/dynos).
type DynoCreate struct {
	Command string `json:"command"`
	// Attach asks for an attach_url (rendezvous) instead of sending the
	// output to the app's logs.
	Attach bool              `json:"attach"`
	Size   string            `json:"size,omitempty"`
	Type   string            `json:"type,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// TimeToLive is in seconds (at most 86400); 0 is the default, 24 h.
	TimeToLive int  `json:"time_to_live,omitempty"`
	ForceNoTTY bool `json:"force_no_tty,omitempty"`
}

// CreateDyno starts a one-off dyno; an attached one has AttachURL set.
func (c *Client) CreateDyno(ctx context.Context, app string, req DynoCreate) (*Dyno, error) {
	var d Dyno
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/dynos", req, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
