package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// groupSize counts the processes of a process group.
func groupSize(pgid int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

func newTestProcessRuntime(t *testing.T) *ProcessRuntime {
	t.Helper()
	rt, err := NewProcessRuntime(ProcessConfig{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestProcessRuntime(t *testing.T) {
	rt := newTestProcessRuntime(t)
	slug := newTestSlug(t)
	tests := []struct {
		name, command string
		wantOut       string
		wantErr       string
		wantStatus    int
	}{
		{"runs in a copy of the slug", `cat Procfile && ./bin/run && test "$HOME" = "$PWD" && echo home-ok`, "web: bin/run\nrunning\nhome-ok", "", 0},
		{"env", "echo $DYNO $PORT", "web.1 5000", "", 0},
		{"writes do not reach the slug", "echo x > Procfile && cat Procfile", "x", "", 0},
		{"stderr and status", "echo oops >&2; exit 7", "", "oops", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, res := runDyno(t, rt, testSpec(t, slug, tt.command))
			if res.ExitStatus != tt.wantStatus || strings.TrimSpace(out) != tt.wantOut || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("got %+v stdout %q stderr %q, want %d %q %q", res, out, errOut, tt.wantStatus, tt.wantOut, tt.wantErr)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(slug, "Procfile")); string(b) != "web: bin/run\n" {
		t.Errorf("slug changed: %q", b)
	}
}

func TestProcessSignalAndCleanup(t *testing.T) {
	rt := newTestProcessRuntime(t)
	slug := newTestSlug(t)
	spec := testSpec(t, slug, "sleep 61 & sleep 62 & wait")
	d, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitFor(t, func() bool { return groupSize(d.Pid()) >= 3 }) // the shell and both sleeps
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if res := d.Wait(); res.ExitStatus != 143 {
		t.Fatalf("result %+v, want 143", res)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec.WorkDir); err == nil {
		t.Error("work dir left behind")
	}

	// A dyno left behind by an "earlier agent" is killed by Cleanup.
	spec = testSpec(t, slug, "sleep 60")
	d2, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	rt2, err := NewProcessRuntime(ProcessConfig{StateDir: rt.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := d2.Wait(); res.ExitStatus != 137 {
		t.Errorf("cleaned-up dyno ended with %+v, want 137", res)
	}
	if _, err := os.Stat(spec.WorkDir); err == nil {
		t.Error("work dir left behind by cleanup")
	}
	if ents, _ := os.ReadDir(rt.stateDir); len(ents) != 0 {
		t.Errorf("state left behind: %v", ents)
	}
}
