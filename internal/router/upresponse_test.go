package router

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestQuickResponse: the shortcut parses what Go's parser parses, the same
// way, and leaves everything else to it untouched.
func TestQuickResponse(t *testing.T) {
	tests := []struct {
		name, in string
		method   string
		quick    bool
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "GET", true},
		{"repeated header", "HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"lower-case names, padded values", "HTTP/1.1 404 Not Found\r\ncontent-length:  3 \r\nx-thing:\tv \t\r\nX-Empty:\r\n\r\nabc", "GET", true},
		{"empty body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "OPTIONS", true},
		{"long reason", "HTTP/1.1 503 Service Unavailable Now\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET", false},
		{"until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", "GET", false},
		{"keep-alive, as Node and nginx send it", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"keep-alive in capitals", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCONNECTION: Keep-Alive\r\n\r\nx", "GET", true},
		{"keep-alive and close", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"keep-alive, upgrade", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"connection names a header", "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"no content", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", false},
		{"informational", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET", false},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", false},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"empty reason phrase", "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", "GET", false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx", "GET", false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", "GET", false},
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", "GET", false},
		{"bare LF inside", "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", "GET", false},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "GET", false},
	}
	var parts respParts // reused, as a loop's connection reuses its own
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://dyno/", nil)
			const next = "NEXT"
			br := bufio.NewReader(strings.NewReader(tt.in + next))
			br.Peek(1) // buffered, as after the first byte's wait
			before := br.Buffered()
			got := quickResponse(br, req, &parts)
			if (got != nil) != tt.quick {
				t.Fatalf("shortcut taken: %v, want %v", got != nil, tt.quick)
			}
			if got == nil {
				if br.Buffered() != before {
					t.Fatal("the shortcut consumed bytes it left to Go's parser")
				}
				return
			}
			want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(tt.in+next)), req)
			if err != nil {
				t.Fatalf("Go's parser refuses what the shortcut took: %v", err)
			}
			if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
				got.ContentLength != want.ContentLength || got.Close != want.Close || !reflect.DeepEqual(got.Header, want.Header) {
				t.Fatalf("shortcut %+v\nGo's parser %+v", got, want)
			}
			body, err := io.ReadAll(got.Body)
			wantBody, _ := io.ReadAll(want.Body)
			if err != nil || string(body) != string(wantBody) {
				t.Fatalf("body %q (%v), want %q", body, err, wantBody)
			}
			if rest, _ := io.ReadAll(br); string(rest) != next {
				t.Fatalf("after the response: %q, want %q", rest, next)
			}
		})
	}
	t.Run("cut body", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://dyno/", nil)
		br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
		br.Peek(1)
		resp := quickResponse(br, req, nil)
		if resp == nil {
			t.Fatal("shortcut not taken")
		}
		if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut body read: %v, want io.ErrUnexpectedEOF", err)
		}
	})
}
