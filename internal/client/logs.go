package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// LogSessionOpts filters a log session, as `heroku logs` sends it.
type LogSessionOpts struct {
	Lines  int    `json:"lines"`            // lines of history: 0 = none (with Tail, only new lines); the API caps it at 1500
	Tail   bool   `json:"tail"`             // keep the stream open for new lines
	Source string `json:"source,omitempty"` // app or heroku
	Dyno   string `json:"dyno,omitempty"`   // web.1, or a process type such as web
}

// LogSession is a short-lived URL to read an app's logs from.
type LogSession struct {
	ID         string    `json:"id"`
	LogplexURL string    `json:"logplex_url"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// CreateLogSession opens a log session on an app.
func (c *Client) CreateLogSession(ctx context.Context, app string, opts LogSessionOpts) (*LogSession, error) {
	var s LogSession
	if _, err := c.do(ctx, http.MethodPost, "/apps/"+esc(app)+"/log-sessions", opts, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// maxEventLine bounds one line of the event stream; logplex splits log lines
// at 10000 bytes, so this leaves room.
const maxEventLine = 1 << 20

// StreamLogSession reads a session's logplex URL as a server-sent event
// stream and calls fn with each log line, in order, as it arrives (an event
// whose data holds several lines gives several calls). It returns nil when
// the server ends the stream, ctx.Err() when ctx ends first, and fn's error
// if fn fails.
func (c *Client) StreamLogSession(ctx context.Context, logplexURL string, fn func(line string) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.resolve(logplexURL), nil)
	if err != nil {
		return fmt.Errorf("open log stream: %w", err)
	}
	c.decorate(req, false)
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	err = readEvents(resp.Body, fn)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// readEvents parses text/event-stream: "data:" lines accumulate until a blank
// line ends the event; id, event, retry and comment lines are ignored.
func readEvents(r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var data []string
	dispatch := func() error {
		defer func() { data = data[:0] }()
		for _, d := range data {
			for _, line := range strings.Split(d, "\n") {
				if line == "" {
					continue
				}
				if err := fn(line); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if err := dispatch(); err != nil {
				return err
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		if field == "data" {
			data = append(data, strings.TrimPrefix(value, " "))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read log stream: %w", err)
	}
	// A stream cut without its final blank line still delivers what it sent.
	return dispatch()
}
