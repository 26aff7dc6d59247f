package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop/claims"
)

// Defaults of the retry schedule.
const (
	// RetryFor is how long a delivery is retried from its first attempt.
	RetryFor = 72 * time.Hour
	// FirstRetry is the delay after the first failure; each next one
	// doubles, up to MaxRetryDelay, each with ±20% jitter.
	FirstRetry    = 5 * time.Second
	MaxRetryDelay = 6 * time.Hour
	// AttemptTimeout bounds one attempt, answer included.
	AttemptTimeout = 15 * time.Second
)

// Options tune the worker. Zero values take the defaults.
type Options struct {
	RetryFor       time.Duration
	FirstRetry     time.Duration
	MaxRetryDelay  time.Duration
	AttemptTimeout time.Duration
	// Poll is how often the worker looks at the outbox and the queues on
	// its own (500ms); Kick wakes it at once.
	Poll time.Duration
	// LeaseTTL is how long the delivery lease of a shared (Postgres)
	// store lasts without renewal (5s); it is renewed every third of it.
	// A replica that dies holding it is replaced after at most LeaseTTL.
	LeaseTTL time.Duration
}

// LeaseTTL is the default delivery lease.
const LeaseTTL = 5 * time.Second

// Deps are what the worker needs.
type Deps struct {
	Outbox claims.Outbox
	Store  *Store
	Client *http.Client // nil: a client with no redirects followed
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics (nil: none).
	Metrics *Metrics
	// Jitter returns a factor in [0.8, 1.2) (nil: random).
	Jitter  func() float64
	Options Options
}

// Worker delivers the outbox to the endpoints.
type Worker struct {
	d    Deps
	o    Options
	log  *slog.Logger
	kick chan struct{}
	mu   sync.Mutex // one Step at a time
	quit chan struct{}
	done sync.WaitGroup
	// leading: this replica holds the delivery lease (always, for a
	// store that is not shared).
	leading atomic.Bool
}

// NewWorker makes a worker; Start runs it.
func NewWorker(d Deps) *Worker {
	o := d.Options
	if o.RetryFor <= 0 {
		o.RetryFor = RetryFor
	}
	if o.FirstRetry <= 0 {
		o.FirstRetry = FirstRetry
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = MaxRetryDelay
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = AttemptTimeout
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = LeaseTTL
	}
	if d.Client == nil {
		d.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Jitter == nil {
		d.Jitter = func() float64 { return 0.8 + 0.4*mrand.Float64() }
	}
	return &Worker{d: d, o: o, log: d.Logger.With("component", "webhooks"), kick: make(chan struct{}, 1)}
}

// Start runs the worker until Close. With a shared store it also keeps
// the delivery lease while it holds it, and takes it when it lapses.
func (w *Worker) Start() {
	w.quit = make(chan struct{})
	w.done.Add(2)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(w.o.Poll)
		defer t.Stop()
		for {
			if err := w.Step(context.Background()); err != nil {
				w.log.Warn("webhook delivery round", "err", err)
			}
			select {
			case <-w.quit:
				return
			case <-t.C:
			case <-w.kick:
			}
		}
	}()
	go func() {
		// Renewed apart from the rounds, which may wait on a slow
		// endpoint for AttemptTimeout, longer than the lease.
		defer w.done.Done()
		t := time.NewTicker(w.o.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-w.quit:
				return
			case <-t.C:
			}
			if _, err := w.lead(context.Background()); err != nil {
				w.log.Warn("webhook delivery lease", "err", err)
			}
		}
	}()
}

// Close stops the worker after its current round and, with a shared
// store, gives the delivery lease up so another replica takes over at
// once.
func (w *Worker) Close() error {
	if w.quit != nil {
		close(w.quit)
		w.done.Wait()
		w.quit = nil
	}
	if w.d.Store.Shared() && w.leading.Swap(false) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := w.d.Store.Resign(ctx); err != nil {
			return fmt.Errorf("webhook delivery lease: %w", err)
		}
	}
	return nil
}

// Leading reports whether this worker delivers: it holds the delivery
// lease of a shared store, or its store is not shared.
func (w *Worker) Leading() bool { return w.leading.Load() }

// lead takes or renews the delivery lease.
func (w *Worker) lead(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.LeaseTTL/2)
	defer cancel()
	ok, err := w.d.Store.Lead(ctx, w.o.LeaseTTL)
	ok = ok && err == nil
	if was := w.leading.Swap(ok); was != ok && w.d.Store.Shared() {
		if ok {
			w.log.Info("took the webhook delivery lease: this replica delivers", "replica", w.d.Store.Owner())
		} else {
			w.log.Warn("lost the webhook delivery lease: another replica delivers", "replica", w.d.Store.Owner(), "err", err)
		}
	}
	return ok, err
}

// Kick wakes the worker: something was committed.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Step queues new outbox events for every endpoint, then tries every
// delivery due by the injected clock, once.
func (w *Worker) Step(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok, err := w.lead(ctx); !ok {
		return err // another replica delivers
	}
	if err := w.pump(ctx); err != nil {
		return err
	}
	due, err := w.d.Store.Due(ctx, w.d.Now(), 64)
	if err != nil {
		return err
	}
	eps := map[string]Endpoint{}
	var errs []error
	// Due holds at most one delivery per (endpoint, drop): sending them
	// at once keeps order per drop and lets a slow endpoint not hold up
	// the others.
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, d := range due {
		ep, ok := eps[d.EndpointID]
		if !ok {
			if ep, err = w.d.Store.Endpoint(ctx, d.EndpointID); err != nil {
				errs = append(errs, err)
				continue
			}
			eps[d.EndpointID] = ep
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.attempt(ctx, ep, d); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Matches reports whether an endpoint subscribes to an event.
func (ep Endpoint) Matches(ev claims.OutboxEvent) bool {
	if ep.Channel != "" && ep.Channel != ev.Channel {
		return false
	}
	for _, k := range ep.Kinds {
		if k == ev.Kind {
			return true
		}
	}
	return false
}

// pump copies outbox events past each endpoint's cursor into its queue.
func (w *Worker) pump(ctx context.Context) error {
	eps, err := w.d.Store.Endpoints(ctx)
	if err != nil {
		return err
	}
	now := w.d.Now()
	for _, ep := range eps {
		for range 100 { // at most 100 pages a round
			evs, err := w.d.Outbox.OutboxAfter(ctx, ep.Cursor, 200)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			var ds []Delivery
			for _, ev := range evs {
				if ep.Matches(ev) {
					ds = append(ds, Delivery{Seq: ev.Seq, EventID: ev.ID, Kind: ev.Kind, DropID: ev.DropID, Body: ev.Body, NextAt: now})
				}
			}
			cursor := evs[len(evs)-1].Seq
			if err := w.d.Store.Enqueue(ctx, ep.ID, cursor, ds); errors.Is(err, ErrNotLeader) {
				w.leading.Store(false)
				return nil
			} else if err != nil {
				return err
			}
			w.d.Metrics.queued(len(ds))
			ep.Cursor = cursor
		}
	}
	return nil
}

// backoff is the delay after the nth failed attempt.
func (w *Worker) backoff(n int) time.Duration {
	d := w.o.FirstRetry
	for i := 1; i < n && d < w.o.MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, w.o.MaxRetryDelay)
	return time.Duration(float64(d) * w.d.Jitter())
}

// attempt sends one delivery and records the outcome.
func (w *Worker) attempt(ctx context.Context, ep Endpoint, d Delivery) error {
	if !w.leading.Load() {
		return nil // the lease went to another replica during this round
	}
	now := w.d.Now()
	if d.FirstAt.IsZero() {
		d.FirstAt = now
	}
	d.Attempts++
	status, latency, sendErr := w.send(ctx, ep, d, now)
	a := Attempt{EndpointID: ep.ID, EventID: d.EventID, N: d.Attempts, At: now, Status: status, Latency: latency}
	d.LastStatus, d.LastError = status, ""
	disable := ""
	switch {
	case sendErr == nil:
		d.State, d.DeliveredAt = Delivered, now
		w.d.Metrics.attempt("delivered", latency)
	default:
		a.Error, d.LastError = sendErr.Error(), sendErr.Error()
		if now.Sub(d.FirstAt) >= w.o.RetryFor {
			d.State = Failed
			disable = fmt.Sprintf("event %s failed for %s (%d attempts; last: %s)", d.EventID, w.o.RetryFor, d.Attempts, sendErr)
			w.d.Metrics.attempt("failed", latency)
			w.d.Metrics.disabled()
			w.log.Warn("webhook endpoint disabled", "endpoint", ep.ID, "url", ep.URL, "reason", disable)
		} else {
			d.NextAt = now.Add(w.backoff(d.Attempts))
			w.d.Metrics.attempt("retry", latency)
		}
	}
	switch err := w.d.Store.Record(ctx, d, a, disable); {
	case errors.Is(err, ErrNotLeader):
		// The lease lapsed while the attempt ran: the new holder sends it
		// again (at least once), and this replica's record is dropped.
		w.leading.Store(false)
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	return nil
}

// maxAnswer is how much of an answer is read (and dropped).
const maxAnswer = 64 << 10

// send posts the signed event: nil only for a 2xx.
func (w *Worker) send(ctx context.Context, ep Endpoint, d Delivery, now time.Time) (int, time.Duration, error) {
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		return 0, 0, fmt.Errorf("endpoint secret: %w", err)
	}
	body, err := w.bodyFor(ctx, ep, d)
	if err != nil {
		return 0, 0, err
	}
	sig, err := wh.Sign(d.EventID, now, body)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "microdrop-webhooks/1")
	req.Header.Set(standardwebhooks.HeaderWebhookID, d.EventID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	start := time.Now() // latency is wall time whatever the clock says
	resp, err := w.d.Client.Do(req)
	if err != nil {
		lat := time.Since(start)
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, lat, fmt.Errorf("no answer within %s", w.o.AttemptTimeout)
		}
		return 0, lat, fmt.Errorf("post: %s", shortErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	lat := time.Since(start)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, lat, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp.StatusCode, lat, nil
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// NewSecret makes an endpoint secret: "whsec_" and 32 random bytes in
// standard base64, as Standard Webhooks libraries read it.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}
