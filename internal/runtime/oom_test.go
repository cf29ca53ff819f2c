package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOOMKilledReadsV1AndV2Counters(t *testing.T) {
	tests := []struct {
		name, file, body string
		status           int
		want             bool
	}{
		{"v1 killed", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", 137, true},
		{"v1 not killed", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 137, false},
		{"v2 killed", "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n", 137, true},
		{"v2 not killed", "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", 0, false},
		{"old kernel: limit hit and SIGKILL", "memory.failcnt", "3\n", 137, true},
		{"old kernel: limit hit, other exit", "memory.failcnt", "3\n", 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := oomKilled(dir, tc.status); got != tc.want {
				t.Errorf("oomKilled = %v, want %v", got, tc.want)
			}
		})
	}
}
