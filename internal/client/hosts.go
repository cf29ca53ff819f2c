package client

import (
	"context"
	"net/http"
	"time"
)

// Host is a machine that runs dynos, as `GET /hosts` reports it.
type Host struct {
	ID               string     `json:"id"`
	Address          string     `json:"address"`
	State            string     `json:"state"` // live, lost, draining, drained
	MemoryMB         int        `json:"memory_mb"`
	MemoryReservedMB int        `json:"memory_reserved_mb"`
	MemoryFreeMB     int        `json:"memory_free_mb"`
	CPUs             int        `json:"cpus"`
	Dynos            int        `json:"dynos"`
	HeartbeatAt      time.Time  `json:"heartbeat_at"`
	HeartbeatAge     float64    `json:"heartbeat_age"` // seconds
	StartedAt        time.Time  `json:"started_at"`
	Drain            bool       `json:"drain"`
	DrainRequestedAt *time.Time `json:"drain_requested_at"`
}

// Hosts lists the hosts with their capacity, usage and state.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	return list[Host](ctx, c, "/hosts", ListRange{})
}

// DrainHost asks the manifold to move a host's dynos away and place no
// new ones there.
func (c *Client) DrainHost(ctx context.Context, id string) (*Host, error) {
	return c.hostAction(ctx, id, "drain")
}

// UndrainHost ends a drain: the host takes new dynos again.
func (c *Client) UndrainHost(ctx context.Context, id string) (*Host, error) {
	return c.hostAction(ctx, id, "undrain")
}

func (c *Client) hostAction(ctx context.Context, id, action string) (*Host, error) {
	var h Host
	if _, err := c.do(ctx, http.MethodPost, "/hosts/"+esc(id)+"/actions/"+action, nil, nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}
