package logplex

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// drainEnv is a logplex with a running drain manager.
type drainEnv struct {
	st     *store.Store
	p      *Logplex
	drains *Drains
}

func newDrainEnv(t *testing.T, cfg DrainConfig) *drainEnv {
	t.Helper()
	st, _ := storetest.New(t)
	p, err := New(context.Background(), st.JetStream(), Config{History: 1500})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDrains(cfg, st.Conn(), st.Drains, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		d.Close()
		if err := <-done; err != nil {
			t.Errorf("Drains.Run: %v", err)
		}
	})
	return &drainEnv{st: st, p: p, drains: d}
}

// add stores a drain and waits until its forwarder runs.
func (e *drainEnv) add(t *testing.T, appID, url string) model.Drain {
	t.Helper()
	dr := model.Drain{ID: fmt.Sprintf("drain-%d", time.Now().UnixNano()), AppID: appID, URL: url, Token: "d.test-token"}
	if _, err := e.st.Drains.Create(context.Background(), model.DrainKey(appID, dr.ID), dr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.drains.Health(dr.ID); ok {
			return dr
		}
		if time.Now().After(deadline) {
			t.Fatal("the drain's forwarder did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishNumbered writes n numbered lines from web.1 as fast as Publish
// takes them and returns how long that and storing them took.
func publishNumbered(t *testing.T, p *Logplex, appID string, n int) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range n {
		p.Publish(appID, model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "line " + strconv.Itoa(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// syslogServer is a TCP (or TLS) syslog receiver parsing octet-counted
// frames; with stall set it accepts and never reads.
type syslogServer struct {
	ln     net.Listener
	frames chan string
	stall  bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startSyslog(t *testing.T, tlsConf *tls.Config, stall bool) *syslogServer {
	t.Helper()
	// A small receive buffer, so a stalled drain stalls at once rather
	// than after megabytes of kernel buffers.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if !stall {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s := &syslogServer{ln: ln, frames: make(chan string, 200000), stall: stall}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			if stall {
				continue
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.read(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *syslogServer) read(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		lenStr, err := r.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || n <= 0 || n > 1<<20 {
			s.frames <- "BAD FRAME LENGTH " + lenStr
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		s.frames <- string(buf)
	}
}

func (s *syslogServer) url(scheme string) string { return scheme + "://" + s.ln.Addr().String() }

// syslogMessage checks a frame's RFC 5424 header and returns its MSG.
func syslogMessage(t *testing.T, frame string) string {
	t.Helper()
	// <PRI>1 TIME TOKEN SOURCE DYNO - - MSG\n
	parts := strings.SplitN(strings.TrimSuffix(frame, "\n"), " ", 8)
	if len(parts) != 8 || parts[0] != "<190>1" || parts[2] != "d.test-token" || parts[3] != "app" || parts[4] != "web.1" || parts[5] != "-" || parts[6] != "-" || !strings.HasSuffix(frame, "\n") {
		t.Fatalf("frame %q is not logplex's syslog shape", frame)
	}
	if _, err := time.Parse(model.LogTimeFormat, parts[1]); err != nil {
		t.Fatalf("frame time %q: %v", parts[1], err)
	}
	return parts[7]
}

func TestSyslogDrainGetsEveryLineInOrder(t *testing.T) {
	const n = 100000
	// With the default bound, a publisher at ~100,000 lines/s loses
	// nothing to a drain that keeps up, and nothing is reordered.
	e := newDrainEnv(t, DrainConfig{})
	srv := startSyslog(t, nil, false)
	e.add(t, "app1", srv.url("syslog"))
	start := time.Now()
	pub := publishNumbered(t, e.p, "app1", n)
	timeout := time.After(60 * time.Second)
	for i := range n {
		select {
		case f := <-srv.frames:
			if got, want := syslogMessage(t, f), "line "+strconv.Itoa(i); got != want {
				t.Fatalf("frame %d has %q, want %q: lines lost or out of order", i, got, want)
			}
		case <-timeout:
			t.Fatalf("only %d of %d lines reached the drain", i, n)
		}
	}
	all := time.Since(start)
	t.Logf("%d lines: published and stored in %v (%.0f lines/s); all at the drain after %v (%.0f lines/s)",
		n, pub, float64(n)/pub.Seconds(), all, float64(n)/all.Seconds())
	if d := e.p.dropped.Load(); d != 0 {
		t.Fatalf("Publish dropped %d lines", d)
	}
	// History keeps the last 1,500 in order.
	hist, err := e.p.Recent(context.Background(), "app1", Filter{Dyno: "web"}, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1500 {
		t.Fatalf("history has %d lines, want 1500", len(hist))
	}
	for i, l := range hist {
		if want := "line " + strconv.Itoa(n-1500+i); l.Message != want {
			t.Fatalf("history line %d is %q, want %q", i, l.Message, want)
		}
	}
	h, _ := e.drains.Health(e.firstDrainID(t, "app1"))
	if h.Sent != n || h.Dropped != 0 || h.LastSuccess.IsZero() {
		t.Fatalf("health %+v, want %d sent, none dropped", h, n)
	}
}

func (e *drainEnv) firstDrainID(t *testing.T, appID string) string {
	t.Helper()
	l, err := e.st.Drains.List(context.Background(), appID+".>")
	if err != nil || len(l) == 0 {
		t.Fatalf("drains of %s: %v, %v", appID, l, err)
	}
	return l[0].Value.ID
}

func TestStalledDrainDoesNotSlowTheAppAndReportsL10(t *testing.T) {
	const n = 100000
	e := newDrainEnv(t, DrainConfig{ReportEvery: 50 * time.Millisecond, Buffer: 1024})
	base := publishNumbered(t, e.p, "nodrain", n)
	srv := startSyslog(t, nil, true)
	var (
		l10mu sync.Mutex
		l10   []string
	)
	// A core subscription sees every line; a JetStream reader this far
	// behind would find most of them gone from the 1,500-line history.
	sub, err := e.st.Conn().Subscribe(subject("app1"), func(m *nats.Msg) {
		var l model.LogLine
		if json.Unmarshal(m.Data, &l) == nil && l.Dyno == "logplex" {
			l10mu.Lock()
			l10 = append(l10, l.Message)
			l10mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()
	dr := e.add(t, "app1", srv.url("syslog"))
	stalled := publishNumbered(t, e.p, "app1", n)
	t.Logf("publishing %d lines: %v with no drain, %v with a stalled drain", n, base, stalled)
	if stalled > 3*base+2*time.Second {
		t.Fatalf("a stalled drain slowed publishing from %v to %v", base, stalled)
	}
	// The L10 lines, summed, count every dropped line.
	var total int64
	deadline := time.Now().Add(10 * time.Second)
	l10mu.Lock()
	for {
		h, _ := e.drains.Health(dr.ID)
		total = 0
		for _, l := range l10 {
			var k int64
			var since string
			if _, err := fmt.Sscanf(l, "Error L10 (output buffer overflow): %d messages dropped since %s", &k, &since); err != nil {
				t.Fatalf("unexpected logplex line %q", l)
			}
			total += k
		}
		l10mu.Unlock()
		if total == h.Dropped && total > n/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("L10 lines count %d dropped lines, health %d; want most of %d", total, h.Dropped, n)
		}
		time.Sleep(20 * time.Millisecond)
		l10mu.Lock()
	}
	t.Logf("dropped %d of %d lines for the stalled drain", total, n)
}

func TestHTTPSDrainFramesRetriesAndDrops(t *testing.T) {
	type post struct {
		header http.Header
		body   string
		user   string
		pass   string
	}
	posts := make(chan post, 10)
	statuses := []int{500, 200, 400, 200}
	var mu sync.Mutex
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u, p, _ := r.BasicAuth()
		mu.Lock()
		code := 200
		if len(statuses) > 0 {
			code, statuses = statuses[0], statuses[1:]
		}
		mu.Unlock()
		posts <- post{r.Header.Clone(), string(b), u, p}
		w.WriteHeader(code)
	}))
	t.Cleanup(hs.Close)
	e := newDrainEnv(t, DrainConfig{ExtraRoots: []*x509.Certificate{hs.Certificate()}, RetryMin: 10 * time.Millisecond})
	dr := e.add(t, "app1", strings.Replace(hs.URL, "https://", "https://user:s3cret@", 1)+"/logs")
	next := func() post {
		select {
		case p := <-posts:
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("no POST reached the drain")
			return post{}
		}
	}
	e.p.Publish("app1", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "first"})
	p1, p2 := next(), next()
	for _, p := range []post{p1, p2} {
		for k, want := range map[string]string{"Content-Type": "application/logplex-1", "Logplex-Msg-Count": "1", "Logplex-Drain-Token": "d.test-token"} {
			if got := p.header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if !strings.HasPrefix(p.header.Get("User-Agent"), "Logplex/") || p.user != "user" || p.pass != "s3cret" {
			t.Errorf("User-Agent %q, auth %q:%q", p.header.Get("User-Agent"), p.user, p.pass)
		}
		n, msg, _ := strings.Cut(p.body, " ")
		if strconv.Itoa(len(msg)) != n || !strings.HasPrefix(msg, "<190>1 ") || !strings.HasSuffix(msg, " host app web.1 - first") {
			t.Errorf("body %q is not one logplex-1 frame", p.body)
		}
	}
	if id := p1.header.Get("Logplex-Frame-Id"); id == "" || id != p2.header.Get("Logplex-Frame-Id") {
		t.Errorf("frame IDs %q then %q: a retry must resend the same", id, p2.header.Get("Logplex-Frame-Id"))
	}
	e.p.Publish("app1", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "refused"})
	p3 := next()
	e.p.Publish("app1", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "third"})
	p4 := next()
	if !strings.HasSuffix(p4.body, " - third") || p3.header.Get("Logplex-Frame-Id") == p4.header.Get("Logplex-Frame-Id") {
		t.Errorf("after a 400 the next POST is %q: the refused frame must be dropped, not retried", p4.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, _ := e.drains.Health(dr.ID)
		if h.Sent == 2 && h.Dropped == 1 && strings.Contains(h.LastError, "400") && !strings.Contains(h.LastError, "s3cret") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %+v, want 2 sent, 1 dropped, a 400 error without the password", h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyslogTLSDrain(t *testing.T) {
	hs := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	t.Cleanup(hs.Close)
	tests := []struct {
		name    string
		roots   []*x509.Certificate
		wantErr bool
	}{
		{"trusted", []*x509.Certificate{hs.Certificate()}, false},
		{"untrusted", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDrainEnv(t, DrainConfig{ExtraRoots: tc.roots, RetryMin: 20 * time.Millisecond})
			srv := startSyslog(t, &tls.Config{Certificates: hs.TLS.Certificates}, false)
			dr := e.add(t, "app1", srv.url("syslog+tls"))
			e.p.Publish("app1", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "over tls"})
			if tc.wantErr {
				deadline := time.Now().Add(5 * time.Second)
				for {
					if h, _ := e.drains.Health(dr.ID); strings.Contains(h.LastError, "certificate") {
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("an untrusted drain certificate was not refused")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			select {
			case f := <-srv.frames:
				if got := syslogMessage(t, f); got != "over tls" {
					t.Fatalf("got %q", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no frame over TLS")
			}
		})
	}
}

func TestParseDrainURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"syslog://logs.example.com:514", true},
		{"syslog+tls://logs.example.com:6514", true},
		{"https://user:pass@logs.example.com/drain?x=1", true},
		{"SYSLOG://127.0.0.1:514", true},
		{"syslog://logs.example.com", false},
		{"syslog://u:p@logs.example.com:514", false},
		{"syslog://logs.example.com:514/path", false},
		{"http://logs.example.com/", false},
		{"ftp://logs.example.com/", false},
		{"https:///nohost", false},
		{"not a url", false},
		{"https://logs.example.com:99999/", false},
	}
	for _, tc := range tests {
		_, err := ParseDrainURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("ParseDrainURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestSlowTailGetsL11AndOthersKeepUp(t *testing.T) {
	st, _ := storetest.New(t)
	p, err := New(context.Background(), st.JetStream(), Config{History: 1500, TailBuffer: 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 200
	release := make(chan struct{})
	slow := make(chan model.LogLine, 2*n)
	fast := make(chan model.LogLine, 2*n)
	var wg sync.WaitGroup
	tail := func(out chan model.LogLine, block bool) {
		defer wg.Done()
		_ = p.Tail(ctx, "a", Filter{}, 0, func(l model.LogLine) error {
			out <- l
			if block {
				<-release
			}
			return nil
		})
	}
	wg.Add(2)
	go tail(slow, true)
	go tail(fast, false)
	time.Sleep(200 * time.Millisecond) // both tails are following
	// In bursts of 10 the fast tail's buffer of 20 never fills; the stuck
	// tail's does.
	for i := range n {
		p.Publish("a", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: strconv.Itoa(i)})
		if i%10 == 9 {
			_ = p.Flush(ctx)
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := range n {
		select {
		case l := <-fast:
			if l.Message != strconv.Itoa(i) {
				t.Fatalf("fast tail line %d is %q", i, l.Message)
			}
		case <-ctx.Done():
			t.Fatalf("the fast tail got %d of %d lines while another tail was stuck", i, n)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the slow tail's buffer overflow
	close(release)
	var sawL11 bool
	for !sawL11 {
		select {
		case l := <-slow:
			sawL11 = strings.HasPrefix(l.Message, "Error L11 (Tail buffer overflow)") && l.Dyno == "logplex"
		case <-ctx.Done():
			t.Fatal("the slow tail never got L11")
		}
	}
	p.Publish("a", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "after"})
	for {
		select {
		case l := <-slow:
			if l.Message == "after" {
				cancel()
				wg.Wait()
				return
			}
		case <-ctx.Done():
			t.Fatal("the slow tail did not resume after L11")
		}
	}
}
