// Package logplex owns app logs: one stream of lines per app in NATS
// JetStream, the last History lines kept across restarts and redeploys,
// reads of the recent history and live tails with dyno and source filters.
// Every role publishes through it; the API server reads through it.
package logplex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
)

// Stream is the name of the JetStream stream that holds every app's lines.
const Stream = "LOGS"

// MaxLineBytes is logplex's limit: longer messages are split.
const MaxLineBytes = 10000

// Config configures a Logplex.
type Config struct {
	// History is how many lines are kept per app; 1500 as Heroku when zero.
	History int
	// Replicas is the stream's replication factor (1 on one node).
	Replicas int
	// TailBuffer is how many live lines wait for a slow tail client
	// before it skips ahead with an L11 line (1024).
	TailBuffer int
	Logger     *slog.Logger
	Now        func() time.Time
}

// Filter selects lines: Dyno is a dyno name (web.1) or a process type (web),
// Source is "app" or "heroku"; empty fields match everything.
type Filter struct {
	Dyno   string
	Source string
}

// Match reports whether l passes the filter.
func (f Filter) Match(l model.LogLine) bool {
	return (f.Source == "" || l.Source == f.Source) && l.MatchesDyno(f.Dyno)
}

// Logplex publishes and reads app log lines.
type Logplex struct {
	js      jetstream.JetStream
	log     *slog.Logger
	cfg     Config
	dropped atomic.Int64
}

// New opens (or creates) the log stream.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Logplex, error) {
	if cfg.History <= 0 {
		cfg.History = 1500
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TailBuffer <= 0 {
		cfg.TailBuffer = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	persist := jetstream.AsyncPersistMode
	if cfg.Replicas > 1 {
		// NATS refuses async persistence on replicated streams (10052).
		persist = jetstream.DefaultPersistMode
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              Stream,
		Subjects:          []string{"logs.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: int64(cfg.History),
		Discard:           jetstream.DiscardOld,
		// Logs may lose their last instant in a power cut; control-plane
		// state may not. Async persistence keeps logging off the fsync path.
		PersistMode: persist,
	})
	if err != nil {
		return nil, fmt.Errorf("open log stream: %w", err)
	}
	return &Logplex{js: js, log: cfg.Logger, cfg: cfg}, nil
}

// publishStall is how long a publisher waits when 4,000 lines are
// published but not yet stored, before the line is dropped and counted.
// The default 200 ms dropped lines of a fast dyno on a loaded machine; the
// wait also keeps a burst to the pace of the store, which drains follow.
const publishStall = 5 * time.Second

// History is how many lines are kept per app.
func (p *Logplex) History() int { return p.cfg.History }

func subject(appID string) string { return "logs." + appID }

// Publish sends a line to the app's log without waiting for the store.
// Messages over MaxLineBytes are split as logplex does.
func (p *Logplex) Publish(appID string, line model.LogLine) {
	if line.Time.IsZero() {
		line.Time = time.Now()
	}
	msg := line.Message
	for {
		part := line
		if len(msg) > MaxLineBytes {
			part.Message, msg = msg[:MaxLineBytes], msg[MaxLineBytes:]
		} else {
			part.Message, msg = msg, ""
		}
		data, err := json.Marshal(part)
		if err != nil {
			return
		}
		if _, err := p.js.PublishAsync(subject(appID), data, jetstream.WithStallWait(publishStall)); err != nil {
			if p.dropped.Add(1) == 1 {
				p.log.Warn("log line dropped", "app", appID, "err", err)
			}
		}
		if msg == "" {
			return
		}
	}
}

// Flush waits until every line published so far is stored, or ctx ends.
func (p *Logplex) Flush(ctx context.Context) error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Recent returns up to n of the app's most recent lines that match f,
// oldest first.
func (p *Logplex) Recent(ctx context.Context, appID string, f Filter, n int) ([]model.LogLine, error) {
	var out []model.LogLine
	err := p.read(ctx, appID, f, n, false, func(l model.LogLine) error {
		out = append(out, l)
		return nil
	})
	return out, err
}

// Tail calls fn with up to n recent matching lines, then with every new
// matching line as it arrives, until ctx ends or fn fails.
func (p *Logplex) Tail(ctx context.Context, appID string, f Filter, n int, fn func(model.LogLine) error) error {
	return p.read(ctx, appID, f, n, true, fn)
}

func (p *Logplex) read(ctx context.Context, appID string, f Filter, n int, follow bool, fn func(model.LogLine) error) error {
	subj := subject(appID)
	stream, err := p.js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("open log stream: %w", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return fmt.Errorf("log stream info: %w", err)
	}
	backlog := info.State.Subjects[subj]
	last := info.State.LastSeq

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return fmt.Errorf("read logs of %s: %w", appID, err)
	}
	// The backlog is at most History lines: read it whole, keep the last n.
	var ring []model.LogLine
	deliver := func() error {
		if len(ring) > n {
			ring = ring[len(ring)-n:]
		}
		for _, l := range ring {
			if err := fn(l); err != nil {
				return err
			}
		}
		ring = nil
		return nil
	}
	if backlog == 0 && !follow {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read logs of %s: %w", appID, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	inBacklog := backlog > 0
	if !inBacklog {
		if err := deliver(); err != nil {
			return err
		}
		return p.follow(ctx, it, f, fn)
	}
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if inBacklog {
					return deliver()
				}
				return nil
			}
			return fmt.Errorf("read logs of %s: %w", appID, err)
		}
		var l model.LogLine
		if json.Unmarshal(msg.Data(), &l) != nil {
			continue
		}
		meta, _ := msg.Metadata()
		if !f.Match(l) {
			l = model.LogLine{}
		}
		if inBacklog {
			if l.Message != "" || l.Source != "" {
				ring = append(ring, l)
			}
			if meta == nil || meta.Sequence.Stream >= last || meta.NumPending == 0 {
				inBacklog = false
				if err := deliver(); err != nil {
					return err
				}
				if !follow {
					return nil
				}
				return p.follow(ctx, it, f, fn)
			}
			continue
		}
	}
}

// follow reads live lines into a bounded buffer from which fn is called,
// so a slow reader never holds up the stream: when it falls TailBuffer
// lines behind, newer lines are dropped and, once it catches up, it gets
// logplex's L11 line saying how many it missed.
func (p *Logplex) follow(ctx context.Context, it jetstream.MessagesContext, f Filter, fn func(model.LogLine) error) error {
	buf := newLineBuffer(p.cfg.TailBuffer)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := it.Next()
			if err != nil {
				readErr <- err
				return
			}
			var l model.LogLine
			if json.Unmarshal(msg.Data(), &l) == nil && f.Match(l) {
				buf.push(l, p.cfg.Now(), true)
			}
		}
	}()
	defer func() { it.Stop(); <-done }()
	var batch []model.LogLine
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("tail logs: %w", err)
		case <-buf.ready:
		}
		for {
			batch = buf.take(batch[:0], 256)
			for _, l := range batch {
				if err := fn(l); err != nil {
					return err
				}
			}
			// Reported after the older lines it held, before newer ones.
			if n, since := buf.takeDropped(); n > 0 {
				l11 := model.LogLine{Time: p.cfg.Now(), Source: model.SourceHeroku, Dyno: "logplex",
					Message: fmt.Sprintf("Error L11 (Tail buffer overflow) -> This tail session dropped %d messages since %s.", n, since.UTC().Format(model.LogTimeFormat))}
				if err := fn(l11); err != nil {
					return err
				}
			}
			if len(batch) == 0 {
				break
			}
		}
	}
}

// Purge removes every line of the app (when the app is destroyed).
func (p *Logplex) Purge(ctx context.Context, appID string) error {
	stream, err := p.js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("open log stream: %w", err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject(appID))); err != nil {
		return fmt.Errorf("purge logs of %s: %w", appID, err)
	}
	return nil
}

// ParseSource checks a --source value.
func ParseSource(s string) (string, error) {
	switch strings.ToLower(s) {
	case "":
		return "", nil
	case model.SourceApp, model.SourceHeroku:
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("source %q is unknown: use app or heroku", s)
}
