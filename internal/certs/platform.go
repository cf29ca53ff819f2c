// Package certs owns Dyno's TLS material: the platform's own certificate
// authority and the wildcard certificate for *.<domain> it signs (kept in
// DATA/tls and reused across restarts), the validation of certificates
// users upload for their custom domains, and the choice of certificate for
// each TLS handshake by SNI (Manager), fed by store watches.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names under the TLS directory.
const (
	CAFile          = "ca.pem"
	CAKeyFile       = "ca-key.pem"
	WildcardFile    = "wildcard.pem"
	WildcardKeyFile = "wildcard-key.pem"
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// leafValidity stays under the 398 days browsers accept for server
	// certificates.
	leafValidity = 397 * 24 * time.Hour
	// renewBefore is how close to expiry a certificate is replaced.
	renewBefore = 30 * 24 * time.Hour
)

// Platform is the platform's CA and the wildcard certificate it signed
// for the apps' domain.
type Platform struct {
	Dir      string // the TLS directory (DATA/tls)
	Domain   string
	CAPath   string // Dir/ca.pem: what clients trust (curl --cacert)
	CAPEM    []byte
	CA       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	Wildcard tls.Certificate // leaf parsed (Leaf set)
}

// EnsurePlatform loads the CA and wildcard certificate from dir, making
// what is missing: a new CA (ECDSA P-256, 10 years) on first start, and a
// new wildcard certificate when there is none, when the domain changed,
// when it was signed by another CA or when it expires within 30 days.
func EnsurePlatform(dir, domain string, now time.Time) (*Platform, error) {
	domain = strings.ToLower(strings.Trim(domain, "."))
	if domain == "" {
		return nil, errors.New("platform TLS: the apps' domain is empty: pass --domain")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create TLS dir %s: %w", dir, err)
	}
	p := &Platform{Dir: dir, Domain: domain, CAPath: filepath.Join(dir, CAFile)}
	ca, caKey, caPEM, err := loadPair(p.CAPath, filepath.Join(dir, CAKeyFile))
	if err != nil || !ca.IsCA || now.Add(renewBefore).After(ca.NotAfter) {
		if ca, caKey, caPEM, err = newCA(now); err != nil {
			return nil, err
		}
		if err := writePair(dir, CAFile, CAKeyFile, caPEM, caKey); err != nil {
			return nil, err
		}
	}
	p.CA, p.caKey, p.CAPEM = ca, caKey, caPEM

	names, ips := platformNames(domain)
	leaf, leafKey, leafPEM, err := loadPair(filepath.Join(dir, WildcardFile), filepath.Join(dir, WildcardKeyFile))
	if err != nil || !p.current(leaf, names, ips, now) {
		if leafKey == nil {
			if leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				return nil, fmt.Errorf("make the wildcard certificate's key: %w", err)
			}
		}
		leafPEM, leaf, err = p.issue(leafKey, names, ips, now)
		if err != nil {
			return nil, err
		}
		if err := writePair(dir, WildcardFile, WildcardKeyFile, leafPEM, leafKey); err != nil {
			return nil, err
		}
	}
	p.Wildcard = tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: leafKey, Leaf: leaf}
	return p, nil
}

// platformNames are the SANs of the wildcard certificate.
func platformNames(domain string) ([]string, []net.IP) {
	names := []string{"*." + domain, domain}
	var ips []net.IP
	if domain == "localhost" {
		ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	return names, ips
}

// current reports whether leaf can keep serving: same names, signed by
// this CA, not about to expire.
func (p *Platform) current(leaf *x509.Certificate, names []string, ips []net.IP, now time.Time) bool {
	if leaf == nil || now.Add(renewBefore).After(leaf.NotAfter) || leaf.CheckSignatureFrom(p.CA) != nil {
		return false
	}
	if !slices.Equal(leaf.DNSNames, names) || len(leaf.IPAddresses) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if !leaf.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

// NeedsRenewal reports whether the wildcard certificate expires within 30
// days of now; EnsurePlatform then replaces it.
func (p *Platform) NeedsRenewal(now time.Time) bool {
	return now.Add(renewBefore).After(p.Wildcard.Leaf.NotAfter)
}

// IssueFor signs a certificate for exactly one hostname with the wildcard
// certificate's key. The router uses it for <app>.<domain> when the domain
// is a single label (localhost): TLS clients such as curl refuse a
// wildcard with a single label after it ("*.localhost").
func (p *Platform) IssueFor(hostname string, now time.Time) (*tls.Certificate, error) {
	key, ok := p.Wildcard.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("the wildcard certificate's key is not ECDSA")
	}
	_, leaf, err := p.issue(key, []string{hostname}, nil, now)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueServer signs a certificate with a key of its own for the platform's
// own TLS services (the rendezvous of attached one-off dynos), valid for
// hosts: names and IP addresses.
func (p *Platform) IssueServer(hosts []string, now time.Time) (tls.Certificate, error) {
	var names []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			names = append(names, h)
		}
	}
	if len(names) == 0 {
		names = []string{"dyno"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make a key: %w", err)
	}
	_, leaf, err := p.issue(key, names, ips, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (p *Platform) issue(key *ecdsa.PrivateKey, names []string, ips []net.IP, now time.Time) ([]byte, *x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Dyno"}, CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign a certificate for %s: %w", names[0], err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the new certificate for %s: %w", names[0], err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), leaf, nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("make the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Dyno"}, CommonName: "Dyno platform CA " + now.UTC().Format("2006-01-02")},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("self-sign the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse the new CA: %w", err)
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// loadPair reads a certificate and its ECDSA key; any trouble is an error
// (the caller makes a new pair). The key is returned when it alone parses,
// so a re-issued certificate keeps its key.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	var key *ecdsa.PrivateKey
	if kb, err := os.ReadFile(keyPath); err == nil {
		if blk, _ := pem.Decode(kb); blk != nil {
			key, _ = x509.ParseECPrivateKey(blk.Bytes)
		}
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, key, nil, err
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, key, nil, fmt.Errorf("%s holds no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, key, nil, fmt.Errorf("parse %s: %w", certPath, err)
	}
	if key == nil || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, key, nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return cert, key, cb, nil
}

// writePair writes the key (0600) then the certificate, each atomically.
func writePair(dir, certName, keyName string, certPEM []byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", keyName, err)
	}
	if err := writeAtomic(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, certName), certPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile keeps an old file's mode
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// CertPool is a pool holding only the platform CA, for clients and tests.
func (p *Platform) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAPEM)
	return pool
}
