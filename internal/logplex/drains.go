package logplex

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dyno-platform/dyno/internal/model"
	"github.com/dyno-platform/dyno/internal/store"
)

// Drain forwarding. Each drain gets a forwarder: a core NATS subscription
// on its app's log subject fills a bounded buffer (never waiting), and one
// goroutine empties it to the drain. Core NATS rather than a JetStream
// consumer: the stream keeps only History lines per app, so a consumer
// that fell that far behind would lose lines silently, uncounted; here the
// only loss is the buffer's overflow, counted and reported as L10. The
// price: lines buffered when the server stops are not resent on restart.

// DrainConfig configures a drain manager; zero fields take the defaults.
type DrainConfig struct {
	// Buffer is how many lines wait per drain before new ones are dropped
	// (16,384; logplex's 1024 lost bursts of a fast dyno on a drain that
	// keeps up, because the forwarder can be a few milliseconds late).
	Buffer int
	// MaxBatch bounds the lines of one write or POST (500).
	MaxBatch int
	// ReportEvery is how often overflow is reported as L10 (1 s).
	ReportEvery time.Duration
	// RetryMin and RetryMax bound the back-off between attempts (100 ms, 5 s).
	RetryMin, RetryMax time.Duration
	// Timeout bounds a dial, a write and a POST (30 s).
	Timeout time.Duration
	// ExtraRoots are trusted for syslog+tls and https drains besides the
	// system's roots (tests; a private CA).
	ExtraRoots []*x509.Certificate
	// UserAgent is sent to HTTPS drains.
	UserAgent string
	Now       func() time.Time
	Logger    *slog.Logger
}

// DrainSource lists and follows the drains; store.Bucket[model.Drain] is one.
type DrainSource interface {
	Watch(ctx context.Context, filter string) (<-chan store.Event[model.Drain], error)
}

// Publisher writes lines to an app's log; *Logplex is one.
type Publisher interface {
	Publish(appID string, line model.LogLine)
}

// Drains runs one forwarder per drain in the drains bucket.
type Drains struct {
	cfg   DrainConfig
	nc    *nats.Conn
	src   DrainSource
	pub   Publisher
	tls   *tls.Config
	httpc *http.Client

	mu   sync.Mutex
	fwds map[string]*forwarder // by store key

	closed    chan struct{}
	closeOnce sync.Once
}

// NewDrains returns a drain manager reading lines from nc, drains from src,
// and reporting overflow through pub. Run starts it.
func NewDrains(cfg DrainConfig, nc *nats.Conn, src DrainSource, pub Publisher) (*Drains, error) {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 16384
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(5*time.Second, cfg.RetryMin)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Logplex/v1 (dyno)"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, c := range cfg.ExtraRoots {
		roots.AddCert(c)
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	d := &Drains{
		cfg: cfg, nc: nc, src: src, pub: pub, tls: tlsConf,
		fwds:   map[string]*forwarder{},
		closed: make(chan struct{}),
	}
	d.httpc = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
			Proxy: http.ProxyFromEnvironment,
		},
	}
	return d, nil
}

// Run forwards every drain's lines until ctx ends or Close is called; it
// then stops every forwarder (dropping what they still hold).
func (d *Drains) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close ends Run
		select {
		case <-d.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer d.stopAll()
	tick := time.NewTicker(d.cfg.ReportEvery)
	defer tick.Stop()
	// A watch fails when JetStream is briefly unavailable (a cluster node
	// died); the forwarders keep running and the watch starts again.
	for {
		err := d.follow(ctx, tick.C)
		if ctx.Err() != nil {
			return nil
		}
		d.cfg.Logger.Warn("follow log drains: retrying in 1 s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// follow applies the drains bucket's changes until ctx ends or the watch
// fails. A drain missing from the watch's initial values was removed while
// no watch ran: its forwarder stops.
func (d *Drains) follow(ctx context.Context, tick <-chan time.Time) error {
	events, err := d.src.Watch(ctx, ">")
	if err != nil {
		return err
	}
	initial := map[string]bool{}
	ready := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			switch {
			case !ok:
				return errors.New("the watch ended")
			case ev.Ready:
				ready = true
				d.stopAllBut(initial)
				continue
			case !ready:
				initial[ev.Key] = true
			}
			d.apply(ctx, ev)
		case <-tick:
			d.report()
		}
	}
}

// stopAllBut stops the forwarders whose drains are not in keep.
func (d *Drains) stopAllBut(keep map[string]bool) {
	d.mu.Lock()
	var gone []*forwarder
	for key, f := range d.fwds {
		if !keep[key] {
			gone = append(gone, f)
			delete(d.fwds, key)
		}
	}
	d.mu.Unlock()
	for _, f := range gone {
		f.stop()
	}
}

// Close stops Run. It is idempotent.
func (d *Drains) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

// Health is how the drain with this ID fares; false when no forwarder
// runs for it (unknown, or the manager is not running).
func (d *Drains) Health(id string) (model.DrainHealth, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.fwds {
		if f.drain.ID == id {
			return f.health(), true
		}
	}
	return model.DrainHealth{}, false
}

func (d *Drains) apply(ctx context.Context, ev store.Event[model.Drain]) {
	d.mu.Lock()
	old := d.fwds[ev.Key]
	if old != nil && !ev.Deleted && old.drain.URL == ev.Value.URL && old.drain.Token == ev.Value.Token {
		d.mu.Unlock()
		return
	}
	delete(d.fwds, ev.Key)
	d.mu.Unlock()
	if old != nil {
		old.stop()
	}
	if ev.Deleted {
		return
	}
	f, err := d.start(ctx, ev.Value)
	if err != nil {
		d.cfg.Logger.Warn("log drain not started", "app", ev.Value.AppID, "drain", ev.Value.ID, "err", err)
		return
	}
	d.mu.Lock()
	d.fwds[ev.Key] = f
	d.mu.Unlock()
}

func (d *Drains) stopAll() { d.stopAllBut(nil) }

// report writes an L10 line in the app's log for each drain that dropped
// lines since the last report.
func (d *Drains) report() {
	d.mu.Lock()
	fwds := make([]*forwarder, 0, len(d.fwds))
	for _, f := range d.fwds {
		fwds = append(fwds, f)
	}
	d.mu.Unlock()
	for _, f := range fwds {
		n, since := f.buf.takeDropped()
		if n == 0 {
			continue
		}
		f.mu.Lock()
		f.h.Dropped += n
		f.mu.Unlock()
		d.pub.Publish(f.drain.AppID, model.LogLine{
			Time: d.cfg.Now(), Source: model.SourceHeroku, Dyno: "logplex",
			Message: fmt.Sprintf("%s %d messages dropped since %s.", l10Prefix, n, since.UTC().Format(model.LogTimeFormat)),
		})
	}
}

const l10Prefix = "Error L10 (output buffer overflow):"

// isOwnReport tells our overflow reports apart: dropping one is not
// counted, or a dead drain would report its own reports forever.
func isOwnReport(l model.LogLine) bool {
	return l.Source == model.SourceHeroku && l.Dyno == "logplex" && strings.HasPrefix(l.Message, l10Prefix)
}

// forwarder sends one drain's lines; its goroutine is owned by Drains.
type forwarder struct {
	d      *Drains
	drain  model.Drain
	u      *url.URL
	buf    *lineBuffer
	sub    *nats.Subscription
	sender sender
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	h  model.DrainHealth
}

// sender delivers one batch; an errPermanent error means do not retry.
type sender interface {
	send(ctx context.Context, batch []model.LogLine, frameID string) error
	close()
}

type permanentError struct{ error }

func (d *Drains) start(ctx context.Context, dr model.Drain) (*forwarder, error) {
	u, err := ParseDrainURL(dr.URL)
	if err != nil {
		return nil, err
	}
	f := &forwarder{d: d, drain: dr, u: u, buf: newLineBuffer(d.cfg.Buffer), done: make(chan struct{})}
	switch u.Scheme {
	case SchemeHTTPS:
		f.sender = &httpSender{d: d, u: u, token: dr.Token}
	case SchemeSyslogTLS:
		f.sender = &syslogSender{d: d, addr: u.Host, token: dr.Token, tls: d.tls}
	default:
		f.sender = &syslogSender{d: d, addr: u.Host, token: dr.Token}
	}
	f.sub, err = d.nc.Subscribe(subject(dr.AppID), func(m *nats.Msg) {
		var l model.LogLine
		if json.Unmarshal(m.Data, &l) == nil {
			f.buf.push(l, d.cfg.Now(), !isOwnReport(l))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to the logs of %s: %w", dr.AppID, err)
	}
	// The buffer is the bound; the subscription must never be the one
	// that drops (it would drop without a count).
	_ = f.sub.SetPendingLimits(-1, 512<<20)
	if err := d.nc.Flush(); err != nil { // the server has our interest before Health says we run
		_ = f.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to the logs of %s: %w", dr.AppID, err)
	}
	fctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	go f.run(fctx)
	return f, nil
}

func (f *forwarder) stop() {
	_ = f.sub.Unsubscribe()
	f.cancel()
	<-f.done
}

func (f *forwarder) health() model.DrainHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h
}

func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	defer f.sender.close()
	// Connect before the first line: a dial during a burst costs its lines.
	if c, ok := f.sender.(interface{ connect(context.Context) error }); ok {
		if err := c.connect(ctx); err != nil && ctx.Err() == nil {
			f.mu.Lock()
			f.h.LastError, f.h.LastErrorAt = f.redact(err.Error()), f.d.cfg.Now()
			f.mu.Unlock()
		}
	}
	var batch []model.LogLine
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.buf.ready:
		}
		for {
			batch = f.buf.take(batch[:0], f.d.cfg.MaxBatch)
			if len(batch) == 0 {
				break
			}
			if !f.deliver(ctx, batch) {
				return
			}
		}
	}
}

// deliver sends batch until it is sent or refused for good; false when ctx
// ended first. Failures back off exponentially; the buffer keeps filling
// meanwhile, and what it cannot hold is counted for L10.
func (f *forwarder) deliver(ctx context.Context, batch []model.LogLine) bool {
	frameID := newFrameID()
	wait := f.d.cfg.RetryMin
	for {
		err := f.sender.send(ctx, batch, frameID)
		if err == nil {
			f.mu.Lock()
			f.h.LastSuccess = f.d.cfg.Now()
			f.h.Sent += int64(len(batch))
			f.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		msg := f.redact(err.Error())
		f.mu.Lock()
		f.h.LastError, f.h.LastErrorAt = msg, f.d.cfg.Now()
		var perm permanentError
		if errors.As(err, &perm) {
			f.h.Dropped += int64(len(batch))
		}
		f.mu.Unlock()
		if errors.As(err, &perm) {
			return true
		}
		f.d.cfg.Logger.Debug("log drain failed; retrying", "app", f.drain.AppID, "drain", f.drain.ID, "err", msg, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(wait*2, f.d.cfg.RetryMax)
	}
}

// redact keeps a drain's password out of errors shown to users and logs.
func (f *forwarder) redact(s string) string {
	if p, ok := f.u.User.Password(); ok && p != "" {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}
