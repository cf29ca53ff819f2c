// Command evloop is a measurement, not a router: an epoll event loop in Go
// that proxies HTTP/1.1 keep-alive GETs to one backend, doing about the
// per-request work of the Dyno router's hot path (Go's request parser, a
// route lookup, the forwarding headers, a request ID, a response-head map,
// a log line) but with no goroutine per connection: one loop per thread
// reads only what epoll reports ready, with raw system calls.
//
// It answers one question for issue 4 (bench/router, EVLOOP=1): how much
// of the router's CPU per request above nginx's is the goroutine-per-
// connection model (parks, wake-ups, EAGAIN reads, the scheduler) rather
// than the work itself. It has none of the router's semantics: no
// timeouts or H-codes, no retries, no TLS, no bodies, no metrics, one
// backend, and it exits on any error a real router would have to handle.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type conn struct {
	fd      int
	in      []byte
	out     []byte
	peer    *conn
	isUp    bool
	start   time.Time
	host    string
	reqID   string
	wantOut bool
}

var (
	keep    []any // the listener and its file: their finalizers would close the socket
	backend string
	served  atomic.Int64
	routes  = map[string]string{"benchapp": "web.1"}
)

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func headEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return 0
}

type loop struct {
	ep     int
	lfd    int
	conns  map[int]*conn
	idle   []*conn
	rbuf   []byte
	rd     bytes.Reader
	br     *bufio.Reader
	logbuf []byte
	hdrbuf []byte
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "")
	flag.StringVar(&backend, "backend", "", "")
	loops := flag.Int("loops", 1, "")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	f, _ := ln.(*net.TCPListener).File()
	keep = []any{ln, f}
	lfd := int(f.Fd())
	syscall.SetNonblock(lfd, true)
	for i := 0; i < *loops; i++ {
		go run(lfd)
	}
	fmt.Println("ready", ln.Addr())
	select {}
}

func run(lfd int) {
	runtime.LockOSThread()
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{ep: ep, lfd: lfd, conns: map[int]*conn{}, rbuf: make([]byte, 64<<10), br: bufio.NewReaderSize(nil, 4096)}
	l.add(lfd, syscall.EPOLLIN|1<<28 /* EPOLLEXCLUSIVE */)
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(ep, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			log.Fatal(err)
		}
		for i := 0; i < n; i++ {
			ev := events[i]
			fd := int(ev.Fd)
			if fd == lfd {
				l.accept()
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.flush(c)
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				nr, e := rawRead(fd, l.rbuf)
				if e == syscall.EAGAIN {
					continue
				}
				if nr <= 0 {
					l.close(c)
					continue
				}
				c.in = append(c.in, l.rbuf[:nr]...)
				if c.isUp {
					l.onUpstream(c)
				} else {
					l.onClient(c)
				}
			}
		}
	}
}

func (l *loop) add(fd int, ev uint32) {
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: ev, Fd: int32(fd)}); err != nil {
		log.Fatal(err)
	}
}

func (l *loop) accept() {
	for {
		nfd, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		c := &conn{fd: nfd}
		l.conns[nfd] = c
		l.add(nfd, syscall.EPOLLIN)
	}
}

func (l *loop) close(c *conn) {
	syscall.Close(c.fd)
	delete(l.conns, c.fd)
}

func (l *loop) upstream() *conn {
	if n := len(l.idle); n > 0 {
		u := l.idle[n-1]
		l.idle = l.idle[:n-1]
		return u
	}
	nc, err := net.Dial("tcp", backend)
	if err != nil {
		log.Fatal(err)
	}
	f, _ := nc.(*net.TCPConn).File()
	fd, _ := syscall.Dup(int(f.Fd()))
	f.Close()
	nc.Close()
	syscall.SetNonblock(fd, true)
	u := &conn{fd: fd, isUp: true}
	l.conns[fd] = u
	l.add(fd, syscall.EPOLLIN)
	return u
}

func (l *loop) onClient(c *conn) {
	if c.peer != nil {
		return
	}
	end := headEnd(c.in)
	if end == 0 {
		return
	}
	l.rd.Reset(c.in[:end])
	l.br.Reset(&l.rd)
	req, err := http.ReadRequest(l.br)
	if err != nil {
		l.close(c)
		return
	}
	c.start = time.Now()
	host := req.Host
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	if _, ok := routes[host]; !ok {
		l.close(c)
		return
	}
	c.host = req.Host
	var id [16]byte
	r := rand.Uint64()
	r2 := rand.Uint64()
	for i := 0; i < 8; i++ {
		id[i] = byte(r >> (8 * i))
		id[8+i] = byte(r2 >> (8 * i))
	}
	c.reqID = fmt.Sprintf("%x", id[:])
	u := l.upstream()
	b := l.hdrbuf[:0]
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	for k, vs := range req.Header {
		switch k {
		case "Connection", "Keep-Alive", "X-Forwarded-For", "X-Request-Id":
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\nX-Request-Start: "...)
	b = strconv.AppendInt(b, c.start.UnixMilli(), 10)
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, c.reqID...)
	b = append(b, "\r\nVia: 1.1 dyno\r\n\r\n"...)
	l.hdrbuf = b
	if n, e := rawWrite(u.fd, b); e != 0 || n != len(b) {
		log.Fatalf("upstream write: %d %v", n, e)
	}
	c.in = c.in[:copy(c.in, c.in[end:])]
	c.peer, u.peer = u, c
}

func (l *loop) onUpstream(u *conn) {
	c := u.peer
	end := headEnd(u.in)
	if end == 0 || c == nil {
		return
	}
	head := string(u.in[:end])
	lines := strings.Split(head[:end-4], "\r\n")
	status := lines[0]
	h := make(http.Header, len(lines))
	cl := -1
	for _, line := range lines[1:] {
		i := strings.IndexByte(line, ':')
		k := textproto.CanonicalMIMEHeaderKey(line[:i])
		v := strings.TrimSpace(line[i+1:])
		h[k] = append(h[k], v)
		if k == "Content-Length" {
			cl, _ = strconv.Atoi(v)
		}
	}
	if len(u.in) < end+cl {
		return
	}
	out := c.out
	out = append(out, status...)
	out = append(out, "\r\n"...)
	for k, vs := range h {
		if k == "Connection" || k == "Keep-Alive" {
			continue
		}
		for _, v := range vs {
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "X-Request-Id: "...)
	out = append(out, c.reqID...)
	out = append(out, "\r\nVia: 1.1 dyno\r\n\r\n"...)
	out = append(out, u.in[end:end+cl]...)
	c.out = out
	u.in = u.in[:copy(u.in, u.in[end+cl:])]
	u.peer, c.peer = nil, nil
	l.idle = append(l.idle, u)
	service := time.Since(c.start)
	lb := l.logbuf[:0]
	lb = append(lb, "at=info method=GET path=\"/\" host="...)
	lb = append(lb, c.host...)
	lb = append(lb, " request_id="...)
	lb = append(lb, c.reqID...)
	lb = append(lb, " fwd=\"127.0.0.1\" dyno=web.1 connect=0ms service="...)
	lb = strconv.AppendInt(lb, service.Milliseconds(), 10)
	lb = append(lb, "ms status=200 bytes="...)
	lb = strconv.AppendInt(lb, int64(cl), 10)
	lb = append(lb, " protocol=http"...)
	l.logbuf = lb
	served.Add(1)
	l.flush(c)
	if len(c.in) > 0 {
		l.onClient(c)
	}
}

func (l *loop) flush(c *conn) {
	for len(c.out) > 0 {
		n, e := rawWrite(c.fd, c.out)
		if e == syscall.EAGAIN {
			if !c.wantOut {
				c.wantOut = true
				syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_MOD, c.fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT, Fd: int32(c.fd)})
			}
			return
		}
		if e != 0 {
			l.close(c)
			return
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	if c.wantOut {
		c.wantOut = false
		syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_MOD, c.fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)})
	}
}
