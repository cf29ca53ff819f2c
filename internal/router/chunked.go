package router

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
)

// Limits of the chunked decoder: the ones Go's client applies reading a
// dyno's response through the goroutine path's 16 KiB buffer
// (upReadBufSize), so that the router refuses a response on either path
// exactly when that path's Go client would.
const (
	// maxChunkLine is the longest chunk-size line, CRLF included: Go
	// refuses a line of maxLineLength (4096) bytes or more before its CRLF.
	maxChunkLine = 4097
	// maxChunkExcess bounds the chunk-size line bytes (extensions mostly)
	// not paid for by chunk data, as Go's chunkedReader does, so that a
	// dyno cannot make the router parse megabytes of overhead per data byte.
	maxChunkExcess = 16 * 1024
	// maxChunkTrailer caps the trailer section: its field lines and the
	// empty line ending it. Go's client wants it all in its read buffer
	// ("suspiciously long trailer").
	maxChunkTrailer = upReadBufSize
)

// chunkState is where a chunkDecoder stands in the body.
type chunkState uint8

const (
	chunkSizeLine chunkState = iota // expecting a chunk-size line
	chunkData                       // in chunk data, left bytes to come
	chunkDataEnd                    // expecting the CRLF after chunk data
	chunkTrailer                    // after the last chunk: field lines up to an empty line
	chunkDone                       // body complete
)

// chunkDecoder decodes an HTTP/1.1 chunked body as it arrives, without ever
// waiting for input: the event loop hands it whatever bytes it has. The zero
// value is ready for a body; reset readies it for the next one.
//
// It accepts and rejects what Go's net/http client does when it reads a
// chunked response body (net/http/internal.chunkedReader, then
// body.readTrailer with textproto.Reader.ReadMIMEHeader), see next.
type chunkDecoder struct {
	state   chunkState
	left    uint64 // data bytes still to come in the current chunk
	excess  int64  // chunk-line overhead not yet paid for by data
	tlen    int    // trailer bytes consumed so far
	lastKey string // key of the last trailer field, for continuation lines
	bareLF  bool   // the last trailer line ended in a bare LF
	err     error  // sticky: a malformed body stays malformed

	trailer http.Header // the trailer fields, canonical keys; nil when none
}

// next decodes from in, the bytes received and not yet consumed. It returns
// how many bytes of in it consumed, and data, body bytes: a subslice of in
// (no copy), possibly empty. done reports the end of the body (last chunk and
// trailers read); bytes of in after n are not the body's. When it needs more
// input it returns what it could consume with done false (n may be 0 when
// in holds only part of a line); the caller calls it again with the rest
// of in plus the new bytes. err is a malformed body: the caller fails the
// exchange.
//
// One call returns at most one contiguous piece of data, so the caller loops
// until the decoder stops making progress:
//
//	for {
//		n, data, done, err := d.next(in)
//		// forward data (it aliases in) ...
//		in = in[n:]
//		if done || err != nil || n == 0 {
//			break
//		}
//	}
//
// and keeps the unconsumed in for the next read. Lines (chunk-size and
// trailer lines) are consumed whole, once their '\n' has arrived; chunk data
// is consumed as it arrives. A line that cannot fit in its limit is an error
// as soon as the bytes in show it, without waiting for its end.
//
// As in Go's client: a chunk-size line must end in CRLF and hold no other
// CR; trailing spaces and tabs are dropped, then any chunk extension (from
// the first ';', never checked); the size is 1 to 16 hex digits, either
// case; chunk data must be followed by exactly CRLF; "0" (leading zeros and
// extensions allowed) is the last chunk. Trailer fields are parsed like
// textproto's MIME headers: folded continuation lines, canonical keys (a key
// with a space is kept as is, as textproto does), token keys, no control
// bytes in values, bare LF line ends allowed except that, like Go's client,
// the last field line and the empty line ending the trailer need CRLF.
func (d *chunkDecoder) next(in []byte) (n int, data []byte, done bool, err error) {
	if d.err != nil {
		return 0, nil, false, d.err
	}
	for {
		switch d.state {
		case chunkDone:
			return n, nil, true, nil

		case chunkData:
			if n == len(in) {
				return n, nil, false, nil
			}
			k := uint64(len(in) - n)
			if k > d.left {
				k = d.left
			}
			d.left -= k
			if d.left == 0 {
				d.state = chunkDataEnd
			}
			// Return now: one call, one data piece.
			return n + int(k), in[n : n+int(k)], false, nil

		case chunkDataEnd:
			if len(in)-n < 2 {
				return n, nil, false, nil
			}
			if in[n] != '\r' || in[n+1] != '\n' {
				return d.fail(n, errors.New("malformed chunked encoding"))
			}
			n += 2
			d.state = chunkSizeLine

		case chunkSizeLine, chunkTrailer:
			limit := maxChunkLine
			if d.state == chunkTrailer {
				limit = maxChunkTrailer - d.tlen
			}
			// Look for the '\n' only within the limit: a longer line is an
			// error now, however many of its bytes are still to come.
			i := bytes.IndexByte(in[n:n+min(len(in)-n, limit)], '\n')
			if i < 0 {
				if len(in)-n < limit {
					return n, nil, false, nil // a partial line: wait for the rest
				}
				if d.state == chunkTrailer {
					return d.fail(n, errors.New("chunked trailer too long"))
				}
				return d.fail(n, errors.New("header line too long"))
			}
			line := in[n : n+i]
			if d.state == chunkSizeLine {
				err = d.sizeLine(line)
			} else {
				d.tlen += i + 1
				err = d.trailerLine(line)
			}
			if err != nil {
				return d.fail(n, err)
			}
			n += i + 1
		}
	}
}

// fail makes err sticky and returns it with the n bytes consumed before it.
func (d *chunkDecoder) fail(n int, err error) (int, []byte, bool, error) {
	d.err = err
	return n, nil, false, err
}

// reset makes d ready for another body.
func (d *chunkDecoder) reset() {
	*d = chunkDecoder{}
}

// sizeLine handles a chunk-size line, line being without its '\n', the way
// Go's chunkedReader.beginChunk and readChunkLine do.
func (d *chunkDecoder) sizeLine(line []byte) error {
	// RFC 9112 lets header lines end in a bare LF, but not chunk lines
	// (erratum 7633), and a CR anywhere else could be read differently
	// by another parser.
	switch cr := bytes.IndexByte(line, '\r'); {
	case cr < 0:
		return errors.New("chunked line ends with bare LF")
	case cr != len(line)-1:
		return errors.New("invalid CR in chunked line")
	}
	line = line[:len(line)-1]
	d.excess += int64(len(line)) + 2 // the line's CRLF and the one after the data
	line = bytes.TrimRight(line, " \t")
	// Extensions are dropped unchecked, as Go does. Whitespace before the
	// ';' is not trimmed, so "5 ;x" is a bad size, as in Go.
	line, _, _ = bytes.Cut(line, []byte(";"))
	size, err := parseChunkSize(line)
	if err != nil {
		return err
	}
	// Go allows 16 bytes of overhead per chunk plus twice its data. The
	// arithmetic is Go's, wrapping included for sizes above 1<<62.
	d.excess -= 16 + 2*int64(size)
	d.excess = max(d.excess, 0)
	if d.excess > maxChunkExcess && size != 0 { // Go's last chunk ends the body whatever the excess
		return errors.New("chunked encoding contains too much non-data")
	}
	if size == 0 {
		d.state = chunkTrailer
		return nil
	}
	d.left = size
	d.state = chunkData
	return nil
}

// parseChunkSize parses a chunk size in hex, as Go's parseHexUint: no sign,
// no "0x", no spaces, at most 16 digits (leading zeros count).
func parseChunkSize(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, errors.New("empty hex number for chunk length")
	}
	if len(v) > 16 {
		return 0, errors.New("http chunk length too large")
	}
	var n uint64
	for _, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b -= 'a' - 10
		case 'A' <= b && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, errors.New("invalid byte in chunk length")
		}
		n = n<<4 | uint64(b)
	}
	return n, nil
}

// trailerLine handles a line of the trailer section, line being without its
// '\n', the way textproto.Reader.ReadMIMEHeader does.
func (d *chunkDecoder) trailerLine(line []byte) error {
	crlf := len(line) > 0 && line[len(line)-1] == '\r'
	if crlf {
		line = line[:len(line)-1]
	}
	prevBareLF := d.bareLF
	d.bareLF = !crlf
	if len(line) == 0 {
		// textproto ends at any empty line, but Go's client first looks
		// ahead for "\r\n\r\n" and fails without it, so this line and the
		// one before it (the last-chunk line when there are no fields)
		// must end in CRLF.
		if !crlf || prevBareLF {
			return errors.New("malformed chunked trailer: bare LF ends it")
		}
		d.state = chunkDone
		return nil
	}
	if line[0] == ' ' || line[0] == '\t' {
		// An obsolete line folding: the previous field's value goes on,
		// joined with one space.
		if d.lastKey == "" {
			return errors.New("malformed MIME header initial line")
		}
		v := bytes.Trim(line, " \t")
		if !validTrailerValue(v) {
			return errors.New("malformed MIME header line")
		}
		vv := d.trailer[d.lastKey]
		// Joined, then trimmed at the left, as textproto does: after an
		// empty value the fold starts it.
		vv[len(vv)-1] = strings.TrimLeft(vv[len(vv)-1]+" "+string(v), " \t")
		return nil
	}
	k, v, ok := bytes.Cut(bytes.TrimRight(line, " \t"), []byte(":"))
	if !ok {
		return errors.New("malformed MIME header: missing colon")
	}
	key, ok := trailerKey(k)
	if !ok || !validTrailerValue(v) {
		return errors.New("malformed MIME header line")
	}
	if d.trailer == nil {
		d.trailer = make(http.Header)
	}
	d.trailer[key] = append(d.trailer[key], string(bytes.TrimLeft(v, " \t")))
	d.lastKey = key
	return nil
}

// trailerKey returns the canonical form of the field name k, false when
// textproto would refuse it: empty, or with a byte not of a token. Like
// textproto, it accepts a name with spaces (go.dev/issue/34540) and leaves
// such a name as it is.
func trailerKey(k []byte) (string, bool) {
	if len(k) == 0 {
		return "", false
	}
	for _, c := range k {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c < 0x80 && strings.IndexByte(" !#$%&'*+-.^_`|~", c) >= 0:
		default:
			return "", false
		}
	}
	return http.CanonicalHeaderKey(string(k)), true // leaves a name with a space as is
}

// validTrailerValue reports whether v holds only field-value bytes: no
// control bytes but HTAB, no DEL; bytes from 0x80 (obs-text) are allowed.
func validTrailerValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
