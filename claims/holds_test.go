package claims_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

func (f *fixture) holdEvents(t *testing.T, kind microdrop.Kind, n int) []*microdrop.HoldView {
	t.Helper()
	var out []*microdrop.HoldView
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case e := <-f.events.C():
			if e.Kind == kind {
				out = append(out, e.Hold)
			}
		case <-deadline:
			t.Fatalf("%d of %d %s events", len(out), n, kind)
		}
	}
	return out
}

// A priced fcfs drop end to end in the service: wins are holds, claims
// past the stock wait in line, one hold paid from the wallet, one expired
// and passed on, one released and passed on; the audit replays every pass
// and the books balance.
func TestHoldsPayExpirePass(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, claims.Options{FeeBasisPoints: 1000})
	d := f.open(t, claims.OpenRequest{Stock: 2, Policy: claims.FCFS, PriceMinor: 4500, Currency: "EUR", Pay: []string{"wallet"},
		PayWindow: claims.Duration(5 * time.Minute), CreatorID: "crea"})
	if !d.Priced() || d.PayWindow != 5*time.Minute {
		t.Fatalf("drop %+v", d)
	}
	var holds []claims.ClaimResult
	for _, u := range []string{"ann", "ben"} {
		res, err := f.claim(d.ID, u)
		if err != nil || res.Outcome != claims.OutcomeWon || res.HoldID == "" || res.Token != "" || !res.PayBy.Equal(f.clock.Now().Add(5*time.Minute)) {
			t.Fatalf("win of %s: %+v %v", u, res, err)
		}
		holds = append(holds, res)
	}
	for _, u := range []string{"cat", "dan", "eve"} {
		if _, err := f.claim(d.ID, u); reason(err) != claims.ReasonWaitlisted {
			t.Fatalf("claim past stock by %s: %v, want waitlisted", u, err)
		}
	}
	if _, err := f.claim(d.ID, "cat"); reason(err) != claims.ReasonDuplicate {
		t.Fatalf("second claim of a waiting viewer: %v", err)
	}
	// Nobody sees another viewer's hold.
	if _, err := f.svc.HoldFor(ctx, holds[0].HoldID, "ben"); microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
		t.Fatalf("ben reads ann's hold: %v", err)
	}
	if _, err := f.svc.PayFromWallet(ctx, holds[0].HoldID, "ann"); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("pay from an empty wallet: %v", err)
	}
	if _, err := f.svc.TopUp(ctx, "t1", "ann", "admin", 5000, "EUR", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	paid, err := f.svc.PayFromWallet(ctx, holds[0].HoldID, "ann")
	if err != nil || paid.State != claims.HoldPaid {
		t.Fatalf("pay: %+v %v", paid, err)
	}
	if ev := f.holdEvents(t, microdrop.HoldPaid, 1); ev[0].ID != paid.ID {
		t.Fatalf("paid event %+v", ev[0])
	}
	if w, _ := f.svc.Wallet(ctx, "ann", "EUR"); w != 500 {
		t.Fatalf("wallet %d after paying 45.00 of 50.00", w)
	}
	// ben does not pay: at the deadline his unit goes to cat, the next in arrival order.
	f.clock.Advance(5 * time.Minute)
	if err := f.svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	passed := f.holdEvents(t, microdrop.HoldPassed, 1)[0]
	if passed.UserID != "cat" || passed.Login != "cat" || passed.PassedFrom != holds[1].HoldID || !passed.Deadline.Equal(f.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("passed to %+v", passed)
	}
	if _, err := f.svc.PayFromWallet(ctx, holds[1].HoldID, "ben"); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("ben pays after his unit passed: %v", err)
	}
	// cat gives it up: dan is next.
	if h, err := f.svc.ReleaseHold(ctx, passed.ID, "cat"); err != nil || h.State != claims.HoldReleased {
		t.Fatalf("release: %+v %v", h, err)
	}
	if next := f.holdEvents(t, microdrop.HoldPassed, 1)[0]; next.UserID != "dan" {
		t.Fatalf("released unit went to %+v", next)
	}
	f.clock.Advance(2 * time.Minute)
	f.waitEnded(t, d)
	rep, err := f.svc.Audit(ctx, d.ID)
	if err != nil || !rep.Match || rep.Passes != 2 || rep.Awarded != 2 {
		t.Fatalf("audit %+v %v", rep, err)
	}
	// After the window closed, dan's hold still passes on, to eve.
	f.clock.Advance(5 * time.Minute)
	if err := f.svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if next := f.holdEvents(t, microdrop.HoldPassed, 1)[0]; next.UserID != "eve" {
		t.Fatalf("after close the unit went to %+v", next)
	}
	rep, err = f.svc.Audit(ctx, d.ID)
	if err != nil || !rep.Match || rep.Passes != 3 {
		t.Fatalf("audit after close %+v %v", rep, err)
	}
	money, err := f.svc.AuditMoney(ctx)
	if err != nil || !money.Balanced || money.Revenue["EUR"] != 4500 || money.Balances[claims.CreatorAccount("crea")]["EUR"] != 4050 ||
		money.Balances[claims.AccountPlatformFee]["EUR"] != 450 {
		t.Fatalf("money audit %+v %v", money, err)
	}
}

// The line follows the drop's own fair order: on a raffle, the draw.
func TestHoldsPassInDrawOrder(t *testing.T) {
	for _, policy := range []claims.Policy{claims.Raffle, claims.Bucketed} {
		t.Run(string(policy), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, claims.Options{})
			d := f.open(t, claims.OpenRequest{Stock: 3, Policy: policy, PriceMinor: 1000, Currency: "EUR", Pay: []string{"wallet", "card"}})
			errs := make(chan error, 12)
			for i := 0; i < 12; i++ {
				go func() {
					_, err := f.claim(d.ID, fmt.Sprintf("u%02d", i))
					errs <- err
				}()
			}
			collect := func() {
				for i := 0; i < 12; i++ {
					if err := <-errs; err != nil && reason(err) != claims.ReasonWaitlisted {
						t.Fatal(err)
					}
				}
			}
			if policy == claims.Bucketed {
				f.waitWaiting(t, d.ID, 12) // one bucket: simultaneous
				f.clock.Advance(2 * time.Minute)
				collect()
			} else {
				collect()
				f.clock.Advance(2 * time.Minute)
			}
			f.waitEnded(t, d)
			hs, err := f.svc.Books().Holds(ctx, claims.HoldFilter{DropID: d.ID})
			if err != nil || len(hs) != 3 {
				t.Fatalf("holds %+v %v", hs, err)
			}
			// Every unit passes twice: six passes, each replayed by the audit.
			for round := 0; round < 2; round++ {
				f.clock.Advance(claims.DefaultPayWindow)
				if err := f.svc.ExpireDue(ctx); err != nil {
					t.Fatal(err)
				}
				f.holdEvents(t, microdrop.HoldPassed, 3)
			}
			rep, err := f.svc.Audit(ctx, d.ID)
			if err != nil || !rep.Match || rep.Passes != 6 || rep.Awarded != 3 {
				t.Fatalf("audit %+v %v", rep, err)
			}
		})
	}
}

func TestOpenPayValidation(t *testing.T) {
	f := newFixture(t, claims.Options{})
	for _, r := range []claims.OpenRequest{
		{Pay: []string{"wallet"}},
		{PriceMinor: 100, Pay: []string{"cash"}},
		{PriceMinor: 100, Pay: []string{"wallet", "wallet"}},
		{PriceMinor: 100, Pay: []string{"wallet"}, PayWindow: claims.Duration(30 * time.Second)},
		{PriceMinor: 100, Pay: []string{"wallet"}, PayWindow: claims.Duration(61 * time.Minute)},
	} {
		r.Channel, r.SKU, r.Stock, r.Duration = "streamer", "hoodie", 1, claims.Duration(time.Minute)
		if _, err := f.svc.OpenDrop(context.Background(), r); microdrop.ErrorCode(err) != microdrop.EINVALID {
			t.Fatalf("open %+v: %v, want invalid", r, err)
		}
	}
}
