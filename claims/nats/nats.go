// Package nats is the scale-out event bus: events go through a JetStream
// stream, so subscribers on every replica receive what any replica
// published, in one order. The replica's one ordered consumer resumes
// after the last stream sequence it received when the connection to NATS
// comes back, so local subscribers miss nothing the stream still keeps
// (Options.MaxAge) across a reconnect. It also carries claims and controls to the replica
// deciding a drop (claims.Forwarder), over core NATS request-reply.
//
// It must never be the record of anything: the ledger is. A publish that
// fails after a commit loses only that publish, never the claim: the
// outbox relay (claims.Relay) publishes the wins and hold events again
// from the ledger with the same Nats-Msg-Id, which the stream dedupes;
// other events are resynced from a snapshot.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Options name the stream and subjects. Zero values take defaults.
type Options struct {
	// Stream is the JetStream stream of events ("MICRODROP").
	Stream string
	// Prefix starts every subject ("microdrop"): events on
	// PREFIX.events.CHANNEL, forwarded requests on PREFIX.replica.ID.
	Prefix string
	// MaxAge bounds how long events are kept for replay (24h).
	MaxAge time.Duration
	Logger *slog.Logger
}

// Bus is a microdrop.Bus over NATS JetStream.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	opts   Options
	log    *slog.Logger
	stream jetstream.Stream
	live   jetstream.ConsumeContext

	mu   sync.Mutex
	subs map[*microdrop.Subscription]struct{}
	last uint64 // stream sequence of the last event fanned out
	// seen holds the ids of the latest events fanned out, to drop a
	// repeat the stream did not.
	seen *lru.Cache[string, struct{}]
}

// seenIDs is how many event ids a replica remembers to drop repeats.
const seenIDs = 1 << 16

var (
	_ microdrop.Bus    = (*Bus)(nil)
	_ claims.Forwarder = (*Bus)(nil)
)

// ParseURL splits a bus URL: nats://host:port[,nats://host2:port]?stream=S&prefix=P.
func ParseURL(raw string) (servers string, o Options, err error) {
	u, err := url.Parse(strings.SplitN(raw, ",", 2)[0])
	if err != nil || u.Scheme != "nats" || u.Host == "" {
		return "", o, fmt.Errorf("bus: %q is not a nats://host:port URL", raw)
	}
	q := u.Query()
	o.Stream, o.Prefix = q.Get("stream"), q.Get("prefix")
	if v := q.Get("max_age"); v != "" {
		if o.MaxAge, err = time.ParseDuration(v); err != nil {
			return "", o, fmt.Errorf("bus: max_age: %w", err)
		}
	}
	servers = raw
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		servers = raw[:i]
	}
	return servers, o, nil
}

// Open connects to NATS (servers as nats.Connect takes them), creates or
// updates the event stream and starts receiving.
func Open(ctx context.Context, servers string, o Options) (*Bus, error) {
	if o.Stream == "" {
		o.Stream = "MICRODROP"
	}
	if o.Prefix == "" {
		o.Prefix = "microdrop"
	}
	if o.MaxAge == 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("component", "bus", "bus", "nats")
	nc, err := nats.Connect(servers, nats.Name("microdrop"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("disconnected from NATS", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, fmt.Errorf("bus: connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: o.Stream, Subjects: []string{o.Prefix + ".events.>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, MaxAge: o.MaxAge, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: JetStream stream %s: %w (is JetStream enabled? nats-server -js)", o.Stream, err)
	}
	seen, _ := lru.New[string, struct{}](seenIDs) // a positive size never fails
	b := &Bus{nc: nc, js: js, opts: o, log: log, stream: stream, subs: map[*microdrop.Subscription]struct{}{}, seen: seen}
	// One ordered consumer per replica, fanned out in memory: every local
	// subscriber sees the stream's order.
	cons, err := js.OrderedConsumer(ctx, o.Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: consumer: %w", err)
	}
	b.live, err = cons.Consume(b.fanOut)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: consume: %w", err)
	}
	return b, nil
}

// Close stops receiving and disconnects, closing every subscription.
func (b *Bus) Close() error {
	b.live.Stop()
	b.mu.Lock()
	subs := b.subs
	b.subs = map[*microdrop.Subscription]struct{}{}
	b.mu.Unlock()
	for s := range subs {
		s.Close()
	}
	return b.nc.Drain()
}

func (b *Bus) subject(e microdrop.Event) string {
	ch := e.Channel
	if ch == "" || strings.ContainsAny(ch, ".*> \t") {
		ch = "_"
	}
	return b.opts.Prefix + ".events." + ch
}

// Publish stores the event in the stream and returns it with Seq set to its
// stream sequence, which orders events across all replicas. An event with
// an ID is stored once per duplicate window (two minutes): publishing it
// again returns the first one's sequence and delivers nothing.
func (b *Bus) Publish(ctx context.Context, e microdrop.Event) (microdrop.Event, error) {
	e.Seq = 0
	data, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var opts []jetstream.PublishOpt
	if e.ID != "" {
		// The stream keeps one message per id within its duplicate
		// window: a republish by the outbox relay is dropped.
		opts = append(opts, jetstream.WithMsgID(e.ID))
	}
	ack, err := b.js.Publish(ctx, b.subject(e), data, opts...)
	if err != nil {
		return e, fmt.Errorf("bus: publish %s: %w", e.Kind, err)
	}
	e.Seq = ack.Sequence
	return e, nil
}

func decode(m jetstream.Msg) (microdrop.Event, error) {
	var e microdrop.Event
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return e, err
	}
	md, err := m.Metadata()
	if err != nil {
		return e, err
	}
	e.Seq = md.Sequence.Stream
	return e, nil
}

func (b *Bus) fanOut(m jetstream.Msg) {
	e, err := decode(m)
	if err != nil {
		b.log.Warn("undecodable event", "subject", m.Subject(), "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = e.Seq
	if e.ID != "" {
		// A copy the stream kept because it came after its duplicate
		// window (the relay republished late): local subscribers get the
		// event once.
		if _, dup := b.seen.Get(e.ID); dup {
			return
		}
		b.seen.Add(e.ID, struct{}{})
	}
	for s := range b.subs {
		s.Deliver(e)
	}
}

// Subscribe receives the events of kinds (none: every kind) published from
// now on, by any replica. A subscriber that falls behind loses only
// sheddable kinds (microdrop.Bus); the stream's one ordered consumer per
// replica is never held up by it.
func (b *Bus) Subscribe(buffer int, kinds ...microdrop.Kind) *microdrop.Subscription {
	var s *microdrop.Subscription
	s = microdrop.NewSubscription(buffer, func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
	}, kinds...)
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Stats reports local subscribers, the events waiting in their buffers and
// what slow ones missed, for /metrics.
func (b *Bus) Stats() (subscribers, lag int, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		lag += s.Lag()
		dropped += s.Dropped()
	}
	return len(b.subs), lag, dropped
}

func (b *Bus) replicaSubject(id string) string {
	return b.opts.Prefix + ".replica." + strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(id)
}

// ServeReplica answers requests addressed to replica id, each in its own
// goroutine (a decider answers many claims at once).
func (b *Bus) ServeReplica(id string, handle func(ctx context.Context, req []byte) []byte) (func(), error) {
	var wg sync.WaitGroup
	sub, err := b.nc.Subscribe(b.replicaSubject(id), func(m *nats.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := m.Respond(handle(ctx, m.Data)); err != nil {
				b.log.Warn("answer forwarded request", "err", err)
			}
		}()
	})
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	return func() {
		_ = sub.Unsubscribe()
		// Make sure the server has dropped our interest before saying we
		// stopped: a request routed to a subscription that is going away
		// would get neither an answer nor "no responders".
		_ = b.nc.Flush()
		wg.Wait()
	}, b.nc.Flush()
}

// ForwardTimeout bounds a forwarded request whose context has no deadline:
// a replica that does not answer in time counts as unreachable.
const ForwardTimeout = 10 * time.Second

// ForwardReplica sends req to replica id and waits for its answer.
func (b *Bus) ForwardReplica(ctx context.Context, id string, req []byte) ([]byte, error) {
	_, callerDeadline := ctx.Deadline()
	if !callerDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ForwardTimeout)
		defer cancel()
	}
	m, err := b.nc.RequestWithContext(ctx, b.replicaSubject(id), req)
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return nil, fmt.Errorf("%s: %w", id, claims.ErrReplicaUnreachable)
		case !callerDeadline && errors.Is(err, context.DeadlineExceeded):
			// Only our own bound: a caller's deadline means the request
			// may still be decided, and the caller must not ask again.
			return nil, fmt.Errorf("%s: no answer in %s: %w", id, ForwardTimeout, claims.ErrReplicaUnreachable)
		}
		return nil, err
	}
	return m.Data, nil
}
