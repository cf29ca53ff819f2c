package cli

import (
	"net/http"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	host := func(id, state string, dynos int) map[string]any {
		return map[string]any{"id": id, "address": "10.0.0.1", "state": state, "memory_mb": 8192, "memory_reserved_mb": 1536,
			"memory_free_mb": 6656, "cpus": 4, "dynos": dynos, "heartbeat_at": "2026-11-26T13:59:59Z", "heartbeat_age": 0.4,
			"started_at": "2026-11-26T13:00:00Z", "drain": state == "draining", "drain_requested_at": nil}
	}
	api := newFakeAPI(t)
	api.handle("GET /hosts", http.StatusOK, []any{host("host-a", "live", 3), host("host-b", "lost", 2)})
	api.handle("POST /hosts/{id}/actions/drain", http.StatusOK, host("host-a", "draining", 3))
	api.handle("POST /hosts/{id}/actions/undrain", http.StatusOK, host("host-a", "live", 3))
	tests := []struct {
		args                 []string
		wantStdout           []string
		wantMethod, wantPath string
	}{
		{[]string{"hosts"}, []string{"=== Hosts", "host-a  live   10.0.0.1  1536/8192    6656       4     3      400ms ago", "host-b  lost"}, "GET", "/hosts"},
		{[]string{"hosts", "--json"}, []string{`"memory_free_mb": 6656`}, "GET", "/hosts"},
		{[]string{"hosts:drain", "host-a"}, []string{"Draining host-a (now draining, 3 dynos)"}, "POST", "/hosts/host-a/actions/drain"},
		{[]string{"hosts:undrain", "host-a"}, []string{"host-a takes dynos again"}, "POST", "/hosts/host-a/actions/undrain"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(api.requests(tc.wantMethod, tc.wantPath))
			r := run(t, api, nil, tc.args...)
			wantOK(t, r)
			for _, w := range tc.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout %q\nlacks %q", r.stdout, w)
				}
			}
			if n := len(api.requests(tc.wantMethod, tc.wantPath)) - before; n != 1 {
				t.Fatalf("sent %d %s %s requests, want 1", n, tc.wantMethod, tc.wantPath)
			}
		})
	}
}
