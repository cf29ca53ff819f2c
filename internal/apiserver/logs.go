package apiserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/logplex"
	"github.com/dyno-platform/dyno/internal/model"
)

const (
	// logSessionTTL is how long an unused log session stays valid.
	logSessionTTL = 5 * time.Minute
	defaultLines  = 100
	maxLines      = 1500 // a request for more gets this many
	// keepAliveEvery keeps idle tails open through proxies.
	keepAliveEvery = 30 * time.Second
)

// logSession is a created, not yet expired, log session.
type logSession struct {
	id, token string
	appID     string
	filter    logplex.Filter
	lines     int
	tail      bool
	createdAt time.Time
	lastUsed  time.Time // when a stream of it last ended; zero if never
	streams   int       // streams open now
}

func (ls *logSession) expired(now time.Time) bool {
	last := ls.createdAt
	if ls.lastUsed.After(last) {
		last = ls.lastUsed
	}
	return ls.streams == 0 && now.Sub(last) > logSessionTTL
}

func (s *Server) createLogSession(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Lines    *int   `json:"lines"`
		Tail     bool   `json:"tail"`
		Source   string `json:"source"`
		Dyno     string `json:"dyno"`
		DynoName string `json:"dyno_name"`
		Type     string `json:"type"`
	}
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	app, _, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	source, err := logplex.ParseSource(body.Source)
	if err != nil {
		return invalid("%s", upperFirst(err.Error()))
	}
	lines := defaultLines
	if body.Lines != nil {
		lines = *body.Lines
	}
	if lines < 0 {
		return invalid("Lines must be 0 or more (0 shows no history; with tail, only new lines).")
	}
	lines = min(lines, max(maxLines, s.logs.History())) // as Heroku does: more is not an error
	dyno := body.DynoName
	for _, d := range []string{body.Dyno, body.Type} {
		if dyno == "" {
			dyno = d
		}
	}
	var tok [24]byte
	_, _ = rand.Read(tok[:])
	now := s.cfg.Now().UTC()
	ls := &logSession{id: newID(), token: hex.EncodeToString(tok[:]), appID: app.ID, lines: lines, tail: body.Tail,
		filter: logplex.Filter{Dyno: dyno, Source: source}, createdAt: now}
	s.mu.Lock()
	for id, old := range s.sessions {
		if old.expired(now) {
			delete(s.sessions, id)
		}
	}
	s.sessions[ls.id] = ls
	s.mu.Unlock()
	return writeJSON(w, http.StatusCreated, map[string]any{
		"id": ls.id, "logplex_url": s.cfg.PublicURL + "/log-sessions/" + ls.id + "?token=" + ls.token,
		"created_at": now, "updated_at": now,
	})
}

// streamLogSession serves a log session as server-sent events: the recent
// lines, then, with tail, new lines until the client goes away.
func (s *Server) streamLogSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	now := s.cfg.Now()
	s.mu.Lock()
	ls := s.sessions[id]
	if ls != nil && ls.expired(now) {
		delete(s.sessions, id)
		ls = nil
	}
	if ls == nil || !hmac.Equal([]byte(r.URL.Query().Get("token")), []byte(ls.token)) {
		s.mu.Unlock()
		return notFound("Couldn't find that log session: it may have expired; create a new one.")
	}
	ls.streams++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		ls.streams--
		ls.lastUsed = s.cfg.Now()
		s.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close ends tails
	defer stop()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sse := &sseWriter{w: w}
	sse.flush()
	if !ls.tail {
		lines, err := s.logs.Recent(ctx, ls.appID, ls.filter, ls.lines)
		if err != nil {
			s.log.Warn("read log session", "app", ls.appID, "err", err)
			return nil // headers are gone; ending the stream is all we can do
		}
		for _, l := range lines {
			if sse.event(l) != nil {
				return nil
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keep-alives until the tail ends
		defer wg.Done()
		t := time.NewTicker(keepAliveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if sse.comment("keep-alive") != nil {
					cancel()
					return
				}
			}
		}
	}()
	err := s.logs.Tail(ctx, ls.appID, ls.filter, ls.lines, sse.event)
	cancel()
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		s.log.Warn("tail log session", "app", ls.appID, "err", err)
	}
	return nil
}

// sseWriter writes server-sent events, one per log line, flushing each.
type sseWriter struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	seq int
}

func (s *sseWriter) event(l model.LogLine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	var b strings.Builder
	fmt.Fprintf(&b, "id: %d\n", s.seq)
	for _, part := range strings.Split(strings.ReplaceAll(l.String(), "\r\n", "\n"), "\n") {
		b.WriteString("data: " + part + "\n")
	}
	b.WriteString("\n")
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		return err
	}
	s.flushLocked()
	return nil
}

func (s *sseWriter) comment(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(s.w, ": "+text+"\n\n"); err != nil {
		return err
	}
	s.flushLocked()
	return nil
}

func (s *sseWriter) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *sseWriter) flushLocked() {
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}
