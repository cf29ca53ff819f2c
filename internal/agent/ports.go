package agent

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// numberPool hands out numbers from a range, each to one holder at a time:
// host ports for web dynos, and a user ID for every dyno.
type numberPool struct {
	what     string
	min, max int
	// usable says whether a free number can be used now (a port nobody
	// else on the host listens on); nil accepts every free number.
	usable func(int) bool

	mu   sync.Mutex
	used map[int]bool // guarded by mu
	next int          // guarded by mu
}

func newNumberPool(what string, min, max int, usable func(int) bool) *numberPool {
	return &numberPool{what: what, min: min, max: max, usable: usable, used: map[int]bool{}, next: min}
}

// newPortPool hands out ports that no process on the host listens on.
func newPortPool(min, max int) *numberPool {
	return newNumberPool("port", min, max, func(port int) bool {
		l, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// Get takes a number nobody holds.
func (p *numberPool) Get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.max - p.min + 1 {
		n := p.next
		p.next++
		if p.next > p.max {
			p.next = p.min
		}
		if p.used[n] || (p.usable != nil && !p.usable(n)) {
			continue
		}
		p.used[n] = true
		return n, nil
	}
	return 0, fmt.Errorf("no free %s between %d and %d: too many dynos on this host", p.what, p.min, p.max)
}

// Put gives a number back.
func (p *numberPool) Put(n int) {
	p.mu.Lock()
	delete(p.used, n)
	p.mu.Unlock()
}
