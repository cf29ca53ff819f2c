package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Account is a user, as GET /account and GET /users show it.
type Account struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      *string   `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Authorization is an API key (Heroku's OAuth authorization). AccessToken
// is only set when the key is made: the API keeps no copy of it.
type Authorization struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	AccessToken *struct {
		ID        string `json:"id"`
		Token     string `json:"token"`
		ExpiresIn *int   `json:"expires_in"`
	} `json:"access_token"`
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Collaborator is a user with access to an app; Role is "owner" or
// "collaborator".
type Collaborator struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	App  struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"app"`
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
	CreatedAt time.Time `json:"created_at"`
}

// Account is the user the client's key belongs to.
func (c *Client) Account(ctx context.Context) (*Account, error) {
	var a Account
	if _, err := c.do(ctx, http.MethodGet, "/account", nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Users lists the platform's users (the admin only).
func (c *Client) Users(ctx context.Context) ([]Account, error) {
	return list[Account](ctx, c, "/users", ListRange{})
}

// CreateUser makes a user who logs in with email and password (the admin only).
func (c *Client) CreateUser(ctx context.Context, email, password string) (*Account, error) {
	var a Account
	body := map[string]string{"email": email, "password": password}
	if _, err := c.do(ctx, http.MethodPost, "/users", body, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Login makes a new API key with a user's email and password, sent as
// HTTP Basic auth as the heroku CLI does; it needs no key of the client's.
func (c *Client) Login(ctx context.Context, email, password, description string) (*Authorization, error) {
	data, err := json.Marshal(map[string]any{"description": description, "scope": []string{"global"}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/oauth/authorizations", bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	c.decorate(req, false)
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(email, password)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a Authorization
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("decode the new API key: %w", err)
	}
	if a.AccessToken == nil || a.AccessToken.Token == "" {
		return nil, fmt.Errorf("the API answered the login without a key")
	}
	return &a, nil
}

// CreateAuthorization makes another API key of the client's user.
func (c *Client) CreateAuthorization(ctx context.Context, description string) (*Authorization, error) {
	var a Authorization
	body := map[string]any{"description": description, "scope": []string{"global"}}
	if _, err := c.do(ctx, http.MethodPost, "/oauth/authorizations", body, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Authorizations lists the user's API keys (without their tokens).
func (c *Client) Authorizations(ctx context.Context) ([]Authorization, error) {
	return list[Authorization](ctx, c, "/oauth/authorizations", ListRange{})
}

// RevokeAuthorization deletes an API key: it stops working at once.
func (c *Client) RevokeAuthorization(ctx context.Context, id string) (*Authorization, error) {
	var a Authorization
	if _, err := c.do(ctx, http.MethodDelete, "/oauth/authorizations/"+esc(id), nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Collaborators lists who has access to an app, its owner first.
func (c *Client) Collaborators(ctx context.Context, app string) ([]Collaborator, error) {
	return list[Collaborator](ctx, c, "/apps/"+esc(app)+"/collaborators", ListRange{})
}

// AddCollaborator gives the user with email access to app (its owner only).
func (c *Client) AddCollaborator(ctx context.Context, app, email string) (*Collaborator, error) {
	var col Collaborator
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/collaborators", map[string]string{"user": email}, nil, &col); err != nil {
		return nil, err
	}
	return &col, nil
}

// RemoveCollaborator takes app's access away from a user, by email or ID.
func (c *Client) RemoveCollaborator(ctx context.Context, app, user string) (*Collaborator, error) {
	var col Collaborator
	if _, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app)+"/collaborators/"+esc(user), nil, nil, &col); err != nil {
		return nil, err
	}
	return &col, nil
}
