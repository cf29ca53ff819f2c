package logplex

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// syslogSender writes octet-counted RFC 5424 frames over one TCP (or TLS)
// connection, dialled when needed and dropped on any error.
type syslogSender struct {
	d        *Drains
	addr     string
	token    string
	tls      *tls.Config // nil: plain TCP
	conn     net.Conn
	stopConn func() bool
	// gone is closed when conn's reader sees the drain close it (or any
	// error). Syslog drains never answer, so writes to a closed drain
	// succeed into the kernel and are lost: checked before each write.
	gone chan struct{}
	buf  []byte
}

func (s *syslogSender) send(ctx context.Context, batch []model.LogLine, _ string) error {
	if s.conn != nil {
		select {
		case <-s.gone: // the drain hung up while idle: redial rather than lose this batch
			s.close()
		default:
		}
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	s.buf = s.buf[:0]
	for _, l := range batch {
		s.buf = appendSyslogFrame(s.buf, s.token, l)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.d.cfg.Timeout))
	if _, err := s.conn.Write(s.buf); err != nil {
		s.close()
		return fmt.Errorf("write to the drain %s: %w", s.addr, err)
	}
	return nil
}

// connect dials the drain unless connected.
func (s *syslogSender) connect(ctx context.Context) error {
	if s.conn == nil {
		dialer := &net.Dialer{Timeout: s.d.cfg.Timeout, KeepAlive: 30 * time.Second}
		var (
			conn net.Conn
			err  error
		)
		if s.tls != nil {
			host, _, _ := net.SplitHostPort(s.addr)
			conf := s.tls.Clone()
			conf.ServerName = host
			conn, err = (&tls.Dialer{NetDialer: dialer, Config: conf}).DialContext(ctx, "tcp", s.addr)
		} else {
			conn, err = dialer.DialContext(ctx, "tcp", s.addr)
		}
		if err != nil {
			return fmt.Errorf("connect to the drain %s: %w", s.addr, err)
		}
		s.conn = conn
		s.gone = make(chan struct{})
		go func(gone chan struct{}) { // ends when conn is closed
			defer close(gone)
			var b [512]byte
			for {
				if _, err := conn.Read(b[:]); err != nil {
					return
				}
			}
		}(s.gone)
		// A write stalled on a drain that stopped reading ends with ctx.
		s.stopConn = context.AfterFunc(ctx, func() { conn.Close() })
	}
	return nil
}

func (s *syslogSender) close() {
	if s.conn != nil {
		s.stopConn()
		s.conn.Close()
		<-s.gone
		s.conn = nil
	}
}

// httpSender POSTs logplex-1 frames, one batch per request.
type httpSender struct {
	d     *Drains
	u     *url.URL
	token string
	body  []byte
}

func (s *httpSender) send(ctx context.Context, batch []model.LogLine, frameID string) error {
	s.body = s.body[:0]
	for _, l := range batch {
		s.body = appendHTTPFrame(s.body, l)
	}
	target := *s.u
	target.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(s.body))
	if err != nil {
		return permanentError{fmt.Errorf("drain request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/logplex-1")
	req.Header.Set("Logplex-Msg-Count", strconv.Itoa(len(batch)))
	req.Header.Set("Logplex-Frame-Id", frameID)
	req.Header.Set("Logplex-Drain-Token", s.token)
	req.Header.Set("User-Agent", s.d.cfg.UserAgent)
	if s.u.User != nil {
		pass, _ := s.u.User.Password()
		req.SetBasicAuth(s.u.User.Username(), pass)
	}
	resp, err := s.d.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("post to the drain: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("the drain answered %s", resp.Status)
	default: // logplex drops a frame the drain refuses
		return permanentError{fmt.Errorf("the drain refused %d lines with %s", len(batch), resp.Status)}
	}
}

func (s *httpSender) close() {}

// newFrameID names a batch; a retry sends the same one so the drain can
// tell duplicates apart.
func newFrameID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
