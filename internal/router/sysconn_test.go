package router

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sysPair returns a connected pair: the accepted end wrapped as the
// router's servers wrap client connections, and the plain dialed end.
func sysPair(t *testing.T) (*sysConn, *net.TCPConn) {
	t.Helper()
	if raceSyscalls {
		t.Skip("the race detector's build keeps net.TCPConn (sysconn_race.go)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := sysListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := c.(*sysConn)
	if !ok {
		t.Fatalf("sysListener accepted a %T, want *sysConn", c)
	}
	t.Cleanup(func() { sc.Close(); peer.Close() })
	return sc, peer.(*net.TCPConn)
}

func TestSysConnBehavesAsTCPConn(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, c *sysConn, peer *net.TCPConn)
	}{
		{"reads what the peer wrote, then EOF", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			peer.Write([]byte("hello"))
			peer.CloseWrite()
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "hello" {
				t.Fatalf("ReadAll = %q, %v; want hello, nil", b, err)
			}
		}},
		{"a read waits for data", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			go func() { time.Sleep(20 * time.Millisecond); peer.Write([]byte("x")) }()
			b := make([]byte, 8)
			if n, err := c.Read(b); n != 1 || err != nil {
				t.Fatalf("Read = %d, %v; want 1, nil", n, err)
			}
		}},
		{"a write larger than the socket buffer goes out whole", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: the write must wait for room
			got := make(chan []byte)
			go func() { b, _ := io.ReadAll(peer); got <- b }()
			if n, err := c.Write(want); n != len(want) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
			}
			c.CloseWrite()
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("the peer read %d bytes, want the %d written", len(b), len(want))
			}
		}},
		{"a read deadline times out", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Read(make([]byte, 8))
			var ne net.Error
			var oe *net.OpError
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
				t.Fatalf("Read after the deadline = %v, want a timeout", err)
			}
		}},
		{"a write deadline times out on a peer that reads nothing", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := c.Write(make([]byte, 64<<20))
			if !isTimeout(err) {
				t.Fatalf("Write to a stalled peer = %v, want a timeout", err)
			}
		}},
		{"Close ends a read in progress", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			go func() { time.Sleep(20 * time.Millisecond); c.Close() }()
			if _, err := c.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read on a closed connection = %v, want net.ErrClosed", err)
			}
		}},
		{"a reset is a read error, as net.TCPConn reports it", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			peer.SetLinger(0)
			peer.Close() // RST
			time.Sleep(20 * time.Millisecond)
			_, err := c.Read(make([]byte, 8))
			var oe *net.OpError
			if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
				t.Fatalf("Read after a reset = %v, want a read OpError with ECONNRESET", err)
			}
		}},
		{"empty reads and writes do nothing, but fail once closed", func(t *testing.T, c *sysConn, peer *net.TCPConn) {
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
			if n, err := c.Write(nil); n != 0 || err != nil {
				t.Fatalf("Write(nil) = %d, %v", n, err)
			}
			c.Close()
			if _, err := c.Read(nil); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read(nil) once closed = %v, want net.ErrClosed", err)
			}
			if _, err := c.Write(nil); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write(nil) once closed = %v, want net.ErrClosed", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := sysPair(t)
			tt.check(t, c, peer)
		})
	}
}
