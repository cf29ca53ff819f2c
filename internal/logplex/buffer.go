package logplex

import (
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// lineBuffer is a bounded FIFO of log lines between a fast producer that
// must never wait (a NATS callback, a stream reader) and a consumer that
// may be slow (a drain, a tail client). When full it drops the new line and
// counts it, so the producer's speed never depends on the consumer's.
type lineBuffer struct {
	mu      sync.Mutex
	lines   []model.LogLine
	max     int
	dropped int64
	since   time.Time // first drop not yet reported
	ready   chan struct{}
}

func newLineBuffer(max int) *lineBuffer {
	return &lineBuffer{max: max, ready: make(chan struct{}, 1)}
}

// push adds l, or counts it as dropped when the buffer is full; countDrop
// false drops without counting (the overflow reports themselves, which
// would otherwise report their own loss forever).
func (b *lineBuffer) push(l model.LogLine, now time.Time, countDrop bool) bool {
	b.mu.Lock()
	ok := len(b.lines) < b.max
	if ok {
		b.lines = append(b.lines, l)
	} else if countDrop {
		if b.dropped == 0 {
			b.since = now
		}
		b.dropped++
	}
	b.mu.Unlock()
	if ok {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
	return ok
}

// take moves up to n lines, oldest first, into dst.
func (b *lineBuffer) take(dst []model.LogLine, n int) []model.LogLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, len(b.lines))
	dst = append(dst, b.lines[:n]...)
	clear(b.lines[:n])
	b.lines = b.lines[n:]
	if len(b.lines) == 0 {
		b.lines = nil // let the drained backing array go
	}
	return dst
}

// takeDropped returns and resets the count of dropped lines and the time
// of the first of them.
func (b *lineBuffer) takeDropped() (int64, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, since := b.dropped, b.since
	b.dropped, b.since = 0, time.Time{}
	return n, since
}

// len is the number of lines waiting.
func (b *lineBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}
