package router

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// maxRequestIDLen is vegur's request_id_max_size.
const maxRequestIDLen = 200

// validRequestID reports whether a client's X-Request-Id may be passed on:
// 1 to 200 characters of letters, digits and + / = - _.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '+', c == '/', c == '=', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// requestIDs makes request IDs: random (version 4) UUIDs from a ChaCha8
// stream seeded by crypto/rand, cheaper per request than crypto/rand.
type requestIDs struct {
	mu  sync.Mutex
	src *mrand.ChaCha8
}

// init seeds the stream.
func (g *requestIDs) init() {
	var seed [32]byte
	rand.Read(seed[:]) // never fails (crypto/rand since Go 1.24)
	g.src = mrand.NewChaCha8(seed)
}

func (g *requestIDs) next() string {
	var u [16]byte
	g.mu.Lock()
	g.src.Read(u[:])
	g.mu.Unlock()
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
	return string(b[:])
}

// logLine formats the one router line of a request in Heroku's format
// (heroku.md §2.4). Fields the router could not measure are empty (key=).
func (s *reqState) logLine(now time.Time) model.LogLine {
	// Built on the stack when it fits; the message is its one copy.
	var buf [512]byte
	b := buf[:0]
	code := s.code
	if code == nil {
		b = append(b, "at=info"...)
	} else {
		b = append(b, "at="...)
		b = append(b, code.at...)
		b = append(b, " code="...)
		b = append(b, code.code...)
		b = append(b, ` desc="`...)
		b = append(b, code.desc...)
		b = append(b, '"')
	}
	b = append(b, " method="...)
	b = append(b, s.req.Method...)
	b = append(b, ` path=`...)
	b = appendQuoted(b, s.req.RequestURI)
	b = append(b, " host="...)
	b = append(b, s.host...)
	b = append(b, " request_id="...)
	b = append(b, s.requestID...)
	b = append(b, " fwd="...)
	b = appendQuoted(b, s.fwd)
	b = append(b, " dyno="...)
	b = append(b, s.dyno...)
	b = append(b, " connect="...)
	if s.phase >= phaseDialed {
		b = appendMS(b, time.Duration(s.connect.Load()))
	}
	b = append(b, " service="...)
	if s.phase >= phaseSent {
		b = appendMS(b, now.Sub(s.dispatched)-time.Duration(s.connect.Load()))
	}
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(s.logStatus()), 10)
	b = append(b, " bytes="...)
	if s.phase >= phaseSent {
		b = strconv.AppendInt(b, s.w.bytes, 10)
	}
	if code != nil && code.sock != "" {
		b = append(b, " sock="...)
		b = append(b, code.sock...)
	}
	if s.cause != "" {
		b = append(b, " cause="...)
		b = appendQuoted(b, s.cause)
	}
	b = appendProtocol(b, s.req)
	return model.LogLine{Time: now, Source: model.SourceHeroku, Dyno: "router", Message: string(b)}
}

// logStatus is the status the log reports: the router's for its errors,
// else what the dyno answered.
func (s *reqState) logStatus() int {
	switch {
	case s.code != nil:
		return s.code.status
	case s.w.status != 0:
		return s.w.status
	case s.status != 0:
		return s.status
	}
	return http.StatusOK
}

func appendMS(b []byte, d time.Duration) []byte {
	b = strconv.AppendInt(b, max(d.Milliseconds(), 0), 10)
	return append(b, "ms"...)
}

// appendQuoted appends s in double quotes, escaping what would break the
// key=value form of the line.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, `\x`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
