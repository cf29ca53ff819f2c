package agent

import (
	"bytes"
	"sync"
)

// maxPartialLine bounds a line still waiting for its newline; a longer one
// is logged in parts rather than held in memory without end.
const maxPartialLine = 64 << 10

// lineWriter turns a dyno's output into log lines, one per newline.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func newLineWriter(emit func(string)) *lineWriter { return &lineWriter{emit: emit} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(bytes.TrimSuffix(w.buf[:i], []byte("\r"))))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxPartialLine {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large drained buffer go
	}
	return len(p), nil
}
