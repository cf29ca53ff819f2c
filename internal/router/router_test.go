package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

func TestRoutesByHost(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.app("other", "a2")
	e.dyno("a1", 1, model.StateUp, says(t, "hello-dyno"))
	e.dyno("a2", 1, model.StateUp, says(t, "other-dyno"))
	e.waitTable("hello", upCount(1))
	e.waitTable("other", upCount(1))

	tests := []struct {
		host       string
		wantStatus int
		wantBody   string
		wantApp    string // app the log line goes to; "" for none
	}{
		{"hello.localhost", 200, "hello-dyno", "a1"},
		{"hello.localhost:8080", 200, "hello-dyno", "a1"},
		{"HELLO.LocalHost", 200, "hello-dyno", "a1"},
		{"hello.localhost.", 200, "hello-dyno", "a1"},
		{"other.localhost", 200, "other-dyno", "a2"},
		{"nope.localhost", 404, "There's nothing here", ""},
		{"localhost", 404, "There's nothing here", ""},
		{"x.hello.localhost", 404, "There's nothing here", ""},
		{"hello.example.com", 404, "There's nothing here", ""},
		{"127.0.0.1", 404, "There's nothing here", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			resp, body := e.get(tt.host, "/", nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("Host %s: %d %q, want %d %q", tt.host, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantApp != "" {
				if l := e.logs.next(t); l.appID != tt.wantApp {
					t.Fatalf("log line went to app %s, want %s", l.appID, tt.wantApp)
				}
			}
		})
	}
	select {
	case l := <-e.logs.ch:
		t.Fatalf("unexpected log line for an unknown app: %+v", l)
	default:
	}
}

func TestSpreadsAcrossUpDynos(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	for i := 1; i <= 3; i++ {
		e.dyno("a1", i, model.StateUp, says(t, fmt.Sprintf("web.%d", i)))
	}
	e.dyno("a1", 4, model.StateStarting, "")
	e.waitTable("hello", upCount(3))
	seen := map[string]int{}
	for range 60 {
		_, body := e.get("hello.localhost", "/", nil)
		seen[body]++
		if l := e.logs.next(t); field(l.line.Message, "dyno") != body {
			t.Fatalf("log says dyno=%s, %s answered", field(l.line.Message, "dyno"), body)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("answers by dyno = %v, want all 3 up dynos", seen)
	}
}

func TestNoUpDyno(t *testing.T) {
	tests := []struct {
		name   string
		states []string
		code   string
		desc   string
	}{
		{"no web dynos", nil, "H14", "No web processes running"},
		{"only down", []string{model.StateDown}, "H14", "No web processes running"},
		{"only crashed", []string{model.StateCrashed, model.StateCrashed}, "H10", "App crashed"},
		{"only starting", []string{model.StateStarting, model.StateCrashed}, "H20", "App boot timeout"},
	}
	const wait = 300 * time.Millisecond
	e := newEnv(t, Config{StartingWait: wait})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("app%d", i)
			name := fmt.Sprintf("app-%d", i)
			e.app(name, id)
			for j, s := range tt.states {
				e.dyno(id, j+1, s, "")
			}
			e.waitTable(name, func(a *app) bool {
				return a != nil && a.starting+a.crashed == len(tt.states)-count(tt.states, model.StateDown)
			})
			start := time.Now()
			resp, body := e.get(name+".localhost", "/", nil)
			if resp.StatusCode != 503 || !strings.Contains(body, "Application Error") {
				t.Fatalf("got %d %q, want 503 and the Application Error page", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("error page without X-Request-Id")
			}
			waited := time.Since(start)
			if tt.code == "H20" && waited < wait {
				t.Errorf("H20 after %v, want after the %v starting wait", waited, wait)
			}
			if tt.code != "H20" && waited > wait {
				t.Errorf("%s took %v: it must not wait", tt.code, waited)
			}
			l := e.logs.next(t)
			want := fmt.Sprintf(`at=error code=%s desc="%s" method=GET path="/" host=%s.localhost request_id=%s fwd="127.0.0.1" dyno= connect= service= status=503 bytes= protocol=http`,
				tt.code, tt.desc, name, resp.Header.Get("X-Request-Id"))
			if l.line.Message != want || l.appID != id {
				t.Fatalf("log line for %s:\n got %s\nwant %s", l.appID, l.line.Message, want)
			}
		})
	}
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func TestStartingDynoBecomesUpDuringWait(t *testing.T) {
	e := newEnv(t, Config{StartingWait: 10 * time.Second})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateStarting, "")
	e.waitTable("hello", func(a *app) bool { return a != nil && a.starting == 1 })

	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.front.URL, nil)
		req.Host = "hello.localhost"
		resp, err := e.client.Do(req)
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b)}
	}()
	// Make the dyno up only once the request waits for it.
	for deadline := time.Now().Add(5 * time.Second); e.r.waiting.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("request never started waiting for the starting dyno")
		}
	}
	start := time.Now()
	e.dyno("a1", 1, model.StateUp, says(t, "booted"))
	select {
	case r := <-done:
		if r.status != 200 || r.body != "booted" {
			t.Fatalf("got %d %q, want 200 booted", r.status, r.body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("request answered %v after the dyno came up: waiters must be woken by the table change", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still waiting 5 s after the dyno came up")
	}
	if l := e.logs.next(t); field(l.line.Message, "status") != "200" || field(l.line.Message, "dyno") != "web.1" {
		t.Fatalf("log line %q", l.line.Message)
	}
}

func TestFirstByteTimeout(t *testing.T) {
	e := newEnv(t, Config{FirstByteTimeout: 200 * time.Millisecond})
	release := make(chan struct{})
	finished := make(chan bool, 1)
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(400 * time.Millisecond): // the dyno keeps working past the timeout
		}
		finished <- true
		io.WriteString(w, "late")
	})
	t.Cleanup(func() { close(release) })
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))

	resp, body := e.get("hello.localhost", "/slow", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "Application Error") {
		t.Fatalf("got %d %q, want 503 Application Error", resp.StatusCode, body)
	}
	l := e.logs.next(t)
	re := regexp.MustCompile(`^at=error code=H12 desc="Request timeout" method=GET path="/slow" host=hello.localhost request_id=\S+ fwd="127.0.0.1" dyno=web.1 connect=\d+ms service=(\d+)ms status=503 bytes=0 protocol=http$`)
	m := re.FindStringSubmatch(l.line.Message)
	if m == nil {
		t.Fatalf("log line %q does not match %s", l.line.Message, re)
	}
	if ms, _ := strconv.Atoi(m[1]); ms < 200 {
		t.Fatalf("service=%sms, want at least the 200ms first-byte timeout", m[1])
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the dyno's handler never finished")
	}
}

func TestRetriesRefusedConnection(t *testing.T) {
	e := newEnv(t, Config{})
	got := make(chan string, 100)
	good := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		io.WriteString(w, "good")
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, refusedEndpoint(t))
	e.dyno("a1", 2, model.StateUp, good)
	e.waitTable("hello", upCount(2))
	for i := range 20 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", fmt.Sprintf("payload %d", i) // an unread body may be retried too
		}
		resp, rbody := e.do(method, "hello.localhost", "/", nil, strings.NewReader(body))
		if resp.StatusCode != 200 || rbody != "good" {
			t.Fatalf("request %d: %d %q, want 200 good", i, resp.StatusCode, rbody)
		}
		if b := <-got; b != body {
			t.Fatalf("request %d: dyno got body %q, want %q", i, b, body)
		}
		if l := e.logs.next(t); field(l.line.Message, "dyno") != "web.2" || !strings.HasPrefix(l.line.Message, "at=info") {
			t.Fatalf("log line %q, want at=info ... dyno=web.2", l.line.Message)
		}
	}
}

func TestAllDynosRefuse(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, refusedEndpoint(t))
	e.dyno("a1", 2, model.StateUp, refusedEndpoint(t))
	e.waitTable("hello", upCount(2))
	resp, body := e.get("hello.localhost", "/", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "Application Error") {
		t.Fatalf("got %d %q, want 503 Application Error", resp.StatusCode, body)
	}
	l := e.logs.next(t)
	re := regexp.MustCompile(`^at=error code=H21 desc="Backend connection refused" method=GET path="/" host=hello.localhost request_id=\S+ fwd="127.0.0.1" dyno=web.[12] connect=\d+ms service= status=503 bytes= protocol=http$`)
	if !re.MatchString(l.line.Message) {
		t.Fatalf("log line %q does not match %s", l.line.Message, re)
	}
}

func TestAppErrorsPassThrough(t *testing.T) {
	e := newEnv(t, Config{})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "yes")
		w.WriteHeader(500)
		io.WriteString(w, "boom")
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))
	resp, body := e.get("hello.localhost", "/", nil)
	if resp.StatusCode != 500 || body != "boom" || resp.Header.Get("X-App") != "yes" {
		t.Fatalf("got %d %q %v, want the app's own 500 boom", resp.StatusCode, body, resp.Header)
	}
	if l := e.logs.next(t); !strings.HasPrefix(l.line.Message, "at=info") || field(l.line.Message, "status") != "500" || field(l.line.Message, "bytes") != "4" {
		t.Fatalf("log line %q, want at=info status=500 bytes=4", l.line.Message)
	}
}

func TestHeadersToDyno(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	e := newEnv(t, Config{Now: func() time.Time { return now }})
	ep := dynoServer(t, func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Host", r.Host)
		json.NewEncoder(w).Encode(r.Header)
	})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, ep)
	e.waitTable("hello", upCount(1))

	long := strings.Repeat("a", 201)
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		name   string
		in     http.Header
		wantID string // "" means a generated UUID
		xff    string
	}{
		{"passes a valid id", http.Header{"X-Request-Id": {"abc-123_XYZ+/="}}, "abc-123_XYZ+/=", "127.0.0.1"},
		{"200 chars is valid", http.Header{"X-Request-Id": {long[:200]}}, long[:200], "127.0.0.1"},
		{"replaces a long id", http.Header{"X-Request-Id": {long}}, "", "127.0.0.1"},
		{"replaces a bad id", http.Header{"X-Request-Id": {"no spaces allowed"}}, "", "127.0.0.1"},
		{"makes one", nil, "", "127.0.0.1"},
		{"appends to X-Forwarded-For", http.Header{"X-Forwarded-For": {"1.2.3.4, 5.6.7.8"}}, "", "1.2.3.4, 5.6.7.8, 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			if in == nil {
				in = http.Header{}
			}
			in.Set("X-Forwarded-Proto", "https") // a client cannot claim TLS
			in.Set("Connection", "X-Secret")
			in.Set("X-Secret", "hop-by-hop")
			resp, body := e.get("Hello.localhost:"+e.frontPort(), "/", in)
			var got http.Header
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%d %q: %v", resp.StatusCode, body, err)
			}
			id := got.Get("X-Request-Id")
			if tt.wantID != "" && id != tt.wantID || tt.wantID == "" && !uuidRE.MatchString(id) {
				t.Errorf("X-Request-Id = %q, want %q (or a new UUID)", id, tt.wantID)
			}
			if echo := resp.Header.Get("X-Request-Id"); echo != id {
				t.Errorf("response X-Request-Id = %q, want the dyno's %q", echo, id)
			}
			want := map[string]string{
				"X-Forwarded-For":   tt.xff,
				"X-Forwarded-Proto": "http",
				"X-Forwarded-Port":  e.frontPort(),
				"X-Request-Start":   strconv.FormatInt(now.UnixMilli(), 10),
				"Via":               "1.1 dyno",
				"Host":              "Hello.localhost:" + e.frontPort(),
				"X-Secret":          "",
			}
			for k, v := range want {
				if g := strings.Join(got.Values(k), ","); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			l := e.logs.next(t)
			if field(l.line.Message, "request_id") != id {
				t.Errorf("log request_id=%s, want %s", field(l.line.Message, "request_id"), id)
			}
		})
	}
}

func TestLogLineFormat(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	e := newEnv(t, Config{Now: func() time.Time { return now }})
	e.app("hello", "a1")
	e.app("empty", "a2")
	e.app("refused", "a3")
	e.dyno("a1", 1, model.StateUp, says(t, "hello"))
	e.dyno("a3", 1, model.StateUp, refusedEndpoint(t))
	e.waitTable("hello", upCount(1))
	e.waitTable("refused", upCount(1))
	e.waitTable("empty", func(a *app) bool { return a != nil })

	tests := []struct {
		host, path, id string
		want           string
	}{
		{"hello.localhost", "/hi?x=1", "req-1",
			`at=info method=GET path="/hi?x=1" host=hello.localhost request_id=req-1 fwd="127.0.0.1" dyno=web.1 connect=0ms service=0ms status=200 bytes=5 protocol=http`},
		{"empty.localhost:5000", "/", "req-2",
			`at=error code=H14 desc="No web processes running" method=GET path="/" host=empty.localhost request_id=req-2 fwd="127.0.0.1" dyno= connect= service= status=503 bytes= protocol=http`},
		{"refused.localhost", "/q%22uote", "req-3",
			`at=error code=H21 desc="Backend connection refused" method=GET path="/q%22uote" host=refused.localhost request_id=req-3 fwd="127.0.0.1" dyno=web.1 connect=0ms service= status=503 bytes= protocol=http`},
	}
	for _, tt := range tests {
		e.get(tt.host, tt.path, http.Header{"X-Request-Id": {tt.id}})
		l := e.logs.next(t)
		if l.line.Message != tt.want {
			t.Errorf("log line:\n got %s\nwant %s", l.line.Message, tt.want)
		}
		if l.line.Source != "heroku" || l.line.Dyno != "router" || !l.line.Time.Equal(now) {
			t.Errorf("log line header %+v, want heroku[router] at %v", l.line, now)
		}
	}
}

func TestRouteChangesFollowWatch(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.waitTable("hello", func(a *app) bool { return a != nil })
	steps := []struct {
		name   string
		change func()
		ready  func(*app) bool
		status int
		code   string
	}{
		{"no dynos", func() {}, func(a *app) bool { return a != nil }, 503, "H14"},
		{"dyno up", func() { e.dyno("a1", 1, model.StateUp, says(t, "v1")) }, upCount(1), 200, ""},
		{"second dyno up", func() { e.dyno("a1", 2, model.StateUp, says(t, "v1")) }, upCount(2), 200, ""},
		{"crash both", func() { e.dyno("a1", 1, model.StateCrashed, ""); e.dyno("a1", 2, model.StateCrashed, "") },
			func(a *app) bool { return a != nil && a.crashed == 2 }, 503, "H10"},
		{"statuses deleted", func() { e.deleteDyno("a1", 1); e.deleteDyno("a1", 2) },
			func(a *app) bool { return a != nil && a.crashed == 0 }, 503, "H14"},
		{"app renamed", func() {
			e.app("renamed", "a1")
			if err := e.st.AppNames.Delete(context.Background(), "hello", 0); err != nil {
				t.Fatal(err)
			}
		}, func(a *app) bool { return a == nil }, 404, ""},
	}
	for _, s := range steps {
		s.change()
		e.waitTable("hello", s.ready)
		resp, _ := e.get("hello.localhost", "/", nil)
		if resp.StatusCode != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, resp.StatusCode, s.status)
		}
		if s.status == 404 {
			continue
		}
		if l := e.logs.next(t); field(l.line.Message, "code") != s.code {
			t.Fatalf("%s: log line %q, want code=%s", s.name, l.line.Message, s.code)
		}
	}
}

func TestKeepsTableWhileStoreIsDown(t *testing.T) {
	e := newEnv(t, Config{})
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, says(t, "hello"))
	e.waitTable("hello", upCount(1))
	e.srv.Shutdown()
	for range 3 {
		if resp, body := e.get("hello.localhost", "/", nil); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("with the store down: %d %q, want the last known route", resp.StatusCode, body)
		}
		e.logs.next(t)
	}
}

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name       string
		err        error
		clientGone bool
		want       *hcode
	}{
		{"refused", &dialError{"x", refused}, false, errH21},
		{"dial timeout", &dialError{"x", context.DeadlineExceeded}, false, errH19},
		{"unreachable", &dialError{"x", errors.New("no route to host")}, false, errH19},
		{"first byte timeout", timeoutErr{}, false, errH12},
		{"closed", io.EOF, false, errH13},
		{"wrapped closed", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), false, errH13},
		{"client canceled", context.Canceled, false, errH27},
		{"client gone first", io.EOF, true, errH27},
	}
	for _, tt := range tests {
		if got := classify(tt.err, tt.clientGone); got != tt.want {
			t.Errorf("%s: classify(%v) = %s, want %s", tt.name, tt.err, got.code, tt.want.code)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestAppName(t *testing.T) {
	r := New(Config{Domain: "Apps.Example.COM."}, nil)
	tests := []struct {
		hostport, host, name string
		ok                   bool
	}{
		{"hello.apps.example.com", "hello.apps.example.com", "hello", true},
		{"HeLLo.APPS.example.com:443", "HeLLo.APPS.example.com", "hello", true},
		{"hello.apps.example.com.:80", "hello.apps.example.com.", "hello", true},
		{"apps.example.com", "apps.example.com", "", false},
		{".apps.example.com", ".apps.example.com", "", false},
		{"a.b.apps.example.com", "a.b.apps.example.com", "", false},
		{"hello.example.com", "hello.example.com", "", false},
		{"[::1]:80", "[::1]", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		host, name, ok := r.appName(tt.hostport)
		if host != tt.host || name != tt.name || ok != tt.ok {
			t.Errorf("appName(%q) = %q, %q, %v; want %q, %q, %v", tt.hostport, host, name, ok, tt.host, tt.name, tt.ok)
		}
	}
}

func TestRequestIDs(t *testing.T) {
	tests := []struct {
		id    string
		valid bool
	}{
		{"8601b555-6a83-4c12-8269-97c8e32cdb22", true},
		{"a", true},
		{"A+/=-_z9", true},
		{strings.Repeat("x", 200), true},
		{strings.Repeat("x", 201), false},
		{"", false},
		{"has space", false},
		{"semi;colon", false},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		if got := validRequestID(tt.id); got != tt.valid {
			t.Errorf("validRequestID(%q) = %v, want %v", tt.id, got, tt.valid)
		}
	}
	seen := map[string]bool{}
	var ids requestIDs
	ids.init()
	for range 100 {
		id := ids.next()
		if seen[id] || !validRequestID(id) || len(id) != 36 {
			t.Fatalf("newRequestID() = %q: repeated or invalid", id)
		}
		seen[id] = true
	}
}

func TestFollowsStoreRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := store.StartServer(store.ServerConfig{Dir: dir, Listen: "127.0.0.1:0", User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.ClientURL(), "nats://")
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{}, st)
	startRouter(t, r)
	e := &env{t: t, st: st, r: r, logs: &testLogs{ch: make(chan logEntry, 100)}}
	e.app("hello", "a1")
	e.dyno("a1", 1, model.StateUp, says(t, "one"))
	e.waitTable("hello", upCount(1))

	srv.Shutdown()
	if got := r.table.Load().apps["hello"]; got == nil || len(got.up) != 1 {
		t.Fatalf("route table lost with the store down: %+v", got)
	}
	srv, err = store.StartServer(store.ServerConfig{Dir: dir, Listen: addr, User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// The store is back: a change made now must reach the table.
	for {
		_, err := st.Statuses.Put(ctx, model.StatusKey("a1", "d2"), model.DynoStatus{
			ID: "d2", AppID: "a1", Type: "web", Name: "web.2", State: model.StateUp, Endpoint: says(t, "two"),
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("store did not come back: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the client reconnects every 250 ms
	}
	e.waitTable("hello", upCount(2))
}
