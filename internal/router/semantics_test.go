package router

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// release writes app id's record at version with config, as the API does.
func (e *env) release(id string, version int, maintenance, slug bool, config map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	if version > 0 {
		r := model.Release{ID: fmt.Sprintf("r%d", version), AppID: id, Version: version, Config: config}
		if slug {
			r.Slug = &model.Slug{ID: "s1"}
		}
		if _, err := e.st.Releases.Put(ctx, model.ReleaseKey(id, version), r); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.st.Apps.Put(ctx, id, model.App{ID: id, Maintenance: maintenance, ReleaseVersion: version}); err != nil {
		e.t.Fatal(err)
	}
}

func TestPolicyFromConfigVar(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	for i := 1; i <= 3; i++ {
		e.dyno("a1", i, model.StateUp, says(t, fmt.Sprintf("web.%d", i)))
	}
	tests := []struct {
		value string
		want  policy
	}{
		{"round-robin", policyRoundRobin},
		{"random", policyRandom},
		{"", policyP2C},
		{"nonsense", policyP2C},
	}
	for v, tt := range tests {
		e.release("a1", v+1, false, true, map[string]string{PolicyVar: tt.value})
		e.waitTable("hello", func(a *app) bool { return a != nil && len(a.up) == 3 && a.policy == tt.want })
	}
	// Round-robin visits every dyno in turn.
	e.release("a1", 9, false, true, map[string]string{PolicyVar: "round-robin"})
	e.waitTable("hello", func(a *app) bool { return a != nil && len(a.up) == 3 && a.policy == policyRoundRobin })
	var got []string
	for range 6 {
		_, body := e.get("hello.localhost", "/", nil)
		got = append(got, body)
		e.logs.next(t)
	}
	for i := 3; i < 6; i++ {
		if got[i] != got[i-3] || got[i] == got[i-1] {
			t.Fatalf("round-robin order %v, want a repeating cycle of the 3 dynos", got)
		}
	}
}

func TestLeastOutstandingAvoidsBusyDyno(t *testing.T) {
	e := newEnv(t, Config{})
	block := make(chan struct{})
	arrived := make(chan struct{}, 10)
	busy := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-block
		io.WriteString(w, "busy")
	})
	t.Cleanup(func() { close(block) })
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, busy)
	e.waitTable("hello", upCount(1))
	// Three requests stuck on web.1, then web.2 comes up.
	for range 3 {
		go func() {
			req, _ := http.NewRequest("GET", e.front.URL, nil)
			req.Host = "hello.localhost"
			if resp, err := e.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	for range 3 {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("requests did not reach the busy dyno")
		}
	}
	e.dyno("a1", 2, model.StateUp, says(t, "idle"))
	e.waitTable("hello", upCount(2))
	for i := range 20 {
		if _, body := e.get("hello.localhost", "/", nil); body != "idle" {
			t.Fatalf("request %d went to %q: least-outstanding must prefer the idle dyno", i, body)
		}
	}
}

func TestQuarantineThenH99(t *testing.T) {
	e := newEnv(t, Config{Quarantine: 150 * time.Millisecond, ConnectWait: 400 * time.Millisecond})
	ep := refusedEndpoint(t)
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))

	resp, _ := e.get("hello.localhost", "/", nil)
	if l := e.logs.next(t); resp.StatusCode != 503 || field(l.line.Message, "code") != "H21" {
		t.Fatalf("first request: %d %q, want 503 H21", resp.StatusCode, l.line.Message)
	}
	// Now quarantined: the next request waits, retries, and gives up with H99.
	start := time.Now()
	resp, _ = e.get("hello.localhost", "/", nil)
	if l := e.logs.next(t); resp.StatusCode != 503 || field(l.line.Message, "code") != "H99" {
		t.Fatalf("while quarantined: %d %q, want 503 H99", resp.StatusCode, l.line.Message)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("H99 after %v, want after the 400ms connect wait", d)
	}

	// A dyno that comes back during the wait serves the waiting request.
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.front.URL, nil)
		req.Host = "hello.localhost"
		resp, err := e.client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(50 * time.Millisecond)
	ln, err := net.Listen("tcp", ep)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", ep, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "back") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if got := <-done; got != 200 {
		t.Fatalf("request waiting on the quarantine got %d, want 200 from the dyno that came back", got)
	}
}

func TestAdmissionCodes(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("maint", "a1")
	e.app("blank", "a2")
	e.app("config-only", "a3")
	e.dyno("a1", 1, model.StateUp, says(t, "x"))
	e.release("a1", 1, true, true, nil)
	e.release("a2", 0, false, false, nil)
	e.release("a3", 1, false, false, map[string]string{"K": "V"})
	e.waitTable("maint", func(a *app) bool { return a != nil && a.maintenance })
	e.waitTable("blank", func(a *app) bool { return a != nil && a.blank })
	e.waitTable("config-only", func(a *app) bool { return a != nil && a.blank })
	long := strings.Repeat("x", 8200)
	tests := []struct {
		name, host string
		hdr        http.Header
		status     int
		page       string
		line       string // prefix of the log line
		cause      string
	}{
		{"maintenance", "maint.localhost", nil, 503, "Offline for Maintenance", `at=info code=H80 desc="Maintenance mode"`, ""},
		{"blank", "blank.localhost", nil, 503, "Welcome to your new app", `at=info code=H81 desc="Blank app"`, ""},
		{"no slug", "config-only.localhost", nil, 503, "Welcome to your new app", `at=info code=H81 desc="Blank app"`, ""},
		{"long header", "maint.localhost", http.Header{"X-Long": {long}}, 400, "Bad Request", `at=error code=H26 desc="Request Error"`, `"header line too long"`},
		{"long name", "maint.localhost", http.Header{strings.Repeat("N", 1001): {"v"}}, 400, "Bad Request", `at=error code=H26`, `"header name too long"`},
		{"too many headers", "maint.localhost", manyHeaders(1001), 400, "Bad Request", `at=error code=H26`, `"too many headers"`},
		{"long request line", "maint.localhost/" + long, nil, 400, "Bad Request", `at=error code=H26`, `"request line too long"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, path, _ := strings.Cut(tt.host, "/")
			resp, body := e.get(host, "/"+path, tt.hdr)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.page) {
				t.Fatalf("got %d %.80q, want %d %q", resp.StatusCode, body, tt.status, tt.page)
			}
			l := e.logs.next(t)
			if !strings.HasPrefix(l.line.Message, tt.line) || tt.cause != "" && !strings.Contains(l.line.Message, " cause="+tt.cause+" ") {
				t.Fatalf("log line %.300q, want prefix %q and cause=%s", l.line.Message, tt.line, tt.cause)
			}
		})
	}
}

func manyHeaders(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	return h
}

func TestBacklogTooDeep(t *testing.T) {
	e := newEnv(t, Config{BacklogPerDyno: 2})
	block := make(chan struct{})
	arrived := make(chan struct{}, 10)
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) { arrived <- struct{}{}; <-block })
	t.Cleanup(func() { close(block) })
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	for range 2 {
		go func() {
			req, _ := http.NewRequest("GET", e.front.URL, nil)
			req.Host = "hello.localhost"
			if resp, err := e.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		<-arrived
	}
	start := time.Now()
	resp, _ := e.get("hello.localhost", "/", nil)
	if resp.StatusCode != 503 || time.Since(start) > time.Second {
		t.Fatalf("third request: %d after %v, want an immediate 503", resp.StatusCode, time.Since(start))
	}
	if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, `at=error code=H11 desc="Backlog too deep"`) {
		t.Fatalf("log line %q, want H11", l.line.Message)
	}
}

// rawDyno serves each connection with a canned response.
func rawDyno(t *testing.T, response string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, response)
				time.Sleep(2 * time.Second) // hold the connection open
			}()
		}
	}()
	return ln.Addr().String()
}

func TestResponseRestrictions(t *testing.T) {
	e := newEnv(t, Config{IdleTimeout: 300 * time.Millisecond})
	tests := []struct {
		name, response string
		status         int
		code, desc     string
	}{
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", 502, "H25", "HTTP restriction: invalid status line"},
		{"big cookie", "HTTP/1.1 200 OK\r\nSet-Cookie: a=" + strings.Repeat("c", 8200) + "\r\nContent-Length: 2\r\n\r\nok", 502, "H25", "HTTP restriction: oversized cookie"},
		{"idle dyno", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart", 200, "H15", "Idle connection"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, id := fmt.Sprintf("app%d", i), fmt.Sprintf("id%d", i)
			e.app(name, id)
			e.dyno(id, 1, model.StateUp, rawDyno(t, tt.response))
			e.waitTable(name, upCount(1))
			req, _ := http.NewRequest("GET", e.front.URL, nil)
			req.Host = name + ".localhost"
			resp, err := e.client.Do(req)
			if err != nil {
				// A dyno that idles mid-body: the router had buffered the
				// start of the response, so the client only sees it end.
				if tt.code != "H15" {
					t.Fatal(err)
				}
				resp = &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(""))}
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			want := fmt.Sprintf(`code=%s desc="%s"`, tt.code, tt.desc)
			if l := e.logs.next(t); !strings.Contains(l.line.Message, want) {
				t.Fatalf("log line %q, want %s", l.line.Message, want)
			}
		})
	}
}

func TestClientIdleBody(t *testing.T) {
	e := newEnv(t, Config{IdleTimeout: 200 * time.Millisecond})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	c, err := net.Dial("tcp", e.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: hello.localhost\r\nContent-Length: 100\r\n\r\nonly some")
	if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, `at=warning code=H28 desc="Client Connection Idle"`) || field(l.line.Message, "status") != "499" {
		t.Fatalf("log line %q, want H28 status=499", l.line.Message)
	}
}

func TestConnectionLimitAndServerLimits(t *testing.T) {
	st, _ := newStore(t)
	logs := &testLogs{ch: make(chan logEntry, 100)}
	r := New(Config{Logs: logs, MaxAppConns: 1}, st)
	startRouter(t, r)
	front, _ := startFront(t, r, ServerConfig{HeaderTimeout: 200 * time.Millisecond}, false)
	e := &env{t: t, st: st, r: r, logs: logs}
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, says(t, "hi"))
	e.waitTable("hello", upCount(1))

	send := func(c net.Conn) int {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	c1, _ := net.Dial("tcp", front.Listener.Addr().String())
	defer c1.Close()
	if got := send(c1); got != 200 {
		t.Fatalf("first connection: %d", got)
	}
	logs.next(t)
	c2, _ := net.Dial("tcp", front.Listener.Addr().String())
	defer c2.Close()
	if got := send(c2); got != 503 {
		t.Fatalf("second connection over the limit of 1: %d, want 503", got)
	}
	if l := logs.next(t); field(l.line.Message, "code") != "H22" {
		t.Fatalf("log line %q, want H22", l.line.Message)
	}
	if got := send(c1); got != 200 {
		t.Fatalf("first connection again: %d, want 200", got)
	}
	logs.next(t)

	// Slowloris: a head that never ends is dropped after HeaderTimeout.
	c3, _ := net.Dial("tcp", front.Listener.Addr().String())
	defer c3.Close()
	io.WriteString(c3, "GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Slow: ")
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.Copy(io.Discard, c3)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow header kept open %v, want closed after the 200ms header timeout", d)
	}

	// Metrics show what happened.
	rec := httptest.NewRecorder()
	r.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`dyno_router_requests_total{app="hello",status="200",code=""} 2`,
		`dyno_router_requests_total{app="hello",status="503",code="H22"} 1`,
		`dyno_router_request_duration_seconds_count{app="hello"} 3`,
		`dyno_router_requests_in_flight{app="hello"} 0`,
		`dyno_router_app_connections{app="hello"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, rec.Body.String())
		}
	}
}

// TestDrainsLeavingDyno: a dyno whose status leaves up gets no new
// requests, finishes the ones it has, and its idle connections close.
func TestDrainsLeavingDyno(t *testing.T) {
	e := newEnv(t, Config{})
	release := make(chan struct{})
	var mu sync.Mutex
	open := 0
	s1 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "one")
	}))
	s1.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open++
		case http.StateClosed:
			open--
		}
	}
	s1.Start()
	t.Cleanup(s1.Close)
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, s1.Listener.Addr().String())
	e.waitTable("hello", upCount(1))
	for range 3 {
		e.get("hello.localhost", "/", nil)
		e.logs.next(t)
	}
	slow := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.front.URL+"/slow", nil)
		req.Host = "hello.localhost"
		resp, err := e.client.Do(req)
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	e.dyno("a1", 2, model.StateUp, says(t, "two"))
	e.dyno("a1", 1, model.StateDown, "")
	e.waitTable("hello", func(a *app) bool { return a != nil && len(a.up) == 1 && a.up[0].name == "web.2" })
	for range 5 {
		if _, body := e.get("hello.localhost", "/", nil); body != "two" {
			t.Fatalf("request after web.1 went down answered by %q", body)
		}
		e.logs.next(t)
	}
	close(release)
	if got := <-slow; got != "one" {
		t.Fatalf("in-flight request on the leaving dyno: %q, want it finished", got)
	}
	e.logs.next(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := open
		mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the leaving dyno still open", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoutePropagation measures the time from a status write to the
// router routing to the new dyno.
func TestRoutePropagation(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, says(t, "v0"))
	e.waitTable("hello", upCount(1))
	var took []time.Duration
	for i := 1; i <= 10; i++ {
		ep := says(t, fmt.Sprintf("v%d", i))
		start := time.Now()
		e.dyno("a1", 1, model.StateUp, ep)
		for {
			_, body := e.get("hello.localhost", "/", nil)
			e.logs.next(t)
			if body == fmt.Sprintf("v%d", i) {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("change %d not routed after 5 s", i)
			}
		}
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("route propagation (status write → routed), 10 changes: median %v, max %v", took[5], took[9])
	if took[5] > 100*time.Millisecond {
		t.Errorf("median propagation %v, want under 100 ms", took[5])
	}
}
