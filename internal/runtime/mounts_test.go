package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateMount(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		m    Mount
		ok   bool
	}{
		{"below tmp", Mount{Source: dir, Destination: "/tmp/build"}, true},
		{"below app read-only", Mount{Source: dir, Destination: "/app/vendor", ReadOnly: true}, true},
		{"new top-level dir", Mount{Source: dir, Destination: "/buildpack"}, true},
		{"root", Mount{Source: dir, Destination: "/"}, false},
		{"over app", Mount{Source: dir, Destination: "/app"}, false},
		{"over tmp", Mount{Source: dir, Destination: "/tmp/"}, false},
		{"into usr", Mount{Source: dir, Destination: "/usr/local/x"}, false},
		{"over etc", Mount{Source: dir, Destination: "/etc"}, false},
		{"into proc", Mount{Source: dir, Destination: "/proc/x"}, false},
		{"relative destination", Mount{Source: dir, Destination: "tmp/x"}, false},
		{"relative source", Mount{Source: "x", Destination: "/tmp/x"}, false},
		{"missing source", Mount{Source: filepath.Join(dir, "nope"), Destination: "/tmp/x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateMount(tt.m); (err == nil) != tt.ok {
				t.Errorf("validateMount(%+v) = %v, want ok=%v", tt.m, err, tt.ok)
			}
		})
	}
}

// TestContainerMounts checks that a read-write bind is shared with the host
// and a read-only one cannot be written.
func TestContainerMounts(t *testing.T) {
	rt := newTestContainerRuntime(t)
	slug := newTestSlug(t)
	rw, ro := t.TempDir(), t.TempDir()
	for _, d := range []string{rw, ro} {
		if err := os.Chown(d, testUID, testGID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ro, "in"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, slug, "cat /tmp/ro/in > /tmp/rw/out && if touch /tmp/ro/x 2>/dev/null; then echo ro-writable; fi")
	spec.Mounts = []Mount{{Source: rw, Destination: "/tmp/rw"}, {Source: ro, Destination: "/tmp/ro", ReadOnly: true}}
	out, errOut, res := runDyno(t, rt, spec)
	if res.ExitStatus != 0 || strings.Contains(out, "ro-writable") {
		t.Fatalf("dyno ended %+v with %q / %q, want 0 and a read-only /tmp/ro", res, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(rw, "out"))
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("host sees %q, %v in the read-write mount, want hello", got, err)
	}
}
