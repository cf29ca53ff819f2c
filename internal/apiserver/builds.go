package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// A build's record is in the store (model.Build), from its start to the
// app's deletion. Its run (the output, for output_stream_url) is kept in
// memory by the node that ran it: the last maxBuilds runs, each with the
// last maxOutputLines of output. When the build ends, its output goes to
// the store too (Store.BuildOutput), for every node and after restarts.
const (
	maxBuilds      = 200
	maxOutputLines = 10000
)

type sourceBlob struct {
	GetURL string `json:"get_url"`
	PutURL string `json:"put_url"`
}

// createSource hands out a place to upload a source tarball to.
func (s *Server) createSource(w http.ResponseWriter, r *http.Request) error {
	if r.PathValue("app") != "" {
		if _, _, err := s.lookupApp(r); err != nil {
			return err
		}
	}
	id := newID()
	path := "/sources/" + id
	return writeJSON(w, http.StatusCreated, map[string]sourceBlob{"source_blob": {
		GetURL: s.signedURL(path, "source", id, sourceGetTTL),
		PutURL: s.signedURL(path, "source-put", id, urlTTL),
	}})
}

func (s *Server) putSource(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !s.validToken(r, "source-put", id) {
		return notFound("Couldn't find that source: use the put_url that POST /sources returned, within the hour.")
	}
	// A put_url uploads once: what a build was made from stays as it was.
	if rc, err := s.st.Sources.Get(r.Context(), id); err == nil {
		rc.Close()
		return &apiError{http.StatusConflict, "conflict", "That source was already uploaded: POST /sources for a new one."}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("look up source %s: %w", id, err)
	}
	tooLarge := &apiError{http.StatusRequestEntityTooLarge, "payload_too_large",
		fmt.Sprintf("The source is larger than the %d bytes allowed: leave build artifacts and dependencies out of it.", s.cfg.MaxSourceBytes)}
	if r.ContentLength > s.cfg.MaxSourceBytes {
		return tooLarge
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxSourceBytes)
	stalled := &stallReader{r: body, rc: http.NewResponseController(w), timeout: s.cfg.SourceStallTimeout}
	if _, _, err := s.st.Sources.Put(r.Context(), id, stalled); err != nil {
		s.undo("partial source", s.st.Sources.Delete(context.WithoutCancel(r.Context()), id))
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return tooLarge
		}
		if stalled.stalled {
			// The client may still read an answer; the connection is
			// closed after it, its body being unread.
			_ = stalled.rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			return &apiError{http.StatusRequestTimeout, "request_timeout",
				fmt.Sprintf("The upload sent no data for %s and was abandoned: upload the source again.", s.cfg.SourceStallTimeout)}
		}
		return fmt.Errorf("store source %s: %w", id, err)
	}
	_ = stalled.rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request) error {
	return s.serveBlob(w, r, s.st.Sources, "source", r.PathValue("id"),
		"Couldn't find that source: its get_url is wrong or expired.", "Couldn't find that source: upload it to its put_url first.")
}

// serveBlob serves the blob id of blobs at its secret URL (a token of
// kind): invalid is the answer to a bad token, missing to an absent blob.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, blobs store.Blobs, kind, id, invalid, missing string) error {
	if !s.validToken(r, kind, id) {
		return notFound(invalid)
	}
	rc, err := blobs.Get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(missing)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = io.Copy(w, rc)
	return err
}

// buildRun is one build: its public record and its output.
type buildRun struct {
	id, appID string
	user      string // who started it (its email)
	out       *output
	rev       uint64 // of the record startBuild made; set before runBuild starts

	// guarded by Server.mu
	status    string
	failure   error // why a failed build failed
	release   *relRef
	slug      *idRef
	source    json.RawMessage
	createdAt time.Time
	updatedAt time.Time
}

// commit is the source_blob's version (a git push's commit), "" without
// one. The source is set before the build starts and never changes.
func (b *buildRun) commit() string { return sourceCommit(b.source) }

// sourceCommit is the version of a build's source_blob, "" without one.
func sourceCommit(source json.RawMessage) string {
	var blob struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(source, &blob) != nil {
		return ""
	}
	return blob.Version
}

type buildJSON struct {
	ID              string          `json:"id"`
	Status          string          `json:"status"`
	OutputStreamURL string          `json:"output_stream_url"`
	SourceBlob      json.RawMessage `json:"source_blob"`
	Release         *relRef         `json:"release"`
	Slug            *idRef          `json:"slug"`
	App             ref             `json:"app"`
	User            userRef         `json:"user"`
	Buildpacks      []struct{}      `json:"buildpacks"`
	Stack           string          `json:"stack"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
}

func (s *Server) buildOut(app model.App, b *buildRun) buildJSON {
	return s.buildJSONOf(app, s.recordOf(b))
}

// buildJSONOf is the API's shape of a build's record.
func (s *Server) buildJSONOf(app model.App, rec model.Build) buildJSON {
	// A build running on another node streams its output from there; the
	// nodes share the key that signs the URL.
	base := s.cfg.PublicURL
	if rec.Status == "pending" && rec.Node != s.cfg.NodeID && rec.APIURL != "" {
		base = rec.APIURL
	}
	out := buildJSON{
		ID: rec.ID, Status: rec.Status, SourceBlob: rec.Source,
		OutputStreamURL: base + s.signedPath("/build-output/"+rec.ID, "build", rec.ID, urlTTL),
		App:             ref{ID: app.ID, Name: app.Name}, User: userRefOf(rec.User), Buildpacks: []struct{}{}, Stack: "dyno",
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
	}
	if rec.ReleaseID != "" {
		out.Release = &relRef{ID: rec.ReleaseID, Version: rec.ReleaseVersion}
	}
	if rec.SlugID != "" {
		out.Slug = &idRef{ID: rec.SlugID}
	}
	return out
}

// recordOf is the store record of a run as it stands.
func (s *Server) recordOf(b *buildRun) model.Build {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := model.Build{
		ID: b.id, AppID: b.appID, User: b.user, Status: b.status, Node: s.cfg.NodeID, Boot: s.boot, APIURL: s.cfg.PublicURL,
		Source: b.source, CreatedAt: b.createdAt, UpdatedAt: b.updatedAt,
	}
	if b.failure != nil {
		rec.Failure = b.failure.Error()
	}
	if b.release != nil {
		rec.ReleaseID, rec.ReleaseVersion = b.release.ID, b.release.Version
	}
	if b.slug != nil {
		rec.SlugID = b.slug.ID
	}
	return rec
}

// startBuild records b, registers its run and starts it; runBuild ends it.
// The run is registered first, so that no reader takes its record for
// one a restart cut short.
func (s *Server) startBuild(ctx context.Context, app model.App, b *buildRun, sourceID string) error {
	s.mu.Lock()
	if s.ctx.Err() != nil { // Close has begun: wg must not grow
		s.mu.Unlock()
		return &apiError{http.StatusServiceUnavailable, "unavailable", "The API server is shutting down: try again shortly."}
	}
	s.builds[b.id] = b
	s.order = append(s.order, b.id)
	s.evictBuildsLocked()
	s.mu.Unlock()
	rev, err := s.st.Builds.Create(ctx, model.BuildKey(b.appID, b.id), s.recordOf(b))
	s.mu.Lock()
	if err != nil || s.ctx.Err() != nil {
		delete(s.builds, b.id)
		s.order = slices.DeleteFunc(s.order, func(id string) bool { return id == b.id })
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("record build %s: %w", b.id, err)
		}
		s.undo("build record", s.st.Builds.Delete(context.WithoutCancel(ctx), model.BuildKey(b.appID, b.id), rev))
		return &apiError{http.StatusServiceUnavailable, "unavailable", "The API server is shutting down: try again shortly."}
	}
	b.rev = rev // before runBuild, its one reader
	s.wg.Add(1)
	s.mu.Unlock()
	go s.runBuild(app, b, sourceID)
	return nil
}

// finishBuild writes the outcome of b over the record startBuild made,
// retrying a store that does not answer. A record changed or deleted
// meanwhile (the app was deleted) is left as it is.
func (s *Server) finishBuild(b *buildRun) {
	s.keepOutput(b)
	key := model.BuildKey(b.appID, b.id)
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = s.st.Builds.Update(ctx, key, s.recordOf(b), b.rev)
		cancel()
		if errors.Is(err, store.ErrConflict) {
			s.dropOrphanOutput(b)
		}
		if err == nil || errors.Is(err, store.ErrConflict) {
			return
		}
	}
	s.log.Error("the build's outcome could not be recorded: after this node restarts, `dyno builds` shows it as failed",
		"app", b.appID, "build", b.id, "err", err)
}

// dropOrphanOutput deletes the stored output of b when its record is gone:
// the app was deleted while b ran, after its outputs were.
func (s *Server) dropOrphanOutput(b *buildRun) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := s.st.Builds.Get(ctx, model.BuildKey(b.appID, b.id)); errors.Is(err, store.ErrNotFound) {
		s.undo("build output of a deleted app", s.st.BuildOutput.Delete(ctx, b.id))
	}
}

// maxStoredOutput bounds a stored build output: its last bytes are kept.
const maxStoredOutput = 4 << 20

// keepOutput closes b's output and stores it, before the record says the
// build ended: a node that reads the outcome finds the output too.
func (s *Server) keepOutput(b *buildRun) {
	b.out.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := s.st.BuildOutput.Put(ctx, b.id, strings.NewReader(b.out.text(maxStoredOutput))); err != nil {
		s.log.Warn("store the build's output: only this node has it, until it restarts", "build", b.id, "err", err)
	}
}

func (s *Server) createBuild(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		SourceBlob struct {
			URL                string  `json:"url"`
			Checksum           *string `json:"checksum"`
			Version            *string `json:"version"`
			VersionDescription *string `json:"version_description"`
		} `json:"source_blob"`
		Buildpacks json.RawMessage `json:"buildpacks"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	u, err := url.Parse(body.SourceBlob.URL)
	sourceID, ok := "", false
	if err == nil {
		sourceID, ok = strings.CutPrefix(u.Path, "/sources/")
	}
	if !ok || sourceID == "" || !s.validSigned(u.Query(), "source", sourceID) {
		return invalid("source_blob.url must be the get_url that POST /sources returned, within 24 hours; other URLs are not fetched.")
	}
	src, _ := json.Marshal(body.SourceBlob)
	now := s.cfg.Now().UTC()
	b := &buildRun{id: newID(), appID: app.ID, user: actor(r.Context()), out: newOutput(), status: "pending", source: src, createdAt: now, updatedAt: now}
	if err := s.startBuild(r.Context(), app, b, sourceID); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.buildOut(app, b))
}

// evictBuildsLocked forgets the oldest finished builds beyond maxBuilds.
func (s *Server) evictBuildsLocked() {
	for i := 0; len(s.builds) > maxBuilds && i < len(s.order); {
		b := s.builds[s.order[i]]
		if b.status == "pending" {
			i++
			continue
		}
		delete(s.builds, b.id)
		s.order = append(s.order[:i], s.order[i+1:]...)
	}
}

// runBuild builds the source, releases the slug, follows the new dynos
// until they are up (rolling back if they are not) and records the outcome.
func (s *Server) runBuild(app model.App, b *buildRun, sourceID string) {
	defer s.wg.Done()
	defer b.out.close()
	ctx := withActor(s.ctx, b.user) // its release is the user's
	s.publishAPI(app.ID, "Build started by "+actor(ctx))
	rel, prev, slug, err := s.build(ctx, app, b, sourceID)
	if err == nil {
		s.publishAPI(app.ID, "Build succeeded")
		fmt.Fprintf(b.out, "-----> Launching...\n       Released v%d\n", rel.Version)
		if err = s.verifyDeploy(ctx, app, rel, prev, b.out); err == nil {
			fmt.Fprintf(b.out, "       %s deployed to Dyno\n", s.webURL(app.Name))
		}
	}
	s.mu.Lock()
	b.status, b.updatedAt = "succeeded", s.cfg.Now().UTC()
	if rel != nil {
		b.release, b.slug = &relRef{ID: rel.ID, Version: rel.Version}, &idRef{ID: slug.ID}
	}
	if err != nil {
		b.status, b.failure = "failed", err
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Info("build failed", "app", app.Name, "build", b.id, "err", err)
	}
	s.finishBuild(b)
}

// build runs the builder, then makes the release. The builder reports its
// own failures to the app's log; build reports the others.
func (s *Server) build(ctx context.Context, app model.App, b *buildRun, sourceID string) (rel, prev *model.Release, slug model.Slug, err error) {
	fail := func(err error) (*model.Release, *model.Release, model.Slug, error) {
		fmt.Fprintf(b.out, " !     %s\n !     Build failed\n", err)
		s.publishAPI(app.ID, "Build failed: "+err.Error())
		return nil, nil, model.Slug{}, err
	}
	src, err := s.st.Sources.Get(ctx, sourceID)
	if errors.Is(err, store.ErrNotFound) {
		return fail(fmt.Errorf("the source was never uploaded (or expired): PUT it to put_url before creating the build"))
	}
	if err != nil {
		return fail(fmt.Errorf("read source: %w", err))
	}
	defer src.Close()
	opts, err := s.buildOptions(ctx, app)
	if err != nil {
		return fail(err)
	}
	res, err := s.b.BuildApp(ctx, src, b.out, opts)
	if err != nil {
		return nil, nil, slug, err
	}
	slug = res.Slug
	// Heroku names a deploy by its commit; without one, by the slug.
	short := strings.TrimPrefix(slug.Checksum, "SHA256:")
	if commit := b.commit(); commit != "" {
		short = commit
	}
	short = short[:min(8, len(short))]
	// The release running now is what a deploy that fails to come up
	// returns to.
	if cur, _, err := s.st.Apps.Get(ctx, app.ID); err == nil {
		if prev, err = s.currentRelease(ctx, cur); err != nil {
			return fail(fmt.Errorf("read the current release: %w", err))
		}
	}
	rel, err = s.newReleaseOut(ctx, app, b.out, func(latest *model.Release) (*model.Release, error) {
		next := &model.Release{Slug: &slug, Description: "Deploy " + short, Config: map[string]string{}}
		if latest != nil {
			maps.Copy(next.Config, latest.Config)
		}
		// The buildpacks' default config vars, for those not set (Heroku's rule).
		for k, v := range res.ConfigVars {
			if _, set := next.Config[k]; !set {
				next.Config[k] = v
			}
		}
		return next, nil
	})
	if errors.Is(err, errReleasePhase) {
		return rel, prev, slug, err // the failed release keeps its slug; releasePhase said why
	}
	if err != nil {
		s.undo("slug", s.st.Slugs.Delete(context.WithoutCancel(ctx), slug.ID))
		return fail(fmt.Errorf("create release: %w", err))
	}
	return rel, prev, slug, nil
}

// findBuild returns the record of an app's build: this node's run if it
// has it, else the store's.
func (s *Server) findBuild(ctx context.Context, app model.App, id string) (model.Build, error) {
	s.mu.Lock()
	b := s.builds[id]
	s.mu.Unlock()
	if b != nil && b.appID == app.ID {
		return s.recordOf(b), nil
	}
	rec, rev, err := s.st.Builds.Get(ctx, model.BuildKey(app.ID, id))
	if errors.Is(err, store.ErrNotFound) {
		return model.Build{}, notFound("Couldn't find that build.")
	}
	if err != nil {
		return model.Build{}, fmt.Errorf("read build %s: %w", id, err)
	}
	return s.settleStale(ctx, rec, rev), nil
}

// abandonedAfter is how long a pending build of another node may last
// before it reads as failed: builds stop after --build-timeout (15 min by
// default) and release phases after an hour, so a build this old has lost
// its node. (A --build-timeout near a day would need more.)
const abandonedAfter = 24 * time.Hour

// settleStale reports as failed a pending build whose outcome will never
// come: one an earlier process of this node started (the node restarted
// during it), or one older than abandonedAfter (its node is gone). The
// record at rev is corrected too, unless it changed meanwhile.
func (s *Server) settleStale(ctx context.Context, rec model.Build, rev uint64) model.Build {
	if rec.Status != "pending" {
		return rec
	}
	now := s.cfg.Now().UTC()
	switch {
	case rec.Node == s.cfg.NodeID && rec.Boot != s.boot:
		rec.Failure = "the API server stopped during the build: push or create the build again"
	case now.Sub(rec.CreatedAt) > abandonedAfter:
		rec.Failure = "the API node running the build (host " + rec.Node + ") never reported its outcome: push or create the build again"
	default:
		return rec
	}
	rec.Status, rec.UpdatedAt = "failed", now
	if _, err := s.st.Builds.Update(ctx, model.BuildKey(rec.AppID, rec.ID), rec, rev); err != nil && !errors.Is(err, store.ErrConflict) {
		s.log.Warn("correct a stale build record", "build", rec.ID, "err", err)
	}
	return rec
}

// appBuilds returns the records of an app's builds, this node's runs as
// they stand now.
func (s *Server) appBuilds(ctx context.Context, appID string) ([]model.Build, error) {
	entries, err := s.st.Builds.List(ctx, appID+".>")
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	recs := make([]model.Build, 0, len(entries))
	for _, e := range entries {
		s.mu.Lock()
		b := s.builds[e.Value.ID]
		s.mu.Unlock()
		if b != nil {
			recs = append(recs, s.recordOf(b))
		} else {
			recs = append(recs, s.settleStale(ctx, e.Value, e.Revision))
		}
	}
	return recs, nil
}

func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	rec, err := s.findBuild(r.Context(), app, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.buildJSONOf(app, rec))
}

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) error {
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	recs, err := s.appBuilds(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := make([]buildJSON, 0, len(recs))
	for _, rec := range recs {
		out = append(out, s.buildJSONOf(app, rec))
	}
	return writePage(w, r, out,
		byTime("created_at", func(b buildJSON) time.Time { return b.CreatedAt }),
		byString("id", func(b buildJSON) string { return b.ID }))
}

// deleteAppBuilds forgets the build records of a deleted app.
func (s *Server) deleteAppBuilds(ctx context.Context, appID string) {
	entries, err := s.st.Builds.List(ctx, appID+".>")
	if err != nil {
		s.log.Error("list builds of deleted app", "app", appID, "err", err)
	}
	for _, e := range entries {
		s.undo("build output", s.st.BuildOutput.Delete(ctx, e.Value.ID))
		s.undo("build record", s.st.Builds.Delete(ctx, e.Key, 0))
	}
}

// buildOutput streams a build's output: what it has so far, then live
// lines, until the build ends; the stored output of a build this node no
// longer runs.
func (s *Server) buildOutput(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !s.validToken(r, "build", id) {
		return notFound("Couldn't find that build output: its URL is wrong or expired (an hour); `dyno builds:output` gets a fresh one.")
	}
	s.mu.Lock()
	b := s.builds[id]
	s.mu.Unlock()
	text := func() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
	}
	if b == nil {
		rc, err := s.st.BuildOutput.Get(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return notFound("Couldn't find that build output: a build's output is stored when it ends; while it runs, only the API node running it has it. The build's record is in `dyno builds`.")
		}
		if err != nil {
			return fmt.Errorf("read build output %s: %w", id, err)
		}
		defer rc.Close()
		text()
		io.Copy(w, rc)
		return nil
	}
	text()
	flusher, _ := w.(http.Flusher)
	next := 0
	for {
		lines, n, done, wait := b.out.since(next)
		next = n
		for _, l := range lines {
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				return nil // the reader went away
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if done {
			return nil
		}
		select {
		case <-wait:
		case <-r.Context().Done():
			return nil
		}
	}
}

// output is a build's output: complete lines, the last maxOutputLines of
// them, and a broadcast to readers when more arrive.
type output struct {
	mu      sync.Mutex
	lines   []string
	dropped int    // lines forgotten from the front
	partial []byte // an unfinished last line
	done    bool
	wake    chan struct{}
}

func newOutput() *output { return &output{wake: make(chan struct{})} }

// Write adds build output; lines end at '\n'.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return 0, errors.New("build output is closed")
	}
	data := append(o.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		o.lines = append(o.lines, string(data[:i]))
		data = data[i+1:]
	}
	o.partial = append([]byte(nil), data...)
	if over := len(o.lines) - maxOutputLines; over > 0 {
		o.lines = append([]string(nil), o.lines[over:]...)
		o.dropped += over
	}
	o.broadcastLocked()
	return len(p), nil
}

func (o *output) broadcastLocked() {
	close(o.wake)
	o.wake = make(chan struct{})
}

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return
	}
	if len(o.partial) > 0 {
		o.lines = append(o.lines, string(o.partial))
		o.partial = nil
	}
	o.done = true
	o.broadcastLocked()
}

// text is the output kept, at most max bytes of its end, saying first
// what was left out.
func (o *output) text(max int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	size := 0
	first := len(o.lines)
	for first > 0 && size+len(o.lines[first-1])+1 <= max {
		first--
		size += len(o.lines[first]) + 1
	}
	var b strings.Builder
	if left := o.dropped + first; left > 0 {
		fmt.Fprintf(&b, "(the first %d lines of this output were not kept)\n", left)
	}
	for _, l := range o.lines[first:] {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// since returns the lines from absolute index i on, the index after them,
// whether the output is complete, and a channel closed on the next change.
func (o *output) since(i int) ([]string, int, bool, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i = max(i, o.dropped)
	lines := append([]string(nil), o.lines[i-o.dropped:]...)
	return lines, o.dropped + len(o.lines), o.done, o.wake
}

// stallReader reads an upload with a read deadline renewed before every
// read, so that a client that stops sending (while it promised more) ties
// up its handler for at most timeout, however long the whole upload takes.
type stallReader struct {
	r          io.Reader
	rc         *http.ResponseController
	timeout    time.Duration
	noDeadline bool // the connection does not support deadlines
	stalled    bool // a read hit the deadline
}

func (sr *stallReader) Read(p []byte) (int, error) {
	if !sr.noDeadline {
		// Network deadlines are wall-clock times, never the injected clock.
		if err := sr.rc.SetReadDeadline(time.Now().Add(sr.timeout)); errors.Is(err, http.ErrNotSupported) {
			sr.noDeadline = true
		} else if err != nil {
			return 0, fmt.Errorf("renew the upload's read deadline: %w", err)
		}
	}
	n, err := sr.r.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		sr.stalled = true
	}
	return n, err
}
