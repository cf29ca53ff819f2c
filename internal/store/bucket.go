package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors callers act on. They wrap nothing, so test them with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrConflict = errors.New("store: revision conflict")
)

// Bucket is a KV bucket whose values are JSON-encoded T.
type Bucket[T any] struct {
	kv jetstream.KeyValue
}

// Entry is one key of a bucket with its value and revision.
type Entry[T any] struct {
	Key      string
	Value    T
	Revision uint64
}

// Event is one change seen by a watch. Deleted events carry no value. An
// event with Ready set marks the end of the initial values.
type Event[T any] struct {
	Entry[T]
	Deleted bool
	Ready   bool
}

// Get reads one key; ErrNotFound if it is absent or deleted.
func (b Bucket[T]) Get(ctx context.Context, key string) (T, uint64, error) {
	var v T
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return v, 0, ErrNotFound
		}
		return v, 0, fmt.Errorf("get %s/%s: %w", b.kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("decode %s/%s: %w", b.kv.Bucket(), key, err)
	}
	return v, e.Revision(), nil
}

// Create writes key only if it does not exist; ErrExists otherwise.
func (b Bucket[T]) Create(ctx context.Context, key string, v T) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", b.kv.Bucket(), key, err)
	}
	rev, err := b.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", b.kv.Bucket(), key, err)
	}
	return rev, nil
}

// Update writes key only if its revision is still rev; ErrConflict otherwise.
func (b Bucket[T]) Update(ctx context.Context, key string, v T, rev uint64) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", b.kv.Bucket(), key, err)
	}
	nrev, err := b.kv.Update(ctx, key, data, rev)
	if err != nil {
		if isWrongRevision(err) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("update %s/%s: %w", b.kv.Bucket(), key, err)
	}
	return nrev, nil
}

// Put writes key whatever its revision. Use it only where the caller is the
// key's one writer.
func (b Bucket[T]) Put(ctx context.Context, key string, v T) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", b.kv.Bucket(), key, err)
	}
	rev, err := b.kv.Put(ctx, key, data)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", b.kv.Bucket(), key, err)
	}
	return rev, nil
}

// Delete removes key. With rev > 0 it removes it only at that revision.
func (b Bucket[T]) Delete(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	if err := b.kv.Delete(ctx, key, opts...); err != nil {
		if isWrongRevision(err) {
			return ErrConflict
		}
		return fmt.Errorf("delete %s/%s: %w", b.kv.Bucket(), key, err)
	}
	return nil
}

// List returns the current entries whose keys match filter (a NATS subject
// filter such as "app1.>"; ">" for all).
func (b Bucket[T]) List(ctx context.Context, filter string) ([]Entry[T], error) {
	w, err := b.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", b.kv.Bucket(), filter, err)
	}
	defer w.Stop()
	var out []Entry[T]
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s/%s: watcher closed", b.kv.Bucket(), filter)
			}
			if e == nil {
				return out, nil
			}
			var v T
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return nil, fmt.Errorf("decode %s/%s: %w", b.kv.Bucket(), e.Key(), err)
			}
			out = append(out, Entry[T]{Key: e.Key(), Value: v, Revision: e.Revision()})
		}
	}
}

// Watch sends the current entries matching filter, then an event with Ready
// set, then every change, until ctx ends; then it closes the channel. A
// value that does not decode is skipped: one bad key must not stop a role.
func (b Bucket[T]) Watch(ctx context.Context, filter string) (<-chan Event[T], error) {
	w, err := b.kv.Watch(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("watch %s/%s: %w", b.kv.Bucket(), filter, err)
	}
	out := make(chan Event[T], 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			var ev Event[T]
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				switch {
				case e == nil:
					ev.Ready = true
				case e.Operation() != jetstream.KeyValuePut:
					ev = Event[T]{Entry: Entry[T]{Key: e.Key(), Revision: e.Revision()}, Deleted: true}
				default:
					var v T
					if err := json.Unmarshal(e.Value(), &v); err != nil {
						continue
					}
					ev = Event[T]{Entry: Entry[T]{Key: e.Key(), Value: v, Revision: e.Revision()}}
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}
