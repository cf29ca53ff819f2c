package metering

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
	"github.com/dyno-platform/dyno/internal/store/storetest"
)

// One dyno writes a checkpoint a minute: 60*24*31 = 44,640 segments in
// the longest month. These benchmarks give the CPU cost of each on the
// agent's side (a durable append) and on the meter's side (counting it);
// multiply by 44,640 for a dyno-month.

func segment(i int) model.UsageSegment {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return model.UsageSegment{
		ID: fmt.Sprintf("dyno-1.%d.%d", start.UnixNano(), i), DynoID: "dyno-1", AppID: "app-1", AppName: "hello",
		Type: "web", Name: "web.1", Size: "standard-1X", Host: "host-1",
		ProcessStart: start, Start: start, End: start.Add(time.Minute), Index: i,
	}
}

func BenchmarkUsageAppend(b *testing.B) {
	st, _ := storetest.New(b)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if err := st.Usage.Append(ctx, segment(i)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	stream, err := st.JetStream().Stream(ctx, store.UsageStreamName)
	if err != nil {
		b.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info.State.Bytes)/float64(n), "stored-B/segment")
}

func BenchmarkAccumulatorAdd(b *testing.B) {
	a := NewAccumulator(Config{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.Add(uint64(i+1), segment(i))
	}
}
