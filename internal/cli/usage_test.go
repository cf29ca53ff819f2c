package cli

import (
	"net/http"
	"strings"
	"testing"
)

func usageJSON(left float64) map[string]any {
	return map[string]any{
		"app": map[string]any{"id": "app-id", "name": "hello"}, "month": "2026-11", "frozen": false,
		"seconds": 120, "hours": 0.0333, "free_hours_allowance": 750, "free_hours_used": 750 - left,
		"free_hours_left": left, "billable_hours": 0, "cost": 0, "currency": "USD",
		"processes": []any{map[string]any{"type": "web", "size": "standard-1X", "dynos": 2, "seconds": 120, "hours": 0.0333,
			"free_hours": 0.0333, "billable_hours": 0, "hourly_price": 0.034722, "monthly_cap": 25, "cost": 0}},
	}
}

func TestPsQuotaLine(t *testing.T) {
	tests := []struct {
		name string
		left float64
		want string
	}{
		{"almost all left", 749.9667, "Free dyno hours quota remaining this month: 749h 58m (99%)\n\n"},
		{"none left", 0, "Free dyno hours quota remaining this month: 0h 0m (0%)\n\n"},
		{"no metering on the server", -1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.handle("GET /apps/{app}/dynos", http.StatusOK, []any{dynoJSON("web.1", "up", 2)})
			if tc.left >= 0 {
				api.handle("GET /apps/{app}/usage", http.StatusOK, usageJSON(tc.left))
			}
			r := run(t, api, nil, "ps", "-a", "hello")
			wantOK(t, r)
			want := tc.want + "=== web (standard-1X): python3 app.py (1)\nweb.1: up 2026/11/26 14:00:00 +0000 (~ 5s ago)\n"
			if r.stdout != want {
				t.Errorf("ps printed\n%s\nwant\n%s", r.stdout, want)
			}
		})
	}
}

func TestUsageCommands(t *testing.T) {
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/usage", http.StatusOK, usageJSON(749.9667))
	inv := map[string]any{"month": "2026-10", "state": "issued", "issued_at": "2026-11-01T01:00:00Z", "currency": "USD",
		"lines":   []any{map[string]any{"app": map[string]any{"id": "a", "name": "hello"}, "seconds": 3600, "hours": 1, "free_hours": 1, "billable_hours": 0, "cost": 0}},
		"seconds": 3600, "hours": 1, "free_hours": 1, "billable_hours": 0, "cost": 0}
	api.handle("GET /account/invoices/{month}", http.StatusOK, inv)
	api.handle("GET /account/invoices", http.StatusOK, []any{inv})

	r := run(t, api, nil, "usage", "-a", "hello", "--month", "2026-11")
	wantOK(t, r)
	for _, want := range []string{"=== hello dyno usage 2026-11", "web   standard-1X  2", "2m 0s", "Free hours left:", "749.9667", "Cost:", "$0.00"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("usage output lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := api.requests("GET", "/apps/hello/usage"); len(got) != 1 || got[0].Query != "month=2026-11" {
		t.Errorf("usage requests %+v, want one with month=2026-11", got)
	}
	r = run(t, api, nil, "usage", "-a", "hello", "--json")
	wantOK(t, r)
	if !strings.Contains(r.stdout, `"free_hours_left": 749.9667`) {
		t.Errorf("usage --json:\n%s", r.stdout)
	}
	r = run(t, api, nil, "invoice", "--month", "2026-10")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "=== Invoice 2026-10 (issued, issued 2026-11-01 01:00:00 UTC)") || !strings.Contains(r.stdout, "hello") || !strings.Contains(r.stdout, "Total") {
		t.Errorf("invoice output:\n%s", r.stdout)
	}
	r = run(t, api, nil, "invoices")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "2026-10  issued") {
		t.Errorf("invoices output:\n%s", r.stdout)
	}
}
