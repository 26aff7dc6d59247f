package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

func books(t *testing.T, open Opener) (claims.Ledger, claims.Books) {
	t.Helper()
	l := open(t)
	b, ok := l.(claims.Books)
	if !ok {
		t.Fatalf("%T does not keep books (claims.Books)", l)
	}
	return l, b
}

// TopUp is a wallet top-up through a provider's clearing account.
func TopUp(key, user string, amount int64) claims.Movement {
	return claims.Movement{Key: key, Kind: claims.MoveTopUp, At: t0, Postings: []claims.Posting{
		{Account: claims.ClearingAccount("test"), Currency: "EUR", Amount: -amount},
		{Account: claims.WalletAccount(user), Currency: "EUR", Amount: amount}}}
}

// WalletPay pays a hold from the holder's wallet: fee to the platform,
// the rest to the creator.
func WalletPay(h claims.Hold, fee int64) claims.Movement {
	return claims.Movement{Key: "wallet:" + h.ID, Kind: claims.MovePay, HoldID: h.ID, At: t0, Postings: []claims.Posting{
		{Account: claims.WalletAccount(h.UserID), Currency: h.Currency, Amount: -h.AmountMinor},
		{Account: claims.CreatorAccount("creator1"), Currency: h.Currency, Amount: h.AmountMinor - fee},
		{Account: claims.AccountPlatformFee, Currency: h.Currency, Amount: fee}}}
}

// NewHold is the awaiting hold of entry seq.
func NewHold(dropID string, seq int64, user string, deadline time.Time) claims.Hold {
	return claims.Hold{ID: claims.HoldID(dropID, seq), DropID: dropID, Seq: seq, UserID: user, Unit: 1, AmountMinor: 4500,
		Currency: "EUR", State: claims.HoldAwaiting, CreatedAt: t0, Deadline: deadline}
}

func lost(dropID string, seq int64, user string) claims.Entry {
	e := Win(dropID, seq, user, 0, "")
	e.Outcome, e.Unit, e.Cap = claims.OutcomeLost, 0, 1
	return e
}

func audit(t *testing.T, b claims.Books) claims.MoneyReport {
	t.Helper()
	ctx := context.Background()
	ms, err := b.Movements(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	hs, err := b.Holds(ctx, claims.HoldFilter{})
	if err != nil {
		t.Fatal(err)
	}
	rep := claims.AuditMoney(ms, hs)
	if pb, ok := b.(claims.PayoutBooks); ok {
		ps, err := pb.Payouts(ctx, claims.PayoutFilter{})
		if err != nil {
			t.Fatal(err)
		}
		rep = claims.AuditMoneyAndPayouts(ms, hs, ps)
	}
	if !rep.Balanced {
		t.Fatalf("books do not balance: %v", rep.Problems)
	}
	return rep
}

func balance(t *testing.T, b claims.Books, account string) int64 {
	t.Helper()
	n, err := b.Balance(context.Background(), account, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runBooks is the contract of the double-entry books and holds.
func runBooks(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("BalancedOnly", func(t *testing.T) {
		_, b := books(t, open)
		bad := TopUp("k1", "u1", 100)
		bad.Postings[0].Amount = -99
		if _, err := b.Post(ctx, bad); !errors.Is(err, claims.ErrUnbalanced) {
			t.Fatalf("unbalanced: %v", err)
		}
		mixed := TopUp("k2", "u1", 100)
		mixed.Postings[1].Currency = "USD"
		if _, err := b.Post(ctx, mixed); !errors.Is(err, claims.ErrUnbalanced) {
			t.Fatalf("currencies mixed: %v", err)
		}
		if n := balance(t, b, claims.WalletAccount("u1")); n != 0 {
			t.Fatalf("a refused movement left %d in the wallet", n)
		}
		if ms, _ := b.Movements(ctx, ""); len(ms) != 0 {
			t.Fatalf("refused movements recorded: %+v", ms)
		}
	})
	t.Run("IdempotentReplay", func(t *testing.T) {
		_, b := books(t, open)
		for i, want := range []bool{true, false, false} {
			applied, err := b.Post(ctx, TopUp("evt_1", "u1", 500))
			if err != nil || applied != want {
				t.Fatalf("post %d: applied %v, %v; want %v", i, applied, err, want)
			}
		}
		if n := balance(t, b, claims.WalletAccount("u1")); n != 500 {
			t.Fatalf("wallet %d after a replayed top-up, want 500", n)
		}
		rep := audit(t, b)
		if rep.Movements != 1 || rep.Totals["EUR"] != 0 {
			t.Fatalf("audit %+v", rep)
		}
	})
	t.Run("WalletNeverNegative", func(t *testing.T) {
		_, b := books(t, open)
		if _, err := b.Post(ctx, TopUp("t1", "u1", 100)); err != nil {
			t.Fatal(err)
		}
		spend := claims.Movement{Key: "s1", Kind: claims.MovePay, At: t0, Postings: []claims.Posting{
			{Account: claims.WalletAccount("u1"), Currency: "EUR", Amount: -101},
			{Account: claims.CreatorAccount("c"), Currency: "EUR", Amount: 101}}}
		if _, err := b.Post(ctx, spend); !errors.Is(err, claims.ErrInsufficientFunds) {
			t.Fatalf("overdraft: %v", err)
		}
		if w, c := balance(t, b, claims.WalletAccount("u1")), balance(t, b, claims.CreatorAccount("c")); w != 100 || c != 0 {
			t.Fatalf("refused overdraft moved money: wallet %d creator %d", w, c)
		}
	})
	t.Run("DebitRacesTopUp", func(t *testing.T) {
		_, b := books(t, open)
		const n = 40
		var wg sync.WaitGroup
		var spent atomic.Int64
		for i := 0; i < n; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := b.Post(ctx, TopUp(fmt.Sprintf("top%d", i), "u1", 10)); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				m := claims.Movement{Key: fmt.Sprintf("spend%d", i), Kind: claims.MovePay, At: t0, Postings: []claims.Posting{
					{Account: claims.WalletAccount("u1"), Currency: "EUR", Amount: -10},
					{Account: claims.CreatorAccount("c"), Currency: "EUR", Amount: 10}}}
				switch _, err := b.Post(ctx, m); {
				case err == nil:
					spent.Add(1)
				case !errors.Is(err, claims.ErrInsufficientFunds):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if w := balance(t, b, claims.WalletAccount("u1")); w != 10*(n-spent.Load()) || w < 0 {
			t.Fatalf("wallet %d after %d top-ups and %d debits of 10", w, n, spent.Load())
		}
		audit(t, b)
	})
	t.Run("HoldsPayAndPass", func(t *testing.T) {
		l, b := books(t, open)
		d := NewDrop("h1", 2)
		d.PayWindow = 10 * time.Minute
		d.PayMethods = []string{claims.PayWallet, claims.PayCard}
		if err := l.CreateDrop(ctx, d); err != nil {
			t.Fatal(err)
		}
		if got, _ := l.Drop(ctx, "h1"); got.PayWindow != 10*time.Minute || !got.Priced() || !got.Accepts(claims.PayCard) {
			t.Fatalf("pay window and methods did not round-trip: %v %v", got.PayWindow, got.PayMethods)
		}
		due := t0.Add(10 * time.Minute)
		w1, w2 := Win("h1", 1, "a", 1, ""), Win("h1", 2, "b", 1, "")
		w1.Cap, w2.Cap = 1, 1
		h1, h2 := NewHold("h1", 1, "a", due), NewHold("h1", 2, "b", due)
		if err := l.Commit(ctx, claims.Batch{DropID: "h1", Wins: 2, Insert: []claims.Entry{w1, w2, lost("h1", 3, "c"), lost("h1", 4, "d")},
			Holds: []claims.Hold{h1, h2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Post(ctx, TopUp("top-a", "a", 5000)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.PayHold(ctx, h1.ID, "wallet", WalletPay(h1, 450), due); !errors.Is(err, claims.ErrHoldDue) {
			t.Fatalf("pay at the deadline: %v", err)
		}
		got, applied, err := b.PayHold(ctx, h1.ID, "wallet", WalletPay(h1, 450), due.Add(-time.Second))
		if err != nil || !applied || got.State != claims.HoldPaid || got.Method != "wallet" {
			t.Fatalf("pay: %+v %v %v", got, applied, err)
		}
		if _, applied, err := b.PayHold(ctx, h1.ID, "wallet", WalletPay(h1, 450), due.Add(-time.Second)); err != nil || applied {
			t.Fatalf("replayed pay: applied %v, %v", applied, err)
		}
		again := WalletPay(h1, 450)
		again.Key = "other"
		if _, _, err := b.PayHold(ctx, h1.ID, "wallet", again, due.Add(-time.Second)); !errors.Is(err, claims.ErrHoldSettled) {
			t.Fatalf("second payment of a paid hold: %v", err)
		}
		if w := balance(t, b, claims.WalletAccount("a")); w != 500 {
			t.Fatalf("wallet %d after paying 4500 of 5000", w)
		}
		// b did not pay: its unit goes to c, the next waiting entry.
		next := NewHold("h1", 3, "c", due.Add(10*time.Minute))
		next.PassedFrom = h2.ID
		errs := b.PassHolds(ctx, []claims.Pass{
			{HoldID: h2.ID, State: claims.HoldExpired, At: due.Add(-time.Second), Next: &next}, // not yet due
		})
		if errs[0] == nil {
			t.Fatal("a hold expired before its deadline")
		}
		errs = b.PassHolds(ctx, []claims.Pass{
			{HoldID: h2.ID, State: claims.HoldExpired, At: due, Next: &next}, // passes
			{HoldID: h1.ID, State: claims.HoldExpired, At: due},              // paid: refused
			{HoldID: "h1-99", State: claims.HoldExpired, At: due},            // after a refusal: not tried
		})
		if errs[0] != nil || !errors.Is(errs[1], claims.ErrHoldSettled) || !errors.Is(errs[2], claims.ErrPassNotTried) {
			t.Fatalf("passes: %v", errs)
		}
		es, err := l.Entries(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if es[1].Outcome != claims.OutcomePassed || es[2].Outcome != claims.OutcomeWon || es[2].Unit != 1 || es[3].Outcome != claims.OutcomeLost {
			t.Fatalf("entries after the pass: %+v", es)
		}
		if h, _ := b.Hold(ctx, h2.ID); h.State != claims.HoldExpired || h.PassedTo != next.ID {
			t.Fatalf("expired hold %+v", h)
		}
		if h, err := b.Hold(ctx, next.ID); err != nil || h.State != claims.HoldAwaiting || h.PassedFrom != h2.ID {
			t.Fatalf("passed-to hold %+v %v", h, err)
		}
		// The same entry cannot take a unit twice.
		next2 := next
		next2.ID, next2.PassedFrom = "h1-x", h1.ID
		if errs := b.PassHolds(ctx, []claims.Pass{{HoldID: next.ID, State: claims.HoldReleased, At: due, Next: &next2}}); errs[0] == nil {
			t.Fatal("a pass to an entry that already holds the unit")
		}
		if _, err := b.Hold(ctx, "nope"); !errors.Is(err, claims.ErrHoldNotFound) {
			t.Fatalf("unknown hold: %v", err)
		}
		if _, err := b.RedeemHold(ctx, h1.ID, due); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RedeemHold(ctx, h1.ID, due); !errors.Is(err, claims.ErrTokenUsed) {
			t.Fatalf("second redeem: %v", err)
		}
		if _, err := b.RedeemHold(ctx, next.ID, due); !errors.Is(err, claims.ErrHoldSettled) {
			t.Fatalf("redeem of an unpaid hold: %v", err)
		}
		hs, _ := b.Holds(ctx, claims.HoldFilter{DropID: "h1", State: claims.HoldAwaiting})
		if len(hs) != 1 || hs[0].ID != next.ID {
			t.Fatalf("awaiting holds %+v", hs)
		}
		rep := audit(t, b)
		if rep.Revenue["EUR"] != 4500 || rep.Balances[claims.AccountPlatformFee]["EUR"] != 450 {
			t.Fatalf("audit %+v", rep)
		}
	})
	t.Run("PayRacesExpiry", func(t *testing.T) {
		l, b := books(t, open)
		if err := l.CreateDrop(ctx, NewDrop("r1", 20)); err != nil {
			t.Fatal(err)
		}
		due := t0.Add(time.Minute)
		var ins []claims.Entry
		var hs []claims.Hold
		for i := int64(1); i <= 20; i++ {
			u := fmt.Sprintf("u%d", i)
			e := Win("r1", i, u, 1, "")
			e.Cap = 1
			ins = append(ins, e)
			hs = append(hs, NewHold("r1", i, u, due))
			if _, err := b.Post(ctx, TopUp("top-"+u, u, 4500)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Commit(ctx, claims.Batch{DropID: "r1", Wins: 20, Insert: ins, Holds: hs}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var paid, passed atomic.Int32
		for _, h := range hs {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, _, err := b.PayHold(ctx, h.ID, "wallet", WalletPay(h, 0), due.Add(-time.Nanosecond)); err == nil {
					paid.Add(1)
				}
			}()
			go func() {
				defer wg.Done()
				if errs := b.PassHolds(ctx, []claims.Pass{{HoldID: h.ID, State: claims.HoldReleased, At: due}}); errs[0] == nil {
					passed.Add(1)
				}
			}()
		}
		wg.Wait()
		if paid.Load()+passed.Load() != 20 {
			t.Fatalf("%d paid and %d passed of 20 holds", paid.Load(), passed.Load())
		}
		rep := audit(t, b)
		if rep.Revenue["EUR"] != int64(paid.Load())*4500 {
			t.Fatalf("revenue %d for %d paid", rep.Revenue["EUR"], paid.Load())
		}
	})
	t.Run("RefundsNeverExceedThePayment", func(t *testing.T) {
		l, b := books(t, open)
		h := paidHold(t, l, b, "rf1")
		refund := func(key string, amount int64) claims.Movement {
			return claims.Movement{Key: "refund:" + h.ID + ":" + key, Kind: claims.MoveRefund, HoldID: h.ID, At: t0, Postings: []claims.Posting{
				{Account: claims.WalletAccount(h.UserID), Currency: "EUR", Amount: amount},
				{Account: claims.CreatorAccount("creator1"), Currency: "EUR", Amount: -amount}}}
		}
		// Bad conditions change nothing.
		if _, err := b.PostRefund(ctx, refund("big", 4501), 0); !errors.Is(err, claims.ErrRefundTooLarge) {
			t.Fatalf("a refund above the payment: %v", err)
		}
		if _, err := b.PostRefund(ctx, refund("stale", 100), 200); !errors.Is(err, claims.ErrRefundRaced) {
			t.Fatalf("a refund computed from other books: %v", err)
		}
		unpaid := refund("u", 100)
		unpaid.Key, unpaid.HoldID = "refund:"+claims.HoldID("rf1", 2)+":u", claims.HoldID("rf1", 2)
		if _, err := b.PostRefund(ctx, unpaid, 0); !errors.Is(err, claims.ErrNotPaid) {
			t.Fatalf("a refund of an unpaid hold: %v", err)
		}
		if ms, _ := b.Movements(ctx, h.ID); len(ms) != 1 {
			t.Fatalf("refused refunds were recorded: %+v", ms)
		}
		// Two refunds that together exceed the payment race (as on two
		// replicas), each computed from the books before either: one is
		// applied, the other refused; a replay of the winner applies nothing.
		const tries = 10
		for i := range tries {
			var wg sync.WaitGroup
			errs := make([]error, 2)
			applied := make([]bool, 2)
			for j := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					applied[j], errs[j] = b.PostRefund(ctx, refund(fmt.Sprintf("race%d-%d", i, j), 3000), claims.Refunded(mustMovements(t, b, h.ID), h))
				}()
			}
			wg.Wait()
			won := 0
			for j := range 2 {
				switch {
				case errs[j] == nil && applied[j]:
					won++
				case errors.Is(errs[j], claims.ErrRefundRaced), errors.Is(errs[j], claims.ErrRefundTooLarge):
				default:
					t.Fatalf("race %d: refund %d: applied %v, %v", i, j, applied[j], errs[j])
				}
			}
			if got := claims.Refunded(mustMovements(t, b, h.ID), h); won > 1 || got > h.AmountMinor {
				t.Fatalf("race %d: %d refunds applied, %d refunded of %d", i, won, got, h.AmountMinor)
			}
			if won == 1 {
				break // the hold has 1500 left: no later pair can fit
			}
		}
		if got := claims.Refunded(mustMovements(t, b, h.ID), h); got != 3000 {
			t.Fatalf("refunded %d after the races, want exactly one of 3000", got)
		}
		last := mustMovements(t, b, h.ID)
		if applied, err := b.PostRefund(ctx, last[len(last)-1], 0); err != nil || applied {
			t.Fatalf("replay of an applied refund: %v %v", applied, err)
		}
		audit(t, b)
	})
	t.Run("ServiceRefundsRaceAcrossReplicas", func(t *testing.T) {
		l, b := books(t, open)
		// Two services on one ledger, as two replicas: nothing is shared
		// between them but the ledger.
		replicas := make([]*claims.Service, 2)
		for i := range replicas {
			signer, _ := claims.NewTokenSigner([]byte("replica-key-0123456789"))
			svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			replicas[i] = svc
		}
		// On each of several holds of 4500, both replicas refund 3000 at
		// once: one is paid back, the other refused, whatever the timing.
		const holds = 5
		for i := range holds {
			h := paidHold(t, l, b, fmt.Sprintf("rf2-%d", i))
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for j, svc := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _, errs[j] = svc.RefundHold(ctx, claims.Refund{Key: fmt.Sprintf("r%d", j), HoldID: h.ID, AmountMinor: 3000, At: t0})
				}()
			}
			wg.Wait()
			ok := 0
			for j, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, claims.ErrRefundTooLarge):
					t.Fatalf("hold %s replica %d: %v", h.ID, j, err)
				}
			}
			if got := claims.Refunded(mustMovements(t, b, h.ID), h); ok != 1 || got != 3000 {
				t.Fatalf("hold %s: %d refunds of 3000 accepted, %d refunded; want 1 and 3000", h.ID, ok, got)
			}
		}
		audit(t, b)
	})
}

// paidHold records a won hold of 4500 in a new drop and pays it from the
// winner's wallet (fee 450), with a second hold left awaiting.
func paidHold(t *testing.T, l claims.Ledger, b claims.Books, dropID string) claims.Hold {
	t.Helper()
	ctx := context.Background()
	if err := l.CreateDrop(ctx, NewDrop(dropID, 2)); err != nil {
		t.Fatal(err)
	}
	due := t0.Add(10 * time.Minute)
	w1, w2 := Win(dropID, 1, "a", 1, ""), Win(dropID, 2, "b", 1, "")
	w1.Cap, w2.Cap = 1, 1
	h := NewHold(dropID, 1, "a", due)
	h2 := NewHold(dropID, 2, "b", due)
	if err := l.Commit(ctx, claims.Batch{DropID: dropID, Wins: 2, Insert: []claims.Entry{w1, w2}, Holds: []claims.Hold{h, h2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Post(ctx, TopUp("top-"+dropID, "a", 5000)); err != nil {
		t.Fatal(err)
	}
	paid, _, err := b.PayHold(ctx, h.ID, claims.PayWallet, WalletPay(h, 450), t0)
	if err != nil {
		t.Fatal(err)
	}
	return paid
}

func mustMovements(t *testing.T, b claims.Books, holdID string) []claims.Movement {
	t.Helper()
	ms, err := b.Movements(context.Background(), holdID)
	if err != nil {
		t.Error(err)
	}
	return ms
}
