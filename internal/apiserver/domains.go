package apiserver

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Custom domains (Heroku's domain resource): a hostname routed to an app.
// The store key is the hostname, so Create makes a hostname belong to one
// app only.

type domainJSON struct {
	ID              string  `json:"id"`
	Hostname        string  `json:"hostname"`
	Kind            string  `json:"kind"`
	CNAME           string  `json:"cname"`
	Status          string  `json:"status"`
	ACMStatus       *string `json:"acm_status"`
	ACMStatusReason *string `json:"acm_status_reason"`
	SNIEndpoint     *ref    `json:"sni_endpoint"`
	App             ref     `json:"app"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       string  `json:"updated_at"`
}

const timeFormat = "2006-01-02T15:04:05Z"

func (s *Server) domainJSON(app model.App, d model.Domain, certs []model.Certificate) domainJSON {
	out := domainJSON{
		ID: d.ID, Hostname: d.Hostname, Kind: d.Kind, CNAME: app.Name + "." + s.cfg.Domain, Status: "succeeded",
		App: ref{ID: app.ID, Name: app.Name}, CreatedAt: d.CreatedAt.UTC().Format(timeFormat), UpdatedAt: d.UpdatedAt.UTC().Format(timeFormat),
	}
	if c := sniFor(d, certs); c != nil {
		out.SNIEndpoint = &ref{ID: c.ID, Name: c.Name}
	}
	return out
}

// sniFor is the certificate serving d: the one named by the domain, else
// one of the app's certificates whose domains cover the hostname.
func sniFor(d model.Domain, certs []model.Certificate) *model.Certificate {
	for i, c := range certs {
		if c.ID == d.SNIEndpointID {
			return &certs[i]
		}
	}
	for i, c := range certs {
		if slices.ContainsFunc(c.Domains, func(p string) bool { return coversHost(p, d.Hostname) }) {
			return &certs[i]
		}
	}
	return nil
}

// coversHost reports whether a certificate domain covers hostname (a
// wildcard hostname is covered by the same wildcard).
func coversHost(pattern, hostname string) bool {
	if pattern == hostname {
		return true
	}
	rest, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	i := strings.IndexByte(hostname, '.')
	return i > 0 && hostname[i+1:] == rest
}

// appDomains lists an app's domains, sorted by hostname.
func (s *Server) appDomains(ctx context.Context, appID string) ([]store.Entry[model.Domain], error) {
	all, err := s.st.Domains.List(ctx, ">")
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if e.Value.AppID == appID {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b store.Entry[model.Domain]) int { return strings.Compare(a.Value.Hostname, b.Value.Hostname) })
	return out, nil
}

func (s *Server) appCerts(ctx context.Context, appID string) ([]model.Certificate, error) {
	entries, err := s.st.Certs.List(ctx, appID+".>")
	if err != nil {
		return nil, err
	}
	out := make([]model.Certificate, len(entries))
	for i, e := range entries {
		out[i] = e.Value
	}
	slices.SortFunc(out, func(a, b model.Certificate) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	certs, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]domainJSON, 0, len(domains))
	for _, e := range domains {
		out = append(out, s.domainJSON(app, e.Value, certs))
	}
	return writePage(w, r, out,
		byString("hostname", func(d domainJSON) string { return d.Hostname }),
		byString("id", func(d domainJSON) string { return d.ID }))
}

type createDomainBody struct {
	Hostname    *string `json:"hostname"`
	SNIEndpoint *string `json:"sni_endpoint"` // name or ID of one of the app's SNI endpoints
}

// validDomain normalizes and checks a hostname, refusing the platform's
// own names.
func (s *Server) validDomain(raw string) (string, error) {
	h := model.NormalizeHostname(raw)
	if err := model.ValidateHostname(h); err != nil {
		return "", invalid("%s", upperFirst(err.Error()))
	}
	platform := strings.ToLower(strings.Trim(s.cfg.Domain, "."))
	if platform != "" && (h == platform || strings.HasSuffix(h, "."+platform)) {
		return "", invalid("Hostname %s is under the platform's domain %s: apps already answer at <app>.%s; add a domain you own.", h, platform, platform)
	}
	return h, nil
}

func (s *Server) createDomain(w http.ResponseWriter, r *http.Request) error {
	var body createDomainBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if body.Hostname == nil {
		return invalid("Missing hostname: send {\"hostname\": \"www.example.com\"}.")
	}
	host, err := s.validDomain(*body.Hostname)
	if err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	certs, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	d := model.Domain{ID: newID(), AppID: app.ID, Hostname: host, Kind: model.DomainKindCustom, CreatedAt: now, UpdatedAt: now}
	if body.SNIEndpoint != nil && *body.SNIEndpoint != "" {
		c := findCert(certs, *body.SNIEndpoint)
		if c == nil {
			return invalid("No SNI endpoint %q on %s: list them with `dyno certs -a %s`.", *body.SNIEndpoint, app.Name, app.Name)
		}
		d.SNIEndpointID = c.ID
	}
	if _, err := s.st.Domains.Create(r.Context(), model.DomainKey(host), d); err != nil {
		if errors.Is(err, store.ErrExists) {
			if cur, _, gerr := s.st.Domains.Get(r.Context(), model.DomainKey(host)); gerr == nil && cur.AppID == app.ID {
				return invalid("Hostname %s is already added to %s.", host, app.Name)
			}
			return invalid("Hostname %s already in use: it belongs to another app; remove it there first.", host)
		}
		return err
	}
	s.publishAPI(app.ID, "Add "+host+" domain by user "+actor(r.Context()))
	return writeJSON(w, http.StatusCreated, s.domainJSON(app, d, certs))
}

// lookupDomain finds the {domain} path value (hostname or ID) among the
// app's domains.
func (s *Server) lookupDomain(r *http.Request, app model.App) (store.Entry[model.Domain], error) {
	ref := r.PathValue("domain")
	if !uuidRE.MatchString(strings.ToLower(ref)) {
		h := model.NormalizeHostname(ref)
		if model.ValidateHostname(h) == nil {
			d, rev, err := s.st.Domains.Get(r.Context(), model.DomainKey(h))
			if err == nil && d.AppID == app.ID {
				return store.Entry[model.Domain]{Key: model.DomainKey(h), Value: d, Revision: rev}, nil
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return store.Entry[model.Domain]{}, err
			}
		}
		return store.Entry[model.Domain]{}, notFound("Couldn't find that domain.")
	}
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return store.Entry[model.Domain]{}, err
	}
	for _, e := range domains {
		if strings.EqualFold(e.Value.ID, ref) {
			return e, nil
		}
	}
	return store.Entry[model.Domain]{}, notFound("Couldn't find that domain.")
}

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	e, err := s.lookupDomain(r, app)
	if err != nil {
		return err
	}
	certs, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.domainJSON(app, e.Value, certs))
}

func (s *Server) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	e, err := s.lookupDomain(r, app)
	if err != nil {
		return err
	}
	certs, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	// At its revision: a hostname re-added meanwhile by another app stays.
	if err := s.st.Domains.Delete(context.WithoutCancel(r.Context()), e.Key, e.Revision); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return notFound("Couldn't find that domain.")
		}
		return err
	}
	s.publishAPI(app.ID, "Remove "+e.Value.Hostname+" domain by user "+actor(r.Context()))
	return writeJSON(w, http.StatusOK, s.domainJSON(app, e.Value, certs))
}

// deleteAppTLS removes an app's domains and certificates when the app is
// destroyed, so its hostnames are free again.
func (s *Server) deleteAppTLS(ctx context.Context, appID string) {
	domains, err := s.appDomains(ctx, appID)
	if err != nil {
		s.log.Error("list domains of deleted app", "app_id", appID, "err", err)
	}
	for _, e := range domains {
		s.undo("domain", s.st.Domains.Delete(ctx, e.Key, e.Revision))
	}
	certs, err := s.st.Certs.List(ctx, appID+".>")
	if err != nil {
		s.log.Error("list certificates of deleted app", "app_id", appID, "err", err)
	}
	for _, e := range certs {
		s.undo("certificate", s.st.Certs.Delete(ctx, e.Key, 0))
	}
}
