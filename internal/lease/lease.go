// Package lease elects one leader among the nodes of a Dyno cluster with a
// single key in a replicated NATS KV bucket, so that work which must run
// once (the manifold, log drains) runs on exactly one node at a time.
//
// The key holds the holder's name. The holder renews it every Renew with an
// update conditional on the revision it last wrote; nobody else writes it
// while it changes. A contender that sees the same revision for a whole TTL
// (timed on its own clock from when it first saw it) takes the key with an
// update conditional on that revision, so at most one contender wins. The
// holder counts its lease from the moment it sent its last successful
// renewal and steps down Margin before that lease ends if it could not renew
// since, which is before any contender can have waited a whole TTL after
// seeing that renewal: two leaders never overlap, given clocks that run at
// about the same rate (no synchronisation needed). KV revisions, not
// clocks, decide; a stale read only delays a takeover.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dyno-platform/dyno/internal/store"
)

// Record is the value of the lease key.
type Record struct {
	// Holder is the leading node's name.
	Holder string `json:"holder"`
	// Term grows by one each time the lease changes hands.
	Term uint64 `json:"term"`
	// Since is when Holder took the lease, RenewedAt when it last renewed
	// it, both by the holder's wall clock: for people, not for decisions.
	Since     time.Time `json:"since"`
	RenewedAt time.Time `json:"renewed_at"`
}

// Bucket is where the lease key lives; store.Bucket[Record] is one.
type Bucket interface {
	Get(ctx context.Context, key string) (Record, uint64, error)
	Create(ctx context.Context, key string, v Record) (uint64, error)
	Update(ctx context.Context, key string, v Record, rev uint64) (uint64, error)
	Delete(ctx context.Context, key string, rev uint64) error
}

// Config configures a Lease. Zero durations take the defaults given.
type Config struct {
	Bucket Bucket
	// Key names the lease in Bucket ("manifold").
	Key string
	// Holder is this contender's name, unique among contenders.
	Holder string
	// TTL is how long a lease lasts without renewal (5 s). A leader's death
	// moves leadership after between TTL-Renew and TTL.
	TTL time.Duration
	// Renew is how often the holder renews (TTL/5); a failed renewal is
	// retried at a quarter of that.
	Renew time.Duration
	// Margin is how long before its lease ends a holder that could not
	// renew steps down (TTL/5): its lead function must return within it.
	Margin time.Duration
	Logger *slog.Logger
	// Now is the clock; time.Now (monotonic) by default.
	Now func() time.Time
}

// Status is what this contender knows of the lease.
type Status struct {
	// Holder is the last holder seen; empty before the first read.
	Holder string `json:"holder"`
	Term   uint64 `json:"term"`
	// Leading is true while this contender runs its lead function.
	Leading bool      `json:"leading"`
	Since   time.Time `json:"since,omitzero"`
}

// Lease is one contender for a lease.
type Lease struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status Status
}

// New returns a contender; Run makes it contend.
func New(cfg Config) *Lease {
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Renew <= 0 {
		cfg.Renew = cfg.TTL / 5
	}
	if cfg.Margin <= 0 {
		cfg.Margin = cfg.TTL / 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Lease{cfg: cfg, log: cfg.Logger.With("role", "lease", "lease", cfg.Key)}
}

// Status reports the lease as this contender last saw it.
func (l *Lease) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

func (l *Lease) setStatus(rec Record, leading bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec.Holder != l.status.Holder || rec.Term != l.status.Term {
		if !leading && rec.Holder != "" {
			l.log.Info("leader elected", "leader", rec.Holder, "term", rec.Term)
		}
	}
	l.status = Status{Holder: rec.Holder, Term: rec.Term, Leading: leading, Since: rec.Since}
}

// Run contends for the lease until ctx ends. Each time this contender takes
// the lease it calls lead with a context that ends when the lease is lost
// or ctx ends, and waits for lead to return before contending again. On
// the way out it releases a lease it holds, so another contender takes over
// at once. If lead returns while the lease is held and ctx lives, Run
// releases the lease and returns lead's error.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	var (
		seenRev uint64    // the revision last read
		seenAt  time.Time // when seenRev was first read
	)
	poll := time.NewTicker(l.cfg.Renew / 2)
	defer poll.Stop()
	for {
		rec, rev, err := l.cfg.Bucket.Get(ctx, l.cfg.Key)
		// Time an observation from after the read: the revision read was
		// written before then, never after.
		seen := l.cfg.Now()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, store.ErrNotFound):
			// No lease (never taken, or released): whoever creates it leads.
			mine := Record{Holder: l.cfg.Holder, Term: l.Status().Term + 1, Since: time.Now(), RenewedAt: time.Now()}
			sent := l.cfg.Now()
			if nrev, err := l.cfg.Bucket.Create(ctx, l.cfg.Key, mine); err == nil {
				if done, err := l.lead(ctx, mine, nrev, sent, lead); done {
					return err
				}
				seenRev, seenAt = 0, time.Time{}
			} else if !errors.Is(err, store.ErrExists) && ctx.Err() == nil {
				l.log.Debug("take the free lease", "err", err)
			}
		case err != nil:
			l.log.Debug("read the lease", "err", err)
		case rev != seenRev:
			seenRev, seenAt = rev, seen
			l.setStatus(rec, false)
		case seen.Sub(seenAt) >= l.cfg.TTL:
			// Unchanged for a whole TTL since we first saw it: the holder
			// has stepped down by now. The update wins only if nobody
			// renewed or took it meanwhile.
			mine := Record{Holder: l.cfg.Holder, Term: rec.Term + 1, Since: time.Now(), RenewedAt: time.Now()}
			sent := l.cfg.Now()
			nrev, err := l.cfg.Bucket.Update(ctx, l.cfg.Key, mine, rev)
			if err == nil {
				l.log.Info("the lease lapsed: taking it", "previous", rec.Holder)
				if done, err := l.lead(ctx, mine, nrev, sent, lead); done {
					return err
				}
				seenRev, seenAt = 0, time.Time{}
			} else if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
				l.log.Debug("take the lapsed lease", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
	}
}

// lead runs the lead function while renewing the lease taken at revision
// rev by a write sent at sent. It returns done when Run must return (ctx
// ended or lead returned on its own), with lead's error.
func (l *Lease) lead(ctx context.Context, rec Record, rev uint64, sent time.Time, lead func(context.Context) error) (bool, error) {
	l.setStatus(rec, true)
	l.log.Info("this node leads", "leader", rec.Holder, "term", rec.Term)
	lctx, cancel := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() { ended <- lead(lctx) }()
	stop := func(reason string) error {
		cancel()
		err := <-ended
		l.setStatus(rec, false)
		if reason != "" {
			l.log.Warn("stepped down", "leader", rec.Holder, "term", rec.Term, "reason", reason)
		}
		return err
	}

	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	stepDown := sent.Add(l.cfg.TTL - l.cfg.Margin)
	nextRenew := sent.Add(l.cfg.Renew)
	for {
		now := l.cfg.Now()
		if !now.Before(stepDown) {
			return false, stop(fmt.Sprintf("could not renew the lease within %s", l.cfg.TTL-l.cfg.Margin))
		}
		wake := stepDown
		if nextRenew.Before(wake) {
			wake = nextRenew
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			err := stop("")
			l.release(rev)
			return true, err
		case err := <-ended:
			ended <- err // stop receives it
			if ctx.Err() != nil {
				// The work saw our own cancellation first: a stop, not
				// a failure.
				err = stop("")
				l.release(rev)
				return true, err
			}
			err = stop("its work ended")
			l.release(rev)
			if err == nil {
				err = errors.New("the leader's work ended on its own")
			}
			return true, err
		case <-timer.C:
		}
		if l.cfg.Now().Before(nextRenew) {
			continue
		}
		start := l.cfg.Now()
		rec.RenewedAt = time.Now()
		rctx, rcancel := context.WithTimeout(ctx, stepDown.Sub(start))
		nrev, err := l.cfg.Bucket.Update(rctx, l.cfg.Key, rec, rev)
		rcancel()
		switch {
		case err == nil:
			rev = nrev
			stepDown = start.Add(l.cfg.TTL - l.cfg.Margin)
			nextRenew = start.Add(l.cfg.Renew)
		case errors.Is(err, store.ErrConflict):
			return false, stop("another node holds the lease")
		default:
			if ctx.Err() == nil {
				l.log.Warn("renew the lease: will retry until it lapses", "err", err)
			}
			nextRenew = l.cfg.Now().Add(l.cfg.Renew / 4)
		}
	}
}

// release deletes the lease key if it is still ours, so that another
// contender takes over without waiting a TTL.
func (l *Lease) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.cfg.Bucket.Delete(ctx, l.cfg.Key, rev); err != nil {
		l.log.Debug("release the lease", "err", err)
		return
	}
	l.log.Info("released the lease", "leader", l.cfg.Holder)
}
