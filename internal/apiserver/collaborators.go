package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// collaboratorJSON is Heroku's collaborator. The owner is listed too, with
// role "owner", as `heroku access` shows it.
type collaboratorJSON struct {
	ID          string     `json:"id"`
	App         ref        `json:"app"`
	Permissions []struct{} `json:"permissions"`
	Role        string     `json:"role"`
	User        struct {
		ID        string `json:"id"`
		Email     string `json:"email"`
		Federated bool   `json:"federated"`
	} `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func collaboratorOf(app model.App, c model.Collaborator, role string) collaboratorJSON {
	out := collaboratorJSON{ID: c.ID, App: ref{ID: app.ID, Name: app.Name}, Permissions: []struct{}{}, Role: role, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	out.User.ID, out.User.Email = c.UserID, c.Email
	return out
}

// ownerEntry is the app's owner as a collaborator entry.
func ownerEntry(app model.App) model.Collaborator {
	email := ownerOf(app)
	return model.Collaborator{ID: derivedID("collaborator", app.ID, email), AppID: app.ID, UserID: userID(email), Email: email, CreatedAt: app.CreatedAt, UpdatedAt: app.CreatedAt}
}

// collaborators lists the app's entries, owner first.
func (s *Server) collaborators(ctx context.Context, app model.App) ([]collaboratorJSON, error) {
	entries, err := s.st.Collaborators.List(ctx, app.ID+".>")
	if err != nil {
		return nil, fmt.Errorf("list collaborators of %s: %w", app.Name, err)
	}
	out := []collaboratorJSON{collaboratorOf(app, ownerEntry(app), "owner")}
	for _, e := range entries {
		out = append(out, collaboratorOf(app, e.Value, "collaborator"))
	}
	slices.SortFunc(out[1:], func(a, b collaboratorJSON) int { return strings.Compare(a.User.Email, b.User.Email) })
	return out, nil
}

func (s *Server) listCollaborators(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out, err := s.collaborators(r.Context(), app)
	if err != nil {
		return err
	}
	// By created_at by default: the owner (the app's creation) comes first.
	return writePage(w, r, out,
		byTime("created_at", func(c collaboratorJSON) time.Time { return c.CreatedAt }),
		byString("id", func(c collaboratorJSON) string { return c.ID }),
		byString("email", func(c collaboratorJSON) string { return c.User.Email }))
}

// findCollaborator finds an entry by collaborator ID, user ID or email.
func (s *Server) findCollaborator(r *http.Request) (model.App, collaboratorJSON, error) {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return app, collaboratorJSON{}, err
	}
	all, err := s.collaborators(r.Context(), app)
	if err != nil {
		return app, collaboratorJSON{}, err
	}
	want := strings.ToLower(strings.TrimSpace(r.PathValue("collaborator")))
	for _, c := range all {
		if c.ID == want || c.User.ID == want || c.User.Email == want {
			return app, c, nil
		}
	}
	return app, collaboratorJSON{}, notFound("Couldn't find that collaborator on " + app.Name + ": `dyno access -a " + app.Name + "` lists them.")
}

func (s *Server) getCollaborator(w http.ResponseWriter, r *http.Request) error {
	_, c, err := s.findCollaborator(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) addCollaborator(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		User   string `json:"user"`
		Silent *bool  `json:"silent"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	u, err := s.findUser(r.Context(), body.User)
	if err != nil {
		return err
	}
	if u.Email == ownerOf(app) {
		return invalid("%s owns %s already.", u.Email, app.Name)
	}
	now := s.cfg.Now().UTC()
	c := model.Collaborator{ID: derivedID("collaborator", app.ID, u.Email), AppID: app.ID, UserID: u.ID, Email: u.Email, CreatedAt: now, UpdatedAt: now}
	if _, err := s.st.Collaborators.Create(r.Context(), model.CollaboratorKey(app.ID, u.ID), c); errors.Is(err, store.ErrExists) {
		return invalid("%s is already a collaborator on %s.", u.Email, app.Name)
	} else if err != nil {
		return fmt.Errorf("add collaborator %s to %s: %w", u.Email, app.Name, err)
	}
	s.publishAPI(app.ID, "Add "+u.Email+" as collaborator by user "+actor(r.Context()))
	return writeJSON(w, http.StatusCreated, collaboratorOf(app, c, "collaborator"))
}

// findUser resolves a user by email or ID; the admin counts.
func (s *Server) findUser(ctx context.Context, ident string) (model.User, error) {
	id := strings.ToLower(strings.TrimSpace(ident))
	if email, err := model.NormalizeEmail(ident); err == nil {
		id = userID(email)
	} else if !uuidRE.MatchString(id) {
		return model.User{}, invalid("user must be a user's email or ID.")
	}
	if id == userID(adminUser) {
		return adminAccount(), nil
	}
	u, _, err := s.st.Users.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return u, notFound("Couldn't find that user: the platform's admin creates users (`dyno users:create EMAIL`).")
	}
	return u, err
}

func (s *Server) removeCollaborator(w http.ResponseWriter, r *http.Request) error {
	app, c, err := s.findCollaborator(r)
	if err != nil {
		return err
	}
	if c.Role == "owner" {
		return invalid("%s owns %s and cannot be removed from it.", c.User.Email, app.Name)
	}
	if err := s.st.Collaborators.Delete(context.WithoutCancel(r.Context()), model.CollaboratorKey(app.ID, c.User.ID), 0); err != nil {
		return fmt.Errorf("remove collaborator %s from %s: %w", c.User.Email, app.Name, err)
	}
	s.publishAPI(app.ID, "Remove "+c.User.Email+" as collaborator by user "+actor(r.Context()))
	return writeJSON(w, http.StatusOK, c)
}

// deleteAppAccess removes a destroyed app's collaborators.
func (s *Server) deleteAppAccess(ctx context.Context, appID string) {
	entries, err := s.st.Collaborators.List(ctx, appID+".>")
	if err != nil {
		s.log.Error("list collaborators of deleted app", "app", appID, "err", err)
		return
	}
	for _, e := range entries {
		s.undo("collaborator", s.st.Collaborators.Delete(ctx, e.Key, 0))
	}
}
