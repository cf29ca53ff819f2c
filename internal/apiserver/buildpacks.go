package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dyno-platform/dyno/internal/build"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// maxBuildpacks bounds an app's buildpack list.
const maxBuildpacks = 8

// buildpackInstallation is Heroku's buildpack-installation resource.
type buildpackInstallation struct {
	Ordinal   int          `json:"ordinal"`
	Buildpack buildpackRef `json:"buildpack"`
}

type buildpackRef struct {
	URL  string `json:"url"`
	Name string `json:"name"`
}

func installations(bps []string) []buildpackInstallation {
	out := make([]buildpackInstallation, len(bps))
	for i, u := range bps {
		out[i] = buildpackInstallation{Ordinal: i, Buildpack: buildpackRef{URL: u, Name: u}}
	}
	return out
}

// listBuildpacks is GET /apps/{app}/buildpack-installations.
func (s *Server) listBuildpacks(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, installations(app.Buildpacks))
}

// setBuildpacks is PUT /apps/{app}/buildpack-installations
// {"updates":[{"buildpack":"URL or name"}]}: it replaces the whole list.
func (s *Server) setBuildpacks(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Updates []struct {
			Buildpack string `json:"buildpack"`
		} `json:"updates"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.Updates == nil {
		return invalid("updates is required: a list of {\"buildpack\": \"URL or name\"} (empty to clear)")
	}
	if len(body.Updates) > maxBuildpacks {
		return invalid("An app may have at most %d buildpacks.", maxBuildpacks)
	}
	var urls []string
	for _, u := range body.Updates {
		bp, err := build.ParseBuildpack(u.Buildpack)
		if err != nil {
			return invalid("%v", err)
		}
		urls = append(urls, bp.URL)
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	for range casRetries {
		cur, rev, err := s.st.Apps.Get(r.Context(), app.ID)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that app.")
		}
		if err != nil {
			return err
		}
		cur.Buildpacks = urls
		cur.UpdatedAt = s.cfg.Now().UTC()
		_, err = s.st.Apps.Update(r.Context(), app.ID, cur, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, installations(urls))
	}
	return fmt.Errorf("update buildpacks of %s: too many concurrent changes", app.Name)
}

// buildOptions is what a build of app needs: its buildpacks and the config
// vars the release it makes will have (the latest release's).
func (s *Server) buildOptions(ctx context.Context, app model.App) (build.Options, error) {
	opts := build.Options{AppID: app.ID, Buildpacks: app.Buildpacks}
	if cur, _, err := s.st.Apps.Get(ctx, app.ID); err == nil {
		opts.Buildpacks = cur.Buildpacks // set since the build was asked for
	}
	latest, err := s.latestRelease(ctx, app.ID)
	if err != nil {
		return opts, fmt.Errorf("read the app's config vars: %w", err)
	}
	if latest != nil {
		opts.ConfigVars = latest.Config
	}
	return opts, nil
}
