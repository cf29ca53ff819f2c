package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dyno-platform/dyno/internal/manifold"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Hosts (not Heroku's: an operator's view of the machines). Agents write
// the host records; the API writes only host-settings (drain requests),
// which the manifold acts on.

type hostJSON struct {
	ID               string  `json:"id"`
	Address          string  `json:"address"`
	State            string  `json:"state"` // live, lost, draining, drained
	MemoryMB         int     `json:"memory_mb"`
	MemoryReservedMB int     `json:"memory_reserved_mb"`
	MemoryFreeMB     int     `json:"memory_free_mb"`
	CPUs             int     `json:"cpus"`
	Dynos            int     `json:"dynos"`
	HeartbeatAt      string  `json:"heartbeat_at"`
	HeartbeatAge     float64 `json:"heartbeat_age"` // seconds
	StartedAt        string  `json:"started_at"`
	Drain            bool    `json:"drain"`
	DrainRequestedAt *string `json:"drain_requested_at"`
}

func hostOut(h manifold.HostInfo, set model.HostSettings) hostJSON {
	out := hostJSON{ID: h.ID, Address: h.Address, State: h.State, MemoryMB: h.MemoryMB, MemoryReservedMB: h.ReservedMB,
		MemoryFreeMB: h.FreeMB, CPUs: h.CPUs, Dynos: h.Dynos, HeartbeatAt: h.HeartbeatAt.UTC().Format(timeFormat),
		HeartbeatAge: h.HeartbeatAge.Seconds(), StartedAt: h.StartedAt.UTC().Format(timeFormat), Drain: set.Drain}
	if set.Drain {
		out.DrainRequestedAt = optTime(set.DrainAt)
	}
	return out
}

// describeHosts reads hosts, settings, assignments and statuses and
// reports every host as the manifold sees it.
func (s *Server) describeHosts(ctx context.Context) ([]hostJSON, error) {
	hosts, err := s.st.Hosts.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	sets, err := s.st.HostSettings.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list host settings: %w", err)
	}
	assigns, err := s.st.Assignments.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list assignments: %w", err)
	}
	statuses, err := s.st.Statuses.List(ctx, ">")
	if err != nil {
		return nil, fmt.Errorf("list dyno statuses: %w", err)
	}
	hs := make([]model.Host, len(hosts))
	for i, e := range hosts {
		hs[i] = e.Value
	}
	settings := make(map[string]model.HostSettings, len(sets))
	for _, e := range sets {
		settings[e.Key] = e.Value
	}
	as := make([]model.Assignment, len(assigns))
	for i, e := range assigns {
		as[i] = e.Value
	}
	st := make(map[string]model.DynoStatus, len(statuses))
	for _, e := range statuses {
		st[e.Value.ID] = e.Value
	}
	infos := manifold.DescribeHosts(hs, settings, as, st, s.cfg.Now(), s.cfg.HostTTL)
	out := make([]hostJSON, len(infos))
	for i, h := range infos {
		out[i] = hostOut(h, settings[h.ID])
	}
	return out, nil
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) error {
	out, err := s.describeHosts(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) drainHost(w http.ResponseWriter, r *http.Request) error {
	return s.setDrain(w, r, true)
}
func (s *Server) undrainHost(w http.ResponseWriter, r *http.Request) error {
	return s.setDrain(w, r, false)
}

// setDrain records a drain request (or its end) for a registered host and
// returns the host as it is now; the manifold moves the dynos.
func (s *Server) setDrain(w http.ResponseWriter, r *http.Request, drain bool) error {
	id := r.PathValue("host")
	ctx := r.Context()
	if _, _, err := s.st.Hosts.Get(ctx, id); errors.Is(err, store.ErrNotFound) {
		return notFound("Couldn't find that host. List the hosts with `dyno hosts`.")
	} else if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	set, _, err := s.st.HostSettings.Get(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if set.Drain != drain {
		set.HostID, set.Drain, set.UpdatedAt = id, drain, now
		set.DrainAt = now
		if !drain {
			set.DrainAt = time.Time{}
		}
		if _, err := s.st.HostSettings.Put(ctx, id, set); err != nil {
			return err
		}
	}
	s.log.Info("host drain", "host", id, "drain", drain)
	hosts, err := s.describeHosts(ctx)
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if h.ID == id {
			return writeJSON(w, http.StatusOK, h)
		}
	}
	return notFound("Couldn't find that host. List the hosts with `dyno hosts`.")
}
