// Package rendezvous joins the client of an attached one-off dyno (`dyno
// run`, or Heroku's own CLI) to the agent running it, with Heroku's
// rendezvous protocol: the client connects over TLS, sends its secret and
// "\r\n", gets "rendezvous\r\n" once the dyno side is there, and then the
// bytes flow both ways. The agent connects to the same listener with
// "DYNO <token>\r\n" and speaks frames (see frame.go), so that window
// sizes, signals and the end of stdin can travel beside the data.
//
// Sessions live in memory: the API registers one per attached dyno and
// hands the secret to the client and the token (through the assignment)
// to the agent. A secret is used once and expires when no client came
// within ClientTimeout.
package rendezvous

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Greeting is the line the server sends when both sides are there.
const Greeting = "rendezvous\r\n"

// Config configures a Server.
type Config struct {
	// Addr is the TLS listen address ("127.0.0.1:0" picks a port).
	Addr string
	// TLS holds the server's certificate (see Certificate).
	TLS *tls.Config
	// ClientTimeout is how long a secret waits for its client: 60 s.
	ClientTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and the first line: 10 s.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
	Now              func() time.Time
}

// Server is the rendezvous listener and its sessions.
type Server struct {
	cfg Config
	ln  net.Listener
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session // by dyno ID
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
	once     sync.Once
}

// session is one attached dyno's meeting point.
type session struct {
	id       string
	secret   string
	token    string
	deadline time.Time // the client must come before
	expires  time.Time // the dyno's time to live: nobody waits longer

	clientCame chan struct{} // closed when the client took the secret
	dynoCh     chan *dynoSide
	gone       chan struct{} // closed when the session ends (either side left, cancelled)
	goneOnce   sync.Once

	mu        sync.Mutex
	client    bool
	control   bool
	dyno      *dynoSide  // once paired
	forwarded int64      // client bytes sent on to the dyno
	moved     *sync.Cond // on mu: forwarded grew or the session ended
	ended     bool
}

// dynoSide is the agent's connection; frames to it are written under mu.
type dynoSide struct {
	conn net.Conn
	r    io.Reader // conn behind the buffer that read its first line
	mu   sync.Mutex
}

func (d *dynoSide) send(kind byte, payload []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return writeFrame(d.conn, kind, payload)
}

func (s *session) end() {
	s.goneOnce.Do(func() {
		close(s.gone)
		s.mu.Lock()
		s.ended = true
		s.moved.Broadcast()
		s.mu.Unlock()
	})
}

// forward counts client bytes delivered to the dyno.
func (s *session) forward(n int) {
	s.mu.Lock()
	s.forwarded += int64(n)
	s.moved.Broadcast()
	s.mu.Unlock()
}

// awaitForwarded waits until n client bytes reached the dyno; false if the
// session ended first.
func (s *session) awaitForwarded(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.forwarded < n && !s.ended {
		s.moved.Wait()
	}
	return !s.ended
}

// Listen binds the listener. Run serves it.
func Listen(cfg Config) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("rendezvous: no TLS certificate: the platform CA must sign one")
	}
	if cfg.ClientTimeout <= 0 {
		cfg.ClientTimeout = time.Minute
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the rendezvous on %s: %w (use --rendezvous to pick another address)", cfg.Addr, err)
	}
	return &Server{cfg: cfg, ln: tls.NewListener(ln, cfg.TLS), log: cfg.Logger.With("role", "rendezvous"),
		sessions: map[string]*session{}, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Register opens a session for the dyno id that lives at most ttl. It
// returns the client's secret and the agent's token.
func (s *Server) Register(id string, ttl time.Duration) (secret, token string, err error) {
	secret, token = randomHex(24), randomHex(24)
	now := s.cfg.Now()
	sess := &session{id: id, secret: secret, token: token, deadline: now.Add(s.cfg.ClientTimeout), expires: now.Add(ttl),
		clientCame: make(chan struct{}), dynoCh: make(chan *dynoSide, 1), gone: make(chan struct{})}
	sess.moved = sync.NewCond(&sess.mu)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", "", errors.New("rendezvous: the server is shutting down")
	}
	if old, ok := s.sessions[id]; ok {
		old.end()
	}
	s.sessions[id] = sess
	return secret, token, nil
}

// Cancel ends the session of dyno id, if any: both sides are hung up.
func (s *Server) Cancel(id string) {
	s.mu.Lock()
	sess, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if ok {
		sess.end()
	}
}

// lookup finds a live session by secret or token.
func (s *Server) lookup(match func(*session) bool) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if match(sess) {
			return sess
		}
	}
	return nil
}

func (s *Server) drop(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
	s.mu.Unlock()
	sess.end()
}

// Run accepts connections until ctx ends, then closes every connection
// and waits for their handlers.
func (s *Server) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	sweep := time.NewTicker(5 * time.Second)
	defer sweep.Stop()
	s.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweep.C:
				s.sweep()
			}
		}
	})
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.Close()
			s.wg.Wait()
			if ctx.Err() != nil || s.isClosed() {
				return nil
			}
			return fmt.Errorf("rendezvous: accept: %w", err)
		}
		if !s.track(c, true) {
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer s.track(c, false)
			defer c.Close()
			s.handle(ctx, c)
		})
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// sweep forgets sessions whose secret expired unused.
func (s *Server) sweep() {
	now := s.cfg.Now()
	s.mu.Lock()
	var expired []*session
	for id, sess := range s.sessions {
		sess.mu.Lock()
		unused := !sess.client
		sess.mu.Unlock()
		if (unused && now.After(sess.deadline)) || now.After(sess.expires) {
			delete(s.sessions, id)
			expired = append(expired, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range expired {
		sess.end()
	}
}

// Close stops the listener and hangs up every connection. It is
// idempotent; Run returns once the handlers are done.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		for _, sess := range s.sessions {
			sess.end()
		}
		s.mu.Unlock()
		s.ln.Close()
	})
	return nil
}

// handle reads the first line and serves a client, a control or a dyno
// connection.
func (s *Server) handle(ctx context.Context, c net.Conn) {
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(c, 4096)
	line, err := readLine(br)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	switch {
	case strings.HasPrefix(line, "DYNO "):
		s.serveDyno(ctx, c, br, strings.TrimPrefix(line, "DYNO "))
	case strings.HasSuffix(line, "?control"):
		s.serveControl(c, br, strings.TrimSuffix(line, "?control"))
	default:
		secret, _, _ := strings.Cut(line, "?") // Heroku's clients may add a query
		s.serveClient(c, br, secret)
	}
}

func refuse(c net.Conn, msg string) {
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c, "error: "+msg+"\r\n")
}

func (s *Server) byToken(token string) *session {
	return s.lookup(func(x *session) bool { return subtle.ConstantTimeCompare([]byte(x.token), []byte(token)) == 1 })
}

func (s *Server) bySecret(secret string) *session {
	return s.lookup(func(x *session) bool { return subtle.ConstantTimeCompare([]byte(x.secret), []byte(secret)) == 1 })
}

// serveDyno waits for the client, then keeps the agent's connection open
// until the session ends; the client's handler pipes.
func (s *Server) serveDyno(ctx context.Context, c net.Conn, br *bufio.Reader, token string) {
	sess := s.byToken(token)
	if sess == nil {
		refuse(c, "unknown or expired dyno token")
		return
	}
	d := &dynoSide{conn: c, r: br}
	select {
	case sess.dynoCh <- d:
	default:
		refuse(c, "this dyno is attached already")
		return
	}
	wait := time.NewTimer(max(sess.deadline.Sub(s.cfg.Now()), 0))
	defer wait.Stop()
	select {
	case <-sess.clientCame:
	case <-wait.C:
		sess.mu.Lock()
		came := sess.client
		if !came {
			sess.client = true // the secret is dead: no client may take it now
		}
		sess.mu.Unlock()
		if !came {
			s.drop(sess)
			refuse(c, "no client attached within the time allowed")
			return
		}
	case <-sess.gone:
		refuse(c, "the session ended")
		return
	case <-ctx.Done():
		return
	}
	<-sess.gone // the client's handler pipes, and ends the session
}

// serveClient takes the secret, waits for the dyno side, greets both and
// pipes: the dyno's bytes to the client as they are, the client's to the
// dyno in data frames. The client hanging up ends the session, which the
// agent sees as the end of its connection (SIGHUP to the dyno).
func (s *Server) serveClient(c net.Conn, br *bufio.Reader, secret string) {
	sess := s.bySecret(secret)
	if sess == nil {
		refuse(c, "unknown or expired secret")
		return
	}
	sess.mu.Lock()
	used, expired := sess.client, s.cfg.Now().After(sess.deadline)
	if !expired {
		sess.client = true
	}
	sess.mu.Unlock()
	switch {
	case used:
		refuse(c, "this secret was used already")
		return
	case expired:
		s.drop(sess)
		refuse(c, "unknown or expired secret")
		return
	}
	close(sess.clientCame)
	defer s.drop(sess)
	ttl := time.NewTimer(max(sess.expires.Sub(s.cfg.Now()), 0))
	defer ttl.Stop()
	var d *dynoSide
	select {
	case d = <-sess.dynoCh:
	case <-sess.gone:
		refuse(c, "the dyno was stopped before it started")
		return
	case <-ttl.C:
		refuse(c, "the dyno did not start within its time to live")
		return
	}
	sess.mu.Lock()
	sess.dyno = d
	sess.mu.Unlock()
	if _, err := io.WriteString(c, Greeting); err != nil {
		d.conn.Close()
		return
	}
	if _, err := io.WriteString(d.conn, Greeting); err != nil {
		return
	}
	// Either side hanging up ends the session; closing both conns makes
	// the other copy return.
	go func() {
		<-sess.gone
		c.Close()
		d.conn.Close()
	}()
	done := make(chan struct{})
	go func() { // dyno → client
		io.Copy(c, d.r)
		if tc, ok := c.(*tls.Conn); ok {
			tc.CloseWrite()
		}
		close(done)
		sess.end()
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if d.send(frameData, buf[:n]) != nil {
				break
			}
			sess.forward(n)
		}
		if err != nil {
			break
		}
	}
	sess.end()
	<-done
}

// ControlMessage is one line of a control connection.
type ControlMessage struct {
	Resize *WindowSize `json:"resize,omitempty"`
	Signal string      `json:"signal,omitempty"` // INT, TERM, QUIT, HUP
	// EOF ends the dyno's stdin once the Sent bytes the client wrote on
	// its main connection have reached it (the two connections race).
	EOF  bool  `json:"eof,omitempty"`
	Sent int64 `json:"sent,omitempty"`
}

// WindowSize is a terminal's size in characters.
type WindowSize struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// serveControl forwards the control messages of the client of a session
// already attached to its dyno.
func (s *Server) serveControl(c net.Conn, br *bufio.Reader, secret string) {
	sess := s.bySecret(secret)
	if sess == nil {
		refuse(c, "unknown or expired secret")
		return
	}
	sess.mu.Lock()
	ok := sess.client && !sess.control
	sess.control = true
	sess.mu.Unlock()
	if !ok {
		refuse(c, "attach first, and only one control connection")
		return
	}
	var d *dynoSide
	for d == nil { // the main connection may still wait for the dyno
		sess.mu.Lock()
		d = sess.dyno
		sess.mu.Unlock()
		if d != nil {
			break
		}
		select {
		case <-sess.gone:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := io.WriteString(c, Greeting); err != nil {
		return
	}
	go func() {
		<-sess.gone
		c.Close()
	}()
	dec := json.NewDecoder(br)
	for {
		var m ControlMessage
		if err := dec.Decode(&m); err != nil {
			return
		}
		var err error
		switch {
		case m.Resize != nil:
			err = d.send(frameResize, resizePayload(*m.Resize))
		case m.Signal != "":
			err = d.send(frameSignal, []byte(m.Signal))
		case m.EOF:
			if !sess.awaitForwarded(m.Sent) {
				return
			}
			err = d.send(frameEOF, nil)
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line ending in "\n" (a "\r" before it is dropped),
// refusing long ones.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return strings.TrimSuffix(string(b), "\r"), nil
		}
		if len(b) >= 512 {
			return "", errors.New("rendezvous: first line too long")
		}
		b = append(b, c)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
