package logplex

import (
	"context"
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
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/model"
)

// parseLogplex1 splits a logplex-1 body into its frames' messages: each
// frame is "LEN <PRI>1 TIME host SOURCE DYNO - MSG".
func parseLogplex1(body string) ([]string, error) {
	var msgs []string
	for body != "" {
		lenStr, rest, ok := strings.Cut(body, " ")
		n, err := strconv.Atoi(lenStr)
		if !ok || err != nil || n <= 0 || n > len(rest) {
			return nil, fmt.Errorf("bad frame length at %.40q", body)
		}
		frame := rest[:n]
		body = rest[n:]
		parts := strings.SplitN(frame, " ", 7)
		appLine := len(parts) == 7 && parts[0] == "<190>1" && parts[3] == "app" && parts[4] == "web.1"
		overflow := len(parts) == 7 && parts[3] == "heroku" && parts[4] == "logplex" && strings.HasPrefix(parts[6], "Error L10 ")
		if !appLine && !overflow || parts[2] != "host" || parts[5] != "-" {
			return nil, fmt.Errorf("frame %q is not logplex-1's shape", frame)
		}
		msgs = append(msgs, parts[6])
	}
	return msgs, nil
}

// TestHTTPSDrainGetsEveryLineInOrder: 100,000 lines published as fast as
// possible reach an HTTPS drain in order, none lost, with the default
// buffer; afterwards the history holds exactly the last 1,500, in order.
func TestHTTPSDrainGetsEveryLineInOrder(t *testing.T) {
	const n = 100000
	msgs := make(chan string, n+1000)
	var (
		mu       sync.Mutex
		badPosts []string
		posts    int
	)
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, err := parseLogplex1(string(b))
		mu.Lock()
		posts++
		if err != nil {
			badPosts = append(badPosts, err.Error())
		} else if c := r.Header.Get("Logplex-Msg-Count"); c != strconv.Itoa(len(got)) {
			badPosts = append(badPosts, fmt.Sprintf("Logplex-Msg-Count %s for %d frames", c, len(got)))
		}
		mu.Unlock()
		for _, m := range got {
			msgs <- m
		}
	}))
	t.Cleanup(hs.Close)
	e := newDrainEnv(t, DrainConfig{ExtraRoots: []*x509.Certificate{hs.Certificate()}})
	dr := e.add(t, "app1", hs.URL+"/logs")
	start := time.Now()
	pub := publishNumbered(t, e.p, "app1", n)
	// In order, never twice. On a machine too loaded for the drain to keep
	// up, lines beyond the buffer are dropped by design (the newest, so
	// possibly the last ones): then every line that did not arrive must be
	// counted as dropped, reported as L10 once a second. The wait ends when
	// the drain has accounted for all n lines.
	timeout := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	next, got := 0, 0
	var h model.DrainHealth
	for done := false; !done; {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, "Error L10") {
				continue
			}
			k, err := strconv.Atoi(strings.TrimPrefix(m, "line "))
			if err != nil || k < next {
				t.Fatalf("%q at the drain after line %d: out of order or twice", m, next-1)
			}
			next = k + 1
			got++
		case <-tick.C:
			// A POST counts as sent once its handler has queued its lines,
			// so lines received and lines dropped add up to n at the end.
			h, _ = e.drains.Health(dr.ID)
			done = int64(got)+h.Dropped == n && len(msgs) == 0
		case <-timeout:
			h, _ = e.drains.Health(dr.ID)
			t.Fatalf("only %d of %d lines reached the HTTPS drain, %d counted as dropped (health %+v)", got, n, h.Dropped, h)
		}
	}
	all := time.Since(start)
	lost := n - got
	mu.Lock()
	if len(badPosts) > 0 {
		t.Fatalf("%d bad POSTs, first: %s", len(badPosts), badPosts[0])
	}
	t.Logf("%d lines: published and stored in %v (%.0f lines/s); all at the HTTPS drain or counted after %v (%.0f lines/s) in %d POSTs",
		n, pub, float64(n)/pub.Seconds(), all, float64(n)/all.Seconds(), posts)
	mu.Unlock()
	if h.Sent < int64(got) || lost > n/2 {
		t.Fatalf("health %+v with %d lines received: most lines must arrive, and every one received counted as sent", h, got)
	}
	if lost > 0 {
		t.Logf("this machine was too busy for the drain to keep up: %d lines dropped and counted (L10), the rest in order", lost)
	}
	// Everything (no filter): exactly the last 1,500, in order; the L10
	// reports of a busy run are part of the history too.
	hist, err := e.p.Recent(context.Background(), "app1", Filter{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1500 {
		t.Fatalf("history has %d lines, want 1500", len(hist))
	}
	var appLines []model.LogLine
	for _, l := range hist {
		if !isOwnReport(l) {
			appLines = append(appLines, l)
		}
	}
	first := n - len(appLines)
	for i, l := range appLines {
		if want := "line " + strconv.Itoa(first+i); l.Message != want || l.Dyno != "web.1" || l.Source != model.SourceApp {
			t.Fatalf("history line %d is %+v, want %q from app[web.1]", i, l, want)
		}
	}
}

// TestSyslogDrainDownTenSeconds: a syslog drain whose listener is gone for
// 10 s then comes back on the same address gets, when it returns, the
// lines buffered meanwhile (the oldest, up to the bound, in order), and the
// L10 lines count exactly the rest.
func TestSyslogDrainDownTenSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 12 s")
	}
	const (
		before = 100
		down   = 40000 // more than the default bound of 16,384
		outage = 10 * time.Second
	)
	// Retry often, so the drain is found soon after it returns.
	e := newDrainEnv(t, DrainConfig{ReportEvery: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond})
	var (
		l10mu sync.Mutex
		l10   []string
	)
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

	first := startSyslog(t, nil, false)
	addr := first.ln.Addr().String()
	dr := e.add(t, "app1", first.url("syslog"))
	appMsg := func(frame string) (string, bool) {
		parts := strings.SplitN(strings.TrimSuffix(frame, "\n"), " ", 8)
		if len(parts) != 8 {
			t.Fatalf("frame %q is not logplex's syslog shape", frame)
		}
		return parts[7], parts[3] == "app"
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			e.p.Publish("app1", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "line " + strconv.Itoa(i)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publish(0, before)
	for i := range before {
		select {
		case f := <-first.frames:
			if m, _ := appMsg(f); m != "line "+strconv.Itoa(i) {
				t.Fatalf("before the outage, line %d is %q", i, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("before the outage, only %d of %d lines arrived", i, before)
		}
	}

	// The drain goes away: no listener, its connections closed.
	first.ln.Close()
	first.mu.Lock()
	for _, c := range first.conns {
		c.Close()
	}
	first.mu.Unlock()
	wentDown := time.Now()
	time.Sleep(50 * time.Millisecond) // the close reaches the forwarder's socket
	publish(before, before+down)
	time.Sleep(time.Until(wentDown.Add(outage)))

	// It comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	back := &syslogServer{ln: ln, frames: make(chan string, 2*down)}
	back.wg.Add(1)
	go func() {
		defer back.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			back.mu.Lock()
			back.conns = append(back.conns, c)
			back.mu.Unlock()
			back.wg.Add(1)
			go func() { defer back.wg.Done(); back.read(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		back.mu.Lock()
		for _, c := range back.conns {
			c.Close()
		}
		back.mu.Unlock()
		back.wg.Wait()
	})

	// Delivered: a gap-free run of the outage's oldest lines, then quiet.
	next := before
	quiet := time.NewTimer(2 * time.Second)
	deadline := time.After(10 * time.Second)
	returned := time.Now()
collect:
	for {
		select {
		case f := <-back.frames:
			m, isApp := appMsg(f)
			if !isApp {
				continue // an L10 report that fit in the buffer
			}
			if want := "line " + strconv.Itoa(next); m != want {
				t.Fatalf("after the outage got %q, want %q: buffered lines lost or out of order", m, want)
			}
			next++
			quiet.Reset(500 * time.Millisecond)
		case <-quiet.C:
			break collect
		case <-deadline:
			break collect
		}
	}
	delivered := next - before
	bound := 16384
	if delivered < bound || delivered > bound+500 { // the buffer plus at most the batch in hand
		t.Fatalf("after the outage the drain got %d lines, want the bound %d (plus at most one batch of 500)", delivered, bound)
	}
	// The L10 lines, summed, count exactly the rest.
	var total int64
	Eventually := time.Now().Add(5 * time.Second)
	for {
		total = 0
		l10mu.Lock()
		for _, l := range l10 {
			var k int64
			var since string
			if _, err := fmt.Sscanf(l, "Error L10 (output buffer overflow): %d messages dropped since %s", &k, &since); err != nil {
				l10mu.Unlock()
				t.Fatalf("unexpected logplex line %q", l)
			}
			total += k
		}
		l10mu.Unlock()
		if total == int64(down-delivered) || time.Now().After(Eventually) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	h, _ := e.drains.Health(dr.ID)
	t.Logf("outage of %v: %d lines published meanwhile, %d delivered %v after the drain returned, %d reported dropped by L10 (health: %d sent, %d dropped, last error %q)",
		outage, down, delivered, time.Since(returned), total, h.Sent, h.Dropped, h.LastError)
	if total != int64(down-delivered) || h.Dropped != total {
		t.Fatalf("L10 lines count %d dropped, health %d; want exactly %d (%d published while down, %d delivered)", total, h.Dropped, down-delivered, down, delivered)
	}
}
