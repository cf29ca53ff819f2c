// Package client is a typed Go client of Dyno's HTTP API, which speaks the
// shapes of Heroku's Platform API v3. The CLI is built on it; tests use it too.
//
// Every call takes a context. A non-2xx answer becomes an *Error carrying the
// API's {id, message}; a request that never got an answer becomes an
// *UnreachableError.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Accept is the media type of the Platform API v3.
const Accept = "application/vnd.heroku+json; version=3"

// DefaultUserAgent is sent when the caller does not choose a User-Agent.
const DefaultUserAgent = "dyno-cli/dev"

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// Client calls one Dyno API with one API key. It is safe for concurrent use.
type Client struct {
	baseURL   string
	apiKey    string
	userAgent string
	hc        *http.Client
}

// New returns a client of the API at baseURL (such as http://127.0.0.1:5000)
// that authenticates with apiKey (sent as a Bearer token; empty sends none).
// httpClient may be nil for a default one; since build output and logs are
// streamed, it should have no overall Timeout.
func New(baseURL, apiKey string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	return &Client{
		baseURL:   strings.TrimRight(baseURL, "/"),
		apiKey:    apiKey,
		userAgent: DefaultUserAgent,
		hc:        httpClient,
	}
}

// WithUserAgent returns a copy of c that sends ua as its User-Agent.
func (c *Client) WithUserAgent(ua string) *Client {
	cp := *c
	cp.userAgent = ua
	return &cp
}

// BaseURL is the API's base URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.baseURL }

// Error is an error answer of the API: its HTTP status and its
// {"id": ..., "message": ...} body.
type Error struct {
	StatusCode int    `json:"-"`
	ID         string `json:"id"`
	Message    string `json:"message"`
	URL        string `json:"url,omitempty"`
}

// Error returns the API's message, which is written for people.
func (e *Error) Error() string { return e.Message }

// UnreachableError says that a request got no HTTP answer at all: the server
// is down, the address is wrong, or the connection broke.
type UnreachableError struct {
	URL string // the URL requested
	Err error
}

// Error names the URL and the transport's reason.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s: %v", e.URL, e.Err)
}

// Unwrap returns the transport's error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// ListRange asks for one page of a list, as Heroku's Range header does:
// "<Field> ..; max=<Max>, order=desc". The zero value asks for everything in
// the server's default order.
type ListRange struct {
	Field      string // version for releases, id or name elsewhere
	Max        int    // 0: the server's default page size, and every page is fetched
	Descending bool
}

func (r ListRange) header() string {
	if r.Field == "" && r.Max == 0 && !r.Descending {
		return ""
	}
	field := r.Field
	if field == "" {
		field = "id"
	}
	var opts []string
	if r.Max > 0 {
		opts = append(opts, fmt.Sprintf("max=%d", r.Max))
	}
	if r.Descending {
		opts = append(opts, "order=desc")
	}
	h := field + " .."
	if len(opts) > 0 {
		h += "; " + strings.Join(opts, ", ")
	}
	return h
}

// Raw sends one request and returns the response body as it came, for
// callers that print the API's JSON unchanged (--json). body, if not nil, is
// sent as JSON.
func (c *Client) Raw(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var raw json.RawMessage
	if _, err := c.do(ctx, method, path, body, nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// RawRange GETs one page of a list with a Range header, returning the body
// as it came.
func (c *Client) RawRange(ctx context.Context, path string, r ListRange) (json.RawMessage, error) {
	var hdr http.Header
	if h := r.header(); h != "" {
		hdr = http.Header{"Range": {h}}
	}
	var raw json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, path, nil, hdr, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// do sends a JSON request to the API and decodes a 2xx JSON answer into out
// (if not nil). It returns the response headers for paging.
func (c *Client) do(ctx context.Context, method, path string, body any, hdr http.Header, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	c.decorate(req, true)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Header, nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
		}
		*raw = b
		return resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return resp.Header, nil
}

// decorate sets the headers every request carries; auth only goes to the API
// itself, never to the secret-bearing URLs it hands out.
func (c *Client) decorate(req *http.Request, auth bool) {
	req.Header.Set("Accept", Accept)
	req.Header.Set("User-Agent", c.userAgent)
	if auth && c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
}

// send performs req and turns transport failures and non-2xx answers into
// errors; on success the caller owns resp.Body.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &UnreachableError{URL: req.URL.Redacted(), Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(req, resp)
}

func decodeError(req *http.Request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{StatusCode: resp.StatusCode}
	if json.Unmarshal(b, e) == nil && e.Message != "" {
		return e
	}
	e.ID, e.Message = "", ""
	snippet := strings.TrimSpace(string(b))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	e.Message = fmt.Sprintf("%s %s answered %s", req.Method, req.URL.Path, resp.Status)
	if snippet != "" {
		e.Message += ": " + snippet
	}
	return e
}

// list GETs a JSON array, following Heroku's Next-Range paging (206 Partial
// Content) unless the caller asked for one page with a Max.
func list[T any](ctx context.Context, c *Client, path string, r ListRange) ([]T, error) {
	var all []T
	rng := r.header()
	for {
		var hdr http.Header
		if rng != "" {
			hdr = http.Header{"Range": {rng}}
		}
		var page []T
		respHdr, err := c.do(ctx, http.MethodGet, path, nil, hdr, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		next := respHdr.Get("Next-Range")
		if r.Max > 0 || next == "" || next == rng || len(page) == 0 {
			return all, nil
		}
		rng = next
	}
}

// esc escapes one path segment (an app name, a dyno name, a version).
func esc(s string) string { return url.PathEscape(s) }

// resolve makes a URL handed out by the API absolute (it should already be).
func (c *Client) resolve(u string) string {
	if strings.HasPrefix(u, "/") {
		return c.baseURL + u
	}
	return u
}

// IsNotFound reports whether err is the API's 404 not_found.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}
