// Package apiserver is Dyno's Platform API: the subset of Heroku's Platform
// API v3 described in docs/CONTRACTS.md, over HTTP and JSON. It
// authenticates, decodes and validates requests and writes desired state
// only (apps, names, releases, formations, sources, slugs); the manifold
// and the agents turn that into running dynos. Builds run inside it.
package apiserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/build"
	"github.com/dyno-platform/dyno/internal/gitserver"
	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// adminUser is the admin's email: the admin key's user, who is not stored
// and may see and do everything (access.go).
const adminUser = "admin@dyno.local"

// maxJSONBody bounds JSON request bodies.
const maxJSONBody = 1 << 20

// Config configures a Server.
type Config struct {
	// Domain is the apps' domain: web_url is http://<name>.<Domain>:<RouterURLPort>/.
	Domain string
	// RouterURLPort is the router's port as written in web_url ("8080").
	RouterURLPort string
	// PublicURL is this API's base URL as clients reach it; secret URLs
	// (put_url, get_url, output_stream_url, logplex_url) are built on it.
	PublicURL string
	// NodeID names this API node among the cluster's (its host ID), for
	// the build records; "" on a single node is fine.
	NodeID string
	// URLSecret signs the secret URLs. Nodes (and restarts) sharing it
	// accept each other's URLs; empty: a random one for this process.
	URLSecret []byte
	// AdminKey is the admin's API key (the admin is adminUser); users
	// have keys of their own (accounts.go). With none, only users' keys work.
	AdminKey string
	// RateLimitPerHour is each API key's budget of requests, refilled
	// continuously (4,500 when zero); RateLimitBurst is how many it may
	// spend at once (RateLimitPerHour when zero). See ratelimit.go.
	RateLimitPerHour int
	RateLimitBurst   int
	// MaxSourceBytes bounds an uploaded source; 1 GiB when zero.
	MaxSourceBytes int64
	// SourceStallTimeout is how long a source upload may send no data
	// before it is abandoned (408); 60 s when zero.
	SourceStallTimeout time.Duration
	// HostTTL is how old a host's heartbeat may be for the host to count
	// as live when a formation's size is checked against the hosts'
	// memory, and for `dyno hosts`; model.DefaultHostTTL (5 s, the
	// manifold's default) when zero.
	HostTTL time.Duration
	// CACertPEM is the platform CA's certificate, served at GET /ca.pem
	// without auth; empty when the server runs without HTTPS.
	CACertPEM []byte
	// Meter answers usage and invoices; without one those endpoints 404.
	Meter Meter
	// Drains reports drain health; without it drains show health null.
	Drains DrainHealth
	// Rendezvous joins attached one-offs to their clients (run.go), at
	// RendezvousAddr ("host:port" clients and agents dial); without it
	// only detached one-offs run.
	Rendezvous     Rendezvous
	RendezvousAddr string
	// DeployTimeout is how long the dynos of a deployed release have to be
	// up before the deploy is rolled back; 90 s (the 60 s boot timeout
	// plus room) when zero.
	DeployTimeout time.Duration
	// Git turns on the apps' git remotes (git.go); none when nil.
	Git    *GitConfig
	Logger *slog.Logger
	Now    func() time.Time
	// SchedulerNow is the scheduler's clock, for scheduled jobs' times
	// (created_at, next_due_at); Now when nil. Only end-to-end tests run
	// the scheduler on a faster clock.
	SchedulerNow func() time.Time
}

// Server serves the Platform API.
type Server struct {
	cfg    Config
	st     *store.Store
	logs   *logplex.Logplex
	b      *build.Builder
	log    *slog.Logger
	secret []byte // signs the secret URLs
	boot   string // this process, in the build records it writes
	mux    *http.ServeMux

	// ctx is cancelled by Close; builds and log tails run under it.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu       sync.Mutex
	builds   map[string]*buildRun // in memory: see builds.go
	order    []string             // build IDs, oldest first
	sessions map[string]*logSession

	git    *gitserver.Server // nil when git remotes are off
	gitErr error             // why they are off, if they failed

	limiter *rateLimiter // per API key, in this node's memory

	patterns []string // API routes, as registered (schema.go)
}

// New returns a Server writing to st, reading logs from logs and running
// builds with b.
func New(cfg Config, st *store.Store, logs *logplex.Logplex, b *build.Builder) *Server {
	if cfg.MaxSourceBytes <= 0 {
		cfg.MaxSourceBytes = 1 << 30
	}
	if cfg.SourceStallTimeout <= 0 {
		cfg.SourceStallTimeout = time.Minute
	}
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = model.DefaultHostTTL
	}
	if cfg.DeployTimeout <= 0 {
		cfg.DeployTimeout = 90 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Server{
		cfg: cfg, st: st, logs: logs, b: b, log: cfg.Logger,
		secret:   cfg.URLSecret,
		boot:     newID(),
		builds:   map[string]*buildRun{},
		sessions: map[string]*logSession{},
	}
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		_, _ = rand.Read(s.secret)
	}
	s.limiter = newRateLimiter(cfg.RateLimitPerHour, cfg.RateLimitBurst, cfg.Now)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()
	s.newGit(cfg.Git)
	return s
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Request-Id")
		if id == "" || len(id) > 8192 {
			id = newID()
		}
		w.Header().Set("Request-Id", id)
		if gitserver.IsGitPath(r.URL.Path) { // /<app>.git/...: no pattern matches a suffix
			s.serveGit(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// Close cancels running builds and log tails and waits for the builds to
// end. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock() // createBuild checks ctx and adds to wg under mu
		s.cancel()
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	api := func(pattern string, h handlerFunc) { s.register(m, pattern, s.authed(h)) }
	secret := func(pattern string, h handlerFunc) { s.register(m, pattern, s.plain(h)) }

	api("GET /apps", s.listApps)
	api("POST /apps", s.createApp)
	api("GET /apps/{app}", s.getApp)
	api("PATCH /apps/{app}", s.patchApp)
	api("DELETE /apps/{app}", s.deleteApp)
	api("GET /apps/{app}/config-vars", s.getConfig)
	api("PATCH /apps/{app}/config-vars", s.patchConfig)

	api("GET /apps/{app}/formation", s.listFormation)
	api("PATCH /apps/{app}/formation", s.batchFormation)
	api("GET /apps/{app}/formation/{type}", s.getFormation)
	api("PATCH /apps/{app}/formation/{type}", s.patchFormation)
	api("DELETE /apps/{app}/formations/{type}", s.restartType)
	api("POST /apps/{app}/formations/{type}/actions/stop", s.restartType)

	api("GET /apps/{app}/dynos", s.listDynosAll)
	api("GET /apps/{app}/dynos/{dyno}", s.getDynoAll)
	api("POST /apps/{app}/dynos", s.createDyno)
	api("DELETE /apps/{app}/dynos", s.restartAll)
	api("DELETE /apps/{app}/dynos/{dyno}", s.stopOrRestartDyno)
	api("POST /apps/{app}/dynos/{dyno}/actions/stop", s.stopOrRestartDyno)

	api("GET /apps/{app}/releases", s.listReleases)
	api("GET /apps/{app}/releases/{release}", s.getRelease)
	api("POST /apps/{app}/releases", s.rollback)

	api("POST /sources", s.createSource)
	api("POST /apps/{app}/sources", s.createSource)
	secret("PUT /sources/{id}", s.putSource)
	secret("GET /sources/{id}", s.getSource)
	api("POST /apps/{app}/builds", s.createBuild)
	api("GET /apps/{app}/builds", s.listBuilds)
	api("GET /apps/{app}/builds/{id}", s.getBuild)
	api("GET /apps/{app}/buildpack-installations", s.listBuildpacks)
	api("PUT /apps/{app}/buildpack-installations", s.setBuildpacks)
	secret("GET /build-output/{id}", s.buildOutput)

	api("POST /apps/{app}/log-sessions", s.createLogSession)
	secret("GET /log-sessions/{id}", s.streamLogSession)

	api("GET /apps/{app}/log-drains", s.listDrains)
	api("POST /apps/{app}/log-drains", s.createDrain)
	api("DELETE /apps/{app}/log-drains/{drain...}", s.deleteDrain)

	api("GET /dyno-sizes", s.listSizes)

	api("GET /hosts", s.listHosts)
	api("POST /hosts/{host}/actions/drain", s.drainHost)
	api("POST /hosts/{host}/actions/undrain", s.undrainHost)

	api("GET /apps/{app}/scheduler/jobs", s.listSchedulerJobs)
	api("POST /apps/{app}/scheduler/jobs", s.createSchedulerJob)
	api("GET /apps/{app}/scheduler/jobs/{id}", s.getSchedulerJob)
	api("DELETE /apps/{app}/scheduler/jobs/{id}", s.deleteSchedulerJob)
	api("GET /apps/{app}/scheduler/jobs/{id}/runs", s.listSchedulerRuns)

	api("GET /apps/{app}/domains", s.listDomains)
	api("POST /apps/{app}/domains", s.createDomain)
	api("GET /apps/{app}/domains/{domain}", s.getDomain)
	api("DELETE /apps/{app}/domains/{domain}", s.deleteDomain)
	api("GET /apps/{app}/sni-endpoints", s.listSNI)
	api("POST /apps/{app}/sni-endpoints", s.createSNI)
	api("GET /apps/{app}/sni-endpoints/{sni}", s.getSNI)
	api("PATCH /apps/{app}/sni-endpoints/{sni}", s.patchSNI)
	api("DELETE /apps/{app}/sni-endpoints/{sni}", s.deleteSNI)
	secret("GET /ca.pem", s.getCA)

	api("GET /apps/{app}/usage", s.getUsage)
	api("GET /account/invoices", s.listInvoices)
	api("GET /account/invoices/{month}", s.getInvoice)
	s.accountRoutes(m)
	s.conformanceRoutes(m) // schema.go
	notFoundAPI := s.authed(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("The requested API endpoint was not found. Are you using the right HTTP verb (" + r.Method + ") and path?")
	})
	m.Handle("/", notFoundAPI)
	s.mountDashboard(m, notFoundAPI) // dashboard.go
}

// handlerFunc is an endpoint; a returned *apiError becomes its JSON error
// response, any other error a 500.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type apiError struct {
	status      int
	id, message string
}

func (e *apiError) Error() string { return e.message }

func notFound(msg string) error { return &apiError{http.StatusNotFound, "not_found", msg} }
func badRequest(format string, a ...any) error {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, a...)}
}
func invalid(format string, a ...any) error {
	return &apiError{http.StatusUnprocessableEntity, "invalid_params", fmt.Sprintf(format, a...)}
}

func (s *Server) plain(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authed checks the Accept version, the API key, the rate limit and the
// user's access (access.go) before h, which finds the user in r's context.
func (s *Server) authed(h handlerFunc) http.Handler {
	return s.plain(func(w http.ResponseWriter, r *http.Request) error {
		r, err := s.admitAccept(w, r, false)
		if err != nil {
			return err
		}
		return h(w, r)
	})
}

// acceptable reports whether an Accept header allows API version 3: a
// missing header or other media types are fine; a heroku+json with
// another version is not.
func acceptable(h string) bool {
	if h == "" {
		return true
	}
	for _, part := range strings.Split(h, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != "application/vnd.heroku+json" {
			return true
		}
		if v := params["version"]; v == "" || v == "3" || strings.HasPrefix(v, "3.") {
			return true
		}
	}
	return false
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			ae = &apiError{http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("The request body is larger than %d bytes.", mbe.Limit)}
		case errors.Is(err, store.ErrNotFound):
			ae = &apiError{http.StatusNotFound, "not_found", "Couldn't find that resource."}
		default:
			if r.Context().Err() != nil {
				return // the client went away; nobody reads the answer
			}
			id := w.Header().Get("Request-Id")
			s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "request_id", id, "err", err)
			ae = &apiError{http.StatusInternalServerError, "internal_error", "Internal server error (request " + id + "): see the API server's log."}
		}
	}
	writeJSON(w, ae.status, map[string]string{"id": ae.id, "message": ae.message})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// decode reads a JSON body of at most maxJSONBody bytes into v, refusing
// unknown fields and trailing data. An empty body is {} when optional.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF):
			if optional {
				return nil
			}
			return badRequest("The request body is empty: send a JSON object.")
		}
		return badRequest("The request body is not valid JSON for this endpoint: %v.", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("The request body has data after the JSON object: send exactly one object.")
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// lookupApp finds the app named or identified by the {app} path value.
func (s *Server) lookupApp(r *http.Request) (model.App, uint64, error) {
	ref := r.PathValue("app")
	id := ref
	if model.ValidateAppName(ref) == nil {
		n, _, err := s.st.AppNames.Get(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) {
			return model.App{}, 0, notFound("Couldn't find that app.")
		}
		if err != nil {
			return model.App{}, 0, err
		}
		id = n.ID
	} else if !uuidRE.MatchString(strings.ToLower(ref)) {
		return model.App{}, 0, notFound("Couldn't find that app.")
	}
	app, rev, err := s.st.Apps.Get(r.Context(), strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		return model.App{}, 0, notFound("Couldn't find that app.")
	}
	if err != nil {
		return model.App{}, 0, err
	}
	if err := s.checkApp(r, app); err != nil { // may the request's user see it? (access.go)
		return model.App{}, 0, err
	}
	return app, rev, nil
}

// newID returns a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:])
}

// derivedID is a stable UUID (version 5 style) for things our model does
// not give an ID, such as a formation's process type.
func derivedID(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return formatUUID(h[:16])
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Lifetimes of the secret URLs, as Heroku's: an hour, but for a source's
// get_url, which builds may be created from for as long as the source is
// kept (24 h).
const (
	urlTTL       = time.Hour
	sourceGetTTL = 24 * time.Hour
)

// signedURL is PublicURL+path with the query that makes it usable without
// auth for kind/id until ttl from now: an expiry and its token.
func (s *Server) signedURL(path, kind, id string, ttl time.Duration) string {
	return s.cfg.PublicURL + s.signedPath(path, kind, id, ttl)
}

// signedPath is path with the query of signedURL.
func (s *Server) signedPath(path, kind, id string, ttl time.Duration) string {
	exp := strconv.FormatInt(s.cfg.Now().Add(ttl).Unix(), 10)
	return path + "?expires=" + exp + "&token=" + s.token(kind, id, exp)
}

// token signs kind/id until exp (unix seconds).
func (s *Server) token(kind, id, exp string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(kind + "/" + id + "/" + exp))
	return hex.EncodeToString(m.Sum(nil)[:20])
}

// validSigned reports whether q (a signed URL's query) is a valid,
// unexpired token for kind/id.
func (s *Server) validSigned(q url.Values, kind, id string) bool {
	exp := q.Get("expires")
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.cfg.Now().Unix() >= n {
		return false
	}
	return hmac.Equal([]byte(q.Get("token")), []byte(s.token(kind, id, exp)))
}

func (s *Server) validToken(r *http.Request, kind, id string) bool {
	return s.validSigned(r.URL.Query(), kind, id)
}

func (s *Server) publishAPI(appID, msg string) {
	s.logs.Publish(appID, model.LogLine{Time: s.cfg.Now(), Source: model.SourceApp, Dyno: "api", Message: msg})
}

type ref struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type userRef struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

type sizeJSON struct {
	ID string `json:"id"`
	model.Size
	Architecture     string `json:"architecture"`
	PrivateSpaceOnly bool   `json:"private_space_only"`
	// Generation, Cost and PreciseDynoUnits complete Heroku's shape
	// (sizeOut, schema.go).
	Generation       ref       `json:"generation"`
	Cost             *struct{} `json:"cost"`
	PreciseDynoUnits float64   `json:"precise_dyno_units"`
}

func (s *Server) listSizes(w http.ResponseWriter, r *http.Request) error {
	sizes := model.Sizes()
	out := make([]sizeJSON, len(sizes))
	for i, sz := range sizes {
		out[i] = sizeOut(sz)
	}
	return writeJSON(w, http.StatusOK, out)
}
