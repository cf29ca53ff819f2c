package logplex

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

func newTestLogplex(t *testing.T, history int) *Logplex {
	t.Helper()
	st, _ := storetest.New(t)
	p, err := New(context.Background(), st.JetStream(), Config{History: history})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecentKeepsHistoryAndFilters(t *testing.T) {
	p := newTestLogplex(t, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 80; i++ {
		dyno, src := "web.1", model.SourceApp
		if i%2 == 1 {
			dyno, src = "worker.1", model.SourceHeroku
		}
		p.Publish("app1", model.LogLine{Source: src, Dyno: dyno, Message: fmt.Sprintf("line %d", i)})
	}
	p.Publish("app2", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "other app"})
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		f         Filter
		n         int
		wantCount int
		wantLast  string
	}{
		{"all recent", Filter{}, 10, 10, "line 79"},
		{"history bound", Filter{}, 1000, 50, "line 79"},
		{"by type", Filter{Dyno: "web"}, 5, 5, "line 78"},
		{"by source", Filter{Source: model.SourceHeroku}, 3, 3, "line 79"},
		{"no match", Filter{Dyno: "run"}, 10, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Recent(ctx, "app1", tc.f, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantCount {
				t.Fatalf("got %d lines, want %d", len(got), tc.wantCount)
			}
			if tc.wantCount > 0 && got[len(got)-1].Message != tc.wantLast {
				t.Errorf("last line %q, want %q", got[len(got)-1].Message, tc.wantLast)
			}
		})
	}
	empty, err := p.Recent(ctx, "nobody", Filter{}, 10)
	if err != nil || len(empty) != 0 {
		t.Fatalf("Recent(unknown app) = %v, %v", empty, err)
	}
}

func TestTailFollowsAndSplitsLongLines(t *testing.T) {
	p := newTestLogplex(t, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Publish("a", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: "before"})
	_ = p.Flush(ctx)
	got := make(chan model.LogLine, 10)
	done := make(chan error, 1)
	tctx, tcancel := context.WithCancel(ctx)
	go func() {
		done <- p.Tail(tctx, "a", Filter{}, 10, func(l model.LogLine) error { got <- l; return nil })
	}()
	if l := <-got; l.Message != "before" {
		t.Fatalf("first tail line %q, want the backlog", l.Message)
	}
	p.Publish("a", model.LogLine{Source: model.SourceApp, Dyno: "web.1", Message: strings.Repeat("x", MaxLineBytes+5)})
	if l := <-got; len(l.Message) != MaxLineBytes {
		t.Fatalf("first part has %d bytes, want %d", len(l.Message), MaxLineBytes)
	}
	if l := <-got; l.Message != "xxxxx" {
		t.Fatalf("second part %q, want the rest", l.Message)
	}
	tcancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Tail returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Tail did not return after its context ended")
	}
}
