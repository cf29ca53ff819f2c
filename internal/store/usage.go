package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
)

// UsageStreamName is the JetStream stream of dyno usage segments; subjects
// are usage.<appID>.
const UsageStreamName = "usage"

// UsageDuplicateWindow is how long JetStream remembers a segment's ID to
// drop a second copy. An agent that lost NATS keeps its unsent segments
// and sends them again when it is back; readers also drop repeats by ID,
// so a copy arriving later than this is still counted once.
const UsageDuplicateWindow = 48 * time.Hour

// Usage is the durable, append-only stream of usage segments. Agents
// append; the meter follows it from the start.
type Usage struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

func openUsage(ctx context.Context, js jetstream.JetStream, replicas int) (Usage, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       UsageStreamName,
		Subjects:   []string{"usage.>"},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Duplicates: UsageDuplicateWindow,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		return Usage{}, fmt.Errorf("open stream %s: %w", UsageStreamName, err)
	}
	return Usage{js: js, stream: st}, nil
}

// Append writes seg durably, under its ID: a segment appended twice is
// stored once (within UsageDuplicateWindow).
func (u Usage) Append(ctx context.Context, seg model.UsageSegment) error {
	if seg.ID == "" || seg.AppID == "" {
		return errors.New("append usage segment: it needs an ID and an app ID")
	}
	data, err := json.Marshal(seg)
	if err != nil {
		return fmt.Errorf("encode usage segment %s: %w", seg.ID, err)
	}
	if _, err := u.js.Publish(ctx, "usage."+seg.AppID, data, jetstream.WithMsgID(seg.ID)); err != nil {
		return fmt.Errorf("append usage segment %s: %w", seg.ID, err)
	}
	return nil
}

// UsageEvent is one segment read from the stream, or, with Ready set, the
// mark that every segment stored when Follow began has been sent.
type UsageEvent struct {
	Segment  model.UsageSegment
	Sequence uint64
	Ready    bool
}

// Follow sends every segment of the stream from the first, then an event
// with Ready set, then each new segment, until ctx ends; then it closes the
// channel. A message that does not decode is skipped.
func (u Usage) Follow(ctx context.Context) (<-chan UsageEvent, error) {
	info, err := u.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", UsageStreamName, err)
	}
	last := info.State.LastSeq
	cons, err := u.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("follow stream %s: %w", UsageStreamName, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow stream %s: %w", UsageStreamName, err)
	}
	out := make(chan UsageEvent, 64)
	send := func(ev UsageEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		<-ctx.Done()
		it.Stop() // unblocks Next
	}()
	go func() {
		defer close(out)
		ready := info.State.Msgs == 0
		if ready && !send(UsageEvent{Ready: true}) {
			return
		}
		for {
			msg, err := it.Next()
			if err != nil {
				return // stopped: ctx ended
			}
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			var seg model.UsageSegment
			if json.Unmarshal(msg.Data(), &seg) == nil && seg.ID != "" {
				if !send(UsageEvent{Segment: seg, Sequence: meta.Sequence.Stream}) {
					return
				}
			}
			if !ready && meta.Sequence.Stream >= last {
				ready = true
				if !send(UsageEvent{Ready: true}) {
					return
				}
			}
		}
	}()
	return out, nil
}
