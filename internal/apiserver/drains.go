package apiserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Log drains (Heroku's log-drain resource). The drain manager forwards;
// the API only writes the drains bucket and shows the manager's health.

// DrainHealth reports how a drain's forwarding fares; *logplex.Drains is one.
type DrainHealth interface {
	Health(id string) (model.DrainHealth, bool)
}

// maxDrainsPerApp is a bound so one app cannot start unbounded forwarders.
const maxDrainsPerApp = 10

type drainJSON struct {
	ID        string  `json:"id"`
	URL       string  `json:"url"`
	Token     string  `json:"token"`
	Addon     *ref    `json:"addon"`
	App       ref     `json:"app"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
	Health    *health `json:"health"` // not Heroku's: null when no forwarder runs here
}

type health struct {
	LastSuccessAt *string `json:"last_success_at"`
	LastError     string  `json:"last_error"`
	LastErrorAt   *string `json:"last_error_at"`
	Sent          int64   `json:"sent"`
	Dropped       int64   `json:"dropped"`
}

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeFormat)
	return &s
}

func (s *Server) drainJSON(app model.App, d model.Drain) drainJSON {
	out := drainJSON{ID: d.ID, URL: d.URL, Token: d.Token, App: ref{ID: app.ID, Name: app.Name},
		CreatedAt: d.CreatedAt.UTC().Format(timeFormat), UpdatedAt: d.UpdatedAt.UTC().Format(timeFormat)}
	if s.cfg.Drains != nil {
		if h, ok := s.cfg.Drains.Health(d.ID); ok {
			out.Health = &health{LastSuccessAt: optTime(h.LastSuccess), LastError: h.LastError,
				LastErrorAt: optTime(h.LastErrorAt), Sent: h.Sent, Dropped: h.Dropped}
		}
	}
	return out
}

func (s *Server) appDrains(ctx context.Context, appID string) ([]model.Drain, error) {
	entries, err := s.st.Drains.List(ctx, appID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]model.Drain, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.Drain) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (s *Server) listDrains(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	drains, err := s.appDrains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]drainJSON, 0, len(drains))
	for _, d := range drains {
		out = append(out, s.drainJSON(app, d))
	}
	return writePage(w, r, out,
		byString("created_at", func(d drainJSON) string { return d.CreatedAt }),
		byString("id", func(d drainJSON) string { return d.ID }),
		byString("url", func(d drainJSON) string { return d.URL }))
}

func (s *Server) createDrain(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		URL string `json:"url"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	u, err := logplex.ParseDrainURL(body.URL)
	if err != nil {
		return invalid("%s", upperFirst(err.Error()))
	}
	drains, err := s.appDrains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	norm := u.String()
	for _, d := range drains {
		if d.URL == norm {
			return &apiError{http.StatusConflict, "conflict", "This app already drains to that URL."}
		}
	}
	if len(drains) >= maxDrainsPerApp {
		return invalid("An app has at most %d drains: remove one first (drains:remove).", maxDrainsPerApp)
	}
	now := s.cfg.Now().UTC()
	d := model.Drain{ID: newID(), AppID: app.ID, URL: norm, Token: "d." + newID(), CreatedAt: now, UpdatedAt: now}
	if _, err := s.st.Drains.Create(r.Context(), model.DrainKey(app.ID, d.ID), d); err != nil {
		return err
	}
	s.publishAPI(app.ID, "Add drain "+redactURL(u)+" by user "+actor(r.Context()))
	return writeJSON(w, http.StatusCreated, s.drainJSON(app, d))
}

// redactURL hides a drain URL's password in log lines.
func redactURL(u *url.URL) string { return u.Redacted() }

func (s *Server) deleteDrain(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	key := r.PathValue("drain")
	drains, err := s.appDrains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(drains, func(d model.Drain) bool {
		return d.ID == key || d.Token == key || d.URL == key || strings.TrimRight(d.URL, "/") == strings.TrimRight(key, "/")
	})
	if i < 0 {
		return notFound("Couldn't find that drain: give its URL, token or ID (see drains).")
	}
	d := drains[i]
	if err := s.st.Drains.Delete(r.Context(), model.DrainKey(app.ID, d.ID), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if u, err := url.Parse(d.URL); err == nil {
		s.publishAPI(app.ID, "Remove drain "+redactURL(u)+" by user "+actor(r.Context()))
	}
	return writeJSON(w, http.StatusOK, s.drainJSON(app, d))
}
