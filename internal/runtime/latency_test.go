package runtime

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// TestStartLatency starts 100 dynos of a cached slug per variant and prints
// the start-to-exec latency (Start called -> the command's first output)
// percentiles, with the network and seccomp on and off. It is slow-ish (a
// few seconds), so it runs only with DYNO_START_LATENCY=1:
//
//	DYNO_START_LATENCY=1 go test -tags seccomp -run TestStartLatency -v ./internal/runtime/
func TestStartLatency(t *testing.T) {
	if os.Getenv("DYNO_START_LATENCY") == "" {
		t.Skip("set DYNO_START_LATENCY=1 to measure start latency")
	}
	slug := newTestSlug(t)
	const starts = 100
	for _, v := range []struct {
		name         string
		net, seccomp bool
	}{
		{"net off seccomp off", false, false},
		{"net off seccomp on", false, true},
		{"net on seccomp off", true, false},
		{"net on seccomp on", true, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			if v.seccomp && !SeccompEnabled() {
				t.Skip("built without the seccomp tag")
			}
			rt := newTestContainerRuntime(t)
			if v.net {
				rt = newNetRuntime(t)
			}
			if !v.seccomp {
				rt.seccomp = nil
			}
			var exec, started, closing []time.Duration
			for i := 0; i < starts; i++ {
				spec := testSpec(t, slug, "echo up; exec sleep 60")
				fw := &firstWrite{ch: make(chan struct{})}
				spec.Stdout = fw
				start := time.Now()
				d, err := rt.Start(context.Background(), spec)
				if err != nil {
					t.Fatal(err)
				}
				started = append(started, time.Since(start))
				select {
				case <-fw.ch:
				case <-time.After(10 * time.Second):
					t.Fatal("no output 10s after start")
				}
				exec = append(exec, time.Since(start))
				start = time.Now()
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				closing = append(closing, time.Since(start))
			}
			t.Logf("%s: start-to-exec p50 %v p99 %v max %v; Start returned p50 %v; close p50 %v (%d starts)", v.name,
				percentile(exec, 50), percentile(exec, 99), slices.Max(exec).Round(100*time.Microsecond),
				percentile(started, 50), percentile(closing, 50), starts)
		})
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Round(100 * time.Microsecond)
}
