package microdrop

import (
	"context"
	"slices"
	"sync"
)

// Bus carries Events from the part that decided them to every part that
// reacts. Publish never blocks on a slow subscriber.
//
// What a subscriber that falls behind loses is decided by Kind: only
// Claimed and Redeemed (one per viewer, thousands a second in a burst,
// each superseded by the next stock figure) are shed once its buffer is
// full, and counted in Dropped. Every other kind changes what a subscriber
// does (a drop opens, is extended, sells out or closes, a cue airs, a
// highlight is marked) and is never dropped: it waits in the
// subscription's backlog until the subscriber takes it. Either way the
// events a subscriber receives are in publish order.
type Bus interface {
	// Publish assigns the event its Seq and delivers it. The error is for
	// buses that cross a network; the in-memory bus never fails.
	Publish(ctx context.Context, e Event) (Event, error)
	// Subscribe returns a subscription with room for buffer undelivered
	// events, receiving the given kinds (every kind when none is named).
	Subscribe(buffer int, kinds ...Kind) *Subscription
}

// Sheddable reports whether a subscriber that is behind may miss events of
// kind k: only the per-viewer Claimed and Redeemed, whose effect a later
// event or a snapshot carries.
func (k Kind) Sheddable() bool { return k == Claimed || k == Redeemed }

// Subscription receives events in publish order. Its backlog is not
// bounded: it holds only kinds that follow a person's action (a few per
// drop), and a subscriber that stops reading keeps them until it closes.
type Subscription struct {
	c     chan Event
	kinds []Kind // nil: every kind

	mu      sync.Mutex
	dropped uint64
	// backlog holds events that must not be dropped, in order, while c is
	// full; pumping says a goroutine is moving them into c, and while it
	// does every later event queues behind them (or, if sheddable, is
	// dropped), so the order stays the publish order.
	backlog []Event
	pumping bool
	closed  bool

	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	cancel func()
}

// NewSubscription is for Bus implementations: cancel is called once on
// Close, and must return only when the bus no longer calls Deliver. kinds
// are the kinds the subscriber wants (none: every kind).
func NewSubscription(buffer int, cancel func(), kinds ...Kind) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	s := &Subscription{c: make(chan Event, buffer), cancel: cancel, quit: make(chan struct{})}
	if len(kinds) > 0 {
		s.kinds = slices.Clone(kinds)
	}
	return s
}

// C is the channel of events. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.c }

// Wants reports whether the subscriber asked for kind k.
func (s *Subscription) Wants(k Kind) bool { return s.kinds == nil || slices.Contains(s.kinds, k) }

// Deliver hands e to the subscriber without blocking. An event of a kind
// the subscriber did not ask for is skipped. When the buffer is full, a
// sheddable event is dropped (Deliver reports false and Dropped grows);
// any other waits in the backlog, and a goroutine, which Close stops,
// moves the backlog into the buffer as the subscriber reads.
func (s *Subscription) Deliver(e Event) bool {
	if !s.Wants(e.Kind) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if !s.pumping {
		select {
		case s.c <- e:
			return true
		default:
		}
	}
	if e.Kind.Sheddable() {
		s.dropped++
		return false
	}
	s.backlog = append(s.backlog, e)
	if !s.pumping {
		s.pumping = true
		s.wg.Add(1)
		go s.pump()
	}
	return true
}

// pump moves the backlog into c, in order, and ends when it is empty or
// the subscription is closed.
func (s *Subscription) pump() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.backlog) == 0 {
			s.backlog, s.pumping = nil, false
			s.mu.Unlock()
			return
		}
		e := s.backlog[0]
		s.mu.Unlock()
		select {
		case s.c <- e:
		case <-s.quit:
			return
		}
		s.mu.Lock()
		s.backlog[0] = Event{}
		s.backlog = s.backlog[1:]
		s.mu.Unlock()
	}
}

// Dropped counts sheddable events this subscriber missed because it was
// too slow.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Lag is how many events wait for the subscriber, in the buffer and the
// backlog.
func (s *Subscription) Lag() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.c) + len(s.backlog)
}

// Close unsubscribes, stops the backlog's goroutine (the backlog is
// discarded) and closes C; what is already in the buffer stays readable.
func (s *Subscription) Close() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.mu.Lock()
		s.closed = true
		s.backlog = nil
		s.mu.Unlock()
		close(s.quit)
		s.wg.Wait()
		close(s.c)
	})
}

// MemoryBus is the single-process Bus.
type MemoryBus struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*Subscription]struct{}
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus returns an empty bus.
func NewMemoryBus() *MemoryBus {
	return &MemoryBus{subs: make(map[*Subscription]struct{})}
}

// Publish delivers e to every subscriber, in the same order for all of them.
func (b *MemoryBus) Publish(_ context.Context, e Event) (Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	for s := range b.subs {
		s.Deliver(e)
	}
	return e, nil
}

// Subscribe registers a new subscriber of kinds (none: every kind).
func (b *MemoryBus) Subscribe(buffer int, kinds ...Kind) *Subscription {
	var s *Subscription
	s = NewSubscription(buffer, func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
	}, kinds...)
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Stats reports the number of subscribers and the total of events waiting in
// their buffers, for /metrics.
func (b *MemoryBus) Stats() (subscribers, lag int, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		lag += s.Lag()
		dropped += s.Dropped()
	}
	return len(b.subs), lag, dropped
}
