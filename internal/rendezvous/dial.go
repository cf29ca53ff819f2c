package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
)

// ParseURL splits an attach URL, rendezvous://HOST:PORT/SECRET, into the
// address to dial and the secret.
func ParseURL(attachURL string) (addr, secret string, err error) {
	u, err := url.Parse(attachURL)
	if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return "", "", fmt.Errorf("attach URL %q is not rendezvous://HOST:PORT/SECRET", attachURL)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// dial connects over TLS (verified against roots), sends line and waits
// for the greeting. A refusal ("error: ...") becomes the error.
func dial(ctx context.Context, addr string, roots *x509.CertPool, line string) (net.Conn, *bufio.Reader, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("rendezvous address %q: %w", addr, err)
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the rendezvous at %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("rendezvous at %s: %w", addr, err)
	}
	br := bufio.NewReader(c)
	greeting, err := readLine(br)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("rendezvous at %s hung up: %w", addr, err)
	}
	if greeting+"\r\n" != Greeting {
		c.Close()
		return nil, nil, fmt.Errorf("rendezvous refused: %s", strings.TrimPrefix(greeting, "error: "))
	}
	return c, br, nil
}

// Attach is the client's side: it connects to attachURL and returns once
// the dyno is there. Read the dyno's output from the connection, write
// its input to it; closing it detaches (the dyno gets SIGHUP).
func Attach(ctx context.Context, attachURL string, roots *x509.CertPool) (io.ReadWriteCloser, error) {
	addr, secret, err := ParseURL(attachURL)
	if err != nil {
		return nil, err
	}
	c, br, err := dial(ctx, addr, roots, secret)
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: br}, nil
}

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Control is our CLI's side channel to an attached dyno.
type Control struct {
	c   net.Conn
	mu  sync.Mutex
	enc *json.Encoder
}

// DialControl opens the control connection of an attached session (after
// Attach).
func DialControl(ctx context.Context, attachURL string, roots *x509.CertPool) (*Control, error) {
	addr, secret, err := ParseURL(attachURL)
	if err != nil {
		return nil, err
	}
	c, _, err := dial(ctx, addr, roots, secret+"?control")
	if err != nil {
		return nil, err
	}
	return &Control{c: c, enc: json.NewEncoder(c)}, nil
}

// Send sends one control message.
func (k *Control) Send(m ControlMessage) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.enc.Encode(m)
}

// Close closes the control connection.
func (k *Control) Close() error { return k.c.Close() }

// DynoConn is the agent's side of a session.
type DynoConn struct {
	c net.Conn
	r *bufio.Reader
}

// DialDyno connects the agent to the rendezvous with the dyno's token and
// returns once the client is there (an error when none came in time or
// the session ended).
func DialDyno(ctx context.Context, addr, token string, roots *x509.CertPool) (*DynoConn, error) {
	c, br, err := dial(ctx, addr, roots, "DYNO "+token)
	if err != nil {
		return nil, err
	}
	return &DynoConn{c: c, r: br}, nil
}

// Write sends the dyno's output to the client.
func (d *DynoConn) Write(p []byte) (int, error) { return d.c.Write(p) }

// Close hangs up: the client sees the end of the output.
func (d *DynoConn) Close() error { return d.c.Close() }

// Events are what the client's side sends, besides its bytes.
type Events struct {
	Data   func([]byte) error // stdin bytes
	EOF    func()             // end of stdin
	Resize func(cols, rows uint16)
	Signal func(name string)
}

// Serve reads the client's frames until the client hangs up (nil) or
// the connection breaks.
func (d *DynoConn) Serve(ev Events) error {
	buf := make([]byte, 32*1024)
	for {
		kind, p, err := readFrame(d.r, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		switch kind {
		case frameData:
			if ev.Data != nil {
				if err := ev.Data(p); err != nil {
					return err
				}
			}
		case frameEOF:
			if ev.EOF != nil {
				ev.EOF()
			}
		case frameResize:
			if ev.Resize != nil && len(p) == 4 {
				ev.Resize(binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:]))
			}
		case frameSignal:
			if ev.Signal != nil {
				ev.Signal(string(p))
			}
		}
	}
}
