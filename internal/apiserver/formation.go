package apiserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// maxQuantity bounds one process type's dynos, as Heroku does.
const maxQuantity = 100

type formationJSON struct {
	ID        string    `json:"id"`
	App       ref       `json:"app"`
	Type      string    `json:"type"`
	Command   string    `json:"command"`
	Quantity  int       `json:"quantity"`
	Size      string    `json:"size"`
	DynoSize  ref       `json:"dyno_size"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func formationOut(app model.App, typ, command string, p model.Process) formationJSON {
	if p.Size == "" {
		p.Size = model.DefaultSize
	}
	return formationJSON{
		ID: derivedID("formation", app.ID, typ), App: ref{ID: app.ID, Name: app.Name}, Type: typ, Command: command,
		Quantity: p.Quantity, Size: p.Size, DynoSize: ref{ID: derivedID("size", p.Size), Name: p.Size},
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

// updateFormation applies fn to the app's formation with one CAS write,
// retrying on conflict; fn reports whether it changed anything.
func (s *Server) updateFormation(ctx context.Context, appID string, fn func(*model.Formation) (bool, error)) error {
	for range casRetries {
		f, rev, err := s.st.Formations.Get(ctx, appID)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that app's formation: the app was deleted.")
		}
		if err != nil {
			return err
		}
		if f.Processes == nil {
			f.Processes = map[string]model.Process{}
		}
		changed, err := fn(&f)
		if err != nil || !changed {
			return err
		}
		f.UpdatedAt = s.cfg.Now().UTC()
		if _, err := s.st.Formations.Update(ctx, appID, f, rev); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return fmt.Errorf("update formation: %w", err)
		}
		return nil
	}
	return fmt.Errorf("update formation: too many concurrent changes, try again")
}

// processTypes are the types of the app's current slug that can be
// scaled (all but the release phase's); nil before a slug.
func (s *Server) processTypes(ctx context.Context, app model.App) (map[string]string, error) {
	rel, err := s.currentRelease(ctx, app)
	if err != nil || rel == nil || rel.Slug == nil {
		return nil, err
	}
	types := maps.Clone(rel.Slug.ProcessTypes)
	delete(types, ReleaseType)
	return types, nil
}

// formationList is the formation as Heroku shows it: the current slug's
// process types (or whatever the formation holds before any slug).
func (s *Server) formationList(ctx context.Context, app model.App) ([]formationJSON, error) {
	f, _, err := s.st.Formations.Get(ctx, app.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	types, err := s.processTypes(ctx, app)
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(types))
	if types == nil {
		names = slices.Sorted(maps.Keys(f.Processes))
	}
	out := make([]formationJSON, 0, len(names))
	for _, typ := range names {
		out = append(out, formationOut(app, typ, types[typ], f.Processes[typ]))
	}
	return out, nil
}

func (s *Server) listFormation(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out, err := s.formationList(r.Context(), app)
	if err != nil {
		return err
	}
	return writePage(w, r, out,
		byString("type", func(f formationJSON) string { return f.Type }),
		byString("id", func(f formationJSON) string { return f.ID }))
}

func (s *Server) getFormation(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	out, err := s.formationList(r.Context(), app)
	if err != nil {
		return err
	}
	for _, f := range out {
		if f.Type == r.PathValue("type") || f.ID == r.PathValue("type") {
			return writeJSON(w, http.StatusOK, f)
		}
	}
	return notFound("Couldn't find that formation.")
}

// formationUpdate is one entry of a scale request. Quantity is a number
// or a string, absolute ("3") or relative ("+1", "-1").
type formationUpdate struct {
	Type     string          `json:"type"`
	Quantity json.RawMessage `json:"quantity"`
	Size     *string         `json:"size"`
	DynoSize *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"dyno_size"`
}

func (s *Server) batchFormation(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Updates []formationUpdate `json:"updates"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if len(body.Updates) == 0 {
		return invalid("No updates given: send {\"updates\": [{\"type\": \"web\", \"quantity\": 1}]}.")
	}
	app, out, err := s.scale(r, body.Updates)
	if err != nil {
		return err
	}
	list, err := s.formationList(r.Context(), app)
	if err != nil {
		return err
	}
	// Answer with the updated types, as Heroku does.
	res := []formationJSON{}
	for _, f := range list {
		if slices.Contains(out, f.Type) {
			res = append(res, f)
		}
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) patchFormation(w http.ResponseWriter, r *http.Request) error {
	var u formationUpdate
	if err := decode(w, r, &u, false); err != nil {
		return err
	}
	u.Type = r.PathValue("type")
	app, _, err := s.scale(r, []formationUpdate{u})
	if err != nil {
		return err
	}
	list, err := s.formationList(r.Context(), app)
	if err != nil {
		return err
	}
	for _, f := range list {
		if f.Type == u.Type {
			return writeJSON(w, http.StatusOK, f)
		}
	}
	return notFound("Couldn't find that formation.")
}

// scale applies updates atomically: all of them in one formation write,
// or none if any is invalid. It returns the types it updated.
func (s *Server) scale(r *http.Request, updates []formationUpdate) (model.App, []string, error) {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return app, nil, err
	}
	types, err := s.processTypes(r.Context(), app)
	if err != nil {
		return app, nil, err
	}
	if types == nil {
		return app, nil, invalid("%s has no release with a Procfile yet: deploy the app before scaling it.", app.Name)
	}
	largest, host, err := s.largestHost(r.Context())
	if err != nil {
		return app, nil, err
	}
	var updated []string
	var scaled model.Formation
	now := s.cfg.Now().UTC()
	err = s.updateFormation(r.Context(), app.ID, func(f *model.Formation) (bool, error) {
		updated = updated[:0]
		for _, u := range updates {
			if err := applyUpdate(f, types, u, now); err != nil {
				return false, err
			}
			if err := fits(f.Processes[u.Type].Size, u, largest, host); err != nil {
				return false, err
			}
			updated = append(updated, u.Type)
		}
		scaled = *f
		return true, nil
	})
	if err != nil {
		return app, nil, err
	}
	s.publishAPI(app.ID, scaledMessage(scaled, updated, actor(r.Context())))
	return app, updated, nil
}

// scaledMessage is Heroku's app[api] line for a formation change: the
// updated types with their quantities and sizes, "Scaled to
// web@3:Standard-1X worker@1:Standard-1X by user admin@dyno.local".
func scaledMessage(f model.Formation, types []string, by string) string {
	types = slices.Compact(slices.Sorted(slices.Values(types)))
	parts := make([]string, len(types))
	for i, typ := range types {
		p := f.Processes[typ]
		size := p.Size
		if size == "" {
			size = model.DefaultSize
		}
		parts[i] = fmt.Sprintf("%s@%d:%s", typ, p.Quantity, upperFirst(size))
	}
	return "Scaled to " + strings.Join(parts, " ") + " by user " + by
}

// largestHost is the live host with the most memory and its memory in
// MB; none ("", 0) when no host is live.
func (s *Server) largestHost(ctx context.Context) (int, string, error) {
	hosts, err := s.st.Hosts.List(ctx, ">")
	if err != nil {
		return 0, "", fmt.Errorf("list hosts: %w", err)
	}
	now := s.cfg.Now()
	most, where := 0, ""
	for _, e := range hosts {
		h := e.Value
		if now.Sub(h.HeartbeatAt) < s.cfg.HostTTL && (where == "" || h.MemoryMB > most) {
			most, where = h.MemoryMB, h.ID
		}
	}
	return most, where, nil
}

// fits refuses a requested size that no live host could ever hold: the
// manifold would leave such dynos pending for good. With no live host
// there is nothing to compare with, and the dynos wait for one.
func fits(size string, u formationUpdate, largestMB int, host string) error {
	if host == "" || (u.Size == nil && u.DynoSize == nil) {
		return nil
	}
	sz, err := model.LookupSize(size)
	if err != nil || sz.MemoryMB <= largestMB {
		return nil
	}
	return invalid("%s dynos need %d MB of memory, more than any host has (the largest, %s, has %d MB): choose a smaller size (dyno ps:type %s=standard-1X) or add a host with more memory.",
		sz.Name, sz.MemoryMB, host, largestMB, u.Type)
}

func applyUpdate(f *model.Formation, types map[string]string, u formationUpdate, now time.Time) error {
	if _, ok := types[u.Type]; !ok {
		return invalid("Couldn't find that process type (%s). Process types in this release: %s", u.Type, strings.Join(slices.Sorted(maps.Keys(types)), ", "))
	}
	p, ok := f.Processes[u.Type]
	if !ok {
		p = model.Process{Size: model.DefaultSize, CreatedAt: now}
	}
	old := p
	if len(u.Quantity) > 0 && string(u.Quantity) != "null" {
		q, err := quantity(u.Quantity, p.Quantity)
		if err != nil {
			return err
		}
		if q < 0 {
			return invalid("Cannot scale %s to %d dynos: the quantity must be 0 or more.", u.Type, q)
		}
		if q > maxQuantity {
			return invalid("Cannot scale %s to %d dynos: the limit is %d per process type.", u.Type, q, maxQuantity)
		}
		p.Quantity = q
	}
	size := ""
	switch {
	case u.Size != nil:
		size = *u.Size
	case u.DynoSize != nil && u.DynoSize.Name != "":
		size = u.DynoSize.Name
	case u.DynoSize != nil && u.DynoSize.ID != "":
		size = u.DynoSize.ID
		for _, sz := range model.Sizes() {
			if derivedID("size", sz.Name) == u.DynoSize.ID {
				size = sz.Name
			}
		}
	}
	if size != "" {
		sz, err := model.LookupSize(size)
		if err != nil {
			return invalid("%s", upperFirst(err.Error()))
		}
		p.Size = sz.Name
	}
	if p != old || !ok {
		p.UpdatedAt = now
		if old.Quantity > 0 && p.Quantity == 0 {
			p.ScaledToZeroAt = now
		}
	}
	f.Processes[u.Type] = p
	return nil
}

func quantity(raw json.RawMessage, cur int) (int, error) {
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, invalid("Quantity %s is invalid: use a number such as 2, or +1 / -1.", raw)
		}
	}
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
	if err != nil || s == "" {
		return 0, invalid("Quantity %q is invalid: use a number such as 2, or +1 / -1.", s)
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		return cur + n, nil
	}
	return n, nil
}

// Restarts: each bumps a generation; the manifold replaces older dynos.
// A stop is a restart too: formation dynos start again, as on Heroku.

func (s *Server) restartAll(w http.ResponseWriter, r *http.Request) error {
	return s.restart(w, r, "all dynos", func(f *model.Formation, _ model.App) error {
		f.Restarts.All++
		return nil
	})
}

func (s *Server) restartType(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	return s.restart(w, r, typ+" dynos", func(f *model.Formation, _ model.App) error {
		if _, ok := f.Processes[typ]; !ok {
			return notFound("Couldn't find that formation.")
		}
		if f.Restarts.Types == nil {
			f.Restarts.Types = map[string]int64{}
		}
		f.Restarts.Types[typ]++
		return nil
	})
}

func (s *Server) restartDyno(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	d, err := s.findDyno(r.Context(), app, r.PathValue("dyno"))
	if err != nil {
		return err
	}
	return s.restart(w, r, d.Name, func(f *model.Formation, _ model.App) error {
		if f.Restarts.Dynos == nil {
			f.Restarts.Dynos = map[string]int64{}
		}
		f.Restarts.Dynos[d.Name]++
		return nil
	})
}

// restart applies bump to the formation and logs an app[api] line such as
// "Restart web.2 by user admin@dyno.local" ("Stop ..." for a stop action);
// what names the dynos: "all dynos", "web dynos" or "web.2".
func (s *Server) restart(w http.ResponseWriter, r *http.Request, what string, bump func(*model.Formation, model.App) error) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	err = s.updateFormation(r.Context(), app.ID, func(f *model.Formation) (bool, error) {
		return true, bump(f, app)
	})
	if err != nil {
		return err
	}
	verb := "Restart"
	if r.Method == http.MethodPost { // .../actions/stop
		verb = "Stop"
	}
	s.publishAPI(app.ID, verb+" "+what+" by user "+actor(r.Context()))
	return writeJSON(w, http.StatusAccepted, struct{}{})
}

type dynoJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Command   string    `json:"command"`
	Size      string    `json:"size"`
	State     string    `json:"state"`
	AttachURL *string   `json:"attach_url"`
	Release   relRef    `json:"release"`
	App       ref       `json:"app"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// PendingReason is not Heroku's: why a dyno shown as starting has no
	// host yet (no host has room for its size).
	PendingReason string `json:"pending_reason,omitempty"`
	// ExitStatus is not Heroku's: how a crashed or stopped dyno's process
	// ended, when its agent knows.
	ExitStatus *int `json:"exit_status,omitempty"`
}

type relRef struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
}

// dynos merges the statuses the agents report with the assignments they
// have not reported on yet (shown as starting), pending ones (no host has
// room yet) among them, with their reason.
func (s *Server) dynos(ctx context.Context, app model.App) ([]dynoJSON, error) {
	statuses, err := s.st.Statuses.List(ctx, app.ID+".>")
	if err != nil {
		return nil, err
	}
	assignments, err := s.st.Assignments.List(ctx, ">")
	if err != nil {
		return nil, err
	}
	relIDs := map[int]string{}
	release := func(v int) relRef {
		id, ok := relIDs[v]
		if !ok {
			if rel, _, err := s.st.Releases.Get(ctx, model.ReleaseKey(app.ID, v)); err == nil {
				id = rel.ID
			}
			relIDs[v] = id
		}
		return relRef{ID: id, Version: v}
	}
	appRef := ref{ID: app.ID, Name: app.Name}
	seen := map[string]bool{}
	var out []dynoJSON
	for _, e := range statuses {
		st := e.Value
		seen[st.ID] = true
		out = append(out, dynoJSON{ID: st.ID, Name: st.Name, Type: st.Type, Command: st.Command, Size: st.Size, State: st.State,
			Release: release(st.Release), App: appRef, CreatedAt: st.StartedAt, UpdatedAt: st.UpdatedAt, ExitStatus: st.ExitStatus})
	}
	for _, e := range assignments {
		a := e.Value
		if a.AppID != app.ID || seen[a.ID] {
			continue
		}
		out = append(out, dynoJSON{ID: a.ID, Name: a.Name, Type: a.Type, Command: a.Command, Size: a.Size, State: model.StateStarting,
			Release: release(a.Release), App: appRef, CreatedAt: a.CreatedAt, UpdatedAt: a.CreatedAt, PendingReason: a.PendingReason})
	}
	slices.SortFunc(out, func(a, b dynoJSON) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(dynoIndex(a.Name), dynoIndex(b.Name)), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func dynoIndex(name string) int {
	_, idx, _ := strings.Cut(name, ".")
	n, _ := strconv.Atoi(idx)
	return n
}

func (s *Server) findDyno(ctx context.Context, app model.App, nameOrID string) (dynoJSON, error) {
	ds, err := s.dynos(ctx, app)
	if err != nil {
		return dynoJSON{}, err
	}
	for _, d := range ds {
		if d.Name == nameOrID || d.ID == nameOrID {
			return d, nil
		}
	}
	return dynoJSON{}, notFound("Couldn't find that dyno.")
}

func (s *Server) listDynos(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	ds, err := s.dynos(r.Context(), app)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []dynoJSON{}
	}
	return writeJSON(w, http.StatusOK, ds)
}

func (s *Server) getDyno(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	d, err := s.findDyno(r.Context(), app, r.PathValue("dyno"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}
