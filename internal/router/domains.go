package router

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Custom domains and TLS. The route table is keyed by app name; a custom
// hostname (www.example.com added to an app with domains:add) resolves to
// the app's current name through customHosts, a map rebuilt from watches
// of the domains and app-names buckets and swapped atomically, so the
// table code needs no change beyond starting runCustomDomains.

// customHosts is one immutable snapshot: hostname (exact or
// "*.example.com") → app name.
type customHosts map[string]string

// customName resolves a Host (without port) that is not <app>.<domain>
// to the name of the app that added it as a custom domain: the exact
// hostname first, then a wildcard domain one label up.
func (r *Router) customName(host string) (string, bool) {
	m := r.custom.Load()
	if m == nil || len(*m) == 0 {
		return "", false
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if name, ok := (*m)[h]; ok {
		return name, true
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if name, ok := (*m)["*"+h[i:]]; ok {
			return name, true
		}
	}
	return "", false
}

// runCustomDomains follows the domains and app-names buckets until ctx
// ends and keeps r.custom current. It returns when both watches ended.
func (r *Router) runCustomDomains(ctx context.Context) {
	var (
		mu      sync.Mutex
		domains map[string]string // hostname → app ID
		names   map[string]string // app ID → name
	)
	publish := func() {
		if domains == nil || names == nil {
			return // wait for both initial sets
		}
		m := make(customHosts, len(domains))
		for host, id := range domains {
			if name, ok := names[id]; ok {
				m[host] = name
			}
		}
		r.custom.Store(&m)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		followBucket(ctx, r, "domains", r.store.Domains, func(all map[string]model.Domain) {
			m := make(map[string]string, len(all))
			for _, d := range all {
				m[d.Hostname] = d.AppID
			}
			mu.Lock()
			domains = m
			publish()
			mu.Unlock()
		})
	}()
	go func() {
		defer wg.Done()
		followBucket(ctx, r, "app-names (custom domains)", r.store.AppNames, func(all map[string]model.AppName) {
			m := make(map[string]string, len(all))
			for name, n := range all {
				m[n.ID] = name
			}
			mu.Lock()
			names = m
			publish()
			mu.Unlock()
		})
	}()
	wg.Wait()
}

// followBucket hands apply the full contents of bucket after the initial
// values and after every change; a closed watch is reopened with back-off
// and the last known contents stay in use meanwhile.
func followBucket[T any](ctx context.Context, r *Router, what string, bucket store.Bucket[T], apply func(map[string]T)) {
	backoff := minBackoff
	for ctx.Err() == nil {
		ch, err := bucket.Watch(ctx, ">")
		if err == nil {
			all, ready := map[string]T{}, false
			for ev := range ch {
				switch {
				case ev.Ready:
					ready, backoff = true, minBackoff
				case ev.Deleted:
					delete(all, ev.Key)
				default:
					all[ev.Key] = ev.Value
				}
				if ready && len(ch) == 0 { // a burst is applied once
					apply(all)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("custom domains: store watch closed; keeping the last known domains and retrying",
			"bucket", what, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// scheme is the protocol the client used, for X-Forwarded-Proto.
func scheme(req *http.Request) string {
	if req.TLS != nil {
		return "https"
	}
	return "http"
}

// appendProtocol appends the log line's protocol fields: protocol=http,
// or protocol=https tls=true tls_version=tls1.3 over TLS (heroku.md §2.4).
func appendProtocol(b []byte, req *http.Request) []byte {
	if req == nil || req.TLS == nil {
		return append(b, " protocol=http"...)
	}
	b = append(b, " protocol=https tls=true tls_version="...)
	switch req.TLS.Version {
	case tls.VersionTLS13:
		return append(b, "tls1.3"...)
	case tls.VersionTLS12:
		return append(b, "tls1.2"...)
	}
	return append(b, "unknown"...)
}
