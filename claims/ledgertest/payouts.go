package ledgertest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/microdrop/microdrop/claims"
)

func payoutBooks(t *testing.T, open Opener) (claims.Books, claims.PayoutBooks) {
	t.Helper()
	_, b := books(t, open)
	pb, ok := b.(claims.PayoutBooks)
	if !ok {
		t.Fatalf("%T does not keep payouts (claims.PayoutBooks)", b)
	}
	return b, pb
}

// credit puts amount in a creator's balance, as a paid hold would.
func credit(t *testing.T, b claims.Books, key, creator string, amount int64) {
	t.Helper()
	if _, err := b.Post(context.Background(), claims.Movement{Key: key, Kind: claims.MovePay, At: t0, Postings: []claims.Posting{
		{Account: claims.ClearingAccount("test"), Currency: "EUR", Amount: -amount},
		{Account: claims.CreatorAccount(creator), Currency: "EUR", Amount: amount}}}); err != nil {
		t.Fatal(err)
	}
}

// NewPayout is a pending payout of amount for creator, attributed to one drop.
func NewPayout(id, creator string, amount int64) claims.Payout {
	return claims.Payout{ID: id, CreatorID: creator, Currency: "EUR", AmountMinor: amount, State: claims.PayoutPending,
		Provider: claims.ProviderFile, CreatedAt: t0, UpdatedAt: t0,
		Lines: []claims.PayoutLine{{DropID: "d1", SKU: "HOODIE-d1", LimitedRunID: "run-d1", AmountMinor: amount}}}
}

// TransitMove and PaidMove are a payout's two movements.
func TransitMove(p claims.Payout) claims.Movement {
	return claims.Movement{Key: "payout:" + p.ID, Kind: claims.MovePayout, At: t0, Postings: []claims.Posting{
		{Account: claims.CreatorAccount(p.CreatorID), Currency: p.Currency, Amount: -p.AmountMinor},
		{Account: claims.CreatorTransitAccount(p.CreatorID), Currency: p.Currency, Amount: p.AmountMinor}}}
}

func PaidMove(p claims.Payout) claims.Movement {
	return claims.Movement{Key: "payout:" + p.ID + ":paid", Kind: claims.MovePayoutPaid, At: t0, Postings: []claims.Posting{
		{Account: claims.CreatorTransitAccount(p.CreatorID), Currency: p.Currency, Amount: -p.AmountMinor},
		{Account: claims.PaidOutAccount(p.Provider), Currency: p.Currency, Amount: p.AmountMinor}}}
}

func returnedMove(p claims.Payout) claims.Movement {
	return claims.Movement{Key: "payout:" + p.ID + ":returned", Kind: claims.MovePayoutReturned, At: t0, Postings: []claims.Posting{
		{Account: claims.CreatorTransitAccount(p.CreatorID), Currency: p.Currency, Amount: -p.AmountMinor},
		{Account: claims.CreatorAccount(p.CreatorID), Currency: p.Currency, Amount: p.AmountMinor}}}
}

// runPayouts is the contract of payout records: each state change happens
// with its movement, once, from the state it starts from.
func runPayouts(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("PendingTransitPaid", func(t *testing.T) {
		b, pb := payoutBooks(t, open)
		credit(t, b, "pay1", "c1", 1000)
		p := NewPayout("po-1", "c1", 1000)
		if err := pb.CreatePayout(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := pb.CreatePayout(ctx, p); !errors.Is(err, claims.ErrPayoutExists) {
			t.Fatalf("second create: %v, want ErrPayoutExists", err)
		}
		got, err := pb.Payout(ctx, "po-1")
		if err != nil || got.State != claims.PayoutPending || len(got.Lines) != 1 || got.Lines[0].LimitedRunID != "run-d1" || !got.CreatedAt.Equal(t0) {
			t.Fatalf("payout %+v, %v", got, err)
		}
		if balance(t, b, claims.CreatorAccount("c1")) != 1000 {
			t.Fatal("a pending payout moved money")
		}
		// Paying before it is in transit is refused.
		if _, err := pb.SettlePayout(ctx, "po-1", claims.PayoutPaid, "x", "", PaidMove(p), t0); !errors.Is(err, claims.ErrPayoutState) {
			t.Fatalf("paid from pending: %v", err)
		}
		got, err = pb.TransitPayout(ctx, "po-1", TransitMove(p), t0)
		if err != nil || got.State != claims.PayoutInTransit {
			t.Fatalf("transit: %+v %v", got, err)
		}
		if _, err := pb.TransitPayout(ctx, "po-1", TransitMove(p), t0); !errors.Is(err, claims.ErrPayoutState) {
			t.Fatalf("second transit: %v", err)
		}
		if c, tr := balance(t, b, claims.CreatorAccount("c1")), balance(t, b, claims.CreatorTransitAccount("c1")); c != 0 || tr != 1000 {
			t.Fatalf("after transit: creator %d, transit %d", c, tr)
		}
		got, err = pb.SettlePayout(ctx, "po-1", claims.PayoutPaid, "tr_1", "", PaidMove(p), t0)
		if err != nil || got.State != claims.PayoutPaid || got.Reference != "tr_1" {
			t.Fatalf("paid: %+v %v", got, err)
		}
		if _, err := pb.SettlePayout(ctx, "po-1", claims.PayoutPaid, "tr_1", "", PaidMove(p), t0); !errors.Is(err, claims.ErrPayoutState) {
			t.Fatalf("second paid: %v", err)
		}
		if tr, out := balance(t, b, claims.CreatorTransitAccount("c1")), balance(t, b, claims.PaidOutAccount(claims.ProviderFile)); tr != 0 || out != 1000 {
			t.Fatalf("after paid: transit %d, paid out %d", tr, out)
		}
		ms, _ := b.Movements(ctx, "")
		paid := 0
		for _, m := range ms {
			if m.Kind == claims.MovePayoutPaid {
				paid++
			}
		}
		if paid != 1 {
			t.Fatalf("%d paid movements, want 1", paid)
		}
		audit(t, b)
		ps, err := pb.Payouts(ctx, claims.PayoutFilter{CreatorID: "c1", State: claims.PayoutPaid})
		if err != nil || len(ps) != 1 {
			t.Fatalf("payouts by creator and state: %+v %v", ps, err)
		}
		if ps, _ := pb.Payouts(ctx, claims.PayoutFilter{CreatorID: "nobody"}); len(ps) != 0 {
			t.Fatalf("another creator's payouts: %+v", ps)
		}
		if _, err := pb.Payout(ctx, "po-none"); !errors.Is(err, claims.ErrPayoutNotFound) {
			t.Fatalf("unknown payout: %v", err)
		}
	})
	t.Run("TransitNeedsTheBalance", func(t *testing.T) {
		b, pb := payoutBooks(t, open)
		credit(t, b, "pay1", "c1", 500)
		p := NewPayout("po-2", "c1", 501)
		if err := pb.CreatePayout(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := pb.TransitPayout(ctx, "po-2", TransitMove(p), t0); !errors.Is(err, claims.ErrInsufficientFunds) {
			t.Fatalf("transit above the balance: %v", err)
		}
		if got, _ := pb.Payout(ctx, "po-2"); got.State != claims.PayoutPending || balance(t, b, claims.CreatorAccount("c1")) != 500 {
			t.Fatalf("a refused transit changed something: %+v", got)
		}
		// A pending payout may be returned without a movement.
		got, err := pb.SettlePayout(ctx, "po-2", claims.PayoutReturned, "", "balance fell", claims.Movement{}, t0)
		if err != nil || got.State != claims.PayoutReturned || got.Note != "balance fell" {
			t.Fatalf("return pending: %+v %v", got, err)
		}
		if err := pb.CreatePayout(ctx, claims.Payout{ID: "po-0", CreatorID: "c1", Currency: "EUR", State: claims.PayoutPending}); err == nil {
			t.Fatal("a payout of nothing was recorded")
		}
		audit(t, b)
	})
	t.Run("Returned", func(t *testing.T) {
		b, pb := payoutBooks(t, open)
		credit(t, b, "pay1", "c1", 700)
		p := NewPayout("po-3", "c1", 700)
		if err := pb.CreatePayout(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := pb.TransitPayout(ctx, "po-3", TransitMove(p), t0); err != nil {
			t.Fatal(err)
		}
		got, err := pb.SettlePayout(ctx, "po-3", claims.PayoutReturned, "", "account closed", returnedMove(p), t0)
		if err != nil || got.State != claims.PayoutReturned {
			t.Fatalf("returned: %+v %v", got, err)
		}
		if c, tr := balance(t, b, claims.CreatorAccount("c1")), balance(t, b, claims.CreatorTransitAccount("c1")); c != 700 || tr != 0 {
			t.Fatalf("after return: creator %d, transit %d", c, tr)
		}
		audit(t, b)
	})
	t.Run("ConcurrentTransitOnce", func(t *testing.T) {
		b, pb := payoutBooks(t, open)
		credit(t, b, "pay1", "c1", 900)
		p := NewPayout("po-4", "c1", 900)
		if err := pb.CreatePayout(ctx, p); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := pb.TransitPayout(ctx, "po-4", TransitMove(p), t0); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				} else if !errors.Is(err, claims.ErrPayoutState) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok != 1 || balance(t, b, claims.CreatorTransitAccount("c1")) != 900 {
			t.Fatalf("%d transits succeeded, transit %d", ok, balance(t, b, claims.CreatorTransitAccount("c1")))
		}
		audit(t, b)
	})
}
