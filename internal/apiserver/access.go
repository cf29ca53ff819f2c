package apiserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// principal is who a request acts for: the user its API key (or, on POST
// /oauth/authorizations only, its password) belongs to.
type principal struct {
	UserID, Email string
	Admin         bool
	// KeyID is the API key's authorization ID; empty for the admin key
	// and for a password login.
	KeyID string
	// limitKey names the principal's rate-limit bucket: the key's hash,
	// so that each key has its own budget, as on Heroku.
	limitKey string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p *principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom is the request's principal, nil outside authenticated requests.
func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// mustPrincipal is the principal of a request that went through authed.
func mustPrincipal(r *http.Request) *principal {
	if p := principalFrom(r.Context()); p != nil {
		return p
	}
	return &principal{} // unreachable behind authed; sees nothing
}

// actor is the email recorded as the author of a change made under ctx:
// releases, builds and the app's log. Work not started by a request (none
// today) is the admin's.
func actor(ctx context.Context) string {
	if p := principalFrom(ctx); p != nil && p.Email != "" {
		return p.Email
	}
	return adminUser
}

// withActor marks ctx as acting for email, for work a request starts in
// the background (builds).
func withActor(ctx context.Context, email string) context.Context {
	if email == "" {
		email = adminUser
	}
	return withPrincipal(ctx, &principal{UserID: userID(email), Email: email, Admin: email == adminUser})
}

// userID is the ID of the user with a normalized email: derived, so that a
// user is found by email in one read and the admin (who is not stored)
// has a stable ID too.
func userID(email string) string { return derivedID("user", email) }

func userRefOf(email string) userRef {
	if email == "" {
		email = adminUser
	}
	return userRef{ID: userID(email), Email: email}
}

// hashKey is how API keys are stored and looked up: random 32-byte keys
// need no slow hash.
func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// errUnauthorized is the 401 of a request without valid credentials.
var errUnauthorized = &apiError{http.StatusUnauthorized, "unauthorized", "Invalid credentials provided: send Authorization: Bearer <api key> (`dyno login` makes one)."}

// credentials returns the API key of a request (Bearer, or the password of
// Basic auth) and, for Basic, its user name.
func credentials(r *http.Request) (user, key string) {
	if u, pass, ok := r.BasicAuth(); ok {
		return u, pass
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return "", strings.TrimSpace(v)
	}
	return "", ""
}

// authenticateKey finds whose API key key is: the admin key or a stored one.
func (s *Server) authenticateKey(ctx context.Context, key string) (*principal, error) {
	if key == "" {
		return nil, errUnauthorized
	}
	h := hashKey(key)
	if s.cfg.AdminKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.AdminKey)) == 1 {
		return &principal{UserID: userID(adminUser), Email: adminUser, Admin: true, limitKey: h}, nil
	}
	k, _, err := s.st.APIKeys.Get(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthorized
	}
	if err != nil {
		return nil, fmt.Errorf("look up an API key: %w", err)
	}
	if !k.ExpiresAt.IsZero() && s.cfg.Now().After(k.ExpiresAt) {
		return nil, errUnauthorized
	}
	return &principal{UserID: k.UserID, Email: k.Email, Admin: k.Email == adminUser, KeyID: k.ID, limitKey: h}, nil
}

// admit authenticates r, spends one request of its rate limit, refuses
// admin-only routes to users and apps the user may not see, and returns r
// carrying its principal. With allowPassword (POST /oauth/authorizations
// only), Basic auth may carry a user's email and password instead of a key.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, allowPassword bool) (*http.Request, error) {
	name, key := credentials(r)
	p, err := s.authenticateKey(r.Context(), key)
	charged := false
	if errors.Is(err, errUnauthorized) && allowPassword && strings.Contains(name, "@") {
		// Every password attempt counts against the email's budget, the
		// failed ones too: guessing is rate limited.
		if err := s.limit(w, &principal{limitKey: loginLimitKey(name)}); err != nil {
			return r, err
		}
		charged = true
		p, err = s.authenticatePassword(r.Context(), name, key)
	}
	if err != nil {
		if errors.Is(err, errUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dyno"`)
		}
		return r, err
	}
	switch {
	case r.Pattern == "GET /account/rate-limits": // does not count, as on Heroku
		w.Header().Set("RateLimit-Remaining", fmt.Sprint(s.limiter.remaining(p.limitKey)))
	case charged:
	default:
		if err := s.limit(w, p); err != nil {
			return r, err
		}
	}
	r = r.WithContext(withPrincipal(r.Context(), p))
	if adminOnly(r.Pattern) && !p.Admin {
		return r, forbidden("Only the platform's admin can do this: ask them, or use the admin's API key.")
	}
	if r.PathValue("app") != "" {
		// Every app route, also those that read their body first: a user
		// learns nothing about an app they cannot see.
		if _, _, err := s.lookupApp(r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// loginLimitKey names the rate-limit bucket of password logins as email.
func loginLimitKey(email string) string { return "login:" + strings.ToLower(strings.TrimSpace(email)) }

func forbidden(msg string) error { return &apiError{http.StatusForbidden, "forbidden", msg} }

// adminOnly reports whether a route pattern is for the platform's admin:
// hosts, the list of users and the platform's invoices (every app's usage).
func adminOnly(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	if path == "/users" {
		return true
	}
	for _, prefix := range []string{"/hosts", "/account/invoices"} {
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			return true
		}
	}
	return false
}

// ownerRoutes are the app routes only the app's owner (or the admin) may
// use; collaborators get 403.
var ownerRoutes = map[string]string{
	"DELETE /apps/{app}":                              "destroy",
	"POST /apps/{app}/collaborators":                  "add collaborators to",
	"DELETE /apps/{app}/collaborators/{collaborator}": "remove collaborators from",
}

// appRole is what p may do with app: "admin", "owner", "collaborator" or
// "" (nothing: the app does not exist for them).
func (s *Server) appRole(ctx context.Context, p *principal, app model.App) (string, error) {
	owner := app.Owner
	if owner == "" {
		owner = adminUser // apps made before accounts
	}
	switch {
	case p == nil || p.Email == "":
		return "", nil
	case owner == p.Email:
		return "owner", nil
	case p.Admin:
		return "admin", nil
	}
	_, _, err := s.st.Collaborators.Get(ctx, model.CollaboratorKey(app.ID, p.UserID))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("check access to app %s: %w", app.Name, err)
	}
	return "collaborator", nil
}

// checkApp is lookupApp's access check: 404 for an app the request's
// user may not see, 403 for a collaborator on an owner's route.
func (s *Server) checkApp(r *http.Request, app model.App) error {
	role, err := s.appRole(r.Context(), principalFrom(r.Context()), app)
	if err != nil {
		return err
	}
	if role == "" {
		return notFound("Couldn't find that app.")
	}
	if what, ok := ownerRoutes[r.Pattern]; ok && role == "collaborator" {
		return forbidden(fmt.Sprintf("Only the owner of %s (%s) can %s it: you are a collaborator.", app.Name, ownerOf(app), what))
	}
	return nil
}

func ownerOf(app model.App) string {
	if app.Owner == "" {
		return adminUser
	}
	return app.Owner
}

// visibleApps filters apps to those p may see, for GET /apps.
func (s *Server) visibleApps(ctx context.Context, p *principal, apps []model.App) ([]model.App, error) {
	if p != nil && p.Admin {
		return apps, nil
	}
	if p == nil {
		return nil, nil
	}
	collab, err := s.st.Collaborators.List(ctx, "*."+p.UserID)
	if err != nil {
		return nil, fmt.Errorf("list the apps %s collaborates on: %w", p.Email, err)
	}
	shared := map[string]bool{}
	for _, e := range collab {
		shared[e.Value.AppID] = true
	}
	var out []model.App
	for _, a := range apps {
		if ownerOf(a) == p.Email || shared[a.ID] {
			out = append(out, a)
		}
	}
	return out, nil
}

// admitGit checks a git request (/<app>.git/...) that carries an API key:
// its rate limit, and that its user may see the app, answering 404 as for
// a missing app otherwise. Requests without a key go on to the git server,
// which asks for one; the hooks' internal endpoint has its own token.
func (s *Server) admitGit(w http.ResponseWriter, r *http.Request) bool {
	name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	name = strings.TrimSuffix(name, ".git")
	_, key, ok := r.BasicAuth()
	if !ok || key == "" || rest == gitDeployPath {
		return true
	}
	p, err := s.authenticateKey(r.Context(), key)
	if err != nil {
		return true // the git server answers 401 as git expects
	}
	if err := s.limit(w, p); err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return false
	}
	if model.ValidateAppName(name) != nil {
		return true // the git server's 404
	}
	n, _, err := s.st.AppNames.Get(r.Context(), name)
	if err != nil {
		return true // missing: the git server's 404; failing: its 500
	}
	app, _, err := s.st.Apps.Get(r.Context(), n.ID)
	if err != nil {
		return true
	}
	role, err := s.appRole(r.Context(), p, app)
	if err != nil {
		s.log.Error("git: check access", "app", name, "err", err)
		http.Error(w, "Internal error checking access to the app: see the API server's log.", http.StatusInternalServerError)
		return false
	}
	if role == "" {
		http.Error(w, fmt.Sprintf("No such app as %s: check the remote's URL (`dyno apps` lists your apps; `dyno git:remote -a APP` fixes it).", name), http.StatusNotFound)
		return false
	}
	return true
}

// gitDeployPath is the git server's internal endpoint for its hooks.
const gitDeployPath = "dyno/deploy"
