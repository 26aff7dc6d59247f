// Package ledgertest is the contract every claims.Ledger must pass. Each
// ledger's own tests call Run with a function that opens a fresh, empty one.
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

// Opener returns a fresh, empty ledger for one subtest.
type Opener func(t *testing.T) claims.Ledger

var t0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

// NewDrop returns a valid drop for ledger tests.
func NewDrop(id string, stock int) *claims.Drop {
	seed := []byte(fmt.Sprintf("seed-of-%s-0123456789abcdef", id))
	return &claims.Drop{
		ID: id, Channel: "chan_" + id, SKU: "HOODIE-" + id, Title: "Hoodie", Stock: stock, Remaining: stock,
		PriceMinor: 4500, Currency: "EUR", OpensAt: t0, ClosesAt: t0.Add(90 * time.Second), Grace: 5 * time.Second,
		Cap: 1, Stages: []claims.Stage{{Offset: 0, Cap: 1, Eligible: claims.Eligibility{Subscribers: true}}, {Offset: claims.Duration(10 * time.Second), Cap: 2, Eligible: claims.Eligibility{Everyone: true}}},
		LimitedRunID: "run-" + id, CreatorID: "creator1", Policy: claims.Bucketed, BucketWidth: 250 * time.Millisecond,
		ClaimCode: "ABC123", CueCode: 0xdeadbeef, Seed: seed, SeedHash: claims.SeedHashOf(seed), State: claims.Open, CreatedAt: t0,
	}
}

// Win returns a won entry.
func Win(dropID string, seq int64, user string, unit int, token string) claims.Entry {
	return claims.Entry{DropID: dropID, Seq: seq, UserID: user, Login: "login_" + user, Unit: unit, Cap: 2,
		Outcome: claims.OutcomeWon, ArrivedAt: t0.Add(time.Duration(seq) * time.Millisecond), Bucket: seq / 250,
		DecidedAt: t0.Add(time.Second), Token: token, ExpiresAt: t0.Add(24 * time.Hour)}
}

func tok(i int) string { return fmt.Sprintf("TOKEN%011d", i) }

// Run runs the whole contract.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("Books", func(t *testing.T) { runBooks(t, open) })
	t.Run("Payouts", func(t *testing.T) { runPayouts(t, open) })
	t.Run("Outbox", func(t *testing.T) { runOutbox(t, open) })
	t.Run("CreateAndGetDrop", func(t *testing.T) {
		l := open(t)
		d := NewDrop("d1", 10)
		if err := l.CreateDrop(ctx, d); err != nil {
			t.Fatal(err)
		}
		got, err := l.Drop(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if got.SKU != d.SKU || got.Remaining != 10 || got.CueCode != d.CueCode || string(got.Seed) != string(d.Seed) ||
			!got.OpensAt.Equal(d.OpensAt) || got.Grace != d.Grace || len(got.Stages) != 2 || got.Stages[1].Cap != 2 ||
			got.Policy != claims.Bucketed || got.ClaimCode != "ABC123" || got.LimitedRunID != "run-d1" || got.PriceMinor != 4500 {
			t.Fatalf("drop did not round-trip: %+v", got)
		}
		// A window drop keeps the budget it used and how it was reached,
		// so the dashboard and the audit see the window the viewers were told.
		w := NewDrop("w1", 10)
		w.Policy, w.BucketWidth, w.Budget, w.BudgetBasis = claims.Window, 0, 8500*time.Millisecond, "cue-to-air 0.5s (measured on the relay) + twitch low_latency spread 6s + reaction 2s"
		if err := l.CreateDrop(ctx, w); err != nil {
			t.Fatal(err)
		}
		gotW, err := l.Drop(ctx, "w1")
		if err != nil {
			t.Fatal(err)
		}
		if gotW.Policy != claims.Window || gotW.Budget != w.Budget || gotW.BudgetBasis != w.BudgetBasis || gotW.BucketWidth != 0 ||
			!gotW.WindowEndsAt().Equal(t0.Add(8500*time.Millisecond)) {
			t.Fatalf("window drop did not round-trip: policy %s budget %s basis %q width %s", gotW.Policy, gotW.Budget, gotW.BudgetBasis, gotW.BucketWidth)
		}
		if got.Budget != 0 || got.BudgetBasis != "" {
			t.Fatalf("drop without a budget came back with %s %q", got.Budget, got.BudgetBasis)
		}
		if err := l.CreateDrop(ctx, d); !errors.Is(err, claims.ErrDropExists) {
			t.Fatalf("second create: %v, want ErrDropExists", err)
		}
		if _, err := l.Drop(ctx, "nope"); microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
			t.Fatalf("missing drop: %v, want not_found", err)
		}
	})
	t.Run("DropsFilter", func(t *testing.T) {
		l := open(t)
		for i := 0; i < 3; i++ {
			d := NewDrop(fmt.Sprintf("f%d", i), 1)
			d.Channel = "alpha"
			d.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
			if i == 0 {
				d.State = claims.Closed
			}
			if err := l.CreateDrop(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		other := NewDrop("g0", 1)
		if err := l.CreateDrop(ctx, other); err != nil {
			t.Fatal(err)
		}
		ds, err := l.Drops(ctx, claims.DropFilter{Channel: "alpha"})
		if err != nil || len(ds) != 3 || ds[0].ID != "f2" {
			t.Fatalf("channel filter: %d drops, first %v, err %v", len(ds), ds, err)
		}
		ds, err = l.Drops(ctx, claims.DropFilter{Channel: "alpha", Live: true})
		if err != nil || len(ds) != 2 {
			t.Fatalf("live filter: %d drops, err %v", len(ds), err)
		}
		ds, err = l.Drops(ctx, claims.DropFilter{Limit: 1})
		if err != nil || len(ds) != 1 {
			t.Fatalf("limit: %d drops, err %v", len(ds), err)
		}
	})
	t.Run("CommitWinsTakeStock", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("c1", 3)); err != nil {
			t.Fatal(err)
		}
		b := claims.Batch{DropID: "c1", Wins: 2, Insert: []claims.Entry{Win("c1", 1, "u1", 1, tok(1)), Win("c1", 2, "u2", 1, tok(2))}}
		if err := l.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Drop(ctx, "c1")
		if d.Remaining != 1 {
			t.Fatalf("remaining %d, want 1", d.Remaining)
		}
		es, err := l.Entries(ctx, "c1")
		if err != nil || len(es) != 2 || es[0].Seq != 1 || es[1].UserID != "u2" || es[0].Token != tok(1) || !es[0].ExpiresAt.Equal(t0.Add(24*time.Hour)) {
			t.Fatalf("entries = %+v, %v", es, err)
		}
	})
	t.Run("StockExhaustedRefusesWholeBatch", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("s1", 1)); err != nil {
			t.Fatal(err)
		}
		b := claims.Batch{DropID: "s1", Wins: 2, Insert: []claims.Entry{Win("s1", 1, "u1", 1, tok(1)), Win("s1", 2, "u2", 1, tok(2))}}
		if err := l.Commit(ctx, b); !errors.Is(err, claims.ErrStockExhausted) {
			t.Fatalf("oversell batch: %v, want ErrStockExhausted", err)
		}
		d, _ := l.Drop(ctx, "s1")
		es, _ := l.Entries(ctx, "s1")
		if d.Remaining != 1 || len(es) != 0 {
			t.Fatalf("refused batch changed the ledger: remaining %d, %d entries", d.Remaining, len(es))
		}
	})
	t.Run("DuplicateUnitRefused", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("u1", 5)); err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, claims.Batch{DropID: "u1", Wins: 1, Insert: []claims.Entry{Win("u1", 1, "alice", 1, tok(1))}}); err != nil {
			t.Fatal(err)
		}
		err := l.Commit(ctx, claims.Batch{DropID: "u1", Wins: 1, Insert: []claims.Entry{Win("u1", 2, "alice", 1, tok(2))}})
		if !errors.Is(err, claims.ErrDuplicateWin) {
			t.Fatalf("same unit twice: %v, want ErrDuplicateWin", err)
		}
		d, _ := l.Drop(ctx, "u1")
		if d.Remaining != 4 {
			t.Fatalf("refused batch took stock: remaining %d", d.Remaining)
		}
		lost := Win("u1", 3, "alice", 0, "")
		lost.Outcome = claims.OutcomeLost
		if err := l.Commit(ctx, claims.Batch{DropID: "u1", Insert: []claims.Entry{lost, Win("u1", 4, "alice", 2, tok(3))}, Wins: 1}); err != nil {
			t.Fatalf("a lost entry and a second unit are allowed: %v", err)
		}
	})
	t.Run("TokenCollisionRefused", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("t1", 5)); err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, claims.Batch{DropID: "t1", Wins: 1, Insert: []claims.Entry{Win("t1", 1, "a", 1, tok(7))}}); err != nil {
			t.Fatal(err)
		}
		err := l.Commit(ctx, claims.Batch{DropID: "t1", Wins: 1, Insert: []claims.Entry{Win("t1", 2, "b", 1, tok(7))}})
		if !errors.Is(err, claims.ErrTokenCollision) {
			t.Fatalf("same token twice: %v, want ErrTokenCollision", err)
		}
	})
	t.Run("UpdatesAndState", func(t *testing.T) {
		l := open(t)
		d := NewDrop("r1", 1)
		d.Policy = claims.Raffle
		if err := l.CreateDrop(ctx, d); err != nil {
			t.Fatal(err)
		}
		e1, e2 := Win("r1", 1, "a", 0, ""), Win("r1", 2, "b", 0, "")
		e1.Outcome, e2.Outcome = claims.OutcomeEntered, claims.OutcomeEntered
		if err := l.Commit(ctx, claims.Batch{DropID: "r1", Insert: []claims.Entry{e1, e2}}); err != nil {
			t.Fatal(err)
		}
		e2.Outcome, e2.Unit, e2.Token = claims.OutcomeWon, 1, tok(9)
		e1.Outcome = claims.OutcomeLost
		closed := t0.Add(95 * time.Second)
		st := &claims.DropState{State: claims.SoldOut, ClosesAt: t0.Add(90 * time.Second), Grace: 7 * time.Second, ClosedAt: closed, CloseReason: "sold_out"}
		if err := l.Commit(ctx, claims.Batch{DropID: "r1", Wins: 1, Update: []claims.Entry{e1, e2}, State: st}); err != nil {
			t.Fatal(err)
		}
		got, _ := l.Drop(ctx, "r1")
		if got.State != claims.SoldOut || got.Remaining != 0 || !got.ClosedAt.Equal(closed) || got.CloseReason != "sold_out" || got.Grace != 7*time.Second {
			t.Fatalf("state not saved: %+v", got)
		}
		es, _ := l.UserEntries(ctx, "r1", "b")
		if len(es) != 1 || es[0].Outcome != claims.OutcomeWon || es[0].Token != tok(9) {
			t.Fatalf("update not saved: %+v", es)
		}
	})
	t.Run("RedeemExactlyOnce", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("x1", 5)); err != nil {
			t.Fatal(err)
		}
		expired := Win("x1", 2, "b", 1, tok(2))
		expired.ExpiresAt = t0.Add(time.Minute)
		if err := l.Commit(ctx, claims.Batch{DropID: "x1", Wins: 2, Insert: []claims.Entry{Win("x1", 1, "a", 1, tok(1)), expired}}); err != nil {
			t.Fatal(err)
		}
		at := t0.Add(time.Hour)
		e, err := l.Redeem(ctx, tok(1), at)
		if err != nil || e.UserID != "a" || !e.Redeemed.Equal(at) {
			t.Fatalf("first redeem: %+v, %v", e, err)
		}
		if e, err := l.Redeem(ctx, tok(1), at.Add(time.Second)); !errors.Is(err, claims.ErrTokenUsed) || !e.Redeemed.Equal(at) {
			t.Fatalf("second redeem: %v (redeemed %v), want ErrTokenUsed at first time", err, e.Redeemed)
		}
		if _, err := l.Redeem(ctx, tok(2), at); !errors.Is(err, claims.ErrTokenExpired) {
			t.Fatalf("expired redeem: %v, want ErrTokenExpired", err)
		}
		if _, err := l.Redeem(ctx, tok(3), at); !errors.Is(err, claims.ErrTokenUnknown) {
			t.Fatalf("unknown redeem: %v, want ErrTokenUnknown", err)
		}
		es, _ := l.UserEntries(ctx, "x1", "b")
		if !es[0].Redeemed.IsZero() {
			t.Fatal("expired redeem changed the entry")
		}
	})
	t.Run("ConcurrentRedeemOneWinner", func(t *testing.T) {
		l := open(t)
		if err := l.CreateDrop(ctx, NewDrop("y1", 5)); err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, claims.Batch{DropID: "y1", Wins: 1, Insert: []claims.Entry{Win("y1", 1, "a", 1, tok(1))}}); err != nil {
			t.Fatal(err)
		}
		var ok, used atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := l.Redeem(ctx, tok(1), t0.Add(time.Hour))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, claims.ErrTokenUsed):
					used.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || used.Load() != 31 {
			t.Fatalf("%d redeemed, %d told used; want 1 and 31", ok.Load(), used.Load())
		}
	})
	t.Run("ConcurrentCommitsNeverOversell", func(t *testing.T) {
		l := open(t)
		const stock = 50
		if err := l.CreateDrop(ctx, NewDrop("k1", stock)); err != nil {
			t.Fatal(err)
		}
		// Writers that do not coordinate (as replicas would not): the ledger
		// alone must keep stock.
		var accepted atomic.Int32
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					n := int64(w*1000 + i + 1)
					err := l.Commit(ctx, claims.Batch{DropID: "k1", Wins: 1, Insert: []claims.Entry{Win("k1", n, fmt.Sprintf("u%d", n), 1, tok(int(n)))}})
					if err == nil {
						accepted.Add(1)
					} else if !errors.Is(err, claims.ErrStockExhausted) {
						t.Error(err)
					}
				}
			}(w)
		}
		wg.Wait()
		d, _ := l.Drop(ctx, "k1")
		es, _ := l.Entries(ctx, "k1")
		if accepted.Load() != stock || d.Remaining != 0 || len(es) != stock {
			t.Fatalf("accepted %d, remaining %d, entries %d; want %d, 0, %d", accepted.Load(), d.Remaining, len(es), stock, stock)
		}
	})
	t.Run("LargeBatch", func(t *testing.T) {
		l := open(t)
		const n = 5000
		if err := l.CreateDrop(ctx, NewDrop("big", n)); err != nil {
			t.Fatal(err)
		}
		b := claims.Batch{DropID: "big", Wins: n}
		for i := 1; i <= n; i++ {
			b.Insert = append(b.Insert, Win("big", int64(i), fmt.Sprintf("user%d", i), 1, tok(i)))
		}
		if err := l.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		es, err := l.Entries(ctx, "big")
		if err != nil || len(es) != n || es[n-1].Seq != n {
			t.Fatalf("%d entries, err %v", len(es), err)
		}
	})
	t.Run("ListenStepAndCueStep", func(t *testing.T) {
		// A listen drop keeps its step length across a restart, and each entry
		// the step of the code it was claimed with, for the audit; in small
		// batches and in bulk inserts alike.
		l := open(t)
		d := NewDrop("ls", 3000)
		d.ClaimCode, d.ListenStep = "", 8*time.Second
		if err := l.CreateDrop(ctx, d); err != nil {
			t.Fatal(err)
		}
		got, err := l.Drop(ctx, "ls")
		if err != nil || got.ListenStep != 8*time.Second {
			t.Fatalf("listen step did not round-trip: %v, %v", got, err)
		}
		small := claims.Batch{DropID: "ls", Wins: 1, Insert: []claims.Entry{Win("ls", 1, "u1", 1, tok(1))}}
		small.Insert[0].CueStep = 7
		if err := l.Commit(ctx, small); err != nil {
			t.Fatal(err)
		}
		big := claims.Batch{DropID: "ls", Wins: 2000}
		for i := 2; i <= 2001; i++ {
			e := Win("ls", int64(i), fmt.Sprintf("user%d", i), 1, tok(i))
			e.CueStep = int64(i % 5)
			big.Insert = append(big.Insert, e)
		}
		if err := l.Commit(ctx, big); err != nil {
			t.Fatal(err)
		}
		es, err := l.Entries(ctx, "ls")
		if err != nil || len(es) != 2001 {
			t.Fatalf("%d entries, err %v", len(es), err)
		}
		if es[0].CueStep != 7 {
			t.Fatalf("entry 1 cue step %d, want 7", es[0].CueStep)
		}
		for _, e := range es[1:] {
			if e.CueStep != e.Seq%5 {
				t.Fatalf("entry %d cue step %d, want %d", e.Seq, e.CueStep, e.Seq%5)
			}
		}
		plain, err := l.Drop(ctx, "ls")
		if err != nil || plain.ListenStep == 0 {
			t.Fatalf("drop after commits: %v %v", plain, err)
		}
	})
}
