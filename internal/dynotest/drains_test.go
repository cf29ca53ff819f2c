package dynotest

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDrainEndToEnd deploys a worker printing numbered lines and checks
// that a syslog drain on a test listener gets every one, in order.
func TestDrainEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: dynos run in containers")
	}
	// sh writes its lines in one burst, as fast as it can.
	const n = 5000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 4*n)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString(' ')
			if err != nil {
				return
			}
			size, err := strconv.Atoi(strings.TrimSpace(l))
			if err != nil {
				frames <- "BAD " + l
				return
			}
			buf := make([]byte, size)
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			frames <- string(buf)
		}
	}()

	p := Start(t, dynoBin)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Procfile"), []byte("worker: sh -c 'i=0; while [ $i -lt "+strconv.Itoa(n)+" ]; do echo \"num $i\"; i=$((i+1)); done; sleep 3600'\n"), 0o644)
	app := "drained"
	p.MustCLI("apps:create", app)
	p.MustCLI("drains:add", "syslog://"+ln.Addr().String(), "-a", app)
	if out := p.MustCLI("drains", "-a", app); !strings.Contains(out, ln.Addr().String()) {
		t.Fatalf("drains shows %q", out)
	}
	p.MustCLI("deploy", dir, "-a", app)
	p.MustCLI("ps:scale", "worker=1", "-a", app)
	next := 0
	timeout := time.After(90 * time.Second)
	for next < n {
		select {
		case f := <-frames:
			// <190>1 TIME d.TOKEN app worker.1 - - num K
			parts := strings.SplitN(strings.TrimSuffix(f, "\n"), " ", 8)
			if len(parts) != 8 || !strings.HasPrefix(parts[2], "d.") {
				t.Fatalf("frame %q is not logplex's shape", f)
			}
			if parts[3] != "app" || parts[4] != "worker.1" {
				continue // platform lines (releases, state changes)
			}
			if want := "num " + strconv.Itoa(next); parts[7] != want {
				t.Fatalf("line %d at the drain is %q, want %q", next, parts[7], want)
			}
			next++
		case <-timeout:
			t.Fatalf("the drain got %d of %d lines", next, n)
		}
	}
}
