package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dyno-platform/dyno/internal/model"
)

// Store is typed access to every bucket. Writers keep to the contract of
// DESIGN.md §2: the API writes apps, names, releases and formations; the
// manifold writes assignments; agents write statuses and hosts.
type Store struct {
	nc *nats.Conn
	js jetstream.JetStream

	Apps        Bucket[model.App]        // app ID
	AppNames    Bucket[model.AppName]    // app name
	Releases    Bucket[model.Release]    // model.ReleaseKey
	Builds      Bucket[model.Build]      // model.BuildKey
	Formations  Bucket[model.Formation]  // app ID
	Assignments Bucket[model.Assignment] // model.AssignmentKey
	Statuses    Bucket[model.DynoStatus] // model.StatusKey
	Hosts       Bucket[model.Host]       // host ID
	// Domains and Certs are written by the API; routers read them.
	Domains Bucket[model.Domain]      // model.DomainKey(hostname)
	Certs   Bucket[model.Certificate] // model.CertificateKey(appID, id)
	// Invoices are the account's issued monthly invoices, key "2026-11",
	// written once by the meter when a month is frozen.
	Invoices Bucket[model.Invoice]
	// Drains are apps' log drains, key model.DrainKey; written by the API,
	// read by the drain manager.
	Drains Bucket[model.Drain]
	// OneOffs are one-off dyno requests, key model.StatusKey(appID, id):
	// the API creates them (and marks stops), the manifold deletes them
	// once their dyno is done.
	OneOffs Bucket[model.OneOff]
	// SchedulerJobs are scheduled jobs, key model.SchedulerJobKey, written
	// by the API. SchedulerRuns are their runs, key model.SchedulerRunKey,
	// created once per due time by the scheduler that claims it; they
	// expire after SchedulerRunsTTL.
	SchedulerJobs Bucket[model.SchedulerJob]
	SchedulerRuns Bucket[model.SchedulerRun]
	// HostSettings are the control plane's records about hosts (drain
	// requests), key host ID, written by the API, read by the manifold.
	HostSettings Bucket[model.HostSettings]
	// Users (key user ID), APIKeys (key hex SHA-256 of the key) and
	// Collaborators (key model.CollaboratorKey) are the accounts, written
	// and read by the API only (docs/CONTRACTS.md "Accounts").
	Users         Bucket[model.User]
	APIKeys       Bucket[model.APIKey]
	Collaborators Bucket[model.Collaborator]
	// Usage is the stream of dyno usage segments: agents append, the
	// meter reads.
	Usage Usage

	// Sources holds uploaded source tarballs; Slugs holds built slugs;
	// BuildOutput holds the output of finished builds, named by build ID.
	Sources     Blobs
	Slugs       Blobs
	BuildOutput Blobs
}

// Open connects the typed buckets to JetStream over nc, creating whatever
// is missing. Replicas is 1 on a single node, 3 on a cluster.
func Open(ctx context.Context, nc *nats.Conn, replicas int) (*Store, error) {
	if replicas < 1 {
		replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	s := &Store{nc: nc, js: js}
	kvs := []struct {
		name    string
		history uint8
		dst     *jetstream.KeyValue
	}{
		{"apps", 1, nil}, {"app-names", 1, nil}, {"releases", 1, nil}, {"formations", 1, nil},
		{"assignments", 1, nil}, {"statuses", 1, nil}, {"hosts", 1, nil},
		{"domains", 1, nil}, {"certs", 1, nil}, {"invoices", 1, nil},
		{"drains", 1, nil}, {"oneoffs", 1, nil}, {"builds", 1, nil},
	}
	opened := make(map[string]jetstream.KeyValue, len(kvs))
	for _, b := range kvs {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   b.name,
			History:  b.history,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.name, err)
		}
		opened[b.name] = kv
	}
	s.Apps = Bucket[model.App]{opened["apps"]}
	s.AppNames = Bucket[model.AppName]{opened["app-names"]}
	s.Releases = Bucket[model.Release]{opened["releases"]}
	s.Formations = Bucket[model.Formation]{opened["formations"]}
	s.Assignments = Bucket[model.Assignment]{opened["assignments"]}
	s.Statuses = Bucket[model.DynoStatus]{opened["statuses"]}
	s.Hosts = Bucket[model.Host]{opened["hosts"]}
	s.Domains = Bucket[model.Domain]{opened["domains"]}
	s.Certs = Bucket[model.Certificate]{opened["certs"]}
	s.Invoices = Bucket[model.Invoice]{opened["invoices"]}
	s.Drains = Bucket[model.Drain]{opened["drains"]}
	s.OneOffs = Bucket[model.OneOff]{opened["oneoffs"]}
	s.Builds = Bucket[model.Build]{opened["builds"]}
	if err := s.openScheduler(ctx, replicas); err != nil {
		return nil, err
	}
	if err := s.openHostSettings(ctx, replicas); err != nil {
		return nil, err
	}
	if err := s.openAccounts(ctx, replicas); err != nil {
		return nil, err
	}
	if s.Usage, err = openUsage(ctx, js, replicas); err != nil {
		return nil, err
	}

	for _, o := range []struct {
		name string
		dst  *Blobs
		ttl  time.Duration
	}{{"sources", &s.Sources, 24 * time.Hour}, {"slugs", &s.Slugs, 0}, {"build-output", &s.BuildOutput, 0}} {
		os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:   o.name,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
			TTL:      o.ttl,
		})
		if err != nil {
			return nil, fmt.Errorf("open object store %s: %w", o.name, err)
		}
		*o.dst = Blobs{os: os}
	}
	return s, nil
}

// JetStream is the JetStream context, for packages that own streams of
// their own (logplex owns the log stream).
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Conn is the NATS connection the store uses.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Blobs is an object store of immutable, checksummed blobs.
type Blobs struct {
	os jetstream.ObjectStore
}

// Put stores r under name and returns its size and "SHA256:<hex>" checksum.
// NATS verifies its own digest on every read; the checksum is ours, to
// record in releases.
func (b Blobs) Put(ctx context.Context, name string, r io.Reader) (int64, string, error) {
	h := sha256.New()
	info, err := b.os.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(r, h))
	if err != nil {
		return 0, "", fmt.Errorf("store blob %s: %w", name, err)
	}
	return int64(info.Size), "SHA256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Get opens the blob called name; ErrNotFound if there is none.
func (b Blobs) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := b.os.Get(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("read blob %s: %w", name, err)
	}
	return r, nil
}

// Delete removes the blob called name; a missing blob is not an error.
func (b Blobs) Delete(ctx context.Context, name string) error {
	if err := b.os.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete blob %s: %w", name, err)
	}
	return nil
}
