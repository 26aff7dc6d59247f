package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
)

// OutboxRelay is a ledger whose outbox is published to the bus by a relay:
// the shared (Postgres) ledger of a scale-out, where a replica killed
// between its commit and its publish would otherwise lose the event.
type OutboxRelay interface {
	// RelayOutbox passes the events past the relayed position to publish,
	// in order, and moves the position past those it accepted. While
	// another replica relays it does nothing.
	RelayOutbox(ctx context.Context, limit int, publish func(OutboxEvent) error) (int, error)
}

// WinRelay is a ledger whose wins are published to the bus by a relay,
// tailing each recent drop's entries by arrival seq (no row is written per
// claim: only the relay's position per drop, by the relay).
type WinRelay interface {
	// RelayWins passes each recent drop's decided wins past its relayed
	// seq to publish, in seq order, stopping a drop at its first entry
	// not decided yet, and moves the positions past those it accepted.
	// While another replica relays it does nothing.
	RelayWins(ctx context.Context, limit int, publish func(WinEvent) error) (int, error)
}

// WinEvent is a win as the relay reads it from the entries.
type WinEvent struct {
	DropID, Channel string
	Seq             int64
	UserID, Login   string
	Unit            int
	DecidedAt       time.Time
	// Remaining is the drop's stock when relayed (the service's own
	// event has the stock right after the win; the overlay keeps the
	// lower).
	Remaining int
}

// WinEventID is the id of the drop.claimed event of the entry seq of a
// drop, the same from the decider and from the relay.
func WinEventID(dropID string, seq int64) string {
	return "win_" + dropID + "_" + strconv.FormatInt(seq, 10)
}

// Relay publishes to the bus after commit what the ledger holds past the
// last relayed position: the outbox's hold events and, with a WinRelay,
// the wins (drop.claimed). Each carries the id the service's own publish
// carries (BusEventID, WinEventID), so a bus that dedupes (JetStream's
// Nats-Msg-Id) delivers each once whether the service published it before
// a crash or not.
type Relay struct {
	src   OutboxRelay
	holds func(ctx context.Context, id string) (Hold, error)
	bus   microdrop.Bus
	log   *slog.Logger
	poll  time.Duration

	quit chan struct{}
	done chan struct{}
	mu   sync.Mutex // one round at a time
}

// NewRelay relays src's outbox to bus every poll (1s when zero); holds
// reads a hold, for the viewer it names.
func NewRelay(src OutboxRelay, holds func(ctx context.Context, id string) (Hold, error), bus microdrop.Bus, log *slog.Logger, poll time.Duration) *Relay {
	if poll <= 0 {
		poll = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{src: src, holds: holds, bus: bus, log: log.With("component", "outbox-relay"), poll: poll}
}

// A round relays at most relayPages pages of relayPage events (wins: per
// drop), so it keeps up with a burst of wins well inside the bus's
// two-minute duplicate window.
const relayPage, relayPages = 500, 20

// Step relays what the outbox and the wins hold past the relayed
// positions (up to relayPages pages of relayPage each) and returns how many outbox events
// and wins it moved past.
func (r *Relay) Step(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.outbox(ctx)
	if err != nil {
		return n, err
	}
	wr, ok := r.src.(WinRelay)
	if !ok {
		return n, nil
	}
	for range relayPages {
		m, err := wr.RelayWins(ctx, relayPage, func(w WinEvent) error {
			_, err := r.bus.Publish(ctx, microdrop.Event{ID: WinEventID(w.DropID, w.Seq), Kind: microdrop.Claimed, Channel: w.Channel, DropID: w.DropID, At: w.DecidedAt,
				Claim: &microdrop.ClaimView{UserID: w.UserID, Login: w.Login, Outcome: OutcomeWon, Units: w.Unit, Remaining: w.Remaining}})
			return err
		})
		n += m
		if err != nil || m < relayPage {
			return n, err
		}
	}
	return n, nil
}

func (r *Relay) outbox(ctx context.Context) (int, error) {
	total := 0
	for range relayPages {
		n, err := r.src.RelayOutbox(ctx, relayPage, func(ev OutboxEvent) error {
			e, ok, err := r.busEvent(ctx, ev)
			if err != nil || !ok {
				return err
			}
			_, err = r.bus.Publish(ctx, e)
			return err
		})
		total += n
		if err != nil || n < relayPage {
			return total, err
		}
	}
	return total, nil
}

// busEvent is the bus event reporting ev; false for an outbox event with
// none (a first win is a drop.claimed event; pickups and payouts have no
// bus event).
func (r *Relay) busEvent(ctx context.Context, ev OutboxEvent) (microdrop.Event, bool, error) {
	var b EventBody
	if err := json.Unmarshal(ev.Body, &b); err != nil {
		return microdrop.Event{}, false, fmt.Errorf("outbox event %s: %w", ev.ID, err)
	}
	var kind microdrop.Kind
	var state HoldState
	switch {
	case ev.Kind == EventHoldPaid:
		kind, state = microdrop.HoldPaid, HoldPaid
	case ev.Kind == EventHoldExpired:
		kind, state = microdrop.HoldExpired, HoldExpired
	case ev.Kind == EventHoldPassed:
		kind, state = microdrop.HoldReleased, HoldReleased
	case ev.Kind == EventHoldWon && b.Data.PassedFrom != "":
		kind, state = microdrop.HoldPassed, HoldAwaiting
	default:
		return microdrop.Event{}, false, nil
	}
	h, err := r.holds(ctx, b.Data.HoldID)
	if errors.Is(err, ErrHoldNotFound) {
		r.log.Warn("outbox event of an unknown hold: not relayed", "event", ev.ID, "hold", b.Data.HoldID)
		return microdrop.Event{}, false, nil
	}
	if err != nil {
		return microdrop.Event{}, false, err
	}
	h.State, h.PassedTo = state, b.Data.PassedTo
	e := holdEvent(kind, &Drop{ID: ev.DropID, Channel: ev.Channel}, h, "", b.Timestamp)
	if e.ID != ev.ID {
		return microdrop.Event{}, false, fmt.Errorf("outbox event %s maps to bus event %s", ev.ID, e.ID)
	}
	return e, true, nil
}

// Start relays every poll until Close.
func (r *Relay) Start() {
	r.quit, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.poll)
		defer t.Stop()
		for {
			if n, err := r.Step(context.Background()); err != nil {
				r.log.Warn("outbox relay round", "relayed", n, "err", err)
			}
			select {
			case <-r.quit:
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops relaying after the current round.
func (r *Relay) Close() error {
	if r.quit != nil {
		close(r.quit)
		<-r.done
		r.quit = nil
	}
	return nil
}
