package cli

import (
	"net/http"
	"strings"
	"testing"
)

func TestDrains(t *testing.T) {
	drain := func(u string, health any) map[string]any {
		return map[string]any{"id": "dr1", "url": u, "token": "d.0123", "addon": nil, "app": map[string]string{"id": "app-id", "name": "hello"},
			"created_at": "2026-11-26T13:00:00Z", "updated_at": "2026-11-26T13:00:00Z", "health": health}
	}
	api := newFakeAPI(t)
	api.handle("GET /apps/{app}/log-drains", http.StatusOK, []any{
		drain("syslog://logs.example.com:514", map[string]any{"last_success_at": "2026-11-26T13:59:58Z", "last_error": "", "last_error_at": nil, "sent": 10, "dropped": 3}),
		drain("https://u:secret@logs.example.com/in", nil),
	})
	api.handle("POST /apps/{app}/log-drains", http.StatusCreated, drain("syslog://logs.example.com:514", nil))
	api.handle("DELETE /apps/{app}/log-drains/{d...}", http.StatusOK, drain("syslog://logs.example.com:514", nil))
	tests := []struct {
		args                 []string
		wantStdout           []string
		wantMethod, wantPath string
		wantBody             string
	}{
		{[]string{"drains"}, []string{"=== Drains", "syslog://logs.example.com:514        (d.0123)  2026/11/26 13:59:58 +0000 (~ 7s ago)  3", "https://u:xxxxx@logs.example.com/in"}, "GET", "/apps/hello/log-drains", ""},
		{[]string{"drains", "--json"}, []string{`"token": "d.0123"`}, "GET", "/apps/hello/log-drains", ""},
		{[]string{"drains:add", "syslog://logs.example.com:514"}, []string{"Successfully added drain syslog://logs.example.com:514"}, "POST", "/apps/hello/log-drains", `{"url":"syslog://logs.example.com:514"}`},
		{[]string{"drains:remove", "syslog://logs.example.com:514"}, []string{"Successfully removed drain"}, "DELETE", "/apps/hello/log-drains/syslog:%2F%2Flogs.example.com:514", ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := len(api.requests(tc.wantMethod, ""))
			r := run(t, api, map[string]string{"DYNO_APP": "hello"}, tc.args...)
			wantOK(t, r)
			for _, w := range tc.wantStdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout %q\nlacks %q", r.stdout, w)
				}
			}
			if strings.Contains(r.stdout, "secret") && !strings.Contains(strings.Join(tc.args, " "), "--json") {
				t.Errorf("the drain's password is shown: %q", r.stdout)
			}
			reqs := api.requests(tc.wantMethod, "")[before:]
			if len(reqs) != 1 {
				t.Fatalf("sent %d %s requests, want 1", len(reqs), tc.wantMethod)
			}
			if tc.wantBody != "" && strings.TrimSpace(reqs[0].Body) != tc.wantBody {
				t.Errorf("body %s, want %s", reqs[0].Body, tc.wantBody)
			}
		})
	}
}

func TestLogsJSON(t *testing.T) {
	api := logsAPI(t, "id: 1\ndata: 2026-11-26T13:00:00.000001+00:00 app[web.1]: hello: world\n\nid: 2\ndata: 2026-11-26T13:00:01.000000+00:00 heroku[router]: at=info\n\n")
	r := run(t, api, nil, "logs", "--json", "-a", "hello")
	wantOK(t, r)
	want := `{"time":"2026-11-26T13:00:00.000001+00:00","source":"app","dyno":"web.1","message":"hello: world"}` + "\n" +
		`{"time":"2026-11-26T13:00:01.000000+00:00","source":"heroku","dyno":"router","message":"at=info"}` + "\n"
	if r.stdout != want {
		t.Fatalf("stdout\n%s\nwant\n%s", r.stdout, want)
	}
}
