package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// ErrDeployRolledBack marks a deploy whose dynos crashed or never came up,
// and that was rolled back to the release before it.
var ErrDeployRolledBack = errors.New("deploy rolled back")

// verifyDeploy follows the dynos of rel, a release that just went live,
// until every dyno its formation asks for is up (web dynos are up once
// their port answers, and their health check when the app sets
// DYNO_HEALTHCHECK_PATH). If one crashes, or they are not all up within
// DeployTimeout, it rolls back to prev, writes why to out and the app's
// log, and returns an error wrapping ErrDeployRolledBack. Old web dynos
// keep serving until their replacements are up (the manifold surges), so
// a failed deploy drops no request.
func (s *Server) verifyDeploy(ctx context.Context, app model.App, rel, prev *model.Release, out io.Writer) error {
	want, err := s.wantedDynos(ctx, app.ID, rel)
	if err != nil || len(want) == 0 {
		return err // nothing runs this release (no formation yet): nothing to wait for
	}
	if _, host, err := s.largestHost(ctx); err != nil || host == "" {
		fmt.Fprintf(out, "       No host is running dynos yet: the dynos of v%d start when one joins\n", rel.Version)
		return err
	}
	fmt.Fprintf(out, "-----> Waiting for the dynos of v%d to be up (%s)...\n", rel.Version, describeCounts(want))
	start := s.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DeployTimeout)
	defer cancel()
	events, err := s.st.Statuses.Watch(ctx, app.ID+".>")
	if err != nil {
		return fmt.Errorf("follow the dynos of v%d: %w", rel.Version, err)
	}
	statuses := map[string]model.DynoStatus{} // by key, this release's only
	var failure string
	for ev := range events {
		if ev.Ready {
			continue
		}
		if ev.Deleted {
			delete(statuses, ev.Key)
			continue
		}
		st := ev.Value
		if st.Release != rel.Version || want[st.Type] == 0 {
			continue
		}
		statuses[ev.Key] = st
		if st.State == model.StateCrashed {
			failure = fmt.Sprintf("%s crashed at boot", st.Name)
			if st.ExitStatus != nil {
				failure += fmt.Sprintf(" (exit status %d)", *st.ExitStatus)
			}
			break
		}
		if allUp(statuses, want) {
			fmt.Fprintf(out, "       All up in %.1fs\n", s.cfg.Now().Sub(start).Seconds())
			return nil
		}
	}
	if failure == "" {
		if s.ctx.Err() != nil {
			return nil // shutting down: the deploy is not to blame
		}
		failure = fmt.Sprintf("its dynos were not all up within %s", s.cfg.DeployTimeout.Round(time.Second))
	}
	return s.rollBackDeploy(app, rel, prev, failure, out)
}

// rollBackDeploy returns the app to prev after rel failed to come up,
// unless another release has been made since (the user moved on).
func (s *Server) rollBackDeploy(app model.App, rel, prev *model.Release, failure string, out io.Writer) error {
	ctx := context.WithoutCancel(s.ctx)
	reason := fmt.Sprintf("deploy of v%d failed: %s", rel.Version, failure)
	fmt.Fprintf(out, " !     %s\n", strings.ToUpper(reason[:1])+reason[1:])
	if prev == nil || prev.Slug == nil {
		// A first deploy has nothing to return to: the release stays and
		// the user is told, as Heroku shows a crashed app.
		fmt.Fprintf(out, " !     No earlier release to roll back to; see why with `dyno logs -a %s`\n", app.Name)
		s.publishAPI(app.ID, reason)
		return nil
	}
	cur, _, err := s.st.Apps.Get(ctx, app.ID)
	if err != nil || cur.ReleaseVersion != rel.Version {
		fmt.Fprintf(out, " !     Not rolled back: the app has moved on to another release\n")
		return fmt.Errorf("%s", reason)
	}
	back, err := s.rollbackTo(ctx, app, *prev, fmt.Sprintf("Rollback to v%d (%s)", prev.Version, reason))
	if err != nil {
		fmt.Fprintf(out, " !     Rolling back to v%d failed: %v\n", prev.Version, err)
		return fmt.Errorf("%s; roll back: %w", reason, err)
	}
	fmt.Fprintf(out, " !     Rolled back to v%d's code and config as v%d; the dynos of v%d kept serving meanwhile.\n", prev.Version, back.Version, prev.Version)
	fmt.Fprintf(out, " !     See why with `dyno logs -a %s --dyno web`\n", app.Name)
	s.publishAPI(app.ID, fmt.Sprintf("%s; rolled back to v%d as v%d", reason, prev.Version, back.Version))
	return fmt.Errorf("%w: %s", ErrDeployRolledBack, reason)
}

// wantedDynos is how many dynos of each type the formation runs for rel.
func (s *Server) wantedDynos(ctx context.Context, appID string, rel *model.Release) (map[string]int, error) {
	if rel.Slug == nil {
		return nil, nil
	}
	f, _, err := s.st.Formations.Get(ctx, appID)
	if err != nil {
		return nil, nil // no formation yet: nothing runs
	}
	want := map[string]int{}
	for typ, p := range f.Processes {
		if _, ok := rel.Slug.ProcessTypes[typ]; ok && p.Quantity > 0 {
			want[typ] = p.Quantity
		}
	}
	return want, nil
}

func allUp(statuses map[string]model.DynoStatus, want map[string]int) bool {
	up := map[string]map[string]bool{} // type → names up
	for _, st := range statuses {
		if st.State == model.StateUp {
			if up[st.Type] == nil {
				up[st.Type] = map[string]bool{}
			}
			up[st.Type][st.Name] = true
		}
	}
	for typ, n := range want {
		if len(up[typ]) < n {
			return false
		}
	}
	return true
}

func describeCounts(want map[string]int) string {
	var parts []string
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		parts = append(parts, fmt.Sprintf("%s=%d", typ, want[typ]))
	}
	return strings.Join(parts, " ")
}
