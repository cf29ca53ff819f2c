package model

import (
	"strings"
	"time"
)

// Log sources as logplex names them.
const (
	SourceApp    = "app"
	SourceHeroku = "heroku"
)

// LogLine is one line of an app's log stream.
type LogLine struct {
	Time    time.Time `json:"time"`
	Source  string    `json:"source"` // app or heroku
	Dyno    string    `json:"dyno"`   // web.1, router, api
	Message string    `json:"message"`
}

// LogTimeFormat is logplex's RFC 3339 form with microseconds.
const LogTimeFormat = "2006-01-02T15:04:05.000000-07:00"

// String formats the line as logplex does: TIMESTAMP SOURCE[DYNO]: MESSAGE.
func (l LogLine) String() string {
	var b strings.Builder
	b.WriteString(l.Time.UTC().Format(LogTimeFormat))
	b.WriteByte(' ')
	b.WriteString(l.Source)
	if l.Dyno != "" {
		b.WriteByte('[')
		b.WriteString(l.Dyno)
		b.WriteByte(']')
	}
	b.WriteString(": ")
	b.WriteString(l.Message)
	return b.String()
}

// MatchesDyno reports whether the line comes from dyno, where dyno is a
// full name (web.1) or a process type (web, matching web.1, web.2, ...).
func (l LogLine) MatchesDyno(dyno string) bool {
	return dyno == "" || l.Dyno == dyno || strings.HasPrefix(l.Dyno, dyno+".")
}
