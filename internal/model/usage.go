package model

import (
	"fmt"
	"time"
)

// UsageSegment is one stretch of wall-clock time a dyno's process ran, as
// the agent running it records it (issue 6). A process's segments are
// disjoint and follow each other: the first starts when the process starts,
// each checkpoint covers [end of the previous one, now), and the final one
// ends when the process ends. So the sum of a process's segments is its
// whole run, and no second is counted twice. Segments are written to the
// usage stream under their ID, which is stable per (process run, index): a
// segment written again is the same segment, dropped as a duplicate.
type UsageSegment struct {
	ID      string `json:"id"`
	DynoID  string `json:"dyno_id"`
	AppID   string `json:"app_id"`
	AppName string `json:"app_name"`
	Type    string `json:"type"` // process type; "run" for one-off dynos
	Name    string `json:"name"` // web.1
	Size    string `json:"size"`
	Host    string `json:"host"`
	// ProcessStart is when the process began, the same in every segment
	// of one run; Start and End bound this segment.
	ProcessStart time.Time `json:"process_start"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	Index        int       `json:"index"`
	// Final is set on the segment written when the process ended; a run
	// without one ended with its host (billed to its last checkpoint).
	Final bool `json:"final"`
}

// UsageSegmentID is the ID of the index-th segment of the dyno's process
// started at processStart. The start time tells apart two runs of one
// assignment (an agent restart runs it again).
func UsageSegmentID(dynoID string, processStart time.Time, index int) string {
	return fmt.Sprintf("%s.%d.%d", dynoID, processStart.UnixNano(), index)
}

// Duration is how long the segment covers; never negative.
func (s UsageSegment) Duration() time.Duration {
	if s.End.Before(s.Start) {
		return 0
	}
	return s.End.Sub(s.Start)
}

// MonthLayout is how a billing month is written: "2026-11" (UTC).
const MonthLayout = "2006-01"

// Invoice is the account's bill for one UTC calendar month: one line per
// app. Once issued for a month that has ended it is stored (key: the month)
// and never changes.
type Invoice struct {
	Month    string    `json:"month"`
	State    string    `json:"state"` // "pending" while the month runs, "issued" once frozen
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// StreamSequence is the last usage stream message counted when the
	// invoice was issued: a meter rebuilt from the stream counts exactly
	// those segments of the month again, and drops later ones.
	StreamSequence uint64        `json:"stream_sequence,omitempty"`
	Lines          []InvoiceLine `json:"lines"`
	// Totals over the lines.
	Seconds       int64   `json:"seconds"`
	Hours         float64 `json:"hours"`
	FreeHours     float64 `json:"free_hours"`
	BillableHours float64 `json:"billable_hours"`
	Cost          float64 `json:"cost"`
	Currency      string  `json:"currency"`
}

// InvoiceLine is one app's usage and charge in an invoice.
type InvoiceLine struct {
	App           AppRef  `json:"app"`
	Seconds       int64   `json:"seconds"`
	Hours         float64 `json:"hours"`
	FreeHours     float64 `json:"free_hours"`
	BillableHours float64 `json:"billable_hours"`
	Cost          float64 `json:"cost"`
}

// AppRef names an app by ID and name.
type AppRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Invoice states.
const (
	InvoicePending = "pending"
	InvoiceIssued  = "issued"
)
