// Package storetest starts real stores for other packages' tests: an
// embedded NATS JetStream server in a temp dir on a free loopback port,
// stopped when the test ends. Only tests import it.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/store"
)

// New starts a NATS server and opens a store on it. The server is
// returned for tests that stop or restart it.
func New(t testing.TB) (*store.Store, *store.Server) {
	t.Helper()
	srv, err := store.StartServer(store.ServerConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "u", Password: "p"})
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
	st, err := store.Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}
