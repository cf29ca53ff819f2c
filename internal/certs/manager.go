package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Platform is the CA and wildcard certificate from EnsurePlatform.
	Platform *Platform
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RenewEvery is how often Run checks the wildcard certificate's
	// expiry; 12 h when zero.
	RenewEvery time.Duration
}

// Manager chooses the certificate of each TLS handshake by SNI. Uploaded
// certificates and the domains' owners are mirrored from the store by
// watches (Run), so a handshake never reads the store.
type Manager struct {
	cfg      ManagerConfig
	st       *store.Store
	log      *slog.Logger
	now      func() time.Time
	platform atomic.Pointer[Platform]
	idx      atomic.Pointer[index]

	mu      sync.Mutex // guards what Run's two watches feed and minted
	certs   map[string]certEntry
	owners  map[string]string // hostname → app ID
	minted  map[string]*tls.Certificate
	mintFor *Platform // the platform minted was signed by
}

// index is an immutable snapshot read by handshakes.
type index struct {
	byName map[string][]certEntry // certificate domain (exact or *.x) → certificates
	owners map[string]string      // custom hostname → app ID
}

type certEntry struct {
	rev     uint64
	appID   string
	cert    *tls.Certificate
	expires time.Time
}

// maxMinted bounds the per-hostname certificates kept for single-label
// platform domains (see Platform.IssueFor).
const maxMinted = 4096

// NewManager returns a Manager serving cfg.Platform's wildcard until Run
// has loaded the uploaded certificates from st.
func NewManager(cfg ManagerConfig, st *store.Store) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = 12 * time.Hour
	}
	m := &Manager{cfg: cfg, st: st, log: cfg.Logger.With("component", "certs"), now: cfg.Now,
		certs: map[string]certEntry{}, owners: map[string]string{}, minted: map[string]*tls.Certificate{}}
	m.platform.Store(cfg.Platform)
	m.idx.Store(&index{})
	return m
}

// TLSConfig is the router's TLS configuration: TLS 1.2 or later, HTTP/2
// offered, certificates chosen by GetCertificate.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: m.GetCertificate,
	}
}

// GetCertificate picks the certificate for a handshake: an uploaded one
// whose domains cover the SNI name (see better), else the platform's.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := m.uploaded(name); c != nil {
			return c, nil
		}
	}
	p := m.platform.Load()
	// curl and OpenSSL refuse "*.localhost" (one label after the star):
	// give <app>.localhost a certificate of its own, signed by the CA.
	if !strings.Contains(p.Domain, ".") && strings.HasSuffix(name, "."+p.Domain) &&
		!strings.Contains(strings.TrimSuffix(name, "."+p.Domain), ".") {
		c, err := m.mint(p, name)
		if err == nil {
			return c, nil
		}
		m.log.Warn("cannot sign a certificate for a platform hostname; serving the wildcard", "host", name, "err", err)
	}
	return &p.Wildcard, nil
}

func (m *Manager) uploaded(name string) *tls.Certificate {
	idx := m.idx.Load()
	if len(idx.byName) == 0 {
		return nil
	}
	wild := ""
	if i := strings.IndexByte(name, '.'); i > 0 {
		wild = "*" + name[i:]
	}
	owner, ok := idx.owners[name]
	if !ok && wild != "" {
		owner = idx.owners[wild]
	}
	now := m.now()
	var best *certEntry
	bestExact := false
	for _, exact := range []bool{true, false} {
		list := idx.byName[wild]
		if exact {
			list = idx.byName[name]
		}
		for i := range list {
			e := &list[i]
			if now.After(e.expires) {
				continue
			}
			if best == nil || better(e, exact, best, bestExact, owner) {
				best, bestExact = e, exact
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.cert
}

// better reports whether a should be served rather than b: the
// certificate of the app that owns the hostname, then an exact name over
// a wildcard, then the one expiring last.
func better(a *certEntry, aExact bool, b *certEntry, bExact bool, owner string) bool {
	if (a.appID == owner) != (b.appID == owner) {
		return a.appID == owner
	}
	if aExact != bExact {
		return aExact
	}
	return a.expires.After(b.expires)
}

func (m *Manager) mint(p *Platform, name string) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mintFor != p || len(m.minted) >= maxMinted {
		m.minted, m.mintFor = map[string]*tls.Certificate{}, p
	}
	if c := m.minted[name]; c != nil && !p.NeedsRenewalOf(c, m.now()) {
		return c, nil
	}
	c, err := p.IssueFor(name, m.now())
	if err != nil {
		return nil, err
	}
	m.minted[name] = c
	return c, nil
}

// NeedsRenewalOf reports whether c expires within 30 days of now.
func (p *Platform) NeedsRenewalOf(c *tls.Certificate, now time.Time) bool {
	return c.Leaf == nil || now.Add(renewBefore).After(c.Leaf.NotAfter)
}

// Run mirrors the uploaded certificates and the custom domains' owners
// from the store until ctx ends, and renews the platform's wildcard
// certificate before it expires. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		follow(ctx, m, "certs", m.st.Certs, m.setCerts)
	}()
	go func() {
		defer wg.Done()
		follow(ctx, m, "domains", m.st.Domains, m.setDomains)
	}()
	defer wg.Wait()
	t := time.NewTicker(m.cfg.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p := m.platform.Load()
			if !p.NeedsRenewal(m.now()) {
				continue
			}
			np, err := EnsurePlatform(p.Dir, p.Domain, m.now())
			if err != nil {
				m.log.Error("renew the platform's wildcard certificate; retrying later", "err", err)
				continue
			}
			m.platform.Store(np)
			m.log.Info("renewed the platform's wildcard certificate", "expires", np.Wildcard.Leaf.NotAfter)
		}
	}
}

// setCerts takes the complete set of uploaded certificates, parsing only
// those that changed.
func (m *Manager) setCerts(all map[string]store.Entry[model.Certificate]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]certEntry, len(all))
	for k, e := range all {
		if old, ok := m.certs[k]; ok && old.rev == e.Revision {
			next[k] = old
			continue
		}
		pair, err := tls.X509KeyPair([]byte(e.Value.CertificateChain), []byte(e.Value.PrivateKey))
		if err != nil {
			m.log.Warn("an uploaded certificate does not load; it is not served", "cert", e.Value.Name, "app_id", e.Value.AppID, "err", err)
			continue
		}
		next[k] = certEntry{rev: e.Revision, appID: e.Value.AppID, cert: &pair, expires: pair.Leaf.NotAfter}
	}
	m.certs = next
	m.publishLocked()
}

func (m *Manager) setDomains(all map[string]store.Entry[model.Domain]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	owners := make(map[string]string, len(all))
	for _, e := range all {
		owners[e.Value.Hostname] = e.Value.AppID
	}
	m.owners = owners
	m.publishLocked()
}

// publishLocked swaps in a new index of the mirrored certificates (by
// their leaf's DNS names) and domain owners.
func (m *Manager) publishLocked() {
	byName := map[string][]certEntry{}
	for _, e := range m.certs {
		for _, d := range e.cert.Leaf.DNSNames {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			byName[d] = append(byName[d], e)
		}
	}
	m.idx.Store(&index{byName: byName, owners: m.owners})
}

// follow keeps a full copy of bucket and hands it to apply after the
// initial values and after every change. A closed watch is reopened with
// back-off; the last copy stays in use meanwhile.
func follow[T any](ctx context.Context, m *Manager, what string, bucket store.Bucket[T], apply func(map[string]store.Entry[T])) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ch, err := bucket.Watch(ctx, ">")
		if err == nil {
			all, ready := map[string]store.Entry[T]{}, false
			for ev := range ch {
				switch {
				case ev.Ready:
					ready, backoff = true, 100*time.Millisecond
				case ev.Deleted:
					delete(all, ev.Key)
				default:
					all[ev.Key] = ev.Entry
				}
				if ready {
					apply(all)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("certificates: store watch closed; keeping the last known set and retrying", "bucket", what, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
