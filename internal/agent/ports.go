package agent

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// portPool hands out host ports for web dynos; dynos share the host's
// network until they get namespaces of their own.
type portPool struct {
	min, max int

	mu   sync.Mutex
	used map[int]bool // guarded by mu
	next int          // guarded by mu
}

func newPortPool(min, max int) *portPool {
	return &portPool{min: min, max: max, used: map[int]bool{}, next: min}
}

// Get returns a port nobody listens on and no other dyno holds.
func (p *portPool) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.max - p.min + 1 {
		port := p.next
		p.next++
		if p.next > p.max {
			p.next = p.min
		}
		if p.used[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		p.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port between %d and %d for a web dyno", p.min, p.max)
}

// Put gives a port back.
func (p *portPool) Put(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}
