package router

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestQuickRequestMatchesGo checks quickRequest against http.ReadRequest:
// whatever it parses, Go's parser parses the same, field for field; what
// it leaves to Go includes everything Go refuses. Heads are a table plus
// random mutations of it, parsed one after another into the same
// reqParts, as a loop's connection parses its requests.
func TestQuickRequestMatchesGo(t *testing.T) {
	heads := []string{
		"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
		"GET /p/a%20b?x=1&y=%41 HTTP/1.1\r\nHost: a.localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nhost: a\r\nx-lower: v\r\nX_Under: v\r\n\r\n",
		"OPTIONS /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\nX: \t spaced \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
		"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-(bad): v\r\n\r\n",
		"get / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\xc2\xa0\r\n\r\n", // not "close" to Go
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: \tclose\t, x\r\n\r\n",
		// Targets: the plain ones are split by requestURL, the others go
		// to url.ParseRequestURI.
		"GET /a/b.c-d_e~f$g&h+i,j;k=l:m@n HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p?? HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p?q?r HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /?a=%zz&b=[x] HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET //x//y HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a!b'c(d)e*f HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a[b]{c}|d^e`f\\g\"h<i>j HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%41%2F?x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = " \t\r\n:/%?#aA-_,;=!*[\\\x00\x7f\xc3"
	for _, h := range heads[:6] {
		for range 3000 {
			b := []byte(h)
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(b) - 4) // keep the final empty line
				switch rng.IntN(3) {
				case 0:
					b[i] = alphabet[rng.IntN(len(alphabet))]
				case 1:
					b = append(b[:i], b[i+1:]...)
				default:
					b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
				}
			}
			if n := headEnd(b, 0); n > 0 {
				heads = append(heads, string(b[:n]))
			}
		}
	}
	quick := 0
	var parts reqParts
	for _, h := range heads {
		got := quickRequest([]byte(h), &parts)
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(h)))
		if got == nil {
			continue
		}
		quick++
		if err != nil {
			t.Fatalf("%q: quickRequest parsed what Go refuses (%v)", h, err)
		}
		if !sameRequest(got, want) {
			t.Fatalf("%q:\n quick %+v\n    Go %+v", h, *got, *want)
		}
	}
	if quick < 100 {
		t.Fatalf("only %d of %d heads took the quick way", quick, len(heads))
	}
}

func sameRequest(a, b *http.Request) bool {
	return a.Method == b.Method && reflect.DeepEqual(a.URL, b.URL) && a.Proto == b.Proto &&
		a.ProtoMajor == b.ProtoMajor && a.ProtoMinor == b.ProtoMinor && reflect.DeepEqual(a.Header, b.Header) &&
		a.Body == b.Body && a.ContentLength == b.ContentLength && reflect.DeepEqual(a.TransferEncoding, b.TransferEncoding) &&
		a.Close == b.Close && a.Host == b.Host && a.RequestURI == b.RequestURI && a.Trailer == nil && b.Trailer == nil
}

func BenchmarkQuickRequest(b *testing.B) {
	head := []byte("GET /api/items?id=12 HTTP/1.1\r\nHost: benchapp.localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate\r\nCookie: session=abcdef0123456789\r\nConnection: keep-alive\r\n\r\n")
	b.Run("quick", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if quickRequest(head, nil) == nil {
				b.Fatal("not quick")
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		var rd bytes.Reader
		br := bufio.NewReader(nil)
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(head)
			br.Reset(&rd)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkQuickRequestSmall(b *testing.B) {
	head := []byte("GET / HTTP/1.1\r\nHost: benchapp.localhost\r\n\r\n")
	b.Run("quick", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if quickRequest(head, nil) == nil {
				b.Fatal("not quick")
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		var rd bytes.Reader
		br := bufio.NewReader(nil)
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(head)
			br.Reset(&rd)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}
