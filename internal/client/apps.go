package client

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Ref names another resource, as Heroku embeds them: {"id": ..., "name": ...}.
type Ref struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// Owner is the account that owns an app.
type Owner struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
}

// App is an application as the API shows it.
type App struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Maintenance    bool       `json:"maintenance"`
	GitURL         string     `json:"git_url"`
	WebURL         string     `json:"web_url"`
	Owner          *Owner     `json:"owner"`
	Region         *Ref       `json:"region"`
	Stack          *Ref       `json:"stack"`
	ReleaseVersion int        `json:"release_version"` // Dyno's addition: the current release, 0 = none
	ReleasedAt     *time.Time `json:"released_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// Apps lists every app.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	return list[App](ctx, c, "/apps", ListRange{})
}

// CreateApp creates an app called name (empty lets the API choose one).
func (c *Client) CreateApp(ctx context.Context, name string) (*App, error) {
	body := map[string]string{}
	if name != "" {
		body["name"] = name
	}
	var a App
	if _, err := c.do(ctx, http.MethodPost, "/apps", body, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// App gets one app by name or ID.
func (c *Client) App(ctx context.Context, app string) (*App, error) {
	var a App
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app), nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DestroyApp deletes an app, stopping its dynos and removing its data.
func (c *Client) DestroyApp(ctx context.Context, app string) error {
	_, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app), nil, nil, nil)
	return err
}

// ConfigVars gets an app's config vars.
func (c *Client) ConfigVars(ctx context.Context, app string) (map[string]string, error) {
	vars := map[string]string{}
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/config-vars", nil, nil, &vars); err != nil {
		return nil, err
	}
	return vars, nil
}

// SetConfigVars sets (non-nil value) and removes (nil value) config vars in
// one new release and returns the app's whole map afterwards.
func (c *Client) SetConfigVars(ctx context.Context, app string, vars map[string]*string) (map[string]string, error) {
	out := map[string]string{}
	if _, err := c.do(ctx, http.MethodPatch, "/apps/"+esc(app)+"/config-vars", vars, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Formation is the quantity and size of one process type of an app.
type Formation struct {
	ID        string    `json:"id"`
	App       Ref       `json:"app"`
	Type      string    `json:"type"`
	Command   string    `json:"command"`
	Quantity  int       `json:"quantity"`
	Size      string    `json:"size"`
	DynoSize  *Ref      `json:"dyno_size,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SizeName is the process type's dyno size, from whichever field the API filled.
func (f Formation) SizeName() string {
	if f.Size != "" {
		return f.Size
	}
	if f.DynoSize != nil {
		return f.DynoSize.Name
	}
	return ""
}

// FormationUpdate changes one process type, as `heroku ps:scale` sends it:
// Quantity is a string, absolute ("3") or relative ("+1", "-1"); empty keeps
// the quantity. Size is a dyno size name; empty keeps the size.
type FormationUpdate struct {
	Type     string `json:"type"`
	Quantity string `json:"quantity,omitempty"`
	Size     string `json:"size,omitempty"`
}

// Formation lists an app's process types.
func (c *Client) Formation(ctx context.Context, app string) ([]Formation, error) {
	return list[Formation](ctx, c, "/apps/"+esc(app)+"/formation", ListRange{})
}

// BatchUpdateFormation applies all updates at once (or none) and returns the
// app's formation afterwards.
func (c *Client) BatchUpdateFormation(ctx context.Context, app string, updates []FormationUpdate) ([]Formation, error) {
	var out []Formation
	body := map[string][]FormationUpdate{"updates": updates}
	if _, err := c.do(ctx, http.MethodPatch, "/apps/"+esc(app)+"/formation", body, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseRef names a release, as dynos and builds embed it.
type ReleaseRef struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// Dyno is one running (or starting, crashed, stopped) process of an app.
type Dyno struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Type      string     `json:"type"`
	Command   string     `json:"command"`
	Size      string     `json:"size"`
	State     string     `json:"state"`
	AttachURL *string    `json:"attach_url"`
	Release   ReleaseRef `json:"release"`
	App       Ref        `json:"app"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// PendingReason (not Heroku's) says why a starting dyno has no host
	// yet, such as no host having room for its size.
	PendingReason string `json:"pending_reason,omitempty"`
	// ExitStatus (not Heroku's) is how a crashed or stopped dyno's process
	// ended, when known.
	ExitStatus *int `json:"exit_status,omitempty"`
}

// Dynos lists an app's dynos.
func (c *Client) Dynos(ctx context.Context, app string) ([]Dyno, error) {
	return list[Dyno](ctx, c, "/apps/"+esc(app)+"/dynos", ListRange{})
}

// Dyno gets one dyno by name (web.1) or ID.
func (c *Client) Dyno(ctx context.Context, app, dyno string) (*Dyno, error) {
	var d Dyno
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/dynos/"+esc(dyno), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// IsDynoName reports whether target names one dyno (web.1) rather than a
// process type (web): process types cannot contain dots.
func IsDynoName(target string) bool { return strings.Contains(target, ".") }

// RestartDynos restarts one dyno (target "web.2"), every dyno of a process
// type (target "web"), or every dyno of the app (target "").
func (c *Client) RestartDynos(ctx context.Context, app, target string) error {
	path := "/apps/" + esc(app) + "/dynos"
	switch {
	case target == "":
	case IsDynoName(target):
		path += "/" + esc(target)
	default:
		path = "/apps/" + esc(app) + "/formations/" + esc(target)
	}
	_, err := c.do(ctx, http.MethodDelete, path, nil, nil, nil)
	return err
}

// StopDynos stops one dyno (target "web.2") or every dyno of a process type
// (target "web"). Dynos of the formation are started again, as on Heroku.
func (c *Client) StopDynos(ctx context.Context, app, target string) error {
	path := "/apps/" + esc(app) + "/formations/" + esc(target) + "/actions/stop"
	if IsDynoName(target) {
		path = "/apps/" + esc(app) + "/dynos/" + esc(target) + "/actions/stop"
	}
	_, err := c.do(ctx, http.MethodPost, path, nil, nil, nil)
	return err
}

// DynoSize is one size of dyno the API offers.
type DynoSize struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Memory    float64 `json:"memory"` // GB
	MemoryMB  int     `json:"memory_mb"`
	Compute   int     `json:"compute"`
	CPUShares int     `json:"cpu_shares"`
	Dedicated bool    `json:"dedicated"`
}

// DynoSizes lists the dyno sizes.
func (c *Client) DynoSizes(ctx context.Context) ([]DynoSize, error) {
	return list[DynoSize](ctx, c, "/dyno-sizes", ListRange{})
}
