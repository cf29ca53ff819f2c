// Package store owns Dyno's state in NATS JetStream: the embedded NATS
// server, the KV buckets (apps, releases, formations, assignments, dyno
// statuses, hosts), the object stores (sources and slugs) and the typed,
// revision-aware access to them that every role uses. It decides nothing:
// who may write which bucket is the callers' contract (DESIGN.md §2).
package store
