package store

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
)

// Attach opens the store the control plane made, for a host agent on
// another machine (`dyno agent`): unlike Open it creates nothing and
// changes no bucket's configuration (an agent does not know the control
// plane's replicas). It waits, until ctx ends, for the buckets agents and
// routers use (the control plane makes them all when it starts), the usage
// stream and the slugs.
func Attach(ctx context.Context, nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	s := &Store{nc: nc, js: js}
	kv := func(name string, required bool) (jetstream.KeyValue, error) {
		for {
			b, err := js.KeyValue(ctx, name)
			if err == nil {
				return b, nil
			}
			if !required {
				return nil, nil
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("attach bucket %s: %w (is the control plane up? last error: %v)", name, ctx.Err(), err)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	for _, b := range []struct {
		name     string
		required bool
		set      func(jetstream.KeyValue)
	}{
		{"assignments", true, func(k jetstream.KeyValue) { s.Assignments = Bucket[model.Assignment]{k} }},
		{"statuses", true, func(k jetstream.KeyValue) { s.Statuses = Bucket[model.DynoStatus]{k} }},
		{"hosts", true, func(k jetstream.KeyValue) { s.Hosts = Bucket[model.Host]{k} }},
		{"oneoffs", true, func(k jetstream.KeyValue) { s.OneOffs = Bucket[model.OneOff]{k} }},
		{"apps", true, func(k jetstream.KeyValue) { s.Apps = Bucket[model.App]{k} }},
		{"app-names", true, func(k jetstream.KeyValue) { s.AppNames = Bucket[model.AppName]{k} }},
		{"releases", true, func(k jetstream.KeyValue) { s.Releases = Bucket[model.Release]{k} }},
		{"formations", true, func(k jetstream.KeyValue) { s.Formations = Bucket[model.Formation]{k} }},
		{"domains", true, func(k jetstream.KeyValue) { s.Domains = Bucket[model.Domain]{k} }},
		{"certs", true, func(k jetstream.KeyValue) { s.Certs = Bucket[model.Certificate]{k} }},
		{"host-settings", true, func(k jetstream.KeyValue) { s.HostSettings = Bucket[model.HostSettings]{k} }},
	} {
		k, err := kv(b.name, b.required)
		if err != nil {
			return nil, err
		}
		if k != nil {
			b.set(k)
		}
	}
	for {
		st, err := js.Stream(ctx, UsageStreamName)
		if err == nil {
			s.Usage = Usage{js: js, stream: st}
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("attach stream %s: %w (last error: %v)", UsageStreamName, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	for {
		obj, err := js.ObjectStore(ctx, "slugs")
		if err == nil {
			s.Slugs = Blobs{os: obj}
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("attach object store slugs: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
