package model

import (
	"fmt"
	"slices"
	"strings"
)

// Size is a dyno size: its memory quota and its share of the CPU.
type Size struct {
	Name      string  `json:"name"`
	MemoryMB  int     `json:"memory_mb"`
	CPUShares int     `json:"cpu_shares"`
	Compute   int     `json:"compute"`
	Dedicated bool    `json:"dedicated"`
	MemoryGB  float64 `json:"memory"`
}

// sizes are Heroku's dyno sizes, smallest first. Unexported so that no
// caller can change the table the whole platform shares.
var sizes = []Size{
	{Name: "eco", MemoryMB: 512, CPUShares: 256, Compute: 1, MemoryGB: 0.5},
	{Name: "basic", MemoryMB: 512, CPUShares: 256, Compute: 1, MemoryGB: 0.5},
	{Name: "standard-1X", MemoryMB: 512, CPUShares: 512, Compute: 1, MemoryGB: 0.5},
	{Name: "standard-2X", MemoryMB: 1024, CPUShares: 1024, Compute: 2, MemoryGB: 1},
	{Name: "performance-M", MemoryMB: 2560, CPUShares: 2048, Compute: 12, Dedicated: true, MemoryGB: 2.5},
	{Name: "performance-L", MemoryMB: 14336, CPUShares: 4096, Compute: 50, Dedicated: true, MemoryGB: 14},
}

// Sizes returns Heroku's dyno sizes, smallest first; the slice is a copy
// the caller may change.
func Sizes() []Size { return slices.Clone(sizes) }

// DefaultSize is the size of a process type nobody chose a size for.
const DefaultSize = "standard-1X"

// LookupSize finds a size by name, ignoring case (users type standard-2x).
func LookupSize(name string) (Size, error) {
	for _, s := range sizes {
		if strings.EqualFold(s.Name, name) {
			return s, nil
		}
	}
	names := make([]string, len(sizes))
	for i, s := range sizes {
		names[i] = s.Name
	}
	return Size{}, fmt.Errorf("unknown dyno size %q: choose one of %s", name, strings.Join(names, ", "))
}
