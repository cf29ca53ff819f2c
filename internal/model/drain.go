package model

import "time"

// Drain is a log drain: every line of an app's log is forwarded to URL
// (syslog://, syslog+tls:// or https://). Written by the API, read by the
// drain manager; key DrainKey(appID, id).
type Drain struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	URL       string    `json:"url"`
	Token     string    `json:"token"` // d.<uuid>, sent with every line
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DrainKey is a drain's key in the drains bucket: the app's drains share
// the prefix appID.
func DrainKey(appID, id string) string { return appID + "." + id }

// DrainHealth is how a drain's forwarding goes, as its forwarder sees it.
type DrainHealth struct {
	LastSuccess time.Time `json:"last_success_at"` // zero: nothing delivered yet
	LastError   string    `json:"last_error"`      // credentials redacted
	LastErrorAt time.Time `json:"last_error_at"`
	Sent        int64     `json:"sent"`    // lines delivered
	Dropped     int64     `json:"dropped"` // lines lost to overflow or refused frames
}
