package agent

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"
)

// HealthCheckVar is the config var that names a web dyno's health check
// path. When it is set, a web dyno is up only once GET of that path answers
// with a status below 400, not merely once its port accepts connections;
// until then no router sends it traffic and, in a deploy, the dyno it
// replaces keeps serving.
const HealthCheckVar = "DYNO_HEALTHCHECK_PATH"

// waitForHealthy closes up once GET http://addr/path answers below 400.
func waitForHealthy(ctx context.Context, addr, path string, up chan<- struct{}) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	c := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: time.Second}).DialContext,
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
	defer c.CloseIdleConnections()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return // a path that is no URL never passes; R10 reports it
		}
		req.Header.Set("User-Agent", "Dyno-HealthCheck/1")
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				close(up)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
