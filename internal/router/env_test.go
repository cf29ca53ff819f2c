package router

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// testLogs is a LogSink that hands lines to the test in order.
type testLogs struct{ ch chan logEntry }

type logEntry struct {
	appID string
	line  model.LogLine
}

func (l *testLogs) Publish(appID string, line model.LogLine) { l.ch <- logEntry{appID, line} }

// next returns the next published line; the line is published when the
// handler returns, which may be just after the client saw the response.
func (l *testLogs) next(t *testing.T) logEntry {
	t.Helper()
	select {
	case e := <-l.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no router log line within 5 s")
		return logEntry{}
	}
}

// env is a router on a real embedded NATS store, served on 127.0.0.1:0.
type env struct {
	t      *testing.T
	st     *store.Store
	srv    *store.Server
	r      *Router
	front  *httptest.Server
	server *Server // front's
	logs   *testLogs
	client *http.Client
	tls    bool // front serves HTTPS
}

func newStore(t testing.TB) (*store.Store, *store.Server) {
	t.Helper()
	return storetest.New(t)
}

// startRouter runs r until the test ends and waits for its first table.
func startRouter(t testing.TB, r *Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("router not ready within 10 s")
	}
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	return newEnvOver(t, cfg, false)
}

// newEnvOver is newEnv with a front server over TLS when tlsOn.
func newEnvOver(t *testing.T, cfg Config, tlsOn bool) *env {
	t.Helper()
	st, srv := newStore(t)
	logs := &testLogs{ch: make(chan logEntry, 1000)}
	cfg.Logs = logs
	r := New(cfg, st)
	startRouter(t, r)
	// The server the router's commands run: the edge loop (edge.go) serves
	// every test's bodiless HTTP/1.1 requests.
	front, fsrv := startFront(t, r, ServerConfig{}, tlsOn)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	if tlsOn {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, st: st, srv: srv, r: r, front: front, server: fsrv, logs: logs, client: &http.Client{Transport: tr}, tls: tlsOn}
}

// app names an app, as the API server does.
func (e *env) app(name, id string) {
	e.t.Helper()
	if _, err := e.st.AppNames.Put(context.Background(), name, model.AppName{ID: id}); err != nil {
		e.t.Fatal(err)
	}
}

// dyno reports a web dyno's status, as its agent does.
func (e *env) dyno(appID string, index int, state, endpoint string) {
	e.t.Helper()
	id := "d" + strconv.Itoa(index)
	s := model.DynoStatus{
		ID: id, AppID: appID, Type: "web", Name: "web." + strconv.Itoa(index),
		State: state, Endpoint: endpoint, UpdatedAt: time.Now(),
	}
	if _, err := e.st.Statuses.Put(context.Background(), model.StatusKey(appID, id), s); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteDyno(appID string, index int) {
	e.t.Helper()
	if err := e.st.Statuses.Delete(context.Background(), model.StatusKey(appID, "d"+strconv.Itoa(index)), 0); err != nil {
		e.t.Fatal(err)
	}
}

var waitTableTimeout = 10 * time.Second

// waitTable waits, woken by the router's table swaps, until ok holds for
// the app called name (nil if it is not in the table).
func (e *env) waitTable(name string, ok func(a *app) bool) {
	e.t.Helper()
	deadline := time.After(waitTableTimeout)
	for {
		t := e.r.table.Load()
		if ok(t.apps[name]) {
			return
		}
		select {
		case <-t.changed:
		case <-deadline:
			e.t.Fatalf("route table for %s did not reach the expected state in %v: %+v", name, waitTableTimeout, t.apps[name])
		}
	}
}

// upCount is a waitTable condition: the app has n up dynos.
func upCount(n int) func(*app) bool {
	return func(a *app) bool { return a != nil && len(a.up) == n }
}

// get sends a request with the given Host through the router.
func (e *env) get(host, path string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	return e.do(http.MethodGet, host, path, hdr, nil)
}

func (e *env) do(method, host, path string, hdr http.Header, body io.Reader) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// frontPort is the port clients connect to.
func (e *env) frontPort() string {
	_, p, _ := net.SplitHostPort(e.front.Listener.Addr().String())
	return p
}

// dynoServer starts a dyno stand-in on 127.0.0.1:0 and returns its endpoint.
func dynoServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// says is a backend that answers its name.
func says(t *testing.T, name string) string {
	return dynoServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}

// refusedEndpoint is an address where nothing listens.
func refusedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// field returns the value of key=value in a router log message.
func field(msg, key string) string {
	for _, f := range strings.Fields(msg) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// startFront serves r through NewHTTPServer with cfg on a test server,
// over TLS with tlsOn, until the test ends.
func startFront(t testing.TB, r *Router, cfg ServerConfig, tlsOn bool) (*httptest.Server, *Server) {
	t.Helper()
	srv := NewHTTPServer(r, cfg)
	front := httptest.NewUnstartedServer(nil)
	front.Config = srv.Server
	front.Listener = sysListener{front.Listener} // as Server.Serve serves
	if tlsOn {
		front.Listener = tlsListener{front.Listener.(sysListener).Listener}
		front.StartTLS()
	} else {
		front.Start()
	}
	t.Cleanup(func() {
		front.Close()
		shutdown(t, srv)
	})
	return front, srv
}

// shutdown shuts srv down: httptest.Server.Close does not, and the edge
// loop's connections and handed-off server stop with it.
func shutdown(t testing.TB, srv *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shut the front server down: %v", err)
	}
}
