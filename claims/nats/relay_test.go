package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/nats/natstest"
	"github.com/microdrop/microdrop/claims/postgres"
)

// downBus is a bus whose every publish fails, as a replica killed between
// its commit and its publish never publishes.
type downBus struct{ microdrop.Bus }

var errDown = errors.New("bus down")

func (downBus) Publish(_ context.Context, e microdrop.Event) (microdrop.Event, error) {
	return e, errDown
}

// quiet fails if s receives anything within d.
func quiet(t *testing.T, s *microdrop.Subscription, d time.Duration) {
	t.Helper()
	select {
	case e := <-s.C():
		t.Fatalf("unexpected event %s %s", e.Kind, e.ID)
	case <-time.After(d):
	}
}

// Hold events committed in Postgres but never published (the replica died,
// simulated by a bus that fails) reach the real NATS bus through the
// outbox relay after a restart, each once; one the service did publish
// before the relay got to it is not delivered twice (Nats-Msg-Id).
func TestRelayPublishesWhatACrashLost(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	busURL := natstest.BusURL(t)
	bus := open(t, busURL)
	sub := bus.Subscribe(64, microdrop.HoldPaid, microdrop.HoldExpired, microdrop.HoldReleased, microdrop.HoldPassed)
	defer sub.Close()

	l := postgres.MustOpenURL(t, u, postgres.Options{Holder: ledgertest.Holder})
	d := ledgertest.NewDrop("r1", 2)
	d.PayWindow, d.PayMethods = 10*time.Minute, []string{claims.PayWallet}
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	due := now.Add(10 * time.Minute)
	h1, h2 := ledgertest.NewHold("r1", 1, "alice", due), ledgertest.NewHold("r1", 2, "bob", due)
	lost := ledgertest.Win("r1", 3, "carol", 0, "")
	lost.Outcome, lost.Cap = claims.OutcomeLost, 1
	if err := l.Commit(ctx, claims.Batch{DropID: "r1", Wins: 2, Insert: []claims.Entry{ledgertest.Win("r1", 1, "alice", 1, ""), ledgertest.Win("r1", 2, "bob", 1, ""), lost},
		Holds: []claims.Hold{h1, h2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Post(ctx, ledgertest.TopUp("top-alice", "alice", 5000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.PayHold(ctx, h1.ID, "wallet", ledgertest.WalletPay(h1, 450), now); err != nil {
		t.Fatal(err)
	}
	next := ledgertest.NewHold("r1", 3, "carol", due.Add(10*time.Minute))
	next.PassedFrom = h2.ID
	if errs := l.PassHolds(ctx, []claims.Pass{{HoldID: h2.ID, State: claims.HoldExpired, At: due, Next: &next}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// Committed: alice paid, bob's hold expired and passed to carol. No
	// replica published it.
	down := claims.NewRelay(l, l.Hold, downBus{bus}, nil, 0)
	if n, err := down.Step(ctx); !errors.Is(err, errDown) || n != 2 {
		// The hold.won of the two wins has no bus event (drop.claimed
		// reports a win) and is moved past; the relay stops at the first
		// failed publish.
		t.Fatalf("relay over a failing bus: %d %v, want 2 and the bus's error", n, err)
	}
	quiet(t, sub, 300*time.Millisecond)

	// The replica comes back (a new connection to the ledger): its relay
	// publishes what is past the relayed position.
	l2 := postgres.MustOpenURL(t, u, postgres.Options{Holder: ledgertest.Holder})
	relay := claims.NewRelay(l2, l2.Hold, bus, nil, 0)
	if n, err := relay.Step(ctx); err != nil || n != 3 {
		t.Fatalf("relay after the restart: %d %v, want the other 3 outbox events", n, err)
	}
	got := collect(t, sub, 3)
	want := []struct {
		kind microdrop.Kind
		id   string
		user string
		st   string
	}{
		{microdrop.HoldPaid, "msg_hold_paid_" + h1.ID, "alice", "paid"},
		{microdrop.HoldExpired, "msg_hold_expired_" + h2.ID, "bob", "expired"},
		{microdrop.HoldPassed, "msg_hold_won_" + next.ID, "carol", "awaiting"},
	}
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.ID != w.id || e.Hold == nil || e.Hold.UserID != w.user || e.Hold.State != w.st || e.DropID != "r1" || e.Channel != d.Channel {
			t.Fatalf("event %d: %+v %+v, want %s %s for %s", i, e, e.Hold, w.kind, w.id, w.user)
		}
	}
	if got[1].Hold.PassedTo != next.ID || got[2].Hold.PassedFrom != h2.ID {
		t.Fatalf("the pass is not in the events: %+v %+v", got[1].Hold, got[2].Hold)
	}
	if n, err := relay.Step(ctx); err != nil || n != 0 {
		t.Fatalf("a second round relayed %d %v", n, err)
	}
	quiet(t, sub, 300*time.Millisecond)

	// Steady state: the service publishes after its commit (with the
	// event's id), then the relay publishes the same event again; the
	// subscriber gets it once.
	if _, err := l.Post(ctx, ledgertest.TopUp("top-carol", "carol", 5000)); err != nil {
		t.Fatal(err)
	}
	paid, _, err := l.PayHold(ctx, next.ID, "wallet", ledgertest.WalletPay(next, 450), due.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	view := paid.View("login_carol")
	e, err := bus.Publish(ctx, microdrop.Event{ID: claims.BusEventID(microdrop.HoldPaid, next.ID), Kind: microdrop.HoldPaid, Channel: d.Channel, DropID: "r1", At: paid.SettledAt, Hold: view})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Step(ctx); err != nil || n != 1 {
		t.Fatalf("relay of the published event: %d %v", n, err)
	}
	if g := collect(t, sub, 1)[0]; g.Seq != e.Seq || g.Hold.Login != "login_carol" {
		t.Fatalf("the subscriber should get the service's event: %+v", g)
	}
	quiet(t, sub, 500*time.Millisecond)
}

// Two replicas relaying at once: one round holds the position, the other
// does nothing, and every event is published once.
func TestRelayOneAtATime(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	bus := open(t, natstest.BusURL(t))
	l := postgres.MustOpenURL(t, u, postgres.Options{})
	blocked := make(chan struct{})
	release := make(chan struct{})
	d := ledgertest.NewDrop("r2", 1)
	d.PayWindow, d.PayMethods = 10*time.Minute, []string{claims.PayWallet}
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	h := ledgertest.NewHold("r2", 1, "alice", time.Now().Add(time.Hour))
	if err := l.Commit(ctx, claims.Batch{DropID: "r2", Wins: 1, Insert: []claims.Entry{ledgertest.Win("r2", 1, "alice", 1, "")}, Holds: []claims.Hold{h}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.RelayOutbox(ctx, 10, func(claims.OutboxEvent) error {
			close(blocked)
			<-release
			return nil
		})
		done <- err
	}()
	<-blocked
	l2 := postgres.MustOpenURL(t, u, postgres.Options{})
	called := false
	n, err := l2.RelayOutbox(ctx, 10, func(claims.OutboxEvent) error { called = true; return nil })
	if err != nil || n != 0 || called {
		t.Fatalf("a second relay while the first holds the position: %d %v %v", n, err, called)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := claims.NewRelay(l2, l2.Hold, bus, nil, 0).Step(ctx); err != nil || n != 0 {
		t.Fatalf("after the first relay's round: %d %v, want nothing left", n, err)
	}
}
