package model

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// User is a person who signs in to Dyno. Users are stored under their ID;
// the ID is derived from the normalized email (the API's job), so finding
// a user by email is one read.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	// PasswordHash is a PHC string ("$argon2id$v=19$m=...,t=...,p=...$salt$hash");
	// the password itself is never stored.
	PasswordHash string    `json:"password_hash"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// APIKey is one of a user's API keys (Heroku's OAuth authorization). It is
// stored under the hex SHA-256 of the key: the key itself is shown once,
// when it is made, and never stored.
type APIKey struct {
	ID          string `json:"id"`
	UserID      string `json:"user_id"`
	Email       string `json:"email"`
	Description string `json:"description"`
	// ExpiresAt is when the key stops working; never when zero.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Collaborator gives a user access to an app they do not own. It is stored
// under CollaboratorKey(AppID, UserID).
type Collaborator struct {
	ID        string    `json:"id"`
	AppID     string    `json:"app_id"`
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CollaboratorKey is the store key of a user's collaboration on an app;
// "<appID>.>" lists an app's collaborators, "*.<userID>" a user's apps.
func CollaboratorKey(appID, userID string) string { return appID + "." + userID }

// NormalizeEmail returns the form of an email address that identifies a
// user (trimmed, lower case), or an error saying why it is not one.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || !strings.Contains(e, "@") {
		return "", fmt.Errorf("email %q is not a valid address: use the form name@example.com", email)
	}
	return e, nil
}
