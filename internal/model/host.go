package model

import "time"

// Host liveness defaults: an agent refreshes its host record every
// DefaultHostHeartbeat, and a host whose last heartbeat is older than
// DefaultHostTTL is lost (its dynos are started elsewhere). With 1 s and
// 5 s a dead host's dynos are replaced within about 6 s plus a start.
const (
	DefaultHostHeartbeat = time.Second
	DefaultHostTTL       = 5 * time.Second
)

// Host states as `dyno hosts` shows them.
const (
	HostLive     = "live"     // heartbeating, takes dynos
	HostLost     = "lost"     // heartbeat older than the TTL: its dynos are replaced
	HostDraining = "draining" // takes no new dynos; its dynos are being moved
	HostDrained  = "drained"  // draining and runs no dyno any more
)

// HostSettings is the control plane's own record about a host, written by
// the API (the host record itself is its agent's). Stored under the host ID.
type HostSettings struct {
	HostID string `json:"host_id"`
	// Drain asks the manifold to move the host's dynos away and to place
	// no new ones on it.
	Drain bool `json:"drain"`
	// DrainAt is when Drain was last set (zero when not draining).
	DrainAt   time.Time `json:"drain_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}
