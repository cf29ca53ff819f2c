package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// logsAPI fakes a log session whose stream sends body, then (for tail
// sessions) stays open until the client leaves.
func logsAPI(t *testing.T, body string) *fakeAPI {
	api := newFakeAPI(t)
	api.mux.HandleFunc("POST /apps/{app}/log-sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]string{"id": "ls1", "logplex_url": api.URL + "/log-sessions/ls1?token=s"})
	})
	api.mux.HandleFunc("GET /log-sessions/ls1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, body)
		w.(http.Flusher).Flush()
		if strings.Contains(api.requests(http.MethodPost, "")[0].Body, `"tail":true`) {
			<-r.Context().Done()
		}
	})
	return api
}

func TestLogsLines(t *testing.T) {
	tests := []struct {
		args      []string
		wantLines float64
	}{
		{[]string{"logs"}, 100},
		{[]string{"logs", "-n", "0"}, 0},       // no history
		{[]string{"logs", "-n", "5000"}, 5000}, // the API caps it
		{[]string{"logs", "-n", "0", "-t"}, 0}, // only new lines
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api := logsAPI(t, "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if slices.Contains(tc.args, "-t") {
				stopped := make(chan struct{})
				defer func() { cancel(); <-stopped }()
				go func() { // a tail ends with Ctrl-C, once it streams
					defer close(stopped)
					for len(api.requests(http.MethodGet, "/log-sessions/ls1")) == 0 && ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond)
					}
					cancel()
				}()
			}
			wantOK(t, runCtx(t, ctx, api, nil, nil, append(tc.args, "-a", "hello")...))
			var body map[string]any
			if err := json.Unmarshal([]byte(api.requests(http.MethodPost, "/apps/hello/log-sessions")[0].Body), &body); err != nil {
				t.Fatal(err)
			}
			if got, ok := body["lines"]; !ok || got != tc.wantLines {
				t.Errorf("lines sent %v (present %v), want %v", got, ok, tc.wantLines)
			}
		})
	}
}

func TestLogs(t *testing.T) {
	stream := ": keep-alive\n\n" +
		"id: 1\ndata: 2026-11-26T14:00:00.000000+00:00 app[web.1]: booting\n\n" +
		"id: 2\r\nevent: message\r\ndata:2026-11-26T14:00:01.000000+00:00 heroku[web.1]: State changed from starting to up\r\n\r\n" +
		"id: 3\ndata: first\ndata: second\n\n" +
		"data: cut short"
	api := logsAPI(t, stream)
	r := run(t, api, nil, "logs", "-a", "hello", "-n", "200", "--dyno", "web", "--source", "app")
	wantOK(t, r)
	want := "2026-11-26T14:00:00.000000+00:00 app[web.1]: booting\n" +
		"2026-11-26T14:00:01.000000+00:00 heroku[web.1]: State changed from starting to up\n" +
		"first\nsecond\ncut short\n"
	if r.stdout != want {
		t.Errorf("logs printed %q\nwant %q", r.stdout, want)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(api.requests(http.MethodPost, "/apps/hello/log-sessions")[0].Body), &body); err != nil {
		t.Fatal(err)
	}
	if body["lines"] != 200.0 || body["tail"] != false || body["source"] != "app" || body["dyno"] != "web" {
		t.Errorf("log session body %v", body)
	}
	if get := api.requests(http.MethodGet, "/log-sessions/ls1"); len(get) != 1 || get[0].Header.Get("Authorization") != "" {
		t.Errorf("stream requests %+v, want one without Authorization", get)
	}
}

// signalWriter reports the first write that contains want.
type signalWriter struct {
	want string
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		select {
		case <-w.seen:
		default:
			close(w.seen)
		}
	}
	return len(p), nil
}

func TestLogsTailEndsCleanlyOnInterrupt(t *testing.T) {
	api := logsAPI(t, "data: hello from web.1\n\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &signalWriter{want: "hello from web.1", seen: make(chan struct{})}
	done := make(chan result, 1)
	go func() { done <- runCtx(t, ctx, api, nil, w, "logs", "--tail", "-a", "hello", "-p", "web") }()
	select {
	case <-w.seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the tailed line never arrived")
	}
	cancel() // what Ctrl-C does
	r := <-done
	if r.code != 0 || r.stderr != "" || r.stdout != "hello from web.1\n" {
		t.Errorf("exit %d stdout %q stderr %q, want a clean exit", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(api.requests(http.MethodPost, "")[0].Body, `"dyno":"web"`) {
		t.Errorf("-p web not sent as dyno: %s", api.requests(http.MethodPost, "")[0].Body)
	}
}
