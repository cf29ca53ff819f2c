package model

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcfile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "two types", in: "web: python3 app.py\nworker: sh -c 'x: y'\n", want: map[string]string{"web": "python3 app.py", "worker": "sh -c 'x: y'"}},
		{name: "comments and blanks", in: "# hi\n\nweb:   ./run  \n", want: map[string]string{"web": "./run"}},
		{name: "no colon", in: "web python3\n", wantErr: "line 1"},
		{name: "empty command", in: "web:\n", wantErr: "has no command"},
		{name: "duplicate", in: "web: a\nweb: b\n", wantErr: "declared twice"},
		{name: "bad type", in: "we b: a\n", wantErr: "invalid"},
		{name: "empty", in: "\n# nothing\n", wantErr: "no process types"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcfile([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseProcfile(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProcfile(%q): %v", tc.in, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("type %s: got %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestValidateAppName(t *testing.T) {
	for _, ok := range []string{"hello", "my-app-2", "abc"} {
		if err := ValidateAppName(ok); err != nil {
			t.Errorf("ValidateAppName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "Hello", "1app", "app-", "a_b", strings.Repeat("a", 31), "../x"} {
		if err := ValidateAppName(bad); err == nil {
			t.Errorf("ValidateAppName(%q) = nil, want an error", bad)
		}
	}
}

func TestLogLineString(t *testing.T) {
	l := LogLine{Time: time.Date(2026, 11, 26, 14, 0, 0, 123456000, time.UTC), Source: SourceApp, Dyno: "web.1", Message: "hi"}
	if got, want := l.String(), "2026-11-26T14:00:00.123456+00:00 app[web.1]: hi"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for dyno, want := range map[string]bool{"": true, "web": true, "web.1": true, "web.10": false, "we": false, "worker": false} {
		if got := l.MatchesDyno(dyno); got != want {
			t.Errorf("MatchesDyno(%q) = %v, want %v", dyno, got, want)
		}
	}
}

func TestRestartsGeneration(t *testing.T) {
	r := Restarts{All: 1, Types: map[string]int64{"web": 2}, Dynos: map[string]int64{"web.2": 1}}
	if got := r.Generation("web", "web.2"); got != 4 {
		t.Errorf("Generation(web, web.2) = %d, want 4", got)
	}
	if got := r.Generation("worker", "worker.1"); got != 1 {
		t.Errorf("Generation(worker, worker.1) = %d, want 1", got)
	}
}

func TestAssignmentKey(t *testing.T) {
	tests := []struct {
		a           Assignment
		wantKey     string
		wantPending bool
	}{
		{Assignment{ID: "d1", HostID: "h1"}, "h1.d1", false},
		{Assignment{ID: "d2", PendingReason: "no room"}, "pending.d2", true},
	}
	for _, tc := range tests {
		if got := tc.a.Key(); got != tc.wantKey {
			t.Errorf("Key() of %+v = %q, want %q", tc.a, got, tc.wantKey)
		}
		if got := tc.a.Pending(); got != tc.wantPending {
			t.Errorf("Pending() of %+v = %v, want %v", tc.a, got, tc.wantPending)
		}
	}
}

func TestSizesIsACopy(t *testing.T) {
	got := Sizes()
	if len(got) == 0 || got[0].Name != "eco" {
		t.Fatalf("Sizes() = %+v, want eco first", got)
	}
	got[0].Name, got[0].MemoryMB = "changed", 1
	if again := Sizes(); again[0].Name != "eco" || again[0].MemoryMB != 512 || len(again) != 6 {
		t.Errorf("changing the result of Sizes() changed the table: %+v", again)
	}
	if sz, err := LookupSize("ECO"); err != nil || sz.MemoryMB != 512 {
		t.Errorf("LookupSize(ECO) = %+v, %v after a caller changed its copy", sz, err)
	}
}
