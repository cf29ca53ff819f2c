package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Domain is a custom hostname of an app.
type Domain struct {
	ID          string    `json:"id"`
	Hostname    string    `json:"hostname"`
	Kind        string    `json:"kind"`
	CNAME       string    `json:"cname"`
	Status      string    `json:"status"`
	SNIEndpoint *Ref      `json:"sni_endpoint"`
	App         Ref       `json:"app"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// SSLCert is what an SNI endpoint's certificate says about itself.
type SSLCert struct {
	CASigned    bool      `json:"ca_signed?"`
	CertDomains []string  `json:"cert_domains"`
	ExpiresAt   time.Time `json:"expires_at"`
	StartsAt    time.Time `json:"starts_at"`
	Issuer      string    `json:"issuer"`
	Subject     string    `json:"subject"`
	SelfSigned  bool      `json:"self_signed?"`
}

// SNIEndpoint is a certificate uploaded for an app's custom domains. The
// API never returns its private key.
type SNIEndpoint struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	CertificateChain string    `json:"certificate_chain"`
	Domains          []string  `json:"domains"` // IDs of the app's domains it covers
	App              Ref       `json:"app"`
	SSLCert          SSLCert   `json:"ssl_cert"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Domains lists an app's custom domains.
func (c *Client) Domains(ctx context.Context, app string) ([]Domain, error) {
	return list[Domain](ctx, c, "/apps/"+esc(app)+"/domains", ListRange{})
}

// AddDomain adds a custom hostname to an app.
func (c *Client) AddDomain(ctx context.Context, app, hostname string) (*Domain, error) {
	var d Domain
	body := map[string]any{"hostname": hostname, "sni_endpoint": nil}
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/domains", body, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RemoveDomain removes a custom hostname (or domain ID) from an app.
func (c *Client) RemoveDomain(ctx context.Context, app, hostname string) error {
	_, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app)+"/domains/"+esc(hostname), nil, nil, nil)
	return err
}

// SNIEndpoints lists an app's certificates.
func (c *Client) SNIEndpoints(ctx context.Context, app string) ([]SNIEndpoint, error) {
	return list[SNIEndpoint](ctx, c, "/apps/"+esc(app)+"/sni-endpoints", ListRange{})
}

// AddSNIEndpoint uploads a certificate chain and its private key (PEM).
func (c *Client) AddSNIEndpoint(ctx context.Context, app, chainPEM, keyPEM string) (*SNIEndpoint, error) {
	var e SNIEndpoint
	body := map[string]string{"certificate_chain": chainPEM, "private_key": keyPEM}
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/sni-endpoints", body, nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// RemoveSNIEndpoint deletes a certificate by name or ID.
func (c *Client) RemoveSNIEndpoint(ctx context.Context, app, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/apps/"+esc(app)+"/sni-endpoints/"+esc(name), nil, nil, nil)
	return err
}

// CA downloads the platform CA's certificate (PEM), which clients trust
// to reach apps over HTTPS.
func (c *Client) CA(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/ca.pem", nil)
	if err != nil {
		return nil, fmt.Errorf("GET /ca.pem: %w", err)
	}
	c.decorate(req, false)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the platform CA: %w", err)
	}
	return b, nil
}
