package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestServerRefusesBadBuildTimeouts(t *testing.T) {
	for _, v := range []string{"0", "-1m", "21h"} {
		var out, errb bytes.Buffer
		if code := runServer(context.Background(), []string{"--build-timeout", v, "--data-dir", t.TempDir()}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "at most 20h") {
			t.Errorf("--build-timeout %s: exit %d, stderr %q; want 2 and the allowed range", v, code, errb.String())
		}
	}
}
