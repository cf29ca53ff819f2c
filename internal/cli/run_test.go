package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCommandLine runs each joined command line in a real shell: several
// arguments must reach it with the boundaries the local shell gave them.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lone argument expands in the dyno", []string{"X=4; echo $X"}, "4"},
		{"inner shell gets its own variables", []string{"sh", "-c", `x=5; echo "x=$x"`}, "x=5"},
		{"apostrophes and double spaces", []string{"echo", "a  b", "it's"}, "a  b it's"},
		{"dollar stays literal when quoted locally", []string{"echo", "$HOME"}, "$HOME"},
		{"for loop", []string{"sh", "-c", "for i in 1 2; do echo tick $i; done"}, "tick 1\ntick 2"},
		{"empty argument", []string{"printf", "[%s]", ""}, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := commandLine(tc.args)
			out, err := exec.Command("/bin/sh", "-c", line).CombinedOutput()
			if err != nil || strings.TrimRight(string(out), "\n") != tc.want {
				t.Errorf("commandLine(%q) = %s; the shell printed %q (%v), want %q", tc.args, line, out, err, tc.want)
			}
		})
	}
}
