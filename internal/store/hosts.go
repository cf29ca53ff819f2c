package store

import (
	"context"

	"github.com/dyno-platform/dyno/internal/model"
)

// openHostSettings opens the bucket of the control plane's host records
// (drain requests), key host ID, written by the API and read by the
// manifold. Agents keep writing their own records to Hosts.
func (s *Store) openHostSettings(ctx context.Context, replicas int) error {
	b, err := OpenBucket[model.HostSettings](ctx, s.js, "host-settings", replicas)
	if err != nil {
		return err
	}
	s.HostSettings = b
	return nil
}
