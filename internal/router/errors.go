package router

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// hcode is one of Heroku's router error codes (heroku.md §2.5).
type hcode struct {
	code   string
	desc   string
	at     string // log level: error, warning or info
	status int
	sock   string // H18: which side broke the connection
}

// The codes this router raises. They are read-only.
var (
	errH10       = &hcode{code: "H10", desc: "App crashed", at: "error", status: http.StatusServiceUnavailable}
	errH11       = &hcode{code: "H11", desc: "Backlog too deep", at: "error", status: http.StatusServiceUnavailable}
	errH12       = &hcode{code: "H12", desc: "Request timeout", at: "error", status: http.StatusServiceUnavailable}
	errH13       = &hcode{code: "H13", desc: "Connection closed without response", at: "error", status: http.StatusServiceUnavailable}
	errH14       = &hcode{code: "H14", desc: "No web processes running", at: "error", status: http.StatusServiceUnavailable}
	errH15       = &hcode{code: "H15", desc: "Idle connection", at: "error", status: http.StatusServiceUnavailable}
	errH18       = &hcode{code: "H18", desc: "Server Request Interrupted", at: "error", status: http.StatusServiceUnavailable, sock: "backend"}
	errH19       = &hcode{code: "H19", desc: "Backend connection timeout", at: "error", status: http.StatusServiceUnavailable}
	errH20       = &hcode{code: "H20", desc: "App boot timeout", at: "error", status: http.StatusServiceUnavailable}
	errH21       = &hcode{code: "H21", desc: "Backend connection refused", at: "error", status: http.StatusServiceUnavailable}
	errH22       = &hcode{code: "H22", desc: "Connection limit reached", at: "error", status: http.StatusServiceUnavailable}
	errH26       = &hcode{code: "H26", desc: "Request Error", at: "error", status: http.StatusBadRequest}
	errH26Expect = &hcode{code: "H26", desc: "Request Error", at: "error", status: http.StatusExpectationFailed}
	errH27       = &hcode{code: "H27", desc: "Client Request Interrupted", at: "warning", status: 499, sock: "client"}
	errH28       = &hcode{code: "H28", desc: "Client Connection Idle", at: "warning", status: 499, sock: "client"}
	errH80       = &hcode{code: "H80", desc: "Maintenance mode", at: "info", status: http.StatusServiceUnavailable}
	errH81       = &hcode{code: "H81", desc: "Blank app", at: "info", status: http.StatusServiceUnavailable}
	errH99       = &hcode{code: "H99", desc: "Platform error", at: "error", status: http.StatusServiceUnavailable}
)

// H25 variants: the dyno's response breaks one of the router's limits.
var (
	errH25Header = &hcode{code: "H25", desc: "HTTP restriction: oversized header", at: "error", status: http.StatusBadGateway}
	errH25Cookie = &hcode{code: "H25", desc: "HTTP restriction: oversized cookie", at: "error", status: http.StatusBadGateway}
	errH25Status = &hcode{code: "H25", desc: "HTTP restriction: invalid status line", at: "error", status: http.StatusBadGateway}
)

// restrictionError is a response refused by the router's limits.
type restrictionError struct{ code *hcode }

func (e *restrictionError) Error() string { return "dyno response refused: " + e.code.desc }

// dialError marks a failure to connect to a dyno, the one failure that is
// safe to retry on another dyno: nothing of the request was sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "connect to dyno at " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// code is H21 for a refused connection, H19 for a timeout or any other
// failure to establish it.
func (e *dialError) code() *hcode {
	if errors.Is(e.err, syscall.ECONNREFUSED) {
		return errH21
	}
	return errH19
}

// classify maps a proxy error from the transport to an H code. clientGone
// reports whether the client's request context has ended.
func classify(err error, clientGone bool) *hcode {
	var de *dialError
	var ne net.Error
	var re *restrictionError
	switch {
	case errors.As(err, &re):
		return re.code
	case err != nil && strings.Contains(err.Error(), "server response headers exceeded"):
		return errH25Header // Transport.MaxResponseHeaderBytes
	case clientGone || errors.Is(err, context.Canceled):
		return errH27
	case errors.As(err, &de):
		return de.code()
	case errors.As(err, &ne) && ne.Timeout():
		// Transport.ResponseHeaderTimeout: no first byte in time.
		return errH12
	default:
		// The dyno accepted the connection, then closed it (or sent
		// something that is not HTTP) without a response.
		return errH13
	}
}

// The pages the router answers with itself. Heroku serves them unstyled
// (heroku.md §2.6); ours are self-contained: no external assets.
var (
	applicationErrorPage = []byte(`<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Application Error</title>
  </head>
  <body>
    <h1>Application Error</h1>
    <p>An error occurred in the application and your page could not be served. If you are the application owner, check your logs for details. You can do this from the Dyno CLI with the command <code>dyno logs --tail</code>.</p>
  </body>
</html>
`)
	noSuchAppPage = []byte(`<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>No such app</title>
  </head>
  <body>
    <h1>There's nothing here, yet.</h1>
    <p>No app answers at this address. If you are the application owner, check the app name and the domain you used.</p>
  </body>
</html>
`)
	maintenancePage = []byte(`<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Offline for Maintenance</title>
  </head>
  <body>
    <h1>Offline for Maintenance</h1>
    <p>This app is undergoing maintenance right now. Please check back later.</p>
  </body>
</html>
`)
	blankAppPage = []byte(`<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Welcome to your new app!</title>
  </head>
  <body>
    <h1>Welcome to your new app!</h1>
    <p>Nothing is deployed to this app yet. If you are the application owner, deploy your code with <code>dyno deploy</code>.</p>
  </body>
</html>
`)
	badRequestPage = []byte(`<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Bad Request</title>
  </head>
  <body>
    <h1>Bad Request</h1>
    <p>The router could not accept this request.</p>
  </body>
</html>
`)
	applicationErrorLen = strconv.Itoa(len(applicationErrorPage))
	maintenanceLen      = strconv.Itoa(len(maintenancePage))
	blankAppLen         = strconv.Itoa(len(blankAppPage))
	badRequestLen       = strconv.Itoa(len(badRequestPage))
	noSuchAppLen        = strconv.Itoa(len(noSuchAppPage))
)

// pageFor is the page the router answers code with.
func pageFor(code *hcode) ([]byte, string) {
	switch code {
	case errH80:
		return maintenancePage, maintenanceLen
	case errH81:
		return blankAppPage, blankAppLen
	case errH26, errH26Expect:
		return badRequestPage, badRequestLen
	}
	return applicationErrorPage, applicationErrorLen
}

// writeError answers a router error with its status and page.
func writeError(w http.ResponseWriter, code *hcode) {
	page, n := pageFor(code)
	writePage(w, code.status, page, n)
}

// writePage answers a router-made page with status.
func writePage(w http.ResponseWriter, status int, page []byte, length string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", length)
	h.Set("Cache-Control", "no-cache, no-store")
	w.WriteHeader(status)
	w.Write(page)
}
