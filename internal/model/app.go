package model

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// App is one application: a name, its current release and its settings.
// It is stored under its ID; AppName maps the name to the ID.
type App struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Owner          string    `json:"owner,omitempty"`
	Maintenance    bool      `json:"maintenance"`
	ReleaseVersion int       `json:"release_version"` // 0 until the first release
	ReleasedAt     time.Time `json:"released_at,omitzero"`
	// Buildpacks are the app's buildpacks in order (built-in names or
	// URLs); none: the built-ins are detected at every build.
	Buildpacks []string  `json:"buildpacks,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// AppName reserves a name for an app; creating it is how a name is claimed.
type AppName struct {
	ID string `json:"id"`
}

// Heroku's rule for app names: starts with a letter, lowercase letters,
// digits and dashes, 3 to 30 characters, no trailing dash.
var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)

// ValidateAppName reports why name cannot be an app name, or nil.
func ValidateAppName(name string) error {
	if !appNameRE.MatchString(name) {
		return fmt.Errorf("name %q is invalid: use 3 to 30 lowercase letters, digits and dashes, starting with a letter and not ending with a dash", name)
	}
	return nil
}

// Release is an immutable version of an app: a slug plus config vars.
// It is stored under ReleaseKey(appID, version).
type Release struct {
	ID          string            `json:"id"`
	AppID       string            `json:"app_id"`
	Version     int               `json:"version"`
	Description string            `json:"description"`
	User        string            `json:"user"`
	Status      string            `json:"status"` // succeeded (failed and pending come with the release phase)
	Slug        *Slug             `json:"slug,omitempty"`
	Config      map[string]string `json:"config"`
	CreatedAt   time.Time         `json:"created_at"`
}

// Slug is a built app: a gzipped tarball of /app in the object store,
// named by its ID, and the process types its Procfile declares.
type Slug struct {
	ID           string            `json:"id"`
	Checksum     string            `json:"checksum"` // "SHA256:<hex>" of the stored object
	Size         int64             `json:"size"`
	ProcessTypes map[string]string `json:"process_types"`
	CreatedAt    time.Time         `json:"created_at"`
}

// ReleaseKey is the store key of an app's release.
func ReleaseKey(appID string, version int) string {
	return fmt.Sprintf("%s.%08d", appID, version)
}

var configKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateConfigKey reports why key cannot be a config var name, or nil.
func ValidateConfigKey(key string) error {
	if !configKeyRE.MatchString(key) || len(key) > 255 {
		return fmt.Errorf("config var name %q is invalid: use letters, digits and underscores, not starting with a digit", key)
	}
	return nil
}

// Build is the record of one build, kept for `builds` and the Platform
// API after its node forgot the run (its output stays on that node, in
// memory, while the node runs). Status is pending, succeeded or failed.
type Build struct {
	ID      string `json:"id"`
	AppID   string `json:"app_id"`
	User    string `json:"user"`
	Status  string `json:"status"`
	Failure string `json:"failure,omitempty"` // why a failed build failed
	// Node is the host ID of the API node that runs the build, Boot that
	// node's process: a pending build of an earlier process of the same
	// node was cut short by a restart.
	Node string `json:"node"`
	Boot string `json:"boot"`
	// APIURL is the public API URL of that node: a running build's output
	// streams from there.
	APIURL         string          `json:"api_url,omitempty"`
	ReleaseID      string          `json:"release_id,omitempty"`
	ReleaseVersion int             `json:"release_version,omitempty"`
	SlugID         string          `json:"slug_id,omitempty"`
	Source         json.RawMessage `json:"source"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// BuildKey is the store key of an app's build.
func BuildKey(appID, id string) string { return appID + "." + id }
