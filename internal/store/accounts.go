package store

import (
	"context"

	"github.com/dyno-platform/dyno/internal/model"
)

// openAccounts opens the buckets of users, their API keys and the apps'
// collaborators, all written and read by the API only.
func (s *Store) openAccounts(ctx context.Context, replicas int) error {
	var err error
	if s.Users, err = OpenBucket[model.User](ctx, s.js, "users", replicas); err != nil {
		return err
	}
	if s.APIKeys, err = OpenBucket[model.APIKey](ctx, s.js, "api-keys", replicas); err != nil {
		return err
	}
	s.Collaborators, err = OpenBucket[model.Collaborator](ctx, s.js, "collaborators", replicas)
	return err
}
