package runtime

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// Stdin without a terminal, and a terminal of the container's own with its
// size, resizes and Ctrl-C, for both runtimes (the container one as root).
func TestStdinAndTerminal(t *testing.T) {
	runtimes := map[string]func(t *testing.T) Runtime{
		"process": func(t *testing.T) Runtime {
			rt, err := NewProcessRuntime(ProcessConfig{StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			return rt
		},
		"container": func(t *testing.T) Runtime { return newTestContainerRuntime(t) },
	}
	tests := []struct {
		name    string
		command string
		tty     bool
		input   string
		resize  bool // resize to 120x50 once "ready" shows, then type input
		want    string
		exit    int
	}{
		{name: "stdin to its end", command: `tr a-z A-Z; exit 4`, input: "hello\n", want: "HELLO", exit: 4},
		{name: "a terminal of its own", tty: true,
			command: `test -t 0 && test -t 1 && echo tty-yes; stty size`, want: "tty-yes\r\n30 100"},
		{name: "resize and Ctrl-C", tty: true, resize: true,
			command: `echo ready; read line; stty size; sleep 60`, input: "go\r\x03", want: "50 120", exit: 130},
	}
	for rtName, newRT := range runtimes {
		t.Run(rtName, func(t *testing.T) {
			if rtName == "container" {
				needRoot(t)
			}
			rt := newRT(t)
			slug := newTestSlug(t)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var out syncBuffer
					inR, inW := io.Pipe()
					spec := testSpec(t, slug, tt.command)
					spec.Stdout, spec.Stderr, spec.Stdin = &out, &out, inR
					spec.TTY, spec.Cols, spec.Rows = tt.tty, 100, 30
					d, err := rt.Start(context.Background(), spec)
					if err != nil {
						t.Fatal(err)
					}
					defer d.Close()
					defer inW.Close()
					if tt.resize {
						waitFor(t, func() bool { return strings.Contains(out.String(), "ready") })
						if err := d.(Resizer).Resize(120, 50); err != nil {
							t.Fatal(err)
						}
					}
					go func() {
						for _, c := range tt.input { // typed, one key at a time
							io.WriteString(inW, string(c))
							time.Sleep(20 * time.Millisecond)
							if c == '\r' {
								time.Sleep(300 * time.Millisecond) // sleep starts
							}
						}
						if !tt.tty {
							inW.Close()
						}
					}()
					done := make(chan Result, 1)
					go func() { done <- d.Wait() }()
					select {
					case res := <-done:
						if res.ExitStatus != tt.exit || !strings.Contains(out.String(), tt.want) {
							t.Fatalf("result %+v output %q; want exit %d and %q", res, out.String(), tt.exit, tt.want)
						}
					case <-time.After(20 * time.Second):
						t.Fatalf("dyno still runs; output %q", out.String())
					}
				})
			}
		})
	}
}
