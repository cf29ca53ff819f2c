package model

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Domain is a custom hostname routed to an app. It is stored under
// DomainKey(Hostname): a hostname belongs to one app at a time.
type Domain struct {
	ID            string    `json:"id"`
	AppID         string    `json:"app_id"`
	Hostname      string    `json:"hostname"` // lower case; "*.example.com" for a wildcard
	Kind          string    `json:"kind"`     // "custom"
	SNIEndpointID string    `json:"sni_endpoint_id,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// DomainKindCustom is the kind of a user-added domain.
const DomainKindCustom = "custom"

// DomainKey is the store key of a hostname. NATS keys cannot hold "*", and
// a valid hostname never holds "_", so a wildcard's "*" becomes "_".
func DomainKey(hostname string) string {
	return strings.Replace(hostname, "*", "_", 1)
}

// NormalizeHostname lower-cases a hostname and drops a trailing dot.
func NormalizeHostname(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}

// ValidateHostname reports why h (normalized) cannot be a custom domain:
// RFC 1123 labels of letters, digits and dashes (1 to 63 characters, no
// dash at either end), at least two labels, 253 characters at most, a
// last label that is not all digits (no IP addresses), and "*" only as
// the whole first label.
func ValidateHostname(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("hostname %q is invalid: %s", h, why)
	}
	if h == "" {
		return bad("it is empty")
	}
	if len(h) > 253 {
		return bad("it is longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return bad("use a fully qualified name such as www.example.com")
	}
	for i, l := range labels {
		if l == "*" && i == 0 {
			continue
		}
		if l == "" || len(l) > 63 {
			return bad("each dot-separated label must have 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("a label cannot start or end with a dash")
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				if c == '*' {
					return bad("a wildcard is allowed only as the whole first label (*.example.com)")
				}
				return bad("use only lowercase letters, digits, dashes and dots")
			}
		}
	}
	if len(labels) == 2 && labels[0] == "*" {
		return bad("a wildcard needs at least two labels after it (*.example.com)")
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return bad("IP addresses cannot be custom domains")
	}
	return nil
}

// Certificate is an SNI endpoint: a certificate chain and its private key
// uploaded for an app's custom domains. It is stored under
// CertificateKey(AppID, ID). PrivateKey never leaves the platform: the
// API does not return it and nothing logs it.
type Certificate struct {
	ID               string    `json:"id"`
	AppID            string    `json:"app_id"`
	Name             string    `json:"name"`
	CertificateChain string    `json:"certificate_chain"` // PEM, leaf first
	PrivateKey       string    `json:"private_key"`       // PEM
	Domains          []string  `json:"domains"`           // the leaf's DNS SANs, lower case
	Issuer           string    `json:"issuer"`
	Subject          string    `json:"subject"`
	SelfSigned       bool      `json:"self_signed"`
	StartsAt         time.Time `json:"starts_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// CertificateKey is the store key of an app's certificate.
func CertificateKey(appID, id string) string { return appID + "." + id }

// LogValue keeps the private key out of structured logs.
func (c Certificate) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("name", c.Name), slog.String("app_id", c.AppID),
		slog.Any("domains", c.Domains), slog.Time("expires_at", c.ExpiresAt))
}
