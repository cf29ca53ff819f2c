package apiserver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// SNI endpoints (Heroku's sni-endpoint resource): certificates uploaded
// for an app's custom domains, served by the router by SNI. The private
// key is stored but never returned, and never logged.

type sslCertJSON struct {
	ID          string   `json:"id"`
	CASigned    bool     `json:"ca_signed?"`
	CertDomains []string `json:"cert_domains"`
	ExpiresAt   string   `json:"expires_at"`
	Issuer      string   `json:"issuer"`
	SelfSigned  bool     `json:"self_signed?"`
	StartsAt    string   `json:"starts_at"`
	Subject     string   `json:"subject"`
}

type sniJSON struct {
	ID               string      `json:"id"`
	Name             string      `json:"name"`
	DisplayName      *string     `json:"display_name"`
	CertificateChain string      `json:"certificate_chain"`
	Domains          []string    `json:"domains"` // IDs of the app's domains the certificate covers
	App              ref         `json:"app"`
	SSLCert          sslCertJSON `json:"ssl_cert"`
	CreatedAt        string      `json:"created_at"`
	UpdatedAt        string      `json:"updated_at"`
}

func sniOut(app model.App, c model.Certificate, domains []store.Entry[model.Domain]) sniJSON {
	ids := []string{}
	for _, e := range domains {
		d := e.Value
		if d.SNIEndpointID == c.ID || slices.ContainsFunc(c.Domains, func(p string) bool { return coversHost(p, d.Hostname) }) {
			ids = append(ids, d.ID)
		}
	}
	return sniJSON{
		ID: c.ID, Name: c.Name, CertificateChain: c.CertificateChain, Domains: ids, App: ref{ID: app.ID, Name: app.Name},
		SSLCert: sslCertJSON{
			ID: derivedID("ssl-cert", c.ID, c.UpdatedAt.String()), CASigned: !c.SelfSigned, CertDomains: c.Domains,
			ExpiresAt: c.ExpiresAt.UTC().Format(timeFormat), StartsAt: c.StartsAt.UTC().Format(timeFormat),
			Issuer: c.Issuer, SelfSigned: c.SelfSigned, Subject: c.Subject,
		},
		CreatedAt: c.CreatedAt.UTC().Format(timeFormat), UpdatedAt: c.UpdatedAt.UTC().Format(timeFormat),
	}
}

func (s *Server) listSNI(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	cs, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]sniJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, sniOut(app, c, domains))
	}
	return writePage(w, r, out,
		byString("created_at", func(c sniJSON) string { return c.CreatedAt }),
		byString("id", func(c sniJSON) string { return c.ID }),
		byString("name", func(c sniJSON) string { return c.Name }))
}

type sniBody struct {
	CertificateChain *string `json:"certificate_chain"`
	PrivateKey       *string `json:"private_key"`
}

// parseSNIBody decodes and validates an upload; its errors never quote
// the key.
func (s *Server) parseSNIBody(w http.ResponseWriter, r *http.Request) (sniBody, certs.Info, error) {
	var body sniBody
	if err := decode(w, r, &body, false); err != nil {
		return body, certs.Info{}, err
	}
	if body.CertificateChain == nil || body.PrivateKey == nil {
		return body, certs.Info{}, invalid("Send both certificate_chain and private_key, as PEM text.")
	}
	info, _, err := certs.Parse(*body.CertificateChain, *body.PrivateKey, s.cfg.Now())
	if err != nil {
		return body, certs.Info{}, invalid("%s.", upperFirst(strings.TrimSuffix(err.Error(), ".")))
	}
	return body, info, nil
}

func fillCert(c *model.Certificate, body sniBody, info certs.Info, now time.Time) {
	c.CertificateChain, c.PrivateKey = strings.TrimSpace(*body.CertificateChain)+"\n", strings.TrimSpace(*body.PrivateKey)+"\n"
	c.Domains, c.Issuer, c.Subject, c.SelfSigned = info.Domains, info.Issuer, info.Subject, info.SelfSigned
	c.StartsAt, c.ExpiresAt, c.UpdatedAt = info.StartsAt, info.ExpiresAt, now
}

func (s *Server) createSNI(w http.ResponseWriter, r *http.Request) error {
	body, info, err := s.parseSNIBody(w, r)
	if err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	existing, err := s.appCerts(r.Context(), app.ID)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	c := model.Certificate{ID: newID(), AppID: app.ID, Name: sniName(existing), CreatedAt: now}
	fillCert(&c, body, info, now)
	if _, err := s.st.Certs.Create(r.Context(), model.CertificateKey(app.ID, c.ID), c); err != nil {
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Add SNI endpoint %s (%s) by user %s", c.Name, strings.Join(c.Domains, ", "), actor(r.Context())))
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, sniOut(app, c, domains))
}

// sniName picks a name like Heroku's ("tokyo-12345") unused by the app.
func sniName(existing []model.Certificate) string {
	for {
		n := fmt.Sprintf("%s-%05d", nameNouns[rand.IntN(len(nameNouns))], rand.IntN(100000))
		if !slices.ContainsFunc(existing, func(c model.Certificate) bool { return c.Name == n }) {
			return n
		}
	}
}

// lookupSNI finds the {sni} path value (name or ID) among the app's
// certificates.
func (s *Server) lookupSNI(r *http.Request, app model.App) (model.Certificate, uint64, error) {
	ref := strings.ToLower(r.PathValue("sni"))
	entries, err := s.st.Certs.List(r.Context(), app.ID+".>")
	if err != nil {
		return model.Certificate{}, 0, err
	}
	for _, e := range entries {
		if e.Value.ID == ref || e.Value.Name == ref {
			return e.Value, e.Revision, nil
		}
	}
	return model.Certificate{}, 0, notFound("Couldn't find that SNI endpoint.")
}

func (s *Server) getSNI(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	c, _, err := s.lookupSNI(r, app)
	if err != nil {
		return err
	}
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sniOut(app, c, domains))
}

// patchSNI replaces the certificate and key of an endpoint (a renewal).
func (s *Server) patchSNI(w http.ResponseWriter, r *http.Request) error {
	body, info, err := s.parseSNIBody(w, r)
	if err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	c, rev, err := s.lookupSNI(r, app)
	if err != nil {
		return err
	}
	fillCert(&c, body, info, s.cfg.Now().UTC())
	if _, err := s.st.Certs.Update(r.Context(), model.CertificateKey(app.ID, c.ID), c, rev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return &apiError{http.StatusConflict, "conflict", "The SNI endpoint changed while it was updated: try again."}
		}
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Update SNI endpoint %s (%s) by user %s", c.Name, strings.Join(c.Domains, ", "), actor(r.Context())))
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sniOut(app, c, domains))
}

func (s *Server) deleteSNI(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	c, _, err := s.lookupSNI(r, app)
	if err != nil {
		return err
	}
	domains, err := s.appDomains(r.Context(), app.ID)
	if err != nil {
		return err
	}
	if err := s.st.Certs.Delete(r.Context(), model.CertificateKey(app.ID, c.ID), 0); err != nil {
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Remove SNI endpoint %s by user %s", c.Name, actor(r.Context())))
	return writeJSON(w, http.StatusOK, sniOut(app, c, domains))
}

// getCA serves the platform CA's certificate, without auth: clients
// fetch it to trust the router's HTTPS (curl -o ca.pem).
func (s *Server) getCA(w http.ResponseWriter, r *http.Request) error {
	if len(s.cfg.CACertPEM) == 0 {
		return notFound("This server has no platform CA (HTTPS is off).")
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="ca.pem"`)
	_, err := w.Write(s.cfg.CACertPEM)
	return err
}

// findCert finds a certificate by name or ID.
func findCert(cs []model.Certificate, ref string) *model.Certificate {
	ref = strings.ToLower(ref)
	for i, c := range cs {
		if c.ID == ref || c.Name == ref {
			return &cs[i]
		}
	}
	return nil
}
