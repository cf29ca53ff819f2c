package apiserver

// Dyno's own Platform API schema (GET /schema) and the few Heroku
// endpoints that exist mostly for conformance: slug info and its blob,
// a release's config vars, one dyno size, a user's apps, one log drain.

import (
	"context"
	_ "embed"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/dyno-platform/dyno/internal/model"
)

//go:generate go run ./schemagen -heroku ../../../shared/reference/heroku-platform-api-schema.json -dyno schemagen/dyno.json -out schema.json

// schemaJSON is Dyno's schema, generated from Heroku's by schemagen: the
// served resources' definitions as Heroku's, with only the served links.
//
//go:embed schema.json
var schemaJSON []byte

// Schema returns Dyno's Platform API schema (a JSON hyper-schema derived
// from Heroku's), as GET /schema serves it.
func Schema() []byte { return slices.Clone(schemaJSON) }

// Routes returns the patterns of the API routes the server registered
// ("GET /apps/{app}"), in registration order: GET /schema lists each.
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

// register registers h at pattern and records the pattern for Routes.
func (s *Server) register(m *http.ServeMux, pattern string, h http.Handler) {
	s.patterns = append(s.patterns, pattern)
	m.Handle(pattern, h)
}

// conformanceRoutes adds the schema and the endpoints of this file.
func (s *Server) conformanceRoutes(m *http.ServeMux) {
	api := func(pattern string, h handlerFunc) { s.register(m, pattern, s.authed(h)) }
	// The schema is public, as Heroku's is.
	s.register(m, "GET /schema", s.plain(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/schema+json; charset=utf-8")
		_, err := w.Write(schemaJSON)
		return err
	}))
	api("GET /apps/{app}/slugs/{slug}", s.getSlug)
	s.register(m, "GET /slugs/{slug}", s.plain(s.downloadSlug))
	api("GET /apps/{app}/releases/{release}/config-vars", s.getReleaseConfig)
	api("GET /dyno-sizes/{size}", s.getSize)
	api("GET /users/{account}/apps", s.listUserApps)
	api("GET /apps/{app}/log-drains/{drain...}", s.getDrain)
}

// slugJSON is Heroku's slug.
type slugJSON struct {
	ID                           string            `json:"id"`
	Blob                         slugBlob          `json:"blob"`
	BuildpackProvidedDescription *string           `json:"buildpack_provided_description"`
	Checksum                     *string           `json:"checksum"`
	Commit                       *string           `json:"commit"`
	CommitDescription            *string           `json:"commit_description"`
	ProcessTypes                 map[string]string `json:"process_types"`
	Size                         *int64            `json:"size"`
	Stack                        ref               `json:"stack"`
	CreatedAt                    string            `json:"created_at"`
	UpdatedAt                    string            `json:"updated_at"`
}

type slugBlob struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// artifactJSON is one of a release's artifacts (Dyno's are slugs).
type artifactJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// cedar is the generation of Heroku's platform Dyno behaves as: slugs,
// buildpacks, Procfile process types, logplex (Heroku's CLI reads the name
// to choose between Cedar's and Fir's behaviour).
func cedar() ref { return ref{ID: derivedID("generation", "cedar"), Name: "cedar"} }

// sizeOut is Heroku's dyno-size. A size's price is the meter's
// configuration (metering.Config), so cost is null; its dyno units are its
// CPU weight relative to standard-1X's.
func sizeOut(sz model.Size) sizeJSON {
	return sizeJSON{ID: derivedID("size", sz.Name), Size: sz, Architecture: "amd64", Generation: cedar(),
		PreciseDynoUnits: float64(sz.CPUShares) / 512}
}

// dynoStack is the one stack Dyno runs, as apps and slugs name it.
func dynoStack() ref { return ref{ID: derivedID("stack", "dyno"), Name: "dyno"} }

// getSlug is Heroku's slug info: a slug of one of the app's releases.
func (s *Server) getSlug(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rels, err := s.releases(r.Context(), app.ID)
	if err != nil {
		return err
	}
	id := r.PathValue("slug")
	for _, rel := range rels {
		if rel.Slug == nil || rel.Slug.ID != id {
			continue
		}
		sl := rel.Slug
		out := slugJSON{
			ID:           sl.ID,
			Blob:         slugBlob{Method: "get", URL: s.signedURL("/slugs/"+sl.ID, "slug", sl.ID, urlTTL)},
			ProcessTypes: maps.Clone(sl.ProcessTypes), Stack: dynoStack(),
			Commit:    s.slugCommit(r.Context(), app.ID, sl.ID),
			CreatedAt: sl.CreatedAt.UTC().Format(timeFormat), UpdatedAt: sl.CreatedAt.UTC().Format(timeFormat),
		}
		if out.ProcessTypes == nil {
			out.ProcessTypes = map[string]string{}
		}
		if sl.Checksum != "" {
			out.Checksum = &sl.Checksum
		}
		if sl.Size > 0 {
			out.Size = &sl.Size
		}
		return writeJSON(w, http.StatusOK, out)
	}
	return notFound(fmt.Sprintf("Couldn't find slug %s of %s: a release's slug.id names one (`dyno releases:info -a %s`).", id, app.Name, app.Name))
}

// slugCommit is the source version of the build that made the slug, when
// its source had one (git pushes do).
func (s *Server) slugCommit(ctx context.Context, appID, slugID string) *string {
	entries, err := s.st.Builds.List(ctx, appID+".>")
	if err != nil {
		s.log.Warn("read the builds for a slug's commit", "app", appID, "err", err)
		return nil
	}
	for _, e := range entries {
		if e.Value.SlugID != slugID {
			continue
		}
		if commit := sourceCommit(e.Value.Source); commit != "" {
			return &commit
		}
	}
	return nil
}

// downloadSlug serves a slug's tarball at its blob URL (secret in the URL).
func (s *Server) downloadSlug(w http.ResponseWriter, r *http.Request) error {
	return s.serveBlob(w, r, s.st.Slugs, "slug", r.PathValue("slug"),
		"Couldn't find that slug: its URL is wrong or expired (an hour).", "Couldn't find that slug: it was deleted with its app.")
}

// getReleaseConfig is Heroku's config-var "Info for App Release".
func (s *Server) getReleaseConfig(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rel, err := s.findRelease(r.Context(), app, r.PathValue("release"))
	if err != nil {
		return err
	}
	cfg := maps.Clone(rel.Config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	return writeJSON(w, http.StatusOK, cfg)
}

// getSize is one dyno size, by name (any case) or ID.
func (s *Server) getSize(w http.ResponseWriter, r *http.Request) error {
	want := r.PathValue("size")
	for _, sz := range model.Sizes() {
		id := derivedID("size", sz.Name)
		if strings.EqualFold(sz.Name, want) || id == want {
			return writeJSON(w, http.StatusOK, sizeOut(sz))
		}
	}
	return notFound(fmt.Sprintf("Couldn't find dyno size %q: GET /dyno-sizes lists them.", want))
}

// listUserApps is Heroku's "List Owned and Collaborated" (`heroku apps`
// asks /users/~/apps): the caller's apps; the admin may name any user.
func (s *Server) listUserApps(w http.ResponseWriter, r *http.Request) error {
	p := mustPrincipal(r)
	who := r.PathValue("account")
	switch {
	case who == "~" || who == p.UserID || strings.EqualFold(who, p.Email):
	case p.Admin:
		email, err := model.NormalizeEmail(who)
		if err != nil { // not an email: a user ID
			u, _, gerr := s.st.Users.Get(r.Context(), who)
			if gerr != nil {
				return notFound("Couldn't find that user.")
			}
			email = u.Email
		}
		p = &principal{UserID: userID(email), Email: email, Admin: email == adminUser}
	default:
		return notFound("Couldn't find that user: you may list only your own apps (/users/~/apps).")
	}
	entries, err := s.st.Apps.List(r.Context(), ">")
	if err != nil {
		return err
	}
	apps := make([]model.App, 0, len(entries))
	for _, e := range entries {
		apps = append(apps, e.Value)
	}
	if apps, err = s.visibleApps(r.Context(), p, apps); err != nil {
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

// getDrain is one log drain, by ID, token or URL (as DELETE finds it).
func (s *Server) getDrain(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	key := r.PathValue("drain")
	drains, err := s.appDrains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	for _, d := range drains {
		if d.ID == key || d.Token == key || strings.TrimRight(d.URL, "/") == strings.TrimRight(key, "/") {
			return writeJSON(w, http.StatusOK, s.drainJSON(app, d))
		}
	}
	return notFound("Couldn't find that drain: give its URL, token or ID (see drains).")
}
