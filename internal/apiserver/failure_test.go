package apiserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// TestStalledUploadIsAbandoned sends a source upload that promises 100 MB
// and stops after a few bytes: the handler must give up after the stall
// timeout, answer 408 and leave no partial blob.
func TestStalledUploadIsAbandoned(t *testing.T) {
	e := newEnv(t, 0)
	e.srv.cfg.SourceStallTimeout = 200 * time.Millisecond
	var s map[string]sourceBlob
	e.must(201, "POST", "/sources", nil, &s)
	put, err := url.Parse(s["source_blob"].PutURL)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(put.Path, "/sources/")

	conn, err := net.Dial("tcp", put.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", put.RequestURI(), put.Host, 100<<20)
	if _, err := conn.Write(make([]byte, 70<<10)); err != nil { // some data, then nothing
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"request_timeout"`) {
		t.Errorf("stalled upload: status %d %s, want 408 request_timeout", resp.StatusCode, body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the stall was noticed after %s, want about 200ms", took)
	}
	if rc, err := e.st.Sources.Get(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("partial source after a stalled upload: %v, want ErrNotFound", err)
	}

	// An upload that keeps sending, slower than the stall timeout overall
	// but never idle that long, succeeds.
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			time.Sleep(100 * time.Millisecond)
			pw.Write(make([]byte, 1024))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", put.String(), pr)
	slow, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	slow.Body.Close()
	if slow.StatusCode != http.StatusOK {
		t.Errorf("slow but steady upload: status %d, want 200", slow.StatusCode)
	}
}

// TestFailedReleaseLeavesNoFormation makes the last of a release's writes
// (the app's pointer) fail and checks the earlier ones are undone: no
// release and no formation entries for the slug's process types.
func TestFailedReleaseLeavesNoFormation(t *testing.T) {
	e := newEnv(t, 0)
	created := e.createApp("half")
	ctx := context.Background()
	app, _, err := e.st.Apps.Get(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The app record vanishes (the formation stays): pointApp fails.
	if err := e.st.Apps.Delete(ctx, app.ID, 0); err != nil {
		t.Fatal(err)
	}
	slug := &model.Slug{ID: "slug-1", ProcessTypes: map[string]string{"web": "./web", "worker": "./work"}}
	_, err = e.srv.newRelease(ctx, app, func(*model.Release) (*model.Release, error) {
		return &model.Release{Slug: slug, Description: "Deploy 12345678"}, nil
	})
	if err == nil {
		t.Fatal("newRelease succeeded for a deleted app")
	}
	f, _, err := e.st.Formations.Get(ctx, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Processes) != 0 {
		t.Errorf("a failed release left formation entries %+v", f.Processes)
	}
	if rels, err := e.st.Releases.List(ctx, app.ID+".>"); err != nil || len(rels) != 0 {
		t.Errorf("a failed release left %d releases (%v)", len(rels), err)
	}
}
