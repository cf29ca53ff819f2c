package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Info is what an uploaded certificate says about itself.
type Info struct {
	Domains    []string // DNS SANs of the leaf, lower case
	StartsAt   time.Time
	ExpiresAt  time.Time
	Issuer     string
	Subject    string
	SelfSigned bool
}

// Parse validates an uploaded certificate chain and private key (PEM) and
// returns what the leaf says. The errors are written for the user who
// uploaded them: the key must match the leaf, the leaf must name at least
// one DNS domain and must not have expired at now.
func Parse(chainPEM, keyPEM string, now time.Time) (Info, tls.Certificate, error) {
	var info Info
	chain := []byte(strings.TrimSpace(chainPEM))
	var certs []*x509.Certificate
	for rest := chain; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return info, tls.Certificate{}, fmt.Errorf("certificate_chain holds a %q PEM block: send only CERTIFICATE blocks, the server's certificate first", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return info, tls.Certificate{}, fmt.Errorf("certificate_chain has a certificate that does not parse: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return info, tls.Certificate{}, errors.New("certificate_chain holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	key := []byte(strings.TrimSpace(keyPEM))
	blk, _ := pem.Decode(key)
	if blk == nil || !strings.Contains(blk.Type, "PRIVATE KEY") {
		return info, tls.Certificate{}, errors.New("private_key holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
	}
	if strings.Contains(blk.Type, "ENCRYPTED") || blk.Headers["Proc-Type"] != "" {
		return info, tls.Certificate{}, errors.New("private_key is encrypted: decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return info, tls.Certificate{}, errors.New("private_key does not match the certificate: upload the key the certificate was issued for")
		}
		return info, tls.Certificate{}, fmt.Errorf("private_key cannot be used with this certificate: %v", err)
	}
	leaf := certs[0]
	pair.Leaf = leaf
	if now.After(leaf.NotAfter) {
		return info, tls.Certificate{}, fmt.Errorf("the certificate expired on %s: upload a current one", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, d := range leaf.DNSNames {
		info.Domains = append(info.Domains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	if len(info.Domains) == 0 {
		return info, tls.Certificate{}, errors.New("the certificate names no DNS domain (subjectAltName): clients would reject it")
	}
	info.StartsAt, info.ExpiresAt = leaf.NotBefore, leaf.NotAfter
	info.Issuer, info.Subject = leaf.Issuer.String(), leaf.Subject.String()
	info.SelfSigned = bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
	return info, pair, nil
}

// Matches reports whether a certificate domain (exact or "*.example.com")
// covers hostname. A wildcard covers exactly one label.
func Matches(pattern, hostname string) bool {
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

// SelfSigned makes a self-signed certificate for domains, valid from
// notBefore to notAfter, and returns it and its key as PEM. It is for
// development and tests (an uploaded certificate is normally a CA's).
func SelfSigned(domains []string, notBefore, notAfter time.Time) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("make a key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: domains[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     domains,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("sign the certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode the key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}
