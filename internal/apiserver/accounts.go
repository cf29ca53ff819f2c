package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// accountRoutes adds the accounts' endpoints: the account, users (admin
// only), API keys as Heroku's OAuth authorizations, and collaborators.
func (s *Server) accountRoutes(m *http.ServeMux) {
	api := func(pattern string, h handlerFunc) { s.register(m, pattern, s.authed(h)) }
	api("GET /account", s.getAccount)
	api("GET /account/rate-limits", s.getRateLimits)
	api("POST /users", s.createUser)
	api("GET /users", s.listUsers)

	// The one endpoint where Basic auth may carry a password: logging in.
	s.register(m, "POST /oauth/authorizations", s.plain(func(w http.ResponseWriter, r *http.Request) error {
		r, err := s.admitAccept(w, r, true)
		if err != nil {
			return err
		}
		return s.createAuthorization(w, r)
	}))
	api("GET /oauth/authorizations", s.listAuthorizations)
	api("GET /oauth/authorizations/{id}", s.getAuthorization)
	api("DELETE /oauth/authorizations/{id}", s.revokeAuthorization)

	api("GET /apps/{app}/collaborators", s.listCollaborators)
	api("POST /apps/{app}/collaborators", s.addCollaborator)
	api("GET /apps/{app}/collaborators/{collaborator}", s.getCollaborator)
	api("DELETE /apps/{app}/collaborators/{collaborator}", s.removeCollaborator)
}

// admitAccept is authed's check of the Accept version followed by admit.
func (s *Server) admitAccept(w http.ResponseWriter, r *http.Request, allowPassword bool) (*http.Request, error) {
	if !acceptable(r.Header.Get("Accept")) {
		return r, &apiError{http.StatusNotAcceptable, "not_acceptable", "This API only serves version 3: send Accept: application/vnd.heroku+json; version=3."}
	}
	return s.admit(w, r, allowPassword)
}

// authenticatePassword checks a user's email and password (a login).
func (s *Server) authenticatePassword(ctx context.Context, email, password string) (*principal, error) {
	email, err := model.NormalizeEmail(email)
	if err != nil {
		return nil, errUnauthorized
	}
	u, _, err := s.st.Users.Get(ctx, userID(email))
	if errors.Is(err, store.ErrNotFound) {
		checkPassword(dummyHash, password) // as slow as a wrong password
		return nil, errUnauthorized
	}
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	if !checkPassword(u.PasswordHash, password) {
		return nil, errUnauthorized
	}
	// Password logins share one budget per email (admit spends it).
	return &principal{UserID: u.ID, Email: u.Email, limitKey: loginLimitKey(u.Email)}, nil
}

// accountJSON is Heroku's account.
type accountJSON struct {
	ID                      string     `json:"id"`
	Email                   string     `json:"email"`
	Name                    *string    `json:"name"`
	AllowTracking           bool       `json:"allow_tracking"`
	Beta                    bool       `json:"beta"`
	Federated               bool       `json:"federated"`
	IdentityProvider        *struct{}  `json:"identity_provider"`
	LastLogin               *time.Time `json:"last_login"`
	SMSNumber               *string    `json:"sms_number"`
	SuspendedAt             *time.Time `json:"suspended_at"`
	DelinquentAt            *time.Time `json:"delinquent_at"`
	TwoFactorAuthentication bool       `json:"two_factor_authentication"`
	Verified                bool       `json:"verified"`
	CountryOfResidence      *string    `json:"country_of_residence"`
	DefaultOrganization     *ref       `json:"default_organization"`
	DefaultTeam             *ref       `json:"default_team"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

func accountOf(u model.User) accountJSON {
	a := accountJSON{ID: u.ID, Email: u.Email, Verified: true, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if u.Name != "" {
		a.Name = &u.Name
	}
	return a
}

// adminAccount is the admin, who is not stored: the admin key is theirs.
func adminAccount() model.User {
	return model.User{ID: userID(adminUser), Email: adminUser, Name: "Admin"}
}

// userOf reads the principal's user record.
func (s *Server) userOf(ctx context.Context, p *principal) (model.User, error) {
	if p.Email == adminUser {
		return adminAccount(), nil
	}
	u, _, err := s.st.Users.Get(ctx, p.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return u, errUnauthorized // deleted since the key was made
	}
	return u, err
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	u, err := s.userOf(r.Context(), mustPrincipal(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, accountOf(u))
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	email, err := model.NormalizeEmail(body.Email)
	if err != nil {
		return invalid("%s", upperFirst(err.Error()))
	}
	if len(body.Password) < minPassword {
		return invalid("The password must have at least %d characters.", minPassword)
	}
	if email == adminUser {
		return &apiError{http.StatusConflict, "conflict", "The user " + email + " already exists: it is the admin."}
	}
	now := s.cfg.Now().UTC()
	u := model.User{ID: userID(email), Email: email, Name: body.Name, PasswordHash: hashPassword(body.Password), CreatedAt: now, UpdatedAt: now}
	if _, err := s.st.Users.Create(r.Context(), u.ID, u); errors.Is(err, store.ErrExists) {
		return &apiError{http.StatusConflict, "conflict", "The user " + email + " already exists."}
	} else if err != nil {
		return fmt.Errorf("create user %s: %w", email, err)
	}
	s.log.Info("user created", "email", email, "by", actor(r.Context()))
	return writeJSON(w, http.StatusCreated, accountOf(u))
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	entries, err := s.st.Users.List(r.Context(), ">")
	if err != nil {
		return err
	}
	out := []accountJSON{accountOf(adminAccount())}
	for _, e := range entries {
		out = append(out, accountOf(e.Value))
	}
	slices.SortFunc(out[1:], func(a, b accountJSON) int { return strings.Compare(a.Email, b.Email) })
	return writeJSON(w, http.StatusOK, out)
}

// authorizationJSON is Heroku's oauth-authorization. The token is shown
// once, when the key is made: only its hash is kept.
type authorizationJSON struct {
	ID           string           `json:"id"`
	Description  string           `json:"description"`
	Scope        []string         `json:"scope"`
	AccessToken  *accessTokenJSON `json:"access_token"`
	Client       *ref             `json:"client"`
	Grant        *struct{}        `json:"grant"`
	RefreshToken *struct{}        `json:"refresh_token"`
	Session      *struct{}        `json:"session"`
	User         struct {
		ID       string  `json:"id"`
		Email    string  `json:"email"`
		FullName *string `json:"full_name"`
	} `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type accessTokenJSON struct {
	ExpiresIn *int   `json:"expires_in"`
	ID        string `json:"id"`
	Token     string `json:"token"`
}

func (s *Server) authorizationOf(k model.APIKey, token string) authorizationJSON {
	a := authorizationJSON{ID: k.ID, Description: k.Description, Scope: []string{"global"}, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt}
	a.User.ID, a.User.Email = k.UserID, k.Email
	if token != "" {
		a.AccessToken = &accessTokenJSON{ID: k.ID, Token: token}
		if !k.ExpiresAt.IsZero() {
			in := int(k.ExpiresAt.Sub(s.cfg.Now()).Seconds())
			a.AccessToken.ExpiresIn = &in
		}
	}
	return a
}

func (s *Server) createAuthorization(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Description *string         `json:"description"`
		ExpiresIn   *int            `json:"expires_in"`
		Scope       json.RawMessage `json:"scope"`
		Client      json.RawMessage `json:"client"`
	}
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	var scope []string
	if len(body.Scope) > 0 && string(body.Scope) != "null" {
		if err := json.Unmarshal(body.Scope, &scope); err != nil {
			return invalid("scope must be a list of strings, such as [\"global\"].")
		}
		for _, sc := range scope {
			if sc != "global" {
				return invalid("Only the global scope is supported: keys can do everything their user can.")
			}
		}
	}
	p := mustPrincipal(r)
	now := s.cfg.Now().UTC()
	k := model.APIKey{ID: newID(), UserID: p.UserID, Email: p.Email, CreatedAt: now, UpdatedAt: now}
	if body.Description != nil {
		k.Description = *body.Description
	}
	if body.ExpiresIn != nil {
		if *body.ExpiresIn <= 0 {
			return invalid("expires_in must be a positive number of seconds.")
		}
		k.ExpiresAt = now.Add(time.Duration(*body.ExpiresIn) * time.Second)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	token := "dyno_" + hex.EncodeToString(raw)
	if _, err := s.st.APIKeys.Create(r.Context(), hashKey(token), k); err != nil {
		return fmt.Errorf("store a new API key: %w", err)
	}
	s.log.Info("API key created", "user", p.Email, "authorization", k.ID)
	return writeJSON(w, http.StatusCreated, s.authorizationOf(k, token))
}

// ownKeys lists the principal's API keys by hash, oldest first.
func (s *Server) ownKeys(ctx context.Context, p *principal) ([]store.Entry[model.APIKey], error) {
	entries, err := s.st.APIKeys.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	var out []store.Entry[model.APIKey]
	for _, e := range entries {
		if e.Value.UserID == p.UserID {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b store.Entry[model.APIKey]) int { return a.Value.CreatedAt.Compare(b.Value.CreatedAt) })
	return out, nil
}

func (s *Server) listAuthorizations(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.ownKeys(r.Context(), mustPrincipal(r))
	if err != nil {
		return err
	}
	out := make([]authorizationJSON, 0, len(keys))
	for _, e := range keys {
		out = append(out, s.authorizationOf(e.Value, ""))
	}
	return writePage(w, r, out,
		byTime("created_at", func(a authorizationJSON) time.Time { return a.CreatedAt }),
		byString("id", func(a authorizationJSON) string { return a.ID }))
}

// findKey finds one of the principal's keys by authorization ID.
func (s *Server) findKey(r *http.Request) (store.Entry[model.APIKey], error) {
	keys, err := s.ownKeys(r.Context(), mustPrincipal(r))
	if err != nil {
		return store.Entry[model.APIKey]{}, err
	}
	id := strings.ToLower(r.PathValue("id"))
	for _, e := range keys {
		if e.Value.ID == id {
			return e, nil
		}
	}
	return store.Entry[model.APIKey]{}, notFound("Couldn't find that authorization: `dyno authorizations` lists yours.")
}

func (s *Server) getAuthorization(w http.ResponseWriter, r *http.Request) error {
	e, err := s.findKey(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.authorizationOf(e.Value, ""))
}

// revokeAuthorization deletes the key: the next request with it gets 401,
// on every API node, since each request reads the key from the store.
func (s *Server) revokeAuthorization(w http.ResponseWriter, r *http.Request) error {
	e, err := s.findKey(r)
	if err != nil {
		return err
	}
	if err := s.st.APIKeys.Delete(context.WithoutCancel(r.Context()), e.Key, 0); err != nil {
		return fmt.Errorf("revoke API key %s: %w", e.Value.ID, err)
	}
	s.log.Info("API key revoked", "user", e.Value.Email, "authorization", e.Value.ID)
	return writeJSON(w, http.StatusOK, s.authorizationOf(e.Value, ""))
}
