package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	mdnats "github.com/microdrop/microdrop/claims/nats"
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
	wins := bus.Subscribe(64, microdrop.Claimed)
	defer wins.Close()

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
	if n, err := relay.Step(ctx); err != nil || n != 6 {
		t.Fatalf("relay after the restart: %d %v, want the other 3 outbox events and the 3 entries", n, err)
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
	// The two wins are relayed too; carol's unit, handed on from bob, is
	// hold.passed, not a win of her own.
	if ws := collect(t, wins, 2); ws[0].Claim.UserID != "alice" || ws[1].Claim.UserID != "bob" || ws[1].ID != claims.WinEventID("r1", 2) {
		t.Fatalf("relayed wins: %+v %+v", ws[0].Claim, ws[1].Claim)
	}
	quiet(t, wins, 300*time.Millisecond)
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

// Two replicas relaying at once: while one round holds a relay's
// position, the other's does nothing, for the outbox and for the wins.
func TestRelayOneAtATime(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	l := postgres.MustOpenURL(t, u, postgres.Options{})
	d := ledgertest.NewDrop("r2", 1)
	d.PayWindow, d.PayMethods = 10*time.Minute, []string{claims.PayWallet}
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	h := ledgertest.NewHold("r2", 1, "alice", time.Now().Add(time.Hour))
	if err := l.Commit(ctx, claims.Batch{DropID: "r2", Wins: 1, Insert: []claims.Entry{ledgertest.Win("r2", 1, "alice", 1, "")}, Holds: []claims.Hold{h}}); err != nil {
		t.Fatal(err)
	}
	l2 := postgres.MustOpenURL(t, u, postgres.Options{})
	check := func(name string, first, second func(block func() error) (int, error)) {
		t.Helper()
		blocked, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			_, err := first(func() error { close(blocked); <-release; return nil })
			done <- err
		}()
		select {
		case <-blocked:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the first relay published nothing", name)
		}
		called := false
		n, err := second(func() error { called = true; return nil })
		close(release)
		if err != nil || n != 0 || called {
			t.Fatalf("%s: a second relay while the first holds the position: %d %v %v", name, n, err, called)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n, err := second(func() error { called = true; return nil }); err != nil || n != 0 || called {
			t.Fatalf("%s: after the first relay's round: %d %v, want nothing left", name, n, err)
		}
	}
	outbox := func(l *postgres.Ledger) func(func() error) (int, error) {
		return func(f func() error) (int, error) {
			return l.RelayOutbox(ctx, 10, func(claims.OutboxEvent) error { return f() })
		}
	}
	wins := func(l *postgres.Ledger) func(func() error) (int, error) {
		return func(f func() error) (int, error) {
			return l.RelayWins(ctx, 10, func(claims.WinEvent) error { return f() })
		}
	}
	check("outbox", outbox(l), outbox(l2))
	check("wins", wins(l), wins(l2))
}

// Wins committed but never published reach the bus through the relay,
// which tails the drop's entries by seq: in seq order, each once (a win
// the decider did publish is not delivered again), and an entry not yet
// decided holds the later ones back until its draw.
func TestRelayPublishesLostWins(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	bus := open(t, natstest.BusURL(t))
	sub := bus.Subscribe(64, microdrop.Claimed)
	defer sub.Close()
	l := postgres.MustOpenURL(t, u, postgres.Options{})
	d := ledgertest.NewDrop("w1", 4)
	d.PriceMinor = 0
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	lost := ledgertest.Win("w1", 3, "carol", 0, "")
	lost.Outcome, lost.Cap = claims.OutcomeLost, 1
	entered := ledgertest.Win("w1", 4, "dave", 0, "")
	entered.Outcome, entered.Cap = claims.OutcomeEntered, 1
	if err := l.Commit(ctx, claims.Batch{DropID: "w1", Wins: 3, Insert: []claims.Entry{
		ledgertest.Win("w1", 1, "ann", 1, "TOKENW1000001"), ledgertest.Win("w1", 2, "ben", 1, "TOKENW1000002"), lost, entered,
		ledgertest.Win("w1", 5, "erin", 1, "TOKENW1000005")}}); err != nil {
		t.Fatal(err)
	}
	// The decider published ann's win before the replica died; ben's and
	// erin's never were.
	first, err := bus.Publish(ctx, microdrop.Event{ID: claims.WinEventID("w1", 1), Kind: microdrop.Claimed, Channel: d.Channel, DropID: "w1",
		Claim: &microdrop.ClaimView{UserID: "ann", Login: "login_ann", Outcome: claims.OutcomeWon, Units: 1, Remaining: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if e := collect(t, sub, 1)[0]; e.Seq != first.Seq {
		t.Fatalf("ann's win: %+v", e)
	}
	if _, err := claims.NewRelay(l, l.Hold, downBus{bus}, nil, 0).Step(ctx); !errors.Is(err, errDown) {
		t.Fatalf("relay over a failing bus: %v", err)
	}
	quiet(t, sub, 300*time.Millisecond)

	relay := claims.NewRelay(l, l.Hold, bus, nil, 0)
	if _, err := relay.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if e := collect(t, sub, 1)[0]; e.ID != claims.WinEventID("w1", 2) || e.Claim.UserID != "ben" || e.Claim.Login != "login_ben" || e.Claim.Outcome != claims.OutcomeWon || e.Claim.Remaining != 1 {
		t.Fatalf("ben's win should come next, and only it (dave's entry is undecided): %+v %+v", e, e.Claim)
	}
	quiet(t, sub, 300*time.Millisecond)

	// dave's draw: his entry is a win now; his and erin's follow in seq
	// order.
	won := entered
	won.Outcome, won.Unit, won.Cap, won.Token = claims.OutcomeWon, 1, 2, "TOKENW1000004"
	if err := l.Commit(ctx, claims.Batch{DropID: "w1", Wins: 1, Update: []claims.Entry{won}}); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Step(ctx); err != nil {
		t.Fatal(err)
	}
	got := collect(t, sub, 2)
	if got[0].ID != claims.WinEventID("w1", 4) || got[0].Claim.UserID != "dave" || got[1].ID != claims.WinEventID("w1", 5) || got[1].Claim.UserID != "erin" || got[1].Claim.Remaining != 0 {
		t.Fatalf("dave's then erin's win: %+v %+v", got[0].Claim, got[1].Claim)
	}
	if n, err := relay.Step(ctx); err != nil || n != 0 {
		t.Fatalf("a round with nothing new relayed %d %v", n, err)
	}
	quiet(t, sub, 500*time.Millisecond)
}

// flakyBus fails every publish while down is set, as a replica killed
// between its commits and its publishes never publishes.
type flakyBus struct {
	microdrop.Bus
	mu     sync.Mutex
	down   bool
	failed []microdrop.Kind // the kinds of the publishes refused while down
}

// waitFailed waits until a publish of kind has been refused: the service
// answers a claim before it publishes the win.
func (f *flakyBus) waitFailed(t *testing.T, kind microdrop.Kind) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		failed := slices.Contains(f.failed, kind)
		f.mu.Unlock()
		if failed {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no publish of %s was tried while the bus was down", kind)
}

func (f *flakyBus) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *flakyBus) Publish(ctx context.Context, e microdrop.Event) (microdrop.Event, error) {
	f.mu.Lock()
	down := f.down
	if down {
		f.failed = append(f.failed, e.Kind)
	}
	f.mu.Unlock()
	if down {
		return e, errDown
	}
	return f.Bus.Publish(ctx, e)
}

// The claims service on Postgres and NATS: a win whose publish failed
// after its commit reaches subscribers through the relay; one whose
// publish went out is not delivered a second time by the relay — the
// decider's events carry the ids the relay's do.
func TestServiceWinsReachTheBusOnce(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	bus := open(t, natstest.BusURL(t))
	sub := bus.Subscribe(64, microdrop.Claimed)
	defer sub.Close()
	l := postgres.MustOpenURL(t, u, postgres.Options{})
	flaky := &flakyBus{Bus: bus}
	signer, err := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: flaky, Signer: signer, Metrics: claims.NewMetrics(prometheus.NewRegistry()),
		Options: claims.Options{DefaultPolicy: claims.FCFS, ClaimRate: 1000, ClaimBurst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	d, err := svc.OpenDrop(ctx, claims.OpenRequest{Channel: "relay", SKU: "tee", Stock: 5, Duration: claims.Duration(time.Minute), Policy: claims.FCFS})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(user string) claims.ClaimResult {
		t.Helper()
		res, err := svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: user, Login: user}})
		if err != nil || res.Outcome != claims.OutcomeWon {
			t.Fatalf("claim by %s: %+v %v", user, res, err)
		}
		return res
	}
	flaky.set(true)
	claim("ann") // committed; its publish fails
	flaky.waitFailed(t, microdrop.Claimed)
	flaky.set(false)
	claim("ben") // committed and published
	e := collect(t, sub, 1)[0]
	if e.Claim.UserID != "ben" || e.ID == "" {
		t.Fatalf("ben's published win: %+v %+v", e, e.Claim)
	}
	benID := e.ID
	relay := claims.NewRelay(l, l.Hold, bus, nil, 0)
	if _, err := relay.Step(ctx); err != nil {
		t.Fatal(err)
	}
	e = collect(t, sub, 1)[0]
	if e.Claim.UserID != "ann" || e.ID == benID {
		t.Fatalf("the relay should publish ann's lost win only: %+v %+v", e, e.Claim)
	}
	quiet(t, sub, 500*time.Millisecond)
}

// A copy the stream keeps (republished after its duplicate window, so
// with no Nats-Msg-Id match) is dropped by the replica's fan-out: local
// subscribers get each event id once.
func TestFanOutDropsRepeatedIDs(t *testing.T) {
	ctx := context.Background()
	url := natstest.BusURL(t)
	bus := open(t, url)
	sub := bus.Subscribe(16, microdrop.Claimed)
	defer sub.Close()
	servers, o, err := mdnats.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(servers)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ev := microdrop.Event{ID: claims.WinEventID("dup", 1), Kind: microdrop.Claimed, Channel: "dup", DropID: "dup",
		Claim: &microdrop.ClaimView{UserID: "ann", Outcome: claims.OutcomeWon, Units: 1}}
	data, _ := json.Marshal(ev)
	for range 2 { // no msg id: the stream keeps both
		if _, err := js.Publish(ctx, o.Prefix+".events.dup", data); err != nil {
			t.Fatal(err)
		}
	}
	other := ev
	other.ID = claims.WinEventID("dup", 2)
	if _, err := bus.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}
	got := collect(t, sub, 2)
	if got[0].ID != ev.ID || got[1].ID != other.ID {
		t.Fatalf("want %s then %s, got %s then %s", ev.ID, other.ID, got[0].ID, got[1].ID)
	}
	quiet(t, sub, 300*time.Millisecond)
}

// BenchmarkRelayWins: one op relays a drop's 2,000 committed wins from
// Postgres to NATS JetStream (tailing entries, one publish each, awaiting
// its ack), as after a replica died before publishing them.
func BenchmarkRelayWins(b *testing.B) {
	ctx := context.Background()
	u := postgres.TestURL(b)
	bus := open(b, natstest.BusURL(b))
	l := postgres.MustOpenURL(b, u, postgres.Options{})
	relay := claims.NewRelay(l, l.Hold, bus, nil, 0)
	const wins = 2000
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		id := fmt.Sprintf("bench%d", i)
		d := ledgertest.NewDrop(id, wins)
		d.PriceMinor = 0
		if err := l.CreateDrop(ctx, d); err != nil {
			b.Fatal(err)
		}
		es := make([]claims.Entry, wins)
		for j := range es {
			es[j] = ledgertest.Win(id, int64(j+1), fmt.Sprintf("u%d", j), 1, fmt.Sprintf("TOKEN%s%07d", id, j))
		}
		if err := l.Commit(ctx, claims.Batch{DropID: id, Wins: wins, Insert: es}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n := 0
		for n < wins {
			m, err := relay.Step(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if m == 0 {
				b.Fatalf("relayed %d of %d", n, wins)
			}
			n += m
		}
	}
	b.ReportMetric(float64(wins*b.N)/b.Elapsed().Seconds(), "wins/s")
}
