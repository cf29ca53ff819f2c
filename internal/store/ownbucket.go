package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenBucket creates or opens a KV bucket of JSON-encoded T, keeping the
// last value of each key on disk with the given replicas (1 on a single
// node, 3 on a cluster). It is for packages that own a bucket of their own,
// such as the leader lease.
func OpenBucket[T any](ctx context.Context, js jetstream.JetStream, name string, replicas int) (Bucket[T], error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   name,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: max(replicas, 1),
	})
	if err != nil {
		return Bucket[T]{}, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return Bucket[T]{kv}, nil
}
