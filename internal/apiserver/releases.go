package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

type releaseJSON struct {
	ID          string  `json:"id"`
	Version     int     `json:"version"`
	Description string  `json:"description"`
	Status      string  `json:"status"`
	Current     bool    `json:"current"`
	User        userRef `json:"user"`
	Slug        *idRef  `json:"slug"`
	App         ref     `json:"app"`
	// Heroku's: Dyno has no add-ons, and the release phase's output goes
	// to the app's logs, not to a stream of its own.
	AddonPlanNames      []string       `json:"addon_plan_names"`
	Artifacts           []artifactJSON `json:"artifacts"`
	EligibleForRollback bool           `json:"eligible_for_rollback"`
	OutputStreamURL     *string        `json:"output_stream_url"`
	CreatedAt           time.Time      `json:"created_at"`
	UpdatedAt           time.Time      `json:"updated_at"`
}

type idRef struct {
	ID string `json:"id"`
}

func releaseOut(app model.App, r model.Release) releaseJSON {
	out := releaseJSON{
		ID: r.ID, Version: r.Version, Description: r.Description, Status: r.Status,
		Current: r.Version == app.ReleaseVersion, User: userRef{ID: derivedID("user", r.User), Email: r.User},
		App: ref{ID: app.ID, Name: app.Name}, CreatedAt: r.CreatedAt, UpdatedAt: r.CreatedAt,
		AddonPlanNames: []string{}, Artifacts: []artifactJSON{},
	}
	if r.Slug != nil {
		out.Slug = &idRef{ID: r.Slug.ID}
		out.Artifacts = append(out.Artifacts, artifactJSON{Type: "slug", ID: r.Slug.ID})
		out.EligibleForRollback = r.Status == "succeeded" // POST /apps/{app}/releases accepts it
	}
	return out
}

// releases lists an app's releases, oldest first.
func (s *Server) releases(ctx context.Context, appID string) ([]model.Release, error) {
	entries, err := s.st.Releases.List(ctx, appID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]model.Release, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.Release) int { return a.Version - b.Version })
	return out, nil
}

// latestRelease is the app's newest release whose release phase did not
// fail, or nil before the first.
func (s *Server) latestRelease(ctx context.Context, appID string) (*model.Release, error) {
	rels, err := s.releases(ctx, appID)
	if err != nil {
		return nil, err
	}
	for i := len(rels) - 1; i >= 0; i-- {
		if rels[i].Status != "failed" {
			return &rels[i], nil
		}
	}
	return nil, nil
}

// currentRelease is the release the app runs, or nil before the first.
func (s *Server) currentRelease(ctx context.Context, app model.App) (*model.Release, error) {
	if app.ReleaseVersion == 0 {
		return nil, nil
	}
	rel, _, err := s.st.Releases.Get(ctx, model.ReleaseKey(app.ID, app.ReleaseVersion))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &rel, nil
}

// newRelease is the one place releases are made. change gets the app's
// latest release (nil before the first) and returns the next one's slug,
// config and description, or nil for no release. The next version is the
// latest plus one; if another writer takes it first, change runs again on
// the new latest, so concurrent config changes are never lost. Releases
// are immutable: change must copy, not modify, prev's maps. The release
// becomes current once the formation knows its process types.
func (s *Server) newRelease(ctx context.Context, app model.App, change func(prev *model.Release) (*model.Release, error)) (*model.Release, error) {
	return s.newReleaseOut(ctx, app, nil, change)
}

// newReleaseOut is newRelease with the release phase's output going to out.
// A release whose slug has a release command is created "pending" and goes
// live only once that command succeeded: with out set, newReleaseOut waits
// for it and returns an error wrapping errReleasePhase when it fails;
// without, it returns at once and the phase runs in the background.
func (s *Server) newReleaseOut(ctx context.Context, app model.App, out io.Writer, change func(prev *model.Release) (*model.Release, error)) (*model.Release, error) {
	for range casRetries {
		rels, err := s.releases(ctx, app.ID)
		if err != nil {
			return nil, err
		}
		// A release whose release phase failed never ran: the next one
		// builds on the newest that did not fail, numbered after all.
		var prev, top *model.Release
		for i := range rels {
			top = &rels[i]
			if rels[i].Status != "failed" {
				prev = &rels[i]
			}
		}
		next, err := change(prev)
		if err != nil || next == nil {
			return nil, err
		}
		next.ID, next.AppID, next.User, next.Status = newID(), app.ID, actor(ctx), "succeeded"
		phase := releaseCommand(next) != ""
		if phase {
			next.Status = "pending"
		}
		next.Version, next.CreatedAt = 1, s.cfg.Now().UTC()
		if top != nil {
			next.Version = top.Version + 1
		}
		if next.Config == nil {
			next.Config = map[string]string{}
		}
		key := model.ReleaseKey(app.ID, next.Version)
		if _, err := s.st.Releases.Create(ctx, key, *next); errors.Is(err, store.ErrExists) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("create release v%d of %s: %w", next.Version, app.Name, err)
		}
		// Three writes, undone in reverse on failure: the release (no
		// one runs it until the app points at it), the formation entries
		// of its new process types, and the app's pointer.
		var added map[string]model.Process
		err = nil
		if next.Slug != nil {
			added, err = s.formationForSlug(ctx, app.ID, next.Slug)
		}
		if err == nil && phase {
			if out != nil {
				return next, s.releasePhase(ctx, app, next, added, out)
			}
			s.mu.Lock()
			if s.ctx.Err() == nil { // Close has not begun: wg may grow
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					_ = s.releasePhase(s.ctx, app, next, added, nil)
				}()
			}
			s.mu.Unlock()
			return next, nil
		}
		if err == nil {
			err = s.pointApp(ctx, app.ID, next.Version, next.CreatedAt)
			if err != nil && len(added) > 0 {
				s.undo("formation of a failed release", s.unaddFormation(context.WithoutCancel(ctx), app.ID, added))
			}
		}
		if err != nil {
			s.undo("release", s.st.Releases.Delete(context.WithoutCancel(ctx), key, 0))
			return nil, err
		}
		s.publishAPI(app.ID, fmt.Sprintf("Release v%d created by %s", next.Version, next.User))
		return next, nil
	}
	return nil, fmt.Errorf("create release of %s: too many concurrent releases, try again", app.Name)
}

// formationForSlug gives the process types new in slug a formation entry:
// web=1 when the formation has no dynos yet (a first deploy), else 0. It
// returns the entries it added.
func (s *Server) formationForSlug(ctx context.Context, appID string, slug *model.Slug) (map[string]model.Process, error) {
	now := s.cfg.Now().UTC()
	var added map[string]model.Process
	err := s.updateFormation(ctx, appID, func(f *model.Formation) (bool, error) {
		added = map[string]model.Process{} // afresh on each CAS retry
		running := false
		for _, p := range f.Processes {
			running = running || p.Quantity > 0
		}
		for typ := range slug.ProcessTypes {
			if _, ok := f.Processes[typ]; ok || typ == ReleaseType {
				continue
			}
			p := model.Process{Size: model.DefaultSize, CreatedAt: now, UpdatedAt: now}
			if typ == "web" && !running {
				p.Quantity = 1
			}
			f.Processes[typ] = p
			added[typ] = p
		}
		return len(added) > 0, nil
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// unaddFormation removes the entries formationForSlug added for a release
// that then failed, unless someone changed them since (a scale by a user
// wins) or the app is gone with its formation.
func (s *Server) unaddFormation(ctx context.Context, appID string, added map[string]model.Process) error {
	err := s.updateFormation(ctx, appID, func(f *model.Formation) (bool, error) {
		changed := false
		for typ, p := range added {
			if cur, ok := f.Processes[typ]; ok && sameProcess(cur, p) {
				delete(f.Processes, typ)
				changed = true
			}
		}
		return changed, nil
	})
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return nil
	}
	return err
}

func sameProcess(a, b model.Process) bool {
	return a.Quantity == b.Quantity && a.Size == b.Size && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && a.ScaledToZeroAt.Equal(b.ScaledToZeroAt)
}

// pointApp makes version the app's current release unless a newer one is.
func (s *Server) pointApp(ctx context.Context, appID string, version int, at time.Time) error {
	for range casRetries {
		app, rev, err := s.st.Apps.Get(ctx, appID)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that app: it was deleted.")
		}
		if err != nil {
			return err
		}
		if app.ReleaseVersion >= version {
			return nil
		}
		app.ReleaseVersion, app.ReleasedAt, app.UpdatedAt = version, at, at
		if _, err := s.st.Apps.Update(ctx, appID, app, rev); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return fmt.Errorf("make v%d current: %w", version, err)
		}
		return nil
	}
	return fmt.Errorf("make v%d current: too many concurrent changes", version)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rels, err := s.releases(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]releaseJSON, len(rels))
	for i, rel := range rels {
		out[i] = releaseOut(app, rel)
	}
	return writePage(w, r, out,
		byNumber("version", func(r releaseJSON) int { return r.Version }),
		byString("id", func(r releaseJSON) string { return r.ID }))
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rel, err := s.findRelease(r.Context(), app, r.PathValue("release"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, releaseOut(app, *rel))
}

// findRelease finds one of the app's releases by version ("3" or "v3") or ID.
func (s *Server) findRelease(ctx context.Context, app model.App, want string) (*model.Release, error) {
	if v, err := strconv.Atoi(strings.TrimPrefix(want, "v")); err == nil {
		rel, _, err := s.st.Releases.Get(ctx, model.ReleaseKey(app.ID, v))
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound(fmt.Sprintf("Couldn't find release %s of %s: `dyno releases -a %s` lists them.", want, app.Name, app.Name))
		}
		if err != nil {
			return nil, err
		}
		return &rel, nil
	}
	rels, err := s.releases(ctx, app.ID)
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		if rel.ID == want {
			return &rel, nil
		}
	}
	return nil, notFound(fmt.Sprintf("Couldn't find release %s of %s: `dyno releases -a %s` lists them.", want, app.Name, app.Name))
}

// rollback is Heroku's `POST /apps/{app}/releases {"release": ID or
// version}`: a new release with the slug and config vars of an earlier one.
// Releases stay immutable; the rollback is a new version.
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Release     string  `json:"release"`
		Description *string `json:"description"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.Release == "" {
		return invalid("release is required: the ID or version of the release to roll back to.")
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	target, err := s.findRelease(r.Context(), app, body.Release)
	if err != nil {
		return err
	}
	if target.Slug == nil {
		return invalid("v%d has no slug (it was made before the first deploy): roll back to a release that runs code.", target.Version)
	}
	if target.Status == "failed" {
		return invalid("v%d failed its release phase and never ran: roll back to a release that ran.", target.Version)
	}
	desc := fmt.Sprintf("Rollback to v%d", target.Version)
	if body.Description != nil && *body.Description != "" {
		desc = *body.Description
	}
	rel, err := s.rollbackTo(r.Context(), app, *target, desc)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, releaseOut(app, *rel))
}

// rollbackTo makes a new release with target's slug and config vars.
func (s *Server) rollbackTo(ctx context.Context, app model.App, target model.Release, desc string) (*model.Release, error) {
	return s.newRelease(ctx, app, func(*model.Release) (*model.Release, error) {
		return &model.Release{Slug: target.Slug, Config: maps.Clone(target.Config), Description: desc}, nil
	})
}
