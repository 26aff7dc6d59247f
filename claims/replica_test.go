package claims_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	mdnats "github.com/microdrop/microdrop/claims/nats"
	"github.com/microdrop/microdrop/claims/nats/natstest"
	"github.com/microdrop/microdrop/claims/postgres"
)

// replica is one of several Services sharing a Postgres schema and a NATS
// stream, as three `microdrop serve` processes would.
type replica struct {
	svc    *claims.Service
	ledger *postgres.Ledger
	bus    *mdnats.Bus
}

func startReplica(t *testing.T, pgURL, busURL string, clk *clock) *replica {
	t.Helper()
	ctx := context.Background()
	l, err := postgres.Open(ctx, pgURL, postgres.Options{LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	servers, o, err := mdnats.ParseURL(busURL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mdnats.Open(ctx, servers, o)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := claims.NewTokenSigner([]byte("current-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: b, Signer: signer, Now: clk.Now, Placement: claims.Leased(l, b),
		Options: claims.Options{ClaimRate: 1000, ClaimBurst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r := &replica{svc: svc, ledger: l, bus: b}
	t.Cleanup(r.stop)
	return r
}

// stop shuts the replica down in serve's order: claims, ledger, bus.
func (r *replica) stop() {
	_ = r.svc.Close()
	_ = r.ledger.Close()
	_ = r.bus.Close()
}

func startReplicas(t *testing.T, n int, clk *clock) []*replica {
	t.Helper()
	pgURL := postgres.TestURL(t)
	busURL := natstest.RunServer(t) + "?stream=EVENTS&prefix=md"
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = startReplica(t, pgURL, busURL, clk)
	}
	return rs
}

func waitFinal(t *testing.T, r *replica, id string) *claims.Drop {
	t.Helper()
	for i := 0; i < 200; i++ {
		d, err := r.ledger.Drop(context.Background(), id)
		if err == nil && d.State.Final() {
			return d
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("drop %s never became final", id)
	return nil
}

// A bucketed drop opened on one replica, claimed through all three: one
// decider orders each bucket, so the winners are the ones the revealed seed
// gives for the recorded arrivals, exactly as on a single node; subscribers
// on another replica see every win.
func TestReplicasBucketedMatchSingleNode(t *testing.T) {
	clk := newClock()
	rs := startReplicas(t, 3, clk)
	events := rs[2].bus.Subscribe(4096)
	ctx := context.Background()
	grace := claims.Duration(0)
	d, err := rs[0].svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 30, Duration: claims.Duration(time.Minute),
		Grace: &grace, Policy: claims.Bucketed, BucketWidth: claims.Duration(250 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs[1].svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "cap", Stock: 1, Duration: claims.Duration(time.Minute)}); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("a second live drop in the channel on another replica: %v, want conflict", err)
	}
	var mu sync.Mutex
	won := map[string]string{}
	var wg sync.WaitGroup
	claim := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := rs[i%3].svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: fmt.Sprintf("u%03d", i)}})
				if err == nil && res.Outcome == claims.OutcomeWon {
					mu.Lock()
					won[res.Token] = res.UserID
					mu.Unlock()
				} else if err != nil && microdrop.ErrorReason(err) != claims.ReasonLostDraw && microdrop.ErrorReason(err) != claims.ReasonSoldOut {
					t.Errorf("claim %d: %v", i, err)
				}
			}()
		}
	}
	// Two buckets of 24 claims each: all of a bucket queue before its end.
	for b, n := 0, 0; b < 2; b++ {
		claim(n, n+24)
		n += 24
		deadline := time.Now().Add(10 * time.Second)
		for rs[0].svc.Waiting(d.ID) != 24 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if w := rs[0].svc.Waiting(d.ID); w != 24 {
			t.Fatalf("bucket %d: %d claims waiting at the decider, want 24", b, w)
		}
		clk.Advance(260 * time.Millisecond)
		for rs[0].svc.Waiting(d.ID) != 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Wait()
	final := waitFinal(t, rs[1], d.ID)
	if final.State != claims.SoldOut || len(won) != 30 {
		t.Fatalf("state %s, %d acknowledged wins; want sold out with 30", final.State, len(won))
	}
	rep, err := rs[1].svc.Audit(ctx, d.ID)
	if err != nil || !rep.Match || rep.Awarded != 30 || rep.Entries != 48 {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
	es, _ := rs[2].ledger.Entries(ctx, d.ID)
	inLedger := map[string]bool{}
	for _, e := range es {
		inLedger[e.Token] = e.Outcome == claims.OutcomeWon
	}
	for tok := range won {
		if !inLedger[tok] {
			t.Fatalf("acknowledged win %s missing from the ledger", tok)
		}
	}
	claimed, soldOut := 0, false
	timeout := time.After(5 * time.Second)
	for !soldOut {
		select {
		case e := <-events.C():
			if e.DropID == d.ID && e.Kind == microdrop.Claimed {
				claimed++
			}
			soldOut = soldOut || e.DropID == d.ID && e.Kind == microdrop.SoldOut
		case <-timeout:
			t.Fatalf("subscriber on another replica saw %d wins and no sell-out", claimed)
		}
	}
	if claimed != 30 {
		t.Fatalf("subscriber on another replica saw %d wins, want 30", claimed)
	}
}

// A raffle whose decider shuts down mid-drop: another replica takes the
// lease, resumes from the ledger with every entry, and draws at close; the
// draw is the one the seed gives.
func TestReplicasRaffleFailover(t *testing.T) {
	clk := newClock()
	rs := startReplicas(t, 3, clk)
	ctx := context.Background()
	grace := claims.Duration(0)
	d, err := rs[0].svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 10, Duration: claims.Duration(time.Minute),
		Grace: &grace, Policy: claims.Raffle})
	if err != nil {
		t.Fatal(err)
	}
	enter := func(from, to int, via ...*replica) {
		t.Helper()
		for i := from; i < to; i++ {
			res, err := via[i%len(via)].svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: fmt.Sprintf("u%03d", i)}})
			if err != nil || res.Outcome != claims.OutcomeEntered {
				t.Fatalf("entry %d: %+v, %v", i, res, err)
			}
		}
	}
	enter(0, 30, rs...)
	rs[0].stop()
	enter(30, 50, rs[1], rs[2]) // the first forwarded entry finds the decider gone and takes over
	if _, err := rs[2].svc.CloseDrop(ctx, d.ID, "mod"); err != nil {
		t.Fatal(err)
	}
	final := waitFinal(t, rs[1], d.ID)
	rep, err := rs[1].svc.Audit(ctx, d.ID)
	if err != nil || !rep.Match || rep.Awarded != 10 || rep.Entries != 50 || final.State != claims.SoldOut {
		t.Fatalf("audit: %+v, %v (state %s)", rep, err, final.State)
	}
}
