package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/certs"
	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/rendezvous"
)

// startRendezvous runs a rendezvous with a certificate of a fresh platform
// CA and returns it with the agent config tweak that trusts it.
func startRendezvous(t *testing.T) (*rendezvous.Server, func(*Config), *certs.Platform) {
	t.Helper()
	dir := t.TempDir()
	p, err := certs.EnsurePlatform(dir, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.IssueServer([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := rendezvous.Listen(rendezvous.Config{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, func(c *Config) { c.RendezvousRoots = p.CertPool(); c.DetachTimeout = time.Second }, p
}

func (e *env) assignOneOff(t *testing.T, id, command string, attach *model.Attach, env map[string]string) {
	t.Helper()
	as := model.Assignment{
		ID: id, HostID: "h1", AppID: "app1", AppName: "demo", Type: "run", Name: "run.4242",
		Release: 1, Slug: e.slug, Command: command, Env: env, Size: "standard-1X",
		OneOff: true, ExpiresAt: time.Now().Add(time.Hour), Attach: attach,
	}
	if _, err := e.st.Assignments.Create(context.Background(), model.AssignmentKey("h1", id), as); err != nil {
		t.Fatal(err)
	}
}

func TestOneOffAttached(t *testing.T) {
	e := newEnv(t)
	rdv, tweak, p := startRendezvous(t)
	e.startAgent(t, tweak)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		command string
		tty     bool
		env     map[string]string
		input   string // typed after attaching; then the client waits
		hangUp  bool   // the client leaves instead of reading to the end
		ready   string // with hangUp: the output that says the command is set (before the client leaves)
		want    string // in the output
		state   string
		exit    int
	}{
		{name: "stdin and exit status", command: `read x; echo "got $x"; exit 7`, input: "hello\n",
			want: "got hello", state: model.StateCrashed, exit: 7},
		{name: "exit 0 is down", command: `cat`, input: "line\n", want: "line", state: model.StateDown, exit: 0},
		{name: "terminal with its size", command: `stty size; test -t 0 && echo on-a-tty`, tty: true,
			env: map[string]string{"COLUMNS": "100", "LINES": "30"}, want: "30 100", state: model.StateDown},
		{name: "client leaves: SIGHUP", command: `sleep 100`, hangUp: true, state: model.StateCrashed, exit: 129},
		// The client leaves once the trap is set: a SIGHUP before it
		// would end the shell (129), as a CI run saw.
		{name: "client leaves, SIGHUP ignored: R16 and SIGKILL", command: `trap '' HUP; echo trapped; sleep 100 & wait`,
			hangUp: true, ready: "trapped", state: model.StateCrashed, exit: 137},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "oneoff-" + string(rune('a'+i))
			secret, token, err := rdv.Register(id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e.assignOneOff(t, id, tt.command, &model.Attach{Rendezvous: rdv.Addr(), Token: token, TTY: tt.tty}, tt.env)
			url := "rendezvous://" + rdv.Addr() + "/" + secret
			c, err := rendezvous.Attach(ctx, url, p.CertPool())
			if err != nil {
				t.Fatal(err)
			}
			ctrl, err := rendezvous.DialControl(ctx, url, p.CertPool())
			if err != nil {
				t.Fatal(err)
			}
			defer ctrl.Close()
			if tt.hangUp {
				e.awaitState(t, id, model.StateUp)
				if tt.ready != "" {
					awaitOutput(t, c, tt.ready)
				}
				c.Close()
			} else {
				io.WriteString(c, tt.input)
				if !tt.tty {
					ctrl.Send(rendezvous.ControlMessage{EOF: true, Sent: int64(len(tt.input))})
				}
				out, _ := io.ReadAll(bufio.NewReader(c))
				c.Close()
				if !strings.Contains(string(out), tt.want) {
					t.Fatalf("output %q, want %q", out, tt.want)
				}
			}
			st := e.awaitState(t, id, tt.state)
			if st.ExitStatus == nil || *st.ExitStatus != tt.exit {
				t.Fatalf("status %+v, want exit %d", st, tt.exit)
			}
			if tt.hangUp && !e.logs.has("run.4242", "Client connection closed. Sending SIGHUP") {
				t.Error("no SIGHUP line in the log")
			}
			if tt.exit == 137 && !e.logs.has("run.4242", "Error R16 (Detached)") {
				t.Error("no R16 line in the log")
			}
		})
	}
}

func TestOneOffDetachedAndNoClient(t *testing.T) {
	e := newEnv(t)
	rdv, tweak, _ := startRendezvous(t)
	e.startAgent(t, tweak)

	// Detached: the output goes to the logs as app[run.N].
	e.assignOneOff(t, "det", `echo "from the one-off"`, nil, nil)
	st := e.awaitState(t, "det", model.StateDown)
	if st.ExitStatus == nil || *st.ExitStatus != 0 {
		t.Fatalf("status %+v, want exit 0", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !e.logs.has("run.4242", "from the one-off") {
		if time.Now().After(deadline) {
			t.Fatal("the detached one-off's output is not in the logs")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Attached, but the token is unknown (no client will ever come): R13.
	e.assignOneOff(t, "lonely", `echo never`, &model.Attach{Rendezvous: rdv.Addr(), Token: "unknown"}, nil)
	e.awaitState(t, "lonely", model.StateCrashed)
	if !e.logs.has("run.4242", "Error R13 (Attach error)") {
		t.Error("no R13 line in the log")
	}
}

// awaitOutput reads r until its output so far contains want (10 s at most).
func awaitOutput(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var out []byte
		buf := make([]byte, 512)
		for !strings.Contains(string(out), want) {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(out)
	}()
	select {
	case out := <-got:
		if !strings.Contains(out, want) {
			t.Fatalf("output %q ended without %q", out, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q in the output after 10 s", want)
	}
}
