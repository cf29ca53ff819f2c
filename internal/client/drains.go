package client

import (
	"context"
	"net/http"
	"time"
)

// LogDrain is where an app's log lines are forwarded to.
type LogDrain struct {
	ID        string       `json:"id"`
	URL       string       `json:"url"`
	Token     string       `json:"token"` // d.<uuid>, sent with every line
	Addon     *Ref         `json:"addon"`
	App       Ref          `json:"app"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	Health    *DrainHealth `json:"health"` // Dyno's; nil when no forwarder runs
}

// DrainHealth is how a drain's forwarding fares.
type DrainHealth struct {
	LastSuccessAt *time.Time `json:"last_success_at"`
	LastError     string     `json:"last_error"`
	LastErrorAt   *time.Time `json:"last_error_at"`
	Sent          int64      `json:"sent"`
	Dropped       int64      `json:"dropped"`
}

// LogDrains lists an app's drains.
func (c *Client) LogDrains(ctx context.Context, app string) ([]LogDrain, error) {
	return list[LogDrain](ctx, c, "/apps/"+esc(app)+"/log-drains", ListRange{})
}

// AddLogDrain adds a drain (syslog://, syslog+tls:// or https:// URL).
func (c *Client) AddLogDrain(ctx context.Context, app, url string) (*LogDrain, error) {
	var d LogDrain
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/log-drains", map[string]string{"url": url}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RemoveLogDrain removes a drain given by URL, token or ID.
func (c *Client) RemoveLogDrain(ctx context.Context, app, drain string) (*LogDrain, error) {
	var d LogDrain
	if _, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app)+"/log-drains/"+esc(drain), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
