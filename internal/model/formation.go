package model

import (
	"fmt"
	"regexp"
	"time"
)

// Formation is the desired shape of an app: how many dynos of each process
// type, of which size, and the restart generations that ask the manifold to
// replace running dynos. It is written only by the API and stored under the
// app's ID.
type Formation struct {
	AppID     string             `json:"app_id"`
	Processes map[string]Process `json:"processes"`
	Restarts  Restarts           `json:"restarts"`
	UpdatedAt time.Time          `json:"updated_at"`
}

// Process is the desired quantity and size of one process type.
type Process struct {
	Quantity  int       `json:"quantity"`
	Size      string    `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// ScaledToZeroAt records the last scale to 0, which resets crash back-off.
	ScaledToZeroAt time.Time `json:"scaled_to_zero_at,omitzero"`
}

// Restarts are counters the API increments to restart dynos: all of them,
// one process type, or one dyno by name. They only ever grow.
type Restarts struct {
	All   int64            `json:"all"`
	Types map[string]int64 `json:"types,omitempty"`
	Dynos map[string]int64 `json:"dynos,omitempty"`
}

// Generation is the restart generation of the dyno called name of type
// typ: a dyno assigned with an older generation is due for replacement.
func (r Restarts) Generation(typ, name string) int64 {
	return r.All + r.Types[typ] + r.Dynos[name]
}

var processTypeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// ValidateProcessType reports why typ cannot be a process type, or nil.
func ValidateProcessType(typ string) error {
	if !processTypeRE.MatchString(typ) {
		return fmt.Errorf("process type %q is invalid: use 1 to 63 letters, digits, dashes and underscores", typ)
	}
	return nil
}

// DynoName is the name a dyno of type typ at index i goes by: web.1.
func DynoName(typ string, i int) string { return fmt.Sprintf("%s.%d", typ, i) }
