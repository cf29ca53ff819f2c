package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		format  string
		verbose bool
		check   func(out string) bool
		wantErr bool
	}{
		{format: "json", check: func(out string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(out), &m) == nil && m["msg"] == "hello" && m["role"] == "api"
		}},
		{format: "text", check: func(out string) bool { return strings.Contains(out, "msg=hello role=api") }},
		{format: "", check: func(out string) bool { return strings.Contains(out, "level=INFO") }},
		{format: "json", verbose: true, check: func(out string) bool { return strings.Contains(out, `"level":"DEBUG"`) }},
		{format: "xml", wantErr: true},
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, tc.format, tc.verbose)
		if (err != nil) != tc.wantErr {
			t.Errorf("newLogger(%q): err %v, want error %v", tc.format, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		log.Debug("hello", "role", "api")
		log.Info("hello", "role", "api")
		first, _, _ := strings.Cut(buf.String(), "\n")
		if !tc.check(first) {
			t.Errorf("newLogger(%q, verbose %v) wrote %q", tc.format, tc.verbose, buf.String())
		}
	}
}
