package model

import "time"

// Dyno states as the Platform API and the logs name them.
const (
	StateStarting = "starting"
	StateUp       = "up"
	StateCrashed  = "crashed"
	StateDown     = "down"
)

// Assignment tells a host to run one dyno. Only the manifold writes
// assignments; it stores them under AssignmentKey(HostID, ID) so that each
// agent watches only its own. An assignment is never reused for a second
// process: a restart is a new assignment with a new ID.
type Assignment struct {
	ID         string            `json:"id"`
	HostID     string            `json:"host_id"`
	AppID      string            `json:"app_id"`
	AppName    string            `json:"app_name"`
	Type       string            `json:"type"`
	Name       string            `json:"name"` // web.2
	Index      int               `json:"index"`
	Release    int               `json:"release"`
	Slug       Slug              `json:"slug"`
	Command    string            `json:"command"`
	Env        map[string]string `json:"env"` // config vars of the release
	Size       string            `json:"size"`
	Generation int64             `json:"generation"`
	// CrashCount counts the crashes of this dyno slot since it last started
	// correctly, was restarted, released or scaled to zero.
	CrashCount int `json:"crash_count"`
	// RestartAt is set by the manifold on a crashed dyno that waits out its
	// back-off before it is replaced.
	RestartAt time.Time `json:"restart_at,omitzero"`
	// PendingReason says why the dyno has no host yet (no live host has
	// room for its size). Only a pending assignment, with HostID "" and
	// stored under AssignmentKey(PendingHost, ID), has one.
	PendingReason string    `json:"pending_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// OneOff marks a one-off dyno (run.N, scheduler.N): it has the ID of
	// its OneOff request, is never restarted, and ends at ExpiresAt.
	OneOff    bool      `json:"one_off,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Attach joins an attached one-off's stdio to its client.
	Attach *Attach `json:"attach,omitempty"`
}

// PendingHost is the key prefix of assignments waiting for a host with
// room. No agent watches it, so a pending dyno runs nowhere.
const PendingHost = "pending"

// AssignmentKey is the store key of an assignment.
func AssignmentKey(hostID, dynoID string) string { return hostID + "." + dynoID }

// Pending reports whether the assignment waits for a host.
func (a Assignment) Pending() bool { return a.HostID == "" }

// Key is the assignment's store key: under its host, or under PendingHost
// while it has none.
func (a Assignment) Key() string {
	if a.Pending() {
		return AssignmentKey(PendingHost, a.ID)
	}
	return AssignmentKey(a.HostID, a.ID)
}

// DynoStatus is what the agent running a dyno reports about it. Only agents
// write statuses; they are stored under StatusKey(AppID, ID).
type DynoStatus struct {
	ID       string `json:"id"`
	HostID   string `json:"host_id"`
	AppID    string `json:"app_id"`
	AppName  string `json:"app_name"`
	Type     string `json:"type"`
	Name     string `json:"name"`
	Release  int    `json:"release"`
	Size     string `json:"size"`
	Command  string `json:"command"`
	State    string `json:"state"`
	Endpoint string `json:"endpoint,omitempty"` // host:port the router dials, web dynos only
	// ExitStatus is the process's exit status once it ended (137 for SIGKILL).
	ExitStatus *int      `json:"exit_status,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	UpAt       time.Time `json:"up_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// StatusKey is the store key of a dyno status.
func StatusKey(appID, dynoID string) string { return appID + "." + dynoID }

// Host is a machine that runs dynos, as its agent registers it.
type Host struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"` // where the router reaches its dynos
	MemoryMB    int       `json:"memory_mb"`
	CPUs        int       `json:"cpus"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	StartedAt   time.Time `json:"started_at"`
}
