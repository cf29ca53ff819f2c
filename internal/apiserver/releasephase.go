package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/model"
)

// ReleaseType is the Procfile type of the release phase: its command runs
// as a one-off dyno (release.N) of each new release before the release goes
// live. It is never part of the formation.
const ReleaseType = "release"

// releaseTimeout bounds a release phase, as Heroku's one hour.
const releaseTimeout = time.Hour

// errReleasePhase marks a release whose release phase failed: the release is
// kept with status "failed" and the app stays on the release before it.
var errReleasePhase = errors.New("release phase failed")

// releaseCommand is the release phase command of rel, "" when it has none.
func releaseCommand(rel *model.Release) string {
	if rel == nil || rel.Slug == nil {
		return ""
	}
	return rel.Slug.ProcessTypes[ReleaseType]
}

// runReleasePhase runs rel's release command as a one-off dyno of rel and
// waits for it to end, copying its output to out (which may be nil). It
// returns nil when the command exited 0.
func (s *Server) runReleasePhase(ctx context.Context, app model.App, rel *model.Release, out io.Writer) error {
	cmd := releaseCommand(rel)
	if out == nil {
		out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	fmt.Fprintf(out, "-----> Running release command `%s` for v%d...\n", cmd, rel.Version)
	// Follow the app's log before the dyno starts so no line is missed;
	// the dyno's name is known only once it is recorded.
	var name string
	named := make(chan struct{})
	tailCtx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		_ = s.logs.Tail(tailCtx, app.ID, logplex.Filter{Dyno: ReleaseType, Source: model.SourceApp}, 0, func(l model.LogLine) error {
			select {
			case <-named:
			case <-tailCtx.Done():
				return tailCtx.Err()
			}
			if l.Dyno == name {
				fmt.Fprintf(out, "       %s\n", l.Message)
			}
			return nil
		})
	}()
	defer func() { stopTail(); <-tailDone }()

	o, err := s.startOneOff(ctx, app, OneOffRequest{Command: cmd, Type: ReleaseType, Release: rel, TimeToLive: releaseTimeout})
	if err != nil {
		close(named)
		return fmt.Errorf("%w: start the release command: %v", errReleasePhase, err)
	}
	name = o.Name
	close(named)
	st, err := s.WaitOneOff(ctx, app.ID, o.ID)
	if err != nil {
		if ctx.Err() != nil {
			_ = s.StopOneOff(context.WithoutCancel(ctx), app.ID, o.ID)
		}
		return fmt.Errorf("%w: %s did not finish: %v", errReleasePhase, o.Name, err)
	}
	// The last lines may trail the exit by a moment.
	_ = s.logs.Flush(ctx)
	time.Sleep(300 * time.Millisecond)
	code := -1
	if st.ExitStatus != nil {
		code = *st.ExitStatus
	}
	if code != 0 {
		return fmt.Errorf("%w: %s exited with status %d", errReleasePhase, o.Name, code)
	}
	fmt.Fprintf(out, "       Release command succeeded (%s)\n", o.Name)
	return nil
}

// releasePhase runs the release phase of next, a release already stored as
// "pending", then makes it live ("succeeded", the app's current release) or
// marks it "failed" and leaves the app on the release it runs.
func (s *Server) releasePhase(ctx context.Context, app model.App, next *model.Release, added map[string]model.Process, out io.Writer) error {
	err := s.runReleasePhase(ctx, app, next, out)
	bg := context.WithoutCancel(ctx)
	key := model.ReleaseKey(app.ID, next.Version)
	next.Status = "succeeded"
	if err != nil {
		next.Status = "failed"
	}
	if _, perr := s.st.Releases.Put(bg, key, *next); perr != nil && err == nil {
		err = fmt.Errorf("record the release phase of v%d: %w", next.Version, perr)
	}
	if err != nil {
		if len(added) > 0 {
			s.undo("formation of a failed release", s.unaddFormation(bg, app.ID, added))
		}
		if out != nil {
			fmt.Fprintf(out, " !     Release v%d failed: %v\n !     The app stays on the release it runs.\n", next.Version, err)
		}
		s.publishAPI(app.ID, fmt.Sprintf("Release v%d failed: %v", next.Version, err))
		return err
	}
	if err := s.pointApp(bg, app.ID, next.Version, s.cfg.Now().UTC()); err != nil {
		return err
	}
	s.publishAPI(app.ID, fmt.Sprintf("Release v%d created by %s", next.Version, next.User))
	return nil
}
