package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadEvents(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "one per event", in: "id: 1\ndata: a\n\nid: 2\ndata: b\n\n", want: []string{"a", "b"}},
		{name: "multi-line data", in: "data: a\ndata: b\n\n", want: []string{"a", "b"}},
		{name: "empty data skipped", in: "data:\ndata: x\n\n", want: []string{"x"}},
		{name: "CRLF, no space, comments", in: ": hi\r\nevent: message\r\ndata:x: y\r\n\r\n", want: []string{"x: y"}},
		{name: "last event without blank line", in: "data: tail", want: []string{"tail"}},
		{name: "nothing", in: "", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := readEvents(strings.NewReader(tc.in), func(l string) error { got = append(got, l); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorsAndPaging(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apps/{app}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"id":"not_found","message":"Couldn't find that app."}`)
	})
	mux.HandleFunc("GET /apps", func(w http.ResponseWriter, r *http.Request) {
		// Two pages, as Heroku pages with 206 and Next-Range.
		if r.Header.Get("Range") == "" {
			w.Header().Set("Next-Range", "]b..; max=1")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, `[{"name":"a"}]`)
			return
		}
		io.WriteString(w, `[{"name":"b"}]`)
	})
	mux.HandleFunc("GET /apps/{app}/releases", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Next-Range", "]1..; max=1, order=desc")
		w.WriteHeader(http.StatusPartialContent)
		io.WriteString(w, `[{"version":`+map[string]string{"version ..; max=1, order=desc": "2"}[r.Header.Get("Range")]+`}]`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := New(srv.URL+"/", "k", nil)
	ctx := context.Background()

	_, err := c.App(ctx, "nope")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.ID != "not_found" || err.Error() != "Couldn't find that app." || !IsNotFound(err) {
		t.Errorf("App error = %#v", err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || len(apps) != 2 || apps[0].Name != "a" || apps[1].Name != "b" {
		t.Errorf("Apps = %+v, %v; want both pages", apps, err)
	}
	rels, err := c.Releases(ctx, "hello", ListRange{Max: 1, Descending: true})
	if err != nil || len(rels) != 1 || rels[0].Version != 2 {
		t.Errorf("Releases = %+v, %v; want one page with v2", rels, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	_, err = New(dead, "k", nil).Apps(ctx)
	var unreachable *UnreachableError
	if !errors.As(err, &unreachable) || !strings.HasPrefix(unreachable.URL, dead) {
		t.Errorf("Apps on a dead port = %v, want an UnreachableError", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Apps(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Apps with a cancelled context = %v", err)
	}
}

// TestLogSessionLines checks that every line count is sent, 0 included:
// 0 means no history, which an omitted field (the API's default) is not.
func TestLogSessionLines(t *testing.T) {
	bodies := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"ls","logplex_url":"/log-sessions/ls?token=t"}`)
	}))
	defer srv.Close()
	c := New(srv.URL, "k", nil)
	for _, tc := range []struct {
		opts LogSessionOpts
		want string
	}{
		{LogSessionOpts{Lines: 0, Tail: true}, `"lines":0`},
		{LogSessionOpts{Lines: 5000}, `"lines":5000`},
	} {
		if _, err := c.CreateLogSession(context.Background(), "hello", tc.opts); err != nil {
			t.Fatal(err)
		}
		if got := <-bodies; !strings.Contains(got, tc.want) {
			t.Errorf("CreateLogSession(%+v) sent %s, want %s in it", tc.opts, got, tc.want)
		}
	}
}
