package dynotest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	heroku "github.com/heroku/heroku-go/v5"

	"github.com/dyno-platform/dyno/internal/apischema"
)

// recorder keeps every response heroku-go gets, body included, so that
// the test can validate what the client decoded against the schema.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	last exchange
}

type exchange struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.last = exchange{req.Method, req.URL.Path, resp.StatusCode, resp.Header.Clone(), body}
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) lastExchange() exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestHerokuGoClient drives a live platform with Heroku's own Go client
// (heroku-go v5): deploy through sources and builds, batch-update the
// formation, list dynos, set config vars, page releases, open a log
// session, restart, delete. Every response the client decodes is checked
// against the platform's GET /schema (definitions as Heroku's).
func TestHerokuGoClient(t *testing.T) {
	requireRoot(t)
	p := Start(t, dynoBin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	resp, err := http.Get(p.APIURL + "/schema")
	if err != nil {
		t.Fatal(err)
	}
	schema, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /schema: %d %v", resp.StatusCode, err)
	}
	v, err := apischema.New(schema)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{base: http.DefaultTransport}
	svc := heroku.NewService(&http.Client{Transport: &heroku.Transport{BearerToken: p.APIKey, Transport: rec}})
	svc.URL = p.APIURL
	// valid checks the last response against definitions/<resource>.
	valid := func(resource string) exchange {
		t.Helper()
		x := rec.lastExchange()
		if err := v.Validate(resource, x.body); err != nil {
			t.Errorf("%s %s: %v", x.method, x.path, err)
		}
		if x.header.Get("Request-Id") == "" {
			t.Errorf("%s %s: no Request-Id", x.method, x.path)
		}
		return x
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	app, err := svc.AppCreate(ctx, heroku.AppCreateOpts{Name: heroku.String("hgo")})
	must("create app", err)
	valid("app")
	if app.Name != "hgo" || app.Stack.Name == "" || app.Owner.Email == "" {
		t.Errorf("app %+v", app)
	}
	_, err = svc.AccountInfo(ctx)
	must("account", err)
	valid("account")

	// Basic auth with the key as password works as Bearer does.
	basic := heroku.NewService(&http.Client{Transport: &heroku.Transport{Username: "me", Password: p.APIKey}})
	basic.URL = p.APIURL
	apps, err := basic.AppList(ctx, nil)
	if err != nil || len(apps) != 1 || apps[0].ID != app.ID {
		t.Fatalf("apps with Basic auth: %+v %v", apps, err)
	}

	// Deploy as Heroku's API is used: a source, an upload, a build.
	src, err := svc.SourceCreate(ctx)
	must("create source", err)
	valid("source")
	put, err := http.NewRequestWithContext(ctx, "PUT", src.SourceBlob.PutURL, bytes.NewReader(herokuGoSource(t)))
	must("upload request", err)
	if resp, err := http.DefaultClient.Do(put); err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload source: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	var opts heroku.BuildCreateOpts
	opts.SourceBlob.URL = heroku.String(src.SourceBlob.GetURL)
	opts.SourceBlob.Version = heroku.String("v1-commit")
	build, err := svc.BuildCreate(ctx, app.Name, opts)
	must("create build", err)
	valid("build")
	Eventually(t, 3*time.Minute, "the build to end", func() error {
		build, err = svc.BuildInfo(ctx, app.Name, build.ID)
		if err != nil {
			return err
		}
		valid("build")
		if build.Status == "pending" {
			return errors.New("still pending")
		}
		return nil
	})
	if build.Status != "succeeded" || build.Release == nil || build.Slug == nil {
		t.Fatalf("build %+v", build)
	}
	slug, err := svc.SlugInfo(ctx, app.Name, build.Slug.ID)
	must("slug", err)
	valid("slug")
	if slug.ProcessTypes["web"] == "" || slug.Commit == nil || *slug.Commit != "v1-commit" {
		t.Errorf("slug %+v", slug)
	}

	// Batch-update the formation: two web dynos, one worker.
	var batch heroku.FormationBatchUpdateOpts
	must("batch opts", json.Unmarshal([]byte(`{"updates":[{"type":"web","quantity":2,"size":"standard-1X"},{"type":"worker","quantity":1}]}`), &batch))
	formation, err := svc.FormationBatchUpdate(ctx, app.Name, batch)
	must("batch update", err)
	valid("formation")
	if len(formation) != 2 {
		t.Errorf("formation %+v", formation)
	}
	_, err = svc.FormationList(ctx, app.Name, nil)
	must("formation", err)
	valid("formation")

	var dynos heroku.DynoListResult
	Eventually(t, 2*time.Minute, "three dynos up", func() error {
		dynos, err = svc.DynoList(ctx, app.Name, nil)
		if err != nil {
			return err
		}
		valid("dyno")
		up := 0
		for _, d := range dynos {
			if d.State == "up" {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("%d of %d dynos up: %+v", up, len(dynos), dynos)
		}
		return nil
	})
	_, err = svc.DynoInfo(ctx, app.Name, "web.1")
	must("dyno info", err)
	valid("dyno")

	// Config vars: two changes, releases v2 and v3.
	cfg, err := svc.ConfigVarUpdate(ctx, app.Name, map[string]*string{"GREETING": heroku.String("hello")})
	must("set config", err)
	valid("config-var")
	if cfg["GREETING"] == nil || *cfg["GREETING"] != "hello" {
		t.Errorf("config %v", cfg)
	}
	_, err = svc.ConfigVarUpdate(ctx, app.Name, map[string]*string{"GREETING": nil, "OTHER": heroku.String("x")})
	must("change config", err)
	valid("config-var")
	_, err = svc.ConfigVarInfoForApp(ctx, app.Name)
	must("config", err)
	valid("config-var")

	// Releases in ranges: newest two, then the rest by Next-Range.
	rels, err := svc.ReleaseList(ctx, app.Name, &heroku.ListRange{Field: "version", Max: 2, Descending: true})
	must("releases", err)
	x := valid("release")
	next := x.header.Get("Next-Range")
	if x.status != http.StatusPartialContent || next == "" || len(rels) != 2 || rels[0].Version != 3 || rels[1].Version != 2 {
		t.Fatalf("first page: %d %q %+v", x.status, next, versions(rels))
	}
	rest, err := svc.ReleaseList(ctx, app.Name, nextRange(t, next))
	must("releases, next page", err)
	x = valid("release")
	if x.status != http.StatusOK || x.header.Get("Next-Range") != "" || len(rest) != 1 || rest[0].Version != 1 {
		t.Fatalf("second page: %d %q %v", x.status, x.header.Get("Next-Range"), versions(rest))
	}
	newest, err := svc.ReleaseList(ctx, app.Name, &heroku.ListRange{Max: 1, Descending: true}) // no field: "..; max=1,order=desc"
	must("newest release", err)
	valid("release")
	if len(newest) != 1 || newest[0].Version != 3 || !newest[0].Current {
		t.Errorf("newest release %v", versions(newest))
	}
	_, err = svc.ReleaseInfo(ctx, app.Name, "1")
	must("release info", err)
	valid("release")

	// A log session for one dyno: its URL carries its own secret.
	session, err := svc.LogSessionCreate(ctx, app.Name, heroku.LogSessionCreateOpts{Dyno: heroku.String("web.1"), Lines: heroku.Int(20)})
	must("log session", err)
	valid("log-session")
	logResp, err := http.Get(session.LogplexURL)
	must("log stream", err)
	io.Copy(io.Discard, logResp.Body) // not tailing: it ends after the backlog
	logResp.Body.Close()
	if logResp.StatusCode != 200 {
		t.Errorf("log stream: %d", logResp.StatusCode)
	}

	// Restarts: one dyno, then all. A restarted dyno is a new one.
	before := map[string]string{}
	for _, d := range dynos {
		before[d.Name] = d.ID
	}
	_, err = svc.DynoRestart(ctx, app.Name, "web.1")
	must("restart web.1", err)
	if x := rec.lastExchange(); x.status != http.StatusAccepted {
		t.Errorf("restart: %d", x.status)
	}
	Eventually(t, 2*time.Minute, "web.1 replaced and up", func() error {
		d, err := svc.DynoInfo(ctx, app.Name, "web.1")
		if err != nil {
			return err
		}
		if d.ID == before["web.1"] || d.State != "up" {
			return fmt.Errorf("web.1 is %s %s", d.ID, d.State)
		}
		return nil
	})
	_, err = svc.DynoRestartAll(ctx, app.Name)
	must("restart all", err)

	deleted, err := svc.AppDelete(ctx, app.Name)
	must("delete app", err)
	valid("app")
	if deleted.ID != app.ID {
		t.Errorf("deleted %+v", deleted)
	}
	_, err = svc.AppInfo(ctx, app.Name)
	var he heroku.Error
	if !errors.As(err, &he) || he.StatusCode != 404 || he.ID != "not_found" || he.Error() == "" {
		t.Errorf("app after delete: %v", err)
	}
}

func versions(rels []heroku.Release) []int {
	var out []int
	for _, r := range rels {
		out = append(out, r.Version)
	}
	return out
}

// nextRange turns a Next-Range header ("version ]2..; max=2, order=desc")
// into the heroku-go ListRange that sends it back.
func nextRange(t *testing.T, h string) *heroku.ListRange {
	t.Helper()
	head, params, _ := strings.Cut(h, ";")
	field, span, ok := strings.Cut(strings.TrimSpace(head), " ")
	first, last, ok2 := strings.Cut(span, "..")
	if !ok || !ok2 {
		t.Fatalf("Next-Range %q", h)
	}
	lr := &heroku.ListRange{Field: field, FirstID: first, LastID: last}
	for _, p := range strings.FieldsFunc(params, func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "max":
			lr.Max, _ = strconv.Atoi(v)
		case "order":
			lr.Descending = v == "desc"
		}
	}
	return lr
}

// herokuGoSource is a gzipped tarball of an app with a web and a worker type.
func herokuGoSource(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	procfile := "web: python3 -m http.server $PORT\nworker: sh -c 'while true; do echo tick; sleep 5; done'\n"
	if err := tw.WriteHeader(&tar.Header{Name: "Procfile", Mode: 0o644, Size: int64(len(procfile)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(procfile)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
