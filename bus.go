package microdrop

import (
	"context"
	"sync"
	"sync/atomic"
)

// Bus carries Events from the part that decided them to every part that
// reacts. Publish never blocks on a slow subscriber: a subscriber that falls
// behind by more than its buffer loses events and sees Dropped grow, and must
// resync from a snapshot (the overlay does).
type Bus interface {
	// Publish assigns the event its Seq and delivers it. The error is for
	// buses that cross a network; the in-memory bus never fails.
	Publish(ctx context.Context, e Event) (Event, error)
	// Subscribe returns a subscription with room for buffer undelivered events.
	Subscribe(buffer int) *Subscription
}

// Subscription receives events in publish order.
type Subscription struct {
	c       chan Event
	dropped atomic.Uint64
	once    sync.Once
	cancel  func()
}

// NewSubscription is for Bus implementations: cancel is called once on Close.
func NewSubscription(buffer int, cancel func()) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	return &Subscription{c: make(chan Event, buffer), cancel: cancel}
}

// C is the channel of events. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.c }

// Deliver hands e to the subscriber without blocking; it reports false and
// counts a drop when the buffer is full. Buses call it from one goroutine per
// subscription at a time.
func (s *Subscription) Deliver(e Event) bool {
	select {
	case s.c <- e:
		return true
	default:
		s.dropped.Add(1)
		return false
	}
}

// Dropped counts events this subscriber missed because it was too slow.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Lag is how many events wait in the buffer.
func (s *Subscription) Lag() int { return len(s.c) }

// Close unsubscribes and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
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

// Subscribe registers a new subscriber.
func (b *MemoryBus) Subscribe(buffer int) *Subscription {
	var s *Subscription
	s = NewSubscription(buffer, func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
	})
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
