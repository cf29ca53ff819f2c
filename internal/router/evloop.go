package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops: where the edge loop's plain-HTTP connections wait and
// are served once they are kept alive. A goroutine per connection costs
// two parks and wake-ups per request (the client's next request, the
// dyno's answer), reads that fail with EAGAIN and the netpoller's own
// work: about 6 µs of CPU per request more than nginx (issue 4,
// bench/router/evloop). So when a connection of the edge loop has nothing
// left to read, it leaves its goroutine: its socket goes to one of a few
// epoll loops (one per P), which read only what epoll reports ready, with
// raw system calls, and serve the requests the edge loop serves (bodiless,
// replayable: fastInbound) themselves, over connections to the dynos of
// their own, with the router's own code: the same parser and checks, the
// same admission, balancing, retries and quarantine, the same request
// head for the dyno (writeFastRequest), the same response checks
// (passHead), writer (edgeWriter), H codes, log line and metrics.
//
// What a loop does not do, a goroutine does: a request that must wait (no
// route table yet, no up dyno, every dyno quarantined) goes back to a
// goroutine of the edge loop (edge.resume), one the loop does not serve
// at all (a body, Upgrade, a head over edgeReadBufSize, what Go's parser
// refuses) to Go's server (edge.pass), with the bytes already read
// replayed. TLS connections stay on their goroutines: a loop would have
// to run TLS itself.
//
// Every loop has one owner, the edge: started with the first connection,
// stopped by Server.Shutdown (once the connections are gone) or
// Server.Close (at once). A loop's state is its goroutine's alone; other
// goroutines talk to it through post (a locked inbox and an eventfd).

const (
	// clientInMax caps what a client connection holds unread (pipelined
	// requests): beyond, the loop reads it no more until it served them.
	clientInMax = 64 << 10
	// outHigh is the output a client may leave untaken before the loop
	// stops reading the dyno's body for it (back-pressure).
	outHigh = 256 << 10
	// upBufSize is the read buffer of a dyno connection in an exchange;
	// a response head may grow it up to maxResponseHeaders.
	upBufSize = 32 << 10
	// epollEvents is how many events one wait returns at most.
	epollEvents = 256
)

// evloop is one event loop.
type evloop struct {
	e    *edge
	r    *Router
	ep   int             // epoll
	epf  *os.File        // ep, in Go's poller: the loop waits there
	eprc syscall.RawConn // epf's
	wake int             // eventfd: the inbox has something

	mu      sync.Mutex
	inbox   []loopMsg
	woken   bool
	stopped bool // no more messages are taken

	done chan struct{} // closed when the loop's goroutine ends

	// The loop goroutine's own.
	conns   []loopFD // by fd; nil where the loop has none
	gen     uint32   // tells a connection from a later one on the same fd
	pools   map[*dyno]*loopPool
	events  []unix.EpollEvent
	rd      bytes.Reader
	br      *bufio.Reader // parses heads
	ubw     *bufio.Writer // writes dyno request heads
	bufs    [][]byte      // free dyno read buffers
	closing bool          // Shutdown began: close connections between requests
	sweeper *time.Timer   // posts the sweeps
	// now is the time of the last wait's return, unix ns: the clock of
	// deadlines and idle times, read once per batch of events.
	now int64
	// again holds the client connections that have more pipelined
	// requests than one turn serves (maxPipelined); spare is again's
	// other buffer.
	again, spare []*lconn
	// wait's: the function it gives Go's poller (epollWait, made once:
	// a closure per wait costs an allocation per batch of events) and
	// what that reports.
	poll      func(fd uintptr) bool
	pollBlock bool
	polled    int
	pollErr   syscall.Errno
	slept     bool // the last wait slept in the poller
	busy      busyPoll
	// polls counts the times the loop busy-polled; TestLoopBusyPoll
	// reads it once the loop ended.
	polls int
}

// maxPipelined is how many requests of one connection a loop serves in a
// turn before the others' events.
const maxPipelined = 64

// loopFD is a connection in a loop: a client's (*lconn) or a dyno's (*lup).
type loopFD interface{ generation() uint32 }

// loopMsg is a message to a loop: a connection entering it or whose timer
// fired, or a command.
type loopMsg struct {
	enter *lconn
	timer *lconn
	sweep bool // time to close idle dyno connections that are done
	cmd   loopCmd
}

type loopCmd uint8

const (
	cmdNone     loopCmd = iota
	cmdShutdown         // close idle connections, the others after their response
	cmdExit             // close every connection and end
)

// newLoop makes a loop and starts its goroutine.
func newLoop(e *edge) (*evloop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := &evloop{
		e: e, r: e.r, ep: ep, wake: wake,
		done:   make(chan struct{}),
		pools:  make(map[*dyno]*loopPool),
		events: make([]unix.EpollEvent, epollEvents),
		br:     bufio.NewReaderSize(nil, upReadBufSize),
		ubw:    bufio.NewWriterSize(nil, upWriteBufSize),
	}
	l.poll = l.epollWait
	l.busy.limit = e.r.cfg.BusyPoll
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// The loop waits for its epoll set in Go's poller, as a goroutine
	// waits for a socket: blocked in epoll_wait itself, it would hold a
	// thread in a system call, which the scheduler's monitor keeps taking
	// its P from (sysConn's reason). Non-blocking, ep becomes "kind
	// nonblock" to os.NewFile, which puts it in the poller.
	unix.SetNonblock(ep, true)
	l.epf = os.NewFile(uintptr(ep), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil {
		l.epf.Close()
		unix.Close(wake)
		return nil, err
	}
	l.eprc = rc
	l.sweeper = time.AfterFunc(sweepEvery, func() { l.post(loopMsg{sweep: true}) })
	go l.run()
	return l, nil
}

// sweepEvery is how often a loop closes its idle connections to dynos
// that left the table (the goroutine path's pool closes them at once,
// dyno.retire) or that idled past idleConnTimeout.
const sweepEvery = time.Second

// sweep closes the idle dyno connections that are done, and forgets the
// pools of dynos that left.
func (l *evloop) sweep() {
	for d, p := range l.pools {
		gone := d.gone.Load()
		keep := p.idle[:0]
		for _, u := range p.idle {
			if gone || l.now-u.lastUsed > int64(idleConnTimeout) {
				l.closeUp(u)
			} else {
				keep = append(keep, u)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		if gone {
			delete(l.pools, d) // its busy connections close when done (putUp)
		}
	}
	l.sweeper.Reset(sweepEvery)
}

// wait waits for events (for none if block is false): it busy-polls the
// set for the loop's window (busyPoll), if any, then sleeps in Go's poller
// until the set is ready.
func (l *evloop) wait(block bool) (int, error) {
	if !block {
		return l.waitOnce(false)
	}
	idle := nanotime()
	contended := false
	if spin := l.busy.spinFor(idle); spin > 0 {
		if n, err := l.waitOnce(false); n > 0 || err != nil {
			return n, err // not idle
		}
		l.polls++
		for end, t := idle+int64(spin), idle; t < end; {
			runtime.Gosched()
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			if n, err := l.waitOnce(false); n > 0 || err != nil {
				l.busy.ended(time.Duration(nanotime() - idle))
				return n, err
			}
			now := nanotime()
			if now-t > int64(yieldBusy) {
				// Another thread ran: the CPU is not idle while the loop
				// waits, and polling would only take from it.
				contended = true
				break
			}
			t = now
		}
	}
	// The wait in the poller starts with an epoll_wait of its own, even
	// right after polling: the poller forgets, as the wait begins, that
	// the set became ready before.
	l.slept = false
	n, err := l.waitOnce(true)
	if l.slept {
		woke := nanotime()
		l.busy.slept(time.Duration(woke-idle), woke, contended)
	}
	return n, err
}

// waitOnce is one epoll_wait that never blocks, in Go's poller until the
// set is ready if block is set.
func (l *evloop) waitOnce(block bool) (int, error) {
	l.polled, l.pollErr, l.pollBlock = 0, 0, block
	err := l.eprc.Read(l.poll)
	if err == nil && l.pollErr != 0 {
		err = os.NewSyscallError("epoll_wait", l.pollErr)
	}
	return l.polled, err
}

// epollWait is wait's function for Go's poller (l.poll): one epoll_wait
// that does not block; true when it is done (events, an error, or none
// and pollBlock unset), false to wait in the poller.
func (l *evloop) epollWait(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		l.polled, l.pollErr = int(r), e
		if e != 0 || r > 0 || !l.pollBlock {
			return true
		}
		l.slept = true
		return false
	}
}

// post sends m to the loop; false when it takes no more messages.
func (l *evloop) post(m loopMsg) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, m)
	if !l.woken {
		// Under the lock: exit closes the eventfd once stopped is set.
		l.woken = true
		one := uint64(1)
		rawWrite(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
	l.mu.Unlock()
	return true
}

// stop makes the loop close every connection and end, and waits for it.
func (l *evloop) stop() {
	l.post(loopMsg{cmd: cmdExit})
	<-l.done
}

// run is the loop's goroutine.
func (l *evloop) run() {
	defer close(l.done)
	for {
		n, err := l.wait(len(l.again) == 0)
		l.now = nanotime()
		if err != nil {
			l.r.log.Error("router event loop: epoll_wait failed; its connections are closed", "err", err)
			l.exit(nil)
			return
		}
		inbox := false
		for i := range n {
			ev := &l.events[i]
			if ev.Fd == int32(l.wake) {
				inbox = true
				continue
			}
			var x loopFD
			if int(ev.Fd) < len(l.conns) {
				x = l.conns[ev.Fd]
			}
			if x == nil || x.generation() != uint32(ev.Pad) {
				continue // closed earlier in this batch
			}
			l.event(x, ev.Events)
		}
		if inbox && l.messages() {
			return
		}
		if len(l.again) > 0 {
			again := l.again
			l.again = l.spare[:0]
			for _, c := range again {
				if !c.closed {
					l.guard(c, func() { l.advance(c) })
				}
			}
			clear(again)
			l.spare = again[:0]
		}
	}
}

// event handles epoll's report on x. A panic (a bug) costs the
// connection it came from, not the loop's others, as a handler's panic
// costs one request on the goroutine path.
func (l *evloop) event(x loopFD, ev uint32) {
	l.guard(x, func() {
		switch x := x.(type) {
		case *lconn:
			l.clientEvent(x, ev)
		case *lup:
			l.upEvent(x, ev)
		}
	})
}

// guard runs fn, which handles x; a panic closes x.
func (l *evloop) guard(x loopFD, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			l.r.log.Error("panic in a router event loop; the connection is closed", "panic", p, "stack", string(buf))
			l.crashed(x)
		}
	}()
	fn()
}

// crashed closes a connection whose handling panicked, with what it
// holds accounted for.
func (l *evloop) crashed(x loopFD) {
	defer func() { recover() }() // its state may be anything: never crash the loop
	if x == nil {
		return // the loop's own work (sweep)
	}
	c, _ := x.(*lconn)
	if u, ok := x.(*lup); ok {
		if c = u.c; c == nil {
			l.dropIdle(u)
			return
		}
	}
	if c.closed {
		return
	}
	if c.up != nil {
		l.closeUp(c.up)
	}
	if s := c.s; s != nil {
		if s.code == nil {
			s.code = errH99
		}
		l.ended(c)
	}
	l.closeClient(c)
}

// messages handles the inbox; true when the loop must end.
func (l *evloop) messages() bool {
	var b [8]byte
	rawRead(l.wake, b[:])
	l.mu.Lock()
	msgs := l.inbox
	l.inbox = nil
	l.woken = false
	l.mu.Unlock()
	for i, m := range msgs {
		switch {
		case m.enter != nil:
			l.guard(m.enter, func() { l.enter(m.enter) })
		case m.timer != nil:
			l.guard(m.timer, func() { l.timerFired(m.timer) })
		case m.sweep:
			l.guard(nil, l.sweep)
		case m.cmd == cmdShutdown:
			l.closing = true
			for _, x := range l.conns {
				if c, ok := x.(*lconn); ok && c.state == lcIdle {
					l.guard(c, func() { l.advance(c) })
				}
			}
		case m.cmd == cmdExit:
			l.exit(msgs[i+1:])
			return true
		}
	}
	return false
}

// exit closes every connection and the loop's own descriptors; rest is
// what came after the exit in its batch of messages.
func (l *evloop) exit(rest []loopMsg) {
	l.mu.Lock()
	l.stopped = true
	rest = append(rest, l.inbox...)
	l.inbox = nil
	l.mu.Unlock()
	if l.sweeper != nil {
		l.sweeper.Stop()
	}
	for _, m := range rest {
		if c := m.enter; c != nil {
			// Came too late: closed as if the loop had taken it.
			syscall.Close(c.fd)
			c.account(-1)
			l.e.active.Add(-1)
		}
	}
	for _, x := range l.conns {
		switch x := x.(type) {
		case *lconn:
			if x.state == lcBusy {
				l.abort(x, errH27) // the router closed: nobody to answer
			} else {
				l.closeClient(x)
			}
		case *lup:
			l.closeUp(x)
		}
	}
	l.epf.Close()
	unix.Close(l.wake)
}

// register adds fd to the epoll set, edge-triggered, for x.
func (l *evloop) register(fd int, x loopFD) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(fd),
		Pad:    int32(x.generation()),
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	if fd >= len(l.conns) {
		l.conns = append(l.conns, make([]loopFD, fd+1-len(l.conns))...)
	}
	l.conns[fd] = x
	return nil
}

// forget takes fd out of the loop before it is closed or given away.
func (l *evloop) forget(fd int) {
	if fd < len(l.conns) {
		l.conns[fd] = nil
	}
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
}

func (l *evloop) nextGen() uint32 {
	l.gen++
	return l.gen
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking
// descriptor (the loop's eventfd): they never block, so they need not
// tell the scheduler.
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// sockRecv and sockSend are rawRead and rawWrite for sockets: recvfrom
// and sendto go to the socket layer straight, without read and write's
// file layer (about 0.3 µs of kernel time per request, issue 4's
// benchmark), and a send to a closed peer fails with EPIPE without
// raising SIGPIPE.
func sockRecv(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

func sockSend(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// fdOut is a socket's output: written at once as far as the socket takes
// it, held (pend) for when it takes more. It never blocks.
type fdOut struct {
	fd   int
	now  *int64 // the loop's clock
	pend []byte
	hold bool  // not connected yet: hold everything
	err  error // the write that failed; later writes fail with it
	at   int64 // unix ns of the last progress (or of the first byte held)
}

func (o *fdOut) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	if len(o.pend) > 0 || o.hold {
		if len(o.pend) == 0 {
			o.at = *o.now
		}
		o.pend = append(o.pend, p...)
		return len(p), nil
	}
	n := o.write(p)
	if o.err != nil {
		return n, o.err
	}
	if n < len(p) {
		o.at = *o.now
		o.pend = append(o.pend, p[n:]...)
	}
	return len(p), nil
}

// write writes what the socket takes of p.
func (o *fdOut) write(p []byte) int {
	w := 0
	for w < len(p) {
		n, errno := sockSend(o.fd, p[w:])
		switch errno {
		case 0:
			w += n
		case syscall.EAGAIN:
			return w
		default:
			o.err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
			return w
		}
	}
	return w
}

// trim lets a large output buffer go once nothing is held: a response's
// burst is not kept by an idle connection (a streaming one keeps it).
func (o *fdOut) trim() {
	if len(o.pend) == 0 && cap(o.pend) > 64<<10 {
		o.pend = nil
	}
}

// flush writes what is held, as far as the socket takes it; true when
// nothing is left.
func (o *fdOut) flush() bool {
	if o.err != nil || o.hold {
		return false
	}
	if len(o.pend) == 0 {
		return true
	}
	n := o.write(o.pend)
	if n > 0 {
		o.at = *o.now
	}
	if n == len(o.pend) {
		o.pend = o.pend[:0]
		return true
	}
	o.pend = o.pend[:copy(o.pend, o.pend[n:])]
	return false
}

// enterLoop gives c's socket to an event loop, when c is a TCP
// connection, plain or TLS over a tlsTransport, and the loops run: the
// loop serves its requests from now on. Called between requests, with
// nothing read ahead.
func (e *edge) enterLoop(c *edgeConn) bool {
	if e.noLoops || e.closing.Load() {
		return false
	}
	raw := c.nc // the TCP connection
	tc, tt := loopTLS(c.nc)
	if tt != nil {
		raw = tt.Conn
	} else if c.tls != nil {
		return false
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return false
	}
	if _, tcp := raw.LocalAddr().(*net.TCPAddr); !tcp {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	l := e.loop()
	if l == nil {
		return false
	}
	fd := -1
	rc.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil || fd < 0 {
		return false
	}
	lc := &lconn{l: l, fd: fd, base: context.WithoutCancel(c.ctx)}
	lc.e = e
	lc.remote, lc.cc, lc.tls = c.remote, c.cc, c.tls
	if a, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		lc.port = a.Port
	}
	lc.ctx = lc.base
	if tt != nil {
		// Responses go through TLS into lc.out; from now on the
		// transport is the loop's.
		lc.tconn, lc.tt = tc, tt
		lc.bw = bufio.NewWriterSize(tc, edgeWriteBufSize)
		tt.lc = lc
	} else {
		lc.bw = bufio.NewWriterSize(&lc.out, edgeWriteBufSize)
	}
	lc.w.h = make(http.Header, 16)
	lc.w.pend = make([]byte, 0, pendSize)
	lc.out.fd, lc.out.now = fd, &l.now
	// Close reaches the connection through its loop from now on, not
	// through c.nc: closing a TLS connection would write close_notify
	// into the loop's output from Close's goroutine.
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		if tt != nil {
			tt.lc = nil
		}
		unix.Close(fd)
		return false
	}
	delete(e.conns, c)
	e.mu.Unlock()
	// The loop holds one count of e.active until the connection closes
	// or goes back to a goroutine.
	e.active.Add(1)
	if !l.post(loopMsg{enter: lc}) {
		if tt != nil {
			tt.lc = nil
		}
		e.active.Add(-1)
		unix.Close(fd)
		e.mu.Lock()
		if e.closed {
			c.nc.Close() // Close came meanwhile: the goroutine's next read ends it
		} else {
			e.conns[c] = struct{}{}
		}
		e.mu.Unlock()
		return false
	}
	// The loop has the socket (a duplicate): Go's poller lets it go. (A
	// TLS connection's own Close would send close_notify.)
	raw.Close()
	e.looped.Add(1)
	return true
}

// loop returns the next loop for a connection, starting them with the
// first; nil once they stopped (or could not start).
func (e *edge) loop() *evloop {
	e.loopsMu.Lock()
	defer e.loopsMu.Unlock()
	if e.loopsStopped {
		return nil
	}
	if e.loops == nil {
		n := min(max(runtime.GOMAXPROCS(0), 1), 8)
		for range n {
			l, err := newLoop(e)
			if err != nil {
				e.r.log.Warn("router event loop could not start: connections stay on goroutines", "err", err)
				break
			}
			e.loops = append(e.loops, l)
		}
		if len(e.loops) == 0 {
			e.loopsStopped = true
			return nil
		}
	}
	e.nextLoop++
	return e.loops[e.nextLoop%len(e.loops)]
}

// shutdownLoops tells the loops that Shutdown began.
func (e *edge) shutdownLoops() {
	e.loopsMu.Lock()
	loops := e.loops
	e.loopsMu.Unlock()
	for _, l := range loops {
		l.post(loopMsg{cmd: cmdShutdown})
	}
}

// stopLoops closes the loops' connections and ends them; no connection
// enters a loop afterwards.
func (e *edge) stopLoops() {
	e.loopsMu.Lock()
	loops := e.loops
	e.loops = nil
	e.loopsStopped = true
	e.loopsMu.Unlock()
	for _, l := range loops {
		l.stop()
	}
}

// fileConn makes a Go connection of a loop's socket, closing fd.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "tcp")
	nc, err := net.FileConn(f) // a duplicate, in Go's poller
	f.Close()
	if err != nil {
		return nil, err
	}
	return newSysConn(nc), nil
}

// resume serves a connection a loop gave back, from req on, on this
// goroutine: out is output the loop could not write yet, rest what it
// read beyond req's head. It ends the count of e.active the loop held.
func (e *edge) resume(nc net.Conn, lc *lconn, out []byte, req *http.Request, rest []byte) {
	defer e.active.Add(-1)
	c := e.pool.Get().(*edgeConn)
	c.nc = nc
	c.tls = lc.tls
	c.remote = lc.remote
	c.ctx, c.cancel = context.WithCancel(lc.base)
	c.cc = lc.cc
	c.pending = rest
	c.br.Reset(c)
	c.bw.Reset(nc)
	c.rdl, c.wdl = 0, 0
	err := flushHeld(nc, e.writeIdle)
	if err == nil && len(out) > 0 {
		c.armWrite()
		_, err = nc.Write(out)
	}
	if err != nil {
		c.cancel()
		c.account(-1)
		nc.Close()
		c.nc, c.ctx, c.cancel, c.cc, c.tls, c.pending = nil, nil, nil, nil, nil, nil
		c.bw.Reset(nil)
		e.pool.Put(c)
		return
	}
	e.runConn(c, req.WithContext(c.ctx))
}

// passBack gives a connection a loop does not serve to Go's server, with
// prefix (what the loop read) replayed, after out; cs is its TLS state.
func (e *edge) passBack(nc net.Conn, cs *tls.ConnectionState, out, prefix []byte) {
	defer e.active.Add(-1)
	err := flushHeld(nc, e.writeIdle)
	if err == nil && len(out) > 0 {
		nc.SetWriteDeadline(time.Now().Add(e.writeIdle))
		_, err = nc.Write(out)
		nc.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		nc.Close()
		return
	}
	e.handoffs.Add(1)
	e.pass(&handoffConn{Conn: nc, prefix: prefix, tls: cs})
}
