package logplex

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Attach is New for a role on another machine (`dyno agent`): it waits,
// until ctx ends, for the control plane to make the log stream, and
// creates or changes nothing itself.
func Attach(ctx context.Context, js jetstream.JetStream, cfg Config) (*Logplex, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TailBuffer <= 0 {
		cfg.TailBuffer = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for {
		st, err := js.Stream(ctx, Stream)
		if err == nil {
			cfg.History = int(st.CachedInfo().Config.MaxMsgsPerSubject)
			return &Logplex{js: js, log: cfg.Logger, cfg: cfg}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("attach log stream: %w (is the control plane up? last error: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
