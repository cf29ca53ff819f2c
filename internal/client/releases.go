package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Release is one version of an app: a slug plus config vars.
type Release struct {
	ID          string    `json:"id"`
	Version     int       `json:"version"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Current     bool      `json:"current"`
	User        Owner     `json:"user"`
	Slug        *Ref      `json:"slug"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Releases lists an app's releases; r pages them (Field defaults to version),
// e.g. ListRange{Max: 15, Descending: true} for the 15 newest.
func (c *Client) Releases(ctx context.Context, app string, r ListRange) ([]Release, error) {
	if r.Field == "" {
		r.Field = "version"
	}
	return list[Release](ctx, c, "/apps/"+esc(app)+"/releases", r)
}

// Release gets one release by version ("3" or "v3") or ID.
func (c *Client) Release(ctx context.Context, app, version string) (*Release, error) {
	version = strings.TrimPrefix(version, "v")
	var rel Release
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/releases/"+esc(version), nil, nil, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}

// SourceBlob holds the URLs of an uploaded source tarball: PUT it to PutURL,
// then hand GetURL to CreateBuild.
type SourceBlob struct {
	GetURL string `json:"get_url"`
	PutURL string `json:"put_url"`
}

// Source is a place to upload a source tarball to.
type Source struct {
	SourceBlob SourceBlob `json:"source_blob"`
}

// CreateSource asks the API for a place to upload a source tarball to.
func (c *Client) CreateSource(ctx context.Context) (*Source, error) {
	var s Source
	if _, err := c.do(ctx, http.MethodPost, "/sources", struct{}{}, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UploadSource PUTs a gzipped tarball to putURL, streaming body. size is the
// body's length, or -1 if unknown (then the body is sent chunked). The URL
// carries its own secret, so no Authorization header is sent.
func (c *Client) UploadSource(ctx context.Context, putURL string, body io.Reader, size int64) error {
	if size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.resolve(putURL), body)
	if err != nil {
		return fmt.Errorf("upload source: %w", err)
	}
	req.ContentLength = size
	c.decorate(req, false)
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// BlobRef points a build at its source.
type BlobRef struct {
	URL      string `json:"url"`
	Checksum string `json:"checksum,omitempty"`
	Version  string `json:"version,omitempty"`
}

// Build turns a source tarball into a slug and a release.
type Build struct {
	ID              string      `json:"id"`
	Status          string      `json:"status"` // pending, succeeded, failed
	OutputStreamURL string      `json:"output_stream_url"`
	SourceBlob      BlobRef     `json:"source_blob"`
	Release         *ReleaseRef `json:"release"`
	Slug            *Ref        `json:"slug"`
	App             Ref         `json:"app"`
	User            Owner       `json:"user"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
}

// Build statuses.
const (
	BuildPending   = "pending"
	BuildSucceeded = "succeeded"
	BuildFailed    = "failed"
)

// CreateBuild starts a build of the tarball at sourceURL (a source's GetURL).
func (c *Client) CreateBuild(ctx context.Context, app, sourceURL string) (*Build, error) {
	body := map[string]BlobRef{"source_blob": {URL: sourceURL}}
	var b Build
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/builds", body, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Builds lists an app's builds; r pages them (Field defaults to
// created_at), e.g. ListRange{Max: 15, Descending: true} for the newest.
func (c *Client) Builds(ctx context.Context, app string, r ListRange) ([]Build, error) {
	if r.Field == "" {
		r.Field = "created_at"
	}
	return list[Build](ctx, c, "/apps/"+esc(app)+"/builds", r)
}

// Build gets one build.
func (c *Client) Build(ctx context.Context, app, id string) (*Build, error) {
	var b Build
	if _, err := c.do(ctx, http.MethodGet, "/apps/"+esc(app)+"/builds/"+esc(id), nil, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// StreamOutput opens a build's output stream (its OutputStreamURL, which
// carries its own secret). The body yields output as the build makes it and
// ends with the build; the caller closes it.
func (c *Client) StreamOutput(ctx context.Context, outputStreamURL string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.resolve(outputStreamURL), nil)
	if err != nil {
		return nil, fmt.Errorf("open build output: %w", err)
	}
	c.decorate(req, false)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Rollback makes a new release with the slug and config vars of release
// (a version such as "3" or "v3", or an ID).
func (c *Client) Rollback(ctx context.Context, app, release string) (*Release, error) {
	var rel Release
	body := map[string]string{"release": strings.TrimPrefix(release, "v")}
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/releases", body, nil, &rel); err != nil {
		return nil, err
	}
	return &rel, nil
}
