package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
)

// newTestStore starts a real embedded NATS server in a temp dir.
func newTestStore(t *testing.T) (*Store, *Server) {
	t.Helper()
	srv, err := StartServer(ServerConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}

func TestBucketCAS(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := context.Background()
	rev, err := st.AppNames.Create(ctx, "hello", model.AppName{ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppNames.Create(ctx, "hello", model.AppName{ID: "a2"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if _, err := st.AppNames.Update(ctx, "hello", model.AppName{ID: "a3"}, rev+100); !errors.Is(err, ErrConflict) {
		t.Fatalf("Update at a stale revision = %v, want ErrConflict", err)
	}
	got, _, err := st.AppNames.Get(ctx, "hello")
	if err != nil || got.ID != "a1" {
		t.Fatalf("Get = %v, %v; want a1", got, err)
	}
	if err := st.AppNames.Delete(ctx, "hello", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.AppNames.Get(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	// A deleted key can be created again.
	if _, err := st.AppNames.Create(ctx, "hello", model.AppName{ID: "a4"}); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
}

func TestBucketListAndWatch(t *testing.T) {
	st, _ := newTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"a.1", "a.2", "b.1"} {
		if _, err := st.Statuses.Put(ctx, k, model.DynoStatus{ID: k}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := st.Statuses.List(ctx, "a.>")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("List(a.>) = %d entries, want 2", len(list))
	}
	ch, err := st.Statuses.Watch(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	initial := 0
	for ev := range ch {
		if ev.Ready {
			break
		}
		initial++
	}
	if initial != 3 {
		t.Fatalf("watch sent %d initial entries, want 3", initial)
	}
	if err := st.Statuses.Delete(ctx, "b.1", 0); err != nil {
		t.Fatal(err)
	}
	ev := <-ch
	if !ev.Deleted || ev.Key != "b.1" {
		t.Fatalf("watch event = %+v, want the delete of b.1", ev)
	}
}

func TestBlobsRoundTripAndPersistence(t *testing.T) {
	dir := t.TempDir()
	payload := bytes.Repeat([]byte("slug"), 300_000) // spans several chunks
	start := func() (*Store, *Server) {
		srv, err := StartServer(ServerConfig{Dir: dir, Listen: "127.0.0.1:0", User: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := srv.Connect("test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		st, err := Open(context.Background(), nc, 1)
		if err != nil {
			t.Fatal(err)
		}
		return st, srv
	}
	st, srv := start()
	size, sum, err := st.Slugs.Put(context.Background(), "s1", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(payload)) || len(sum) != len("SHA256:")+64 {
		t.Fatalf("Put = %d, %q", size, sum)
	}
	srv.Shutdown()
	st, srv = start()
	defer srv.Shutdown()
	r, err := st.Slugs.Get(context.Background(), "s1")
	if err != nil {
		t.Fatalf("Get after a restart: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Get after a restart returned %d bytes (err %v), want %d", len(got), err, len(payload))
	}
	if _, err := st.Slugs.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope) = %v, want ErrNotFound", err)
	}
}
