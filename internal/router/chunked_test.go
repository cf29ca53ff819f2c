package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// chunkOutcome is what decoding a whole body gave.
type chunkOutcome struct {
	data    []byte
	trailer http.Header // nil when none
	err     error
}

// goChunked decodes body the way Go's client does: as the body of a
// chunked response read with http.ReadResponse.
func goChunked(body string) chunkOutcome {
	raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-A\r\n\r\n" + body
	resp, err := http.ReadResponse(bufio.NewReaderSize(strings.NewReader(raw), upReadBufSize), nil) // the goroutine path's reader
	if err != nil {
		return chunkOutcome{err: err}
	}
	data, err := io.ReadAll(resp.Body)
	// resp.Trailer starts with the announced X-A, nil until received.
	var tr http.Header
	for k, v := range resp.Trailer {
		if v != nil {
			if tr == nil {
				tr = make(http.Header)
			}
			tr[k] = v
		}
	}
	return chunkOutcome{data: data, trailer: tr, err: err}
}

// feedChunked decodes body with a chunkDecoder, receiving it in pieces
// ending at the offsets cuts (ascending), as the event loop would. It fails
// t when the decoder breaks its contract. A body not done when the input
// ends is io.ErrUnexpectedEOF, as for Go.
func feedChunked(t *testing.T, body string, cuts []int) (out chunkOutcome, consumed int) {
	t.Helper()
	var d chunkDecoder
	var pending []byte
	prev := 0
	for _, c := range append(cuts, len(body)) {
		c = min(c, len(body))
		pending = append(pending, body[prev:c]...)
		prev = c
		for {
			in := pending
			n, data, done, err := d.next(in)
			if n < 0 || n > len(in) {
				t.Fatalf("n = %d, len(in) = %d", n, len(in))
			}
			if len(data) > 0 {
				// data must alias in[:n].
				off := cap(in) - cap(data)
				if off < 0 || off+len(data) > n || &in[off] != &data[0] {
					t.Fatalf("data is not a subslice of in[:n]")
				}
				out.data = append(out.data, data...)
			}
			if err != nil && (data != nil || done) {
				t.Fatalf("err %v with data %q, done %v", err, data, done)
			}
			pending = pending[n:]
			consumed += n
			if err != nil {
				out.err = err
				return out, consumed
			}
			if done {
				// Done is final and consumes nothing more.
				if n2, data2, done2, err2 := d.next(append(pending, "0\r\n"...)); n2 != 0 || data2 != nil || !done2 || err2 != nil {
					t.Fatalf("after done: next = %d, %q, %v, %v", n2, data2, done2, err2)
				}
				out.trailer = d.trailer
				return out, consumed
			}
			if n == 0 {
				break
			}
		}
	}
	out.err = io.ErrUnexpectedEOF
	return out, consumed
}

func sameChunkOutcome(a, b chunkOutcome) bool {
	return bytes.Equal(a.data, b.data) && (a.err == nil) == (b.err == nil) &&
		(len(a.trailer) == 0 && len(b.trailer) == 0 || reflect.DeepEqual(a.trailer, b.trailer))
}

// chunkedBody encodes data in chunks of the given sizes (cycled).
func chunkedBody(data string, sizes ...int) string {
	var b strings.Builder
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, data[:n])
		data = data[n:]
	}
	return b.String() + "0\r\n\r\n"
}

func TestChunkDecoderMatchesGo(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 1<<13) // 128 KiB
	rnd := rand.New(rand.NewPCG(1, 2))
	var random []byte
	for range 50000 {
		random = append(random, byte(rnd.IntN(256)))
	}
	ext := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name, body string
		ok         bool // what Go says, so that a wrong reference shows too
	}{
		// Valid bodies.
		{"empty body", "0\r\n\r\n", true},
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", true},
		{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", true},
		{"uppercase hex", "A\r\n0123456789\r\n0\r\n\r\n", true},
		{"lowercase hex", "a\r\n0123456789\r\n0\r\n\r\n", true},
		{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", true},
		{"16 digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", true},
		{"extension", "5;name\r\nhello\r\n0;last\r\n\r\n", true},
		{"extension value", "5;a=b;c=\"d;e\"\r\nhello\r\n0\r\n\r\n", true},
		{"empty extension", "5;\r\nhello\r\n0\r\n\r\n", true},
		{"extension with spaces", "5; a = b \r\nhello\r\n0\r\n\r\n", true},
		{"trailing whitespace", "5 \t \r\nhello\r\n0\t\r\n\r\n", true},
		{"CRLF in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", true},
		{"binary data", "4\r\n\x00\xff\n\r\r\n0\r\n\r\n", true},
		{"trailer", "0\r\nX-A: b\r\n\r\n", true},
		{"trailer after data", "3\r\nabc\r\n0\r\nx-a: b\r\n\r\n", true},
		{"trailers repeated", "0\r\nx-a: b\r\nX-B:c  \t\r\nX-A: d\r\n\r\n", true},
		{"trailer empty value", "0\r\nX-A:\r\n\r\n", true},
		{"trailer value spaces", "0\r\nX-A: \t b  c \t\r\n\r\n", true},
		{"trailer obs-text", "0\r\nX-A: caf\xc3\xa9\xff\r\n\r\n", true},
		{"trailer folded", "0\r\nX-A: b\r\n  c\r\n\td \r\nX-B: e\r\n\r\n", true},
		{"trailer folded blank", "0\r\nX-A: b\r\n \r\n\r\n", true},
		{"trailer key with space", "0\r\nX A: b\r\n\r\n", true},
		{"trailer space before colon", "0\r\nx-a : b\r\n\r\n", true},
		{"trailer digit key", "0\r\n1x: b\r\n\r\n", true},
		{"trailer token key", "0\r\nx!#$%&'*+-.^_`|~: b\r\n\r\n", true},
		{"trailer colon in value", "0\r\nX-A: b:c\r\n\r\n", true},
		{"trailer framing name", "0\r\nContent-Length: 5\r\n\r\n", true},
		{"trailer bare LF inside", "0\r\nX-A: b\nX-B: c\r\n\r\n", true},
		{"trailer near 4 KiB", "0\r\nX-A: " + ext(4000) + "\r\n\r\n", true},
		{"after the end", "0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", true},
		{"size line of 4096", "1;" + ext(4092) + "\r\nx\r\n0\r\n\r\n", true},
		{"last line of 4096", "0;" + ext(4092) + "\r\n\r\n", true},
		{"byte chunks", chunkedBody(long[:3000], 1), true},
		{"extensions under the excess", strings.Repeat("1;"+ext(1000)+"\r\nx\r\n", 16) + "0\r\n\r\n", true},
		{"large chunk", chunkedBody(long, len(long)), true},
		{"mixed chunks", chunkedBody(long, 1, 4095, 4096, 4097, 10000, 7), true},
		{"random data", chunkedBody(string(random), 333, 8192), true},
		{"large with trailer", strings.TrimSuffix(chunkedBody(long, 5000), "\r\n") + "X-A: 1\r\nX-B: 2\r\n\r\n", true},

		// Invalid bodies.
		{"nothing", "", false},
		{"bad hex", "z\r\nhello\r\n0\r\n\r\n", false},
		{"hex prefix", "0x5\r\nhello\r\n0\r\n\r\n", false},
		{"sign", "+5\r\nhello\r\n0\r\n\r\n", false},
		{"negative", "-5\r\nhello\r\n0\r\n\r\n", false},
		{"empty size", "\r\nhello\r\n0\r\n\r\n", false},
		{"extension only", ";x\r\nhello\r\n0\r\n\r\n", false},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n", false},
		{"space before extension", "5 ;x\r\nhello\r\n0\r\n\r\n", false},
		{"space inside", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n", false},
		{"17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", false},
		{"overflow", "10000000000000000\r\nhello\r\n0\r\n\r\n", false},
		{"huge size", "ffffffffffffffff\r\nhello\r\n0\r\n\r\n", false},
		{"missing CRLF after data", "5\r\nhello0\r\n\r\n", false},
		{"LF after data", "5\r\nhello\n0\r\n\r\n", false},
		{"CR after data", "5\r\nhello\r0\r\n\r\n", false},
		{"CR and junk after data", "3\r\nabc\rx5\r\nhello\r\n0\r\n\r\n", false},
		{"data too long", "5\r\nhello!\r\n0\r\n\r\n", false},
		{"data too short", "5\r\nhell\r\n0\r\n\r\n", false},
		{"bare LF size line", "5\nhello\r\n0\r\n\r\n", false},
		{"bare LF last line", "0\n\r\n", false},
		{"CR CR LF", "5\r\r\nhello\r\n0\r\n\r\n", false},
		{"CR inside size line", "5\rx\r\nhello\r\n0\r\n\r\n", false},
		{"CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", false},
		{"size line of 4097", "1;" + ext(4093) + "\r\nx\r\n0\r\n\r\n", true},
		{"size line of 4098", "1;" + ext(4094) + "\r\nx\r\n0\r\n\r\n", false},
		{"last chunk with too much non-data", "0;" + ext(4000) + "\r\n\r\n", true},
		{"folded trailer after an empty value", "0\r\nX-A:\r\n b\r\n\r\n", true},
		{"long line no LF", "1;" + ext(5000), false},
		{"too much non-data", strings.Repeat("1;"+ext(1100)+"\r\nx\r\n", 16) + "0\r\n\r\n", false},
		{"data does not pay ahead", chunkedBody(long[:10000], 10000)[:10008] + strings.Repeat("1;"+ext(1100)+"\r\nx\r\n", 16) + "0\r\n\r\n", false},
		{"bare LF ends trailers", "0\r\n\n", false},
		{"bare LF after field", "0\r\nX-A: b\n\r\n", false},
		{"bare LF empty line", "0\r\nX-A: b\r\n\n", false},
		{"bare LF both", "0\r\nX-A: b\n\n", false},
		{"bare LF after fold", "0\r\nX-A: b\r\n c\n\r\n", false},
		{"trailer no colon", "0\r\nX-A b\r\n\r\n", false},
		{"trailer empty key", "0\r\n: b\r\n\r\n", false},
		{"trailer leading space", "0\r\n X-A: b\r\n\r\n", false},
		{"trailer leading tab", "0\r\n\tX-A: b\r\n\r\n", false},
		{"trailer tab in key", "0\r\nX-A\t: b\r\n\r\n", false},
		{"trailer bad key byte", "0\r\nX(A): b\r\n\r\n", false},
		{"trailer non-ASCII key", "0\r\nX-\xc3\xa9: b\r\n\r\n", false},
		{"trailer NUL key", "0\r\nX\x00A: b\r\n\r\n", false},
		{"trailer NUL value", "0\r\nX-A: b\x00c\r\n\r\n", false},
		{"trailer DEL value", "0\r\nX-A: b\x7f\r\n\r\n", false},
		{"trailer CR value", "0\r\nX-A: b\rc\r\n\r\n", false},
		{"trailer CR CR LF", "0\r\nX-A: b\r\r\n\r\n", false},
		{"trailer bad folded", "0\r\nX-A: b\r\n c\x01\r\n\r\n", false},
		{"trailer no colon after field", "0\r\nX-A: b\r\nX-B\r\n\r\n", false},
		{"a 5 KB trailer", "0\r\nX-A: " + ext(5000) + "\r\n\r\n", true},
		{"trailer too long for Go", "0\r\nX-A: " + ext(17000) + "\r\n\r\n", false},

		// Truncated bodies.
		{"no last chunk", "5\r\nhello\r\n", false},
		{"partial data", "5\r\nhel", false},
		{"partial size line", "5", false},
		{"partial CRLF", "5\r\nhello\r", false},
		{"no trailer end", "0\r\n", false},
		{"partial trailer end", "0\r\n\r", false},
		{"unended trailer", "0\r\nX-A: b\r\n", false},
		{"large truncated", chunkedBody(long, 9000)[:100000], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := goChunked(tt.body)
			if (want.err == nil) != tt.ok {
				t.Fatalf("Go's client: err = %v, the table says ok = %v", want.err, tt.ok)
			}
			check := func(how string, cuts []int) {
				t.Helper()
				got, _ := feedChunked(t, tt.body, cuts)
				if !sameChunkOutcome(got, want) {
					t.Fatalf("%s: got %d bytes, trailer %v, err %v; Go: %d bytes, trailer %v, err %v",
						how, len(got.data), got.trailer, got.err, len(want.data), want.trailer, want.err)
				}
			}
			check("whole", nil)
			if len(tt.body) <= 300 {
				for i := range len(tt.body) + 1 {
					check(fmt.Sprintf("split at %d", i), []int{i})
				}
				var bytewise []int
				for i := range len(tt.body) {
					bytewise = append(bytewise, i)
				}
				check("byte by byte", bytewise)
			}
			rnd := rand.New(rand.NewPCG(uint64(len(tt.body)), 7))
			for r := range 20 {
				var cuts []int
				for c := 0; c < len(tt.body); {
					cuts = append(cuts, c)
					c += 1 + rnd.IntN(min(len(tt.body), 1<<(r%15+1)))
				}
				check(fmt.Sprintf("random cuts %d", r), cuts)
			}
		})
	}
}

func TestChunkDecoderStopsAtEnd(t *testing.T) {
	tests := []struct{ body, after string }{
		{"0\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"},
		{"5\r\nhello\r\n0\r\n\r\n", "5\r\nextra\r\n0\r\n\r\n"},
		{"0\r\nX-A: b\r\n\r\n", "\r\n\r\n"},
		{"0;x\r\nX-A: b\n c\r\n\r\n", "garbage"},
	}
	for _, tt := range tests {
		in := tt.body + tt.after
		for i := range len(in) + 1 {
			got, consumed := feedChunked(t, in, []int{i})
			if got.err != nil || consumed != len(tt.body) {
				t.Fatalf("%q split at %d: consumed %d of %d, err %v", in, i, consumed, len(tt.body), got.err)
			}
		}
	}
}

func TestChunkDecoderLongLine(t *testing.T) {
	tests := []struct {
		name, prefix string // prefix: the body before the long line
		limit        int    // the most bytes the line may take
	}{
		{"size line", "", maxChunkLine},
		{"size line after data", "3\r\nabc\r\n", maxChunkLine},
		{"trailer line", "0\r\nX-A: b\r\n", maxChunkTrailer - len("X-A: b\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte short of the limit, and no '\n' yet: more may come.
			in := []byte(tt.prefix + strings.Repeat("1", tt.limit-1))
			var d chunkDecoder
			for {
				n, _, done, err := d.next(in)
				if err != nil || done {
					t.Fatalf("%d bytes of line: done %v, err %v; want to wait", tt.limit-1, done, err)
				}
				in = in[n:]
				if n == 0 {
					break
				}
			}
			if len(in) != tt.limit-1 {
				t.Fatalf("consumed part of the line: %d bytes left", len(in))
			}
			// At the limit without '\n': an error now, without more input.
			in = append(in, '1')
			if _, _, _, err := d.next(in); err == nil {
				t.Fatalf("%d bytes without a newline: no error", len(in))
			}
			// The error sticks.
			if _, _, _, err := d.next([]byte("\r\n")); err == nil {
				t.Fatalf("no error after an error")
			}
		})
	}
}

func TestChunkDecoderTrailerLimit(t *testing.T) {
	// The whole trailer section, empty line included, is capped at
	// maxChunkTrailer bytes (Go's client: its read buffer, the goroutine
	// path's 16 KiB).
	field := func(size int) string { // a field line of size bytes
		return "X-A: " + strings.Repeat("v", size-len("X-A: \r\n")) + "\r\n"
	}
	tests := []struct {
		name, trailer string
		ok            bool
	}{
		{"10 KiB", field(10<<10) + "\r\n", true},
		{"at the cap", strings.Repeat(field(1<<10), 15) + field(1<<10-2) + "\r\n", true},
		{"over the cap", strings.Repeat(field(1<<10), 15) + field(1<<10-1) + "\r\n", false},
		{"20 KiB", field(20<<10) + "\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "3\r\nabc\r\n0\r\n" + tt.trailer
			got, _ := feedChunked(t, body, []int{100, 3000, 9000})
			if (got.err == nil) != tt.ok || string(got.data) != "abc" {
				t.Fatalf("data %q, err %v; want ok %v", got.data, got.err, tt.ok)
			}
			if tt.ok && len(got.trailer["X-A"]) != strings.Count(tt.trailer, "X-A") {
				t.Fatalf("%d values, want %d", len(got.trailer["X-A"]), strings.Count(tt.trailer, "X-A"))
			}
		})
	}
}

func TestChunkDecoderReset(t *testing.T) {
	var d chunkDecoder
	decode := func(body string) (string, error) {
		in := []byte(body)
		var data []byte
		for {
			n, piece, done, err := d.next(in)
			data = append(data, piece...)
			in = in[n:]
			if err != nil {
				return string(data), err
			}
			if done {
				return string(data), nil
			}
			if n == 0 {
				return string(data), errors.New("incomplete")
			}
		}
	}
	if data, err := decode("3\r\nabc\r\n0\r\nX-A: b\r\n\r\n"); err != nil || data != "abc" || d.trailer.Get("X-A") != "b" {
		t.Fatalf("first body: %q, %v, trailer %v", data, err, d.trailer)
	}
	d.reset()
	if data, err := decode("2\r\nde\r\n0\r\n\r\n"); err != nil || data != "de" || d.trailer != nil {
		t.Fatalf("after reset: %q, %v, trailer %v", data, err, d.trailer)
	}
	d.reset()
	if _, err := decode("x\r\n"); err == nil {
		t.Fatal("bad body: no error")
	}
	d.reset()
	if data, err := decode("1\r\nf\r\n0\r\n\r\n"); err != nil || data != "f" {
		t.Fatalf("reset after an error: %q, %v", data, err)
	}
}
