package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// fakeRendezvous records sessions; the real one is tested in its package.
type fakeRendezvous struct{ cancelled []string }

func (f *fakeRendezvous) Register(id string, ttl time.Duration) (string, string, error) {
	return "secret-" + id, "token-" + id, nil
}
func (f *fakeRendezvous) Cancel(id string) { f.cancelled = append(f.cancelled, id) }

func TestOneOffAPI(t *testing.T) {
	rdv := &fakeRendezvous{}
	e := newEnv(t, 0, func(c *Config) { c.Rendezvous, c.RendezvousAddr = rdv, "127.0.0.1:7000" })
	app := e.createApp("runner")
	if code, body := e.call("POST", "/apps/runner/dynos", map[string]any{"command": "bash"}); code != 422 {
		t.Fatalf("one-off before any release: %d %s", code, body)
	}
	e.deploy("runner", tarball(t, goodSource...))

	tests := []struct {
		name   string
		body   map[string]any
		status int
		check  func(t *testing.T, d dynoJSON, o model.OneOff)
	}{
		{"attached with a terminal", map[string]any{"command": "bash", "attach": true, "env": map[string]string{"COLUMNS": "80"}}, 201,
			func(t *testing.T, d dynoJSON, o model.OneOff) {
				if d.AttachURL == nil || *d.AttachURL != "rendezvous://127.0.0.1:7000/secret-"+d.ID {
					t.Errorf("attach_url %v", d.AttachURL)
				}
				if o.Attach == nil || !o.Attach.TTY || o.Attach.Token != "token-"+d.ID || o.Env["COLUMNS"] != "80" {
					t.Errorf("request %+v", o)
				}
				if !strings.HasPrefix(d.Name, "run.") || d.State != "starting" || d.Type != "run" {
					t.Errorf("dyno %+v", d)
				}
			}},
		{"a Procfile type with arguments, no tty, ttl", map[string]any{"command": "worker now", "attach": true, "force_no_tty": true, "time_to_live": 60}, 201,
			func(t *testing.T, d dynoJSON, o model.OneOff) {
				if d.Command != "sh -c 'sleep 1000' now" || o.Attach.TTY || o.ExpiresAt.Sub(o.CreatedAt) != time.Minute {
					t.Errorf("dyno %+v request %+v", d, o)
				}
			}},
		{"detached, sized", map[string]any{"command": "echo hi", "size": "standard-2x"}, 201,
			func(t *testing.T, d dynoJSON, o model.OneOff) {
				if d.AttachURL != nil || o.Attach != nil || o.Size != "standard-2X" || o.ExpiresAt.Sub(o.CreatedAt) != model.OneOffMaxTTL {
					t.Errorf("dyno %+v request %+v", d, o)
				}
			}},
		{"no command", map[string]any{"command": " "}, 422, nil},
		{"unknown size", map[string]any{"command": "ls", "size": "huge"}, 422, nil},
		{"bad env key", map[string]any{"command": "ls", "env": map[string]string{"1X": "y"}}, 422, nil},
		{"bad ttl", map[string]any{"command": "ls", "time_to_live": -5}, 422, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d dynoJSON
			code, body := e.call("POST", "/apps/runner/dynos", tt.body)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, body)
			}
			if tt.check == nil {
				return
			}
			e.must(200, "GET", "/apps/runner/dynos/"+dynoName(t, body), nil, &d)
			o, _, err := e.st.OneOffs.Get(context.Background(), model.StatusKey(app.ID, d.ID))
			if err != nil {
				t.Fatal(err)
			}
			if code, _ := e.call("POST", "/apps/runner/dynos", tt.body); code != 201 {
				t.Fatal("a second one-off with the same request")
			}
			var full dynoJSON
			decodeInto(t, body, &full)
			tt.check(t, full, o)
		})
	}
}

func dynoName(t *testing.T, body []byte) string {
	var d dynoJSON
	decodeInto(t, body, &d)
	return d.Name
}

// The scheduler's in-process API: start, wait for the exit status, stop.
func TestStartAndWaitOneOff(t *testing.T) {
	e := newEnv(t, 0)
	app := e.createApp("sched")
	e.deploy("sched", tarball(t, goodSource...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	o, err := e.srv.StartOneOff(ctx, "sched", OneOffRequest{Command: "worker", Type: "scheduler", TimeToLive: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.Name, "scheduler.") || o.Command != "sh -c 'sleep 1000'" || o.AttachURL != "" {
		t.Fatalf("one-off %+v", o)
	}
	// An agent reports the end.
	waited := make(chan error, 1)
	var got model.DynoStatus
	go func() {
		var err error
		got, err = e.srv.WaitOneOff(ctx, app.ID, o.ID)
		waited <- err
	}()
	key := model.StatusKey(app.ID, o.ID)
	code := 3
	e.st.Statuses.Put(ctx, key, model.DynoStatus{ID: o.ID, AppID: app.ID, Name: o.Name, State: model.StateUp})
	e.st.Statuses.Put(ctx, key, model.DynoStatus{ID: o.ID, AppID: app.ID, Name: o.Name, State: model.StateCrashed, ExitStatus: &code})
	if err := <-waited; err != nil || got.ExitStatus == nil || *got.ExitStatus != 3 {
		t.Fatalf("WaitOneOff: %+v %v", got, err)
	}

	// Stopped before it ended: ErrOneOffGone once request and status go.
	o2, err := e.srv.StartOneOff(ctx, app.ID, OneOffRequest{Command: "sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	key2 := model.StatusKey(app.ID, o2.ID)
	e.st.Statuses.Put(ctx, key2, model.DynoStatus{ID: o2.ID, AppID: app.ID, Name: o2.Name, State: model.StateUp})
	go func() {
		_, err := e.srv.WaitOneOff(ctx, app.ID, o2.ID)
		waited <- err
	}()
	if err := e.srv.StopOneOff(ctx, app.ID, o2.ID); err != nil {
		t.Fatal(err)
	}
	if req, _, _ := e.st.OneOffs.Get(ctx, key2); req.StopRequested.IsZero() {
		t.Fatal("the stop is not recorded")
	}
	// What the manifold and the agent then do:
	e.st.OneOffs.Delete(ctx, key2, 0)
	e.st.Statuses.Delete(ctx, key2, 0)
	if err := <-waited; !errors.Is(err, ErrOneOffGone) {
		t.Fatalf("WaitOneOff of a stopped one-off: %v", err)
	}
}

func decodeInto(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}
