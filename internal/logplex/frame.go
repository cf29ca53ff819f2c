package logplex

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/dyno-platform/dyno/internal/model"
)

// Drain schemes logplex speaks.
const (
	SchemeSyslog    = "syslog"     // RFC 5424 over TCP, octet counting
	SchemeSyslogTLS = "syslog+tls" // the same over TLS
	SchemeHTTPS     = "https"      // POST batches of application/logplex-1 frames
)

// ParseDrainURL checks a drain URL as given to drains:add: a known scheme,
// a host, a port for syslog, no credentials for syslog (they would travel
// in clear in every frame's header otherwise nowhere), basic auth allowed
// for https as Heroku does.
func ParseDrainURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, errors.New("the drain URL does not parse: use syslog://HOST:PORT, syslog+tls://HOST:PORT or https://[USER:PASS@]HOST/PATH")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch u.Scheme {
	case SchemeSyslog, SchemeSyslogTLS:
		if u.User != nil {
			return nil, fmt.Errorf("a %s drain takes no credentials: use %s://HOST:PORT", u.Scheme, u.Scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("a %s drain is HOST:PORT only: drop the path and query", u.Scheme)
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("a %s drain needs a port: use %s://HOST:PORT", u.Scheme, u.Scheme)
		}
	case SchemeHTTPS:
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("the drain URL's port %q is not a port number", p)
			}
		}
	default:
		return nil, fmt.Errorf("drain scheme %q is not supported: use syslog://, syslog+tls:// or https://", u.Scheme)
	}
	if u.Hostname() == "" || strings.ContainsAny(u.Hostname(), " /") {
		return nil, errors.New("the drain URL needs a host: use syslog://HOST:PORT or https://HOST/PATH")
	}
	return u, nil
}

// priority is the syslog PRI logplex gives a line: local7.info for the
// app's own output, as Heroku's samples show <190>; <40> for the platform.
func priority(l model.LogLine) int {
	if l.Source == model.SourceHeroku {
		return 40
	}
	return 190
}

func procID(l model.LogLine) string {
	if l.Dyno == "" {
		return "-"
	}
	return l.Dyno
}

// appendSyslogFrame appends one octet-counted RFC 5424 frame as logplex's
// TCP drains send it: "<len> <PRI>1 TIME TOKEN SOURCE DYNO - - MSG\n".
func appendSyslogFrame(dst []byte, token string, l model.LogLine) []byte {
	msg := fmt.Sprintf("<%d>1 %s %s %s %s - - %s\n", priority(l), l.Time.UTC().Format(model.LogTimeFormat), token, l.Source, procID(l), l.Message)
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}

// appendHTTPFrame appends one frame of a logplex-1 body as logplex's HTTP
// drains send it: host literal "host", no STRUCTURED-DATA, no newline.
func appendHTTPFrame(dst []byte, l model.LogLine) []byte {
	msg := fmt.Sprintf("<%d>1 %s host %s %s - %s", priority(l), l.Time.UTC().Format(model.LogTimeFormat), l.Source, procID(l), l.Message)
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
