package store

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
)

// SchedulerRunsTTL is how long a scheduled job's run is kept. A scheduler
// that comes back after an outage reports the runs missed within this
// window (it cannot tell older runs that happened from ones that did not).
const SchedulerRunsTTL = 7 * 24 * time.Hour

// openScheduler opens the scheduler's buckets: jobs kept until removed,
// runs expiring after SchedulerRunsTTL (so no one has to prune them).
func (s *Store) openScheduler(ctx context.Context, replicas int) error {
	open := func(name string, ttl time.Duration) (jetstream.KeyValue, error) {
		kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: replicas, TTL: ttl,
		})
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		return kv, nil
	}
	jobs, err := open("scheduler-jobs", 0)
	if err != nil {
		return err
	}
	runs, err := open("scheduler-runs", SchedulerRunsTTL)
	if err != nil {
		return err
	}
	s.SchedulerJobs = Bucket[model.SchedulerJob]{jobs}
	s.SchedulerRuns = Bucket[model.SchedulerRun]{runs}
	return nil
}
