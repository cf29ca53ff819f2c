package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// casRetries bounds how often a read-modify-write is retried on conflict.
const casRetries = 8

type appJSON struct {
	ID                   string     `json:"id"`
	Name                 string     `json:"name"`
	Maintenance          bool       `json:"maintenance"`
	WebURL               string     `json:"web_url"`
	GitURL               string     `json:"git_url"`
	ReleaseVersion       int        `json:"release_version"`
	ReleasedAt           *time.Time `json:"released_at"`
	CreatedAt            time.Time  `json:"created_at"`
	UpdatedAt            time.Time  `json:"updated_at"`
	Owner                userRef    `json:"owner"`
	Region               ref        `json:"region"`
	Stack                ref        `json:"stack"`
	BuildStack           ref        `json:"build_stack"`
	Generation           ref        `json:"generation"`
	ACM                  bool       `json:"acm"`
	InternalRouting      bool       `json:"internal_routing"`
	ArchivedAt           *time.Time `json:"archived_at"`
	BuildpackDescription *string    `json:"buildpack_provided_description"`
	Organization         *ref       `json:"organization"`
	Team                 *ref       `json:"team"`
	Space                *ref       `json:"space"`
	RepoSize             int64      `json:"repo_size"`
	SlugSize             int64      `json:"slug_size"`
}

func (s *Server) webURL(name string) string {
	host := name + "." + s.cfg.Domain
	if p := s.cfg.RouterURLPort; p != "" && p != "80" {
		host += ":" + p
	}
	return "http://" + host + "/"
}

func (s *Server) appJSON(a model.App) appJSON {
	stack := ref{ID: derivedID("stack", "dyno"), Name: "dyno"}
	out := appJSON{
		ID: a.ID, Name: a.Name, Maintenance: a.Maintenance,
		WebURL: s.webURL(a.Name), GitURL: s.cfg.PublicURL + "/" + a.Name + ".git",
		ReleaseVersion: a.ReleaseVersion, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		Owner: userRefOf(ownerOf(a)), Region: ref{ID: derivedID("region", "local"), Name: "local"}, Stack: stack, BuildStack: stack,
		Generation: cedar(),
	}
	if !a.ReleasedAt.IsZero() {
		t := a.ReleasedAt
		out.ReleasedAt = &t
	}
	return out
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) error {
	entries, err := s.st.Apps.List(r.Context(), ">")
	if err != nil {
		return err
	}
	apps := make([]model.App, 0, len(entries))
	for _, e := range entries {
		apps = append(apps, e.Value)
	}
	if apps, err = s.visibleApps(r.Context(), principalFrom(r.Context()), apps); err != nil { // access.go
		return err
	}
	out := make([]appJSON, 0, len(apps))
	for _, a := range apps {
		out = append(out, s.appJSON(a))
	}
	return writePage(w, r, out,
		byString("name", func(a appJSON) string { return a.Name }),
		byString("id", func(a appJSON) string { return a.ID }))
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.appJSON(app))
}

// createAppBody lists what Heroku clients send; only name is used.
type createAppBody struct {
	Name            *string         `json:"name"`
	Region          json.RawMessage `json:"region"`
	Stack           json.RawMessage `json:"stack"`
	FeatureFlags    json.RawMessage `json:"feature_flags"`
	InternalRouting json.RawMessage `json:"internal_routing"`
	Kernel          json.RawMessage `json:"kernel"`
	Locked          json.RawMessage `json:"locked"`
	Space           json.RawMessage `json:"space"`
	Team            json.RawMessage `json:"team"`
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) error {
	var body createAppBody
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	if body.Name != nil {
		if err := model.ValidateAppName(*body.Name); err != nil {
			return invalid("Name %s", strings.TrimPrefix(err.Error(), "name "))
		}
		app, err := s.createAppNamed(r.Context(), *body.Name)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, s.appJSON(app))
	}
	for range 5 {
		app, err := s.createAppNamed(r.Context(), randomName())
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusConflict {
			continue
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, s.appJSON(app))
	}
	return fmt.Errorf("no free random app name after 5 tries")
}

// createAppNamed claims the name, then creates the app and its empty
// formation, undoing the earlier steps if a later one fails.
func (s *Server) createAppNamed(ctx context.Context, name string) (model.App, error) {
	now := s.cfg.Now().UTC()
	app := model.App{ID: newID(), Name: name, Owner: actor(ctx), CreatedAt: now, UpdatedAt: now}
	if _, err := s.st.AppNames.Create(ctx, name, model.AppName{ID: app.ID}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return app, &apiError{http.StatusConflict, "conflict", "Name " + name + " is already taken"}
		}
		return app, fmt.Errorf("claim app name %s: %w", name, err)
	}
	undo := context.WithoutCancel(ctx)
	if _, err := s.st.Apps.Create(ctx, app.ID, app); err != nil {
		s.undo("app name", s.st.AppNames.Delete(undo, name, 0))
		return app, fmt.Errorf("create app %s: %w", name, err)
	}
	f := model.Formation{AppID: app.ID, Processes: map[string]model.Process{}, UpdatedAt: now}
	if _, err := s.st.Formations.Create(ctx, app.ID, f); err != nil {
		s.undo("app", s.st.Apps.Delete(undo, app.ID, 0))
		s.undo("app name", s.st.AppNames.Delete(undo, name, 0))
		return app, fmt.Errorf("create formation of %s: %w", name, err)
	}
	return app, nil
}

func (s *Server) undo(what string, err error) {
	if err != nil {
		s.log.Error("could not undo a half-done change", "what", what, "err", err)
	}
}

var (
	nameAdjectives = []string{"ancient", "bold", "calm", "damp", "eager", "fierce", "gentle", "hidden", "icy", "jolly", "quiet", "rapid", "shiny", "sturdy", "young"}
	nameNouns      = []string{"badlands", "beach", "brook", "canyon", "cove", "dawn", "forest", "garden", "harbor", "island", "lake", "meadow", "mesa", "river", "ridge"}
)

func randomName() string {
	return fmt.Sprintf("%s-%s-%05d", nameAdjectives[rand.IntN(len(nameAdjectives))], nameNouns[rand.IntN(len(nameNouns))], rand.IntN(100000))
}

type patchAppBody struct {
	Maintenance *bool           `json:"maintenance"`
	Name        *string         `json:"name"`
	BuildStack  json.RawMessage `json:"build_stack"`
}

func (s *Server) patchApp(w http.ResponseWriter, r *http.Request) error {
	var body patchAppBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	if body.Name != nil && *body.Name != app.Name {
		return invalid("Renaming apps is not supported yet: create a new app instead.")
	}
	for range casRetries {
		cur, rev, err := s.st.Apps.Get(r.Context(), app.ID)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that app.")
		}
		if err != nil {
			return err
		}
		if body.Maintenance != nil {
			cur.Maintenance = *body.Maintenance
		}
		cur.UpdatedAt = s.cfg.Now().UTC()
		_, err = s.st.Apps.Update(r.Context(), app.ID, cur, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		if body.Maintenance != nil && *body.Maintenance != app.Maintenance {
			s.publishAPI(app.ID, map[bool]string{true: "Enable", false: "Disable"}[*body.Maintenance]+" Maintenance mode by user "+actor(r.Context()))
		}
		return writeJSON(w, http.StatusOK, s.appJSON(cur))
	}
	return fmt.Errorf("update app %s: too many concurrent changes", app.Name)
}

// deleteApp removes the desired state first (formation, app, name), so
// the manifold stops the dynos, then the app's releases, slugs and logs.
func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ctx := context.WithoutCancel(r.Context()) // half a delete helps nobody
	if err := s.st.Formations.Delete(ctx, app.ID, 0); err != nil {
		return fmt.Errorf("delete formation of %s: %w", app.Name, err)
	}
	if err := s.st.Apps.Delete(ctx, app.ID, 0); err != nil {
		return fmt.Errorf("delete app %s: %w", app.Name, err)
	}
	if err := s.st.AppNames.Delete(ctx, app.Name, 0); err != nil {
		return fmt.Errorf("delete app name %s: %w", app.Name, err)
	}
	rels, err := s.st.Releases.List(ctx, app.ID+".>")
	if err != nil {
		s.log.Error("list releases of deleted app", "app", app.Name, "err", err)
	}
	for _, e := range rels {
		if e.Value.Slug != nil {
			s.undo("slug", s.st.Slugs.Delete(ctx, e.Value.Slug.ID))
		}
		s.undo("release", s.st.Releases.Delete(ctx, e.Key, 0))
	}
	s.deleteAppBuilds(ctx, app.ID)
	drains, err := s.st.Drains.List(ctx, app.ID+".>")
	if err != nil {
		s.log.Error("list drains of deleted app", "app", app.Name, "err", err)
	}
	for _, e := range drains {
		s.undo("drain", s.st.Drains.Delete(ctx, e.Key, 0))
	}
	s.undo("logs", s.logs.Purge(ctx, app.ID))
	s.deleteAppTLS(ctx, app.ID)
	s.deleteAppJobs(ctx, app.ID)
	s.deleteAppAccess(ctx, app.ID)
	s.undo("build cache", s.b.RemoveCache(app.ID))
	s.removeRepo(app.ID)
	return writeJSON(w, http.StatusOK, s.appJSON(app))
}

// getConfig shows the config vars of the app's current release.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rel, err := s.currentRelease(r.Context(), app)
	if err != nil {
		return err
	}
	cfg := map[string]string{}
	if rel != nil {
		maps.Copy(cfg, rel.Config)
	}
	return writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) error {
	var body map[string]json.RawMessage
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	changes := map[string]*string{}
	for k, raw := range body {
		if err := model.ValidateConfigKey(k); err != nil {
			return invalid("%s", upperFirst(err.Error()))
		}
		if string(raw) == "null" {
			changes[k] = nil
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return invalid("The value of config var %s must be a string, or null to remove it.", k)
		}
		changes[k] = &v
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var result map[string]string
	_, err = s.newRelease(r.Context(), app, func(prev *model.Release) (*model.Release, error) {
		next := &model.Release{Config: map[string]string{}}
		if prev != nil {
			next.Slug = prev.Slug
			maps.Copy(next.Config, prev.Config)
		}
		var set, removed []string
		for k, v := range changes {
			old, had := next.Config[k]
			switch {
			case v == nil && had:
				delete(next.Config, k)
				removed = append(removed, k)
			case v != nil && (!had || old != *v):
				next.Config[k] = *v
				set = append(set, k)
			}
		}
		result = next.Config
		if len(set)+len(removed) == 0 {
			return nil, nil // nothing changed: no new release
		}
		slices.Sort(set)
		slices.Sort(removed)
		var desc []string
		if len(set) > 0 {
			desc = append(desc, "Set "+strings.Join(set, ", ")+" config vars")
		}
		if len(removed) > 0 {
			desc = append(desc, "Remove "+strings.Join(removed, ", ")+" config vars")
		}
		next.Description = strings.Join(desc, "; ")
		return next, nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, result)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
