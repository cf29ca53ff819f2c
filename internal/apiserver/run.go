package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Rendezvous is where attached one-offs meet their clients
// (rendezvous.Server): one session per dyno.
type Rendezvous interface {
	// Register opens the session of dyno id, alive at most ttl; it returns
	// the client's secret and the agent's token.
	Register(id string, ttl time.Duration) (secret, token string, err error)
	// Cancel hangs up the session of dyno id.
	Cancel(id string)
}

// OneOffRequest is a one-off dyno to start (dyno run, the scheduler).
type OneOffRequest struct {
	// Command is the command line; a first word that is a Procfile type
	// is replaced by that type's command.
	Command string
	Size    string            // "" is the default size
	Env     map[string]string // added to the config vars
	// TimeToLive bounds the dyno's life; 0 or more than 24 h is 24 h.
	TimeToLive time.Duration
	// Type names the dynos: "run" (default) gives run.N, "scheduler"
	// scheduler.N.
	Type string
	// Attach joins the dyno's stdio to a client through the rendezvous
	// (the returned OneOff's AttachURL); TTY gives it a terminal.
	Attach, TTY bool
	// Release, when set, is run instead of the app's current release (the
	// release phase runs a release before it goes live).
	Release *model.Release
}

// OneOff is a started one-off: the recorded request and, if attached, the
// URL its client connects to.
type OneOff struct {
	model.OneOff
	AttachURL string // rendezvous://HOST:PORT/SECRET, "" when detached
}

// ErrOneOffGone says a one-off was stopped, expired or its app deleted
// before its process ended.
var ErrOneOffGone = errors.New("the one-off dyno was stopped before its command ended")

// findApp finds an app by name or ID.
func (s *Server) findApp(ctx context.Context, nameOrID string) (model.App, error) {
	id := nameOrID
	if model.ValidateAppName(nameOrID) == nil {
		n, _, err := s.st.AppNames.Get(ctx, nameOrID)
		if errors.Is(err, store.ErrNotFound) {
			return model.App{}, notFound("Couldn't find that app.")
		}
		if err != nil {
			return model.App{}, err
		}
		id = n.ID
	}
	app, _, err := s.st.Apps.Get(ctx, strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		return model.App{}, notFound("Couldn't find that app.")
	}
	return app, err
}

// StartOneOff validates and records a one-off dyno of app (a name or an
// ID), as POST /apps/{app}/dynos does; the manifold starts it.
func (s *Server) StartOneOff(ctx context.Context, app string, req OneOffRequest) (OneOff, error) {
	a, err := s.findApp(ctx, app)
	if err != nil {
		return OneOff{}, err
	}
	return s.startOneOff(ctx, a, req)
}

func (s *Server) startOneOff(ctx context.Context, app model.App, req OneOffRequest) (OneOff, error) {
	req.Command = strings.TrimSpace(req.Command)
	if req.Command == "" {
		return OneOff{}, invalid("No command given: say what to run, such as `dyno run bash`.")
	}
	if req.Type == "" {
		req.Type = model.OneOffType
	}
	if err := model.ValidateOneOffType(req.Type); err != nil {
		return OneOff{}, invalid("%v", err)
	}
	size := model.DefaultSize
	if req.Size != "" {
		sz, err := model.LookupSize(req.Size)
		if err != nil {
			return OneOff{}, invalid("%v", err)
		}
		size = sz.Name
	}
	if most, host, err := s.largestHost(ctx); err == nil && host != "" {
		if sz, _ := model.LookupSize(size); sz.MemoryMB > most {
			return OneOff{}, invalid("%s dynos need %d MB of memory, more than any host has (the largest, %s, has %d MB): choose a smaller --size.", sz.Name, sz.MemoryMB, host, most)
		}
	}
	for k := range req.Env {
		if err := model.ValidateConfigKey(k); err != nil {
			return OneOff{}, invalid("%v", err)
		}
	}
	var rel model.Release
	var err error
	if req.Release != nil {
		rel = *req.Release
	} else {
		if app.ReleaseVersion == 0 {
			return OneOff{}, invalid("%s has no release yet: deploy it first (dyno deploy -a %s).", app.Name, app.Name)
		}
		if rel, _, err = s.st.Releases.Get(ctx, model.ReleaseKey(app.ID, app.ReleaseVersion)); err != nil {
			return OneOff{}, fmt.Errorf("read the release of %s: %w", app.Name, err)
		}
	}
	if rel.Slug == nil {
		return OneOff{}, invalid("%s's current release has no slug: deploy it first.", app.Name)
	}
	// `dyno run worker 42` runs the worker's command with 42 appended.
	command := req.Command
	first, rest, _ := strings.Cut(command, " ")
	if cmd, ok := rel.Slug.ProcessTypes[first]; ok {
		command = strings.TrimSpace(cmd + " " + rest)
	}
	ttl := req.TimeToLive
	if ttl <= 0 || ttl > model.OneOffMaxTTL {
		ttl = model.OneOffMaxTTL
	}
	now := s.cfg.Now()
	o := model.OneOff{
		ID: newID(), AppID: app.ID, AppName: app.Name, Type: req.Type, Command: command, Size: size,
		Env: req.Env, ExpiresAt: now.Add(ttl), CreatedAt: now,
	}
	if req.Release != nil {
		o.Pinned = req.Release
	}
	if o.Name, err = s.oneOffName(ctx, app.ID, req.Type); err != nil {
		return OneOff{}, err
	}
	out := OneOff{}
	if req.Attach {
		if s.cfg.Rendezvous == nil || s.cfg.RendezvousAddr == "" {
			return OneOff{}, invalid("This server has no rendezvous for attached dynos: use `dyno run:detached`.")
		}
		secret, token, err := s.cfg.Rendezvous.Register(o.ID, ttl)
		if err != nil {
			return OneOff{}, err
		}
		o.Attach = &model.Attach{Rendezvous: s.cfg.RendezvousAddr, Token: token, TTY: req.TTY}
		out.AttachURL = "rendezvous://" + s.cfg.RendezvousAddr + "/" + secret
	}
	if _, err := s.st.OneOffs.Create(ctx, model.StatusKey(app.ID, o.ID), o); err != nil {
		if s.cfg.Rendezvous != nil {
			s.cfg.Rendezvous.Cancel(o.ID)
		}
		return OneOff{}, fmt.Errorf("record one-off dyno: %w", err)
	}
	s.publishAPI(app.ID, fmt.Sprintf("Starting process with command `%s` by user %s", command, actor(ctx)))
	out.OneOff = o
	return out, nil
}

// oneOffName picks typ.N with a random N no dyno of the app has.
func (s *Server) oneOffName(ctx context.Context, appID, typ string) (string, error) {
	taken := map[string]bool{}
	reqs, err := s.st.OneOffs.List(ctx, appID+".>")
	if err != nil {
		return "", fmt.Errorf("list one-off dynos: %w", err)
	}
	for _, e := range reqs {
		taken[e.Value.Name] = true
	}
	statuses, err := s.st.Statuses.List(ctx, appID+".>")
	if err != nil {
		return "", fmt.Errorf("list dynos: %w", err)
	}
	for _, e := range statuses {
		taken[e.Value.Name] = true
	}
	for i := 0; ; i++ {
		lo, hi := 1000, 9999
		if i >= 20 { // crowded: five digits
			lo, hi = 10000, 99999
		}
		name := model.DynoName(typ, lo+rand.IntN(hi-lo+1))
		if !taken[name] {
			return name, nil
		}
	}
}

// StopOneOff ends a one-off dyno for good (it is not restarted).
func (s *Server) StopOneOff(ctx context.Context, appID, dynoID string) error {
	key := model.StatusKey(appID, dynoID)
	for {
		o, rev, err := s.st.OneOffs.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that dyno.")
		}
		if err != nil {
			return err
		}
		if !o.StopRequested.IsZero() {
			return nil
		}
		o.StopRequested = s.cfg.Now()
		if _, err := s.st.OneOffs.Update(ctx, key, o, rev); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return fmt.Errorf("stop one-off dyno %s: %w", o.Name, err)
		}
		if s.cfg.Rendezvous != nil {
			s.cfg.Rendezvous.Cancel(dynoID)
		}
		return nil
	}
}

// WaitOneOff blocks until the one-off dynoID of appID has ended and
// returns its last status (ExitStatus set). It returns ErrOneOffGone, with
// the last status seen, when the dyno was stopped, expired or its app
// deleted before its command ended.
func (s *Server) WaitOneOff(ctx context.Context, appID, dynoID string) (model.DynoStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	key := model.StatusKey(appID, dynoID)
	statuses, err := s.st.Statuses.Watch(ctx, key)
	if err != nil {
		return model.DynoStatus{}, fmt.Errorf("watch dyno %s: %w", dynoID, err)
	}
	requests, err := s.st.OneOffs.Watch(ctx, key)
	if err != nil {
		return model.DynoStatus{}, fmt.Errorf("watch one-off %s: %w", dynoID, err)
	}
	var last model.DynoStatus
	requestGone, requestReady := false, false
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case ev, ok := <-statuses:
			if !ok {
				return last, fmt.Errorf("watch dyno %s: the store connection closed", dynoID)
			}
			switch {
			case ev.Ready:
			case ev.Deleted:
				if requestGone {
					return last, ErrOneOffGone
				}
			default:
				last = ev.Value
				if model.OneOffEnded(last) {
					return last, nil
				}
			}
		case ev, ok := <-requests:
			if !ok {
				return last, fmt.Errorf("watch one-off %s: the store connection closed", dynoID)
			}
			switch {
			case ev.Ready:
				requestReady = true
				if _, _, err := s.st.OneOffs.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
					requestGone = true
				}
			case ev.Deleted:
				requestGone = true
			default:
				requestGone = false
			}
			if requestGone && requestReady {
				if _, _, err := s.st.Statuses.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
					return last, ErrOneOffGone
				}
			}
		}
	}
}

// createDynoBody is POST /apps/{app}/dynos, as Heroku's Platform API.
type createDynoBody struct {
	Command    string            `json:"command"`
	Attach     *bool             `json:"attach"`
	Size       string            `json:"size"`
	Type       string            `json:"type"`
	Env        map[string]string `json:"env"`
	TimeToLive json.Number       `json:"time_to_live"`
	ForceNoTTY *bool             `json:"force_no_tty"`
}

func (s *Server) createDyno(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var body createDynoBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	req := OneOffRequest{Command: body.Command, Size: body.Size, Type: body.Type, Env: body.Env}
	if body.Attach != nil {
		req.Attach = *body.Attach
	}
	req.TTY = req.Attach && (body.ForceNoTTY == nil || !*body.ForceNoTTY)
	if body.TimeToLive != "" {
		secs, err := strconv.ParseFloat(string(body.TimeToLive), 64)
		if err != nil || secs <= 0 {
			return invalid("time_to_live must be a number of seconds above 0 (at most 86400).")
		}
		req.TimeToLive = time.Duration(secs * float64(time.Second))
	}
	o, err := s.startOneOff(r.Context(), app, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.oneOffJSON(r.Context(), app, o.OneOff, o.AttachURL))
}

// oneOffJSON is the dyno JSON of a one-off not placed yet.
func (s *Server) oneOffJSON(ctx context.Context, app model.App, o model.OneOff, attachURL string) dynoJSON {
	d := dynoJSON{ID: o.ID, Name: o.Name, Type: o.Type, Command: o.Command, Size: o.Size, State: model.StateStarting,
		Release: relRef{Version: app.ReleaseVersion}, App: ref{ID: app.ID, Name: app.Name},
		CreatedAt: o.CreatedAt, UpdatedAt: o.CreatedAt}
	if rel, _, err := s.st.Releases.Get(ctx, model.ReleaseKey(app.ID, app.ReleaseVersion)); err == nil {
		d.Release.ID = rel.ID
	}
	if attachURL != "" {
		d.AttachURL = &attachURL
	}
	return d
}

// dynosWithOneOffs adds the one-offs the manifold has not placed yet to
// the dynos the agents and the manifold know.
func (s *Server) dynosWithOneOffs(ctx context.Context, app model.App) ([]dynoJSON, error) {
	ds, err := s.dynos(ctx, app)
	if err != nil {
		return nil, err
	}
	reqs, err := s.st.OneOffs.List(ctx, app.ID+".>")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, d := range ds {
		seen[d.ID] = true
	}
	for _, e := range reqs {
		if !seen[e.Value.ID] && e.Value.StopRequested.IsZero() {
			ds = append(ds, s.oneOffJSON(ctx, app, e.Value, ""))
		}
	}
	return ds, nil
}

func (s *Server) listDynosAll(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ds, err := s.dynosWithOneOffs(r.Context(), app)
	if err != nil {
		return err
	}
	return writePage(w, r, ds,
		byDynoName("name", func(d dynoJSON) string { return d.Name }),
		byString("id", func(d dynoJSON) string { return d.ID }))
}

func (s *Server) getDynoAll(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ds, err := s.dynosWithOneOffs(r.Context(), app)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Name == r.PathValue("dyno") || d.ID == r.PathValue("dyno") {
			return writeJSON(w, http.StatusOK, d)
		}
	}
	return notFound("Couldn't find that dyno.")
}

// stopOrRestartDyno ends a one-off for good (ps:stop run.N, ps:restart
// run.N: one-offs are never restarted) and restarts a formation dyno.
func (s *Server) stopOrRestartDyno(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	name := r.PathValue("dyno")
	reqs, err := s.st.OneOffs.List(r.Context(), app.ID+".>")
	if err != nil {
		return err
	}
	for _, e := range reqs {
		if e.Value.Name == name || e.Value.ID == name {
			if err := s.StopOneOff(r.Context(), app.ID, e.Value.ID); err != nil {
				return err
			}
			s.publishAPI(app.ID, "Stop "+e.Value.Name+" by user "+actor(r.Context()))
			return writeJSON(w, http.StatusAccepted, struct{}{})
		}
	}
	return s.restartDyno(w, r)
}
