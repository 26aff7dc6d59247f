package ledgertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// Holder is the pseudonym a ledger under contract must be opened with
// (sqlite.Options.Holder, postgres.Options.Holder): the outbox contract
// checks every event names its buyer by it alone.
func Holder(creatorID, userID string) string {
	h := sha256.Sum256([]byte("test-holder\x00" + creatorID + "\x00" + userID))
	return hex.EncodeToString(h[:8])
}

func outboxOf(t *testing.T, l claims.Ledger) claims.Outbox {
	t.Helper()
	o, ok := l.(claims.Outbox)
	if !ok {
		t.Fatalf("%T keeps no outbox (claims.Outbox)", l)
	}
	return o
}

// tail reads every event after seq.
func tail(t *testing.T, o claims.Outbox, after int64) []claims.OutboxEvent {
	t.Helper()
	var out []claims.OutboxEvent
	for range 1000 {
		evs, err := o.OutboxAfter(context.Background(), after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, ev := range evs {
			if ev.Seq <= after {
				t.Fatalf("outbox went back from seq %d to %d", after, ev.Seq)
			}
			after = ev.Seq
		}
		out = append(out, evs...)
	}
	t.Fatal("outbox never ended")
	return nil
}

func body(t *testing.T, ev claims.OutboxEvent) claims.EventBody {
	t.Helper()
	var b claims.EventBody
	if err := json.Unmarshal(ev.Body, &b); err != nil {
		t.Fatalf("event %s body %s: %v", ev.ID, ev.Body, err)
	}
	if b.Type != ev.Kind {
		t.Fatalf("event %s: body type %q, row kind %q", ev.ID, b.Type, ev.Kind)
	}
	return b
}

func kinds(evs []claims.OutboxEvent) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Kind+" "+strings.TrimPrefix(ev.ID, "msg_"+strings.ReplaceAll(ev.Kind, ".", "_")+"_"))
	}
	return strings.Join(s, ", ")
}

// PayoutPaid is the movement that finishes a payout, built by hand as the
// payouts code posts it.
func PayoutPaid(payoutID, creatorID, provider string, amount int64) claims.Movement {
	return claims.Movement{Key: "payout:" + payoutID + ":paid", Kind: claims.MovePayoutPaid, At: t0, Postings: []claims.Posting{
		{Account: claims.CreatorTransitAccount(creatorID), Currency: "EUR", Amount: -amount},
		{Account: claims.PaidOutAccount(provider), Currency: "EUR", Amount: amount}}}
}

// runOutbox is the contract of the transactional outbox: every change of a
// hold and every finished payout writes its event in the same
// transaction, exactly once, in commit order; free claims write none.
func runOutbox(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("HoldLife", func(t *testing.T) {
		l, b := books(t, open)
		o := outboxOf(t, l)
		free := NewDrop("f1", 5)
		free.PriceMinor = 0
		if err := l.CreateDrop(ctx, free); err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, claims.Batch{DropID: "f1", Wins: 1, Insert: []claims.Entry{Win("f1", 1, "a", 1, tok(1))}}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Redeem(ctx, tok(1), t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if evs := tail(t, o, 0); len(evs) != 0 {
			t.Fatalf("a free drop's claim and pickup wrote events: %s", kinds(evs))
		}

		d := NewDrop("p1", 2)
		d.PayWindow, d.PayMethods = 10*time.Minute, []string{claims.PayWallet}
		if err := l.CreateDrop(ctx, d); err != nil {
			t.Fatal(err)
		}
		due := t0.Add(10 * time.Minute)
		w1, w2 := Win("p1", 1, "alice", 1, ""), Win("p1", 2, "bob", 1, "")
		h1, h2 := NewHold("p1", 1, "alice", due), NewHold("p1", 2, "bob", due)
		if err := l.Commit(ctx, claims.Batch{DropID: "p1", Wins: 2, Insert: []claims.Entry{w1, w2, lost("p1", 3, "carol"), lost("p1", 4, "dave")},
			Holds: []claims.Hold{h1, h2}}); err != nil {
			t.Fatal(err)
		}
		// A refused batch (stock gone) reports nothing.
		if err := l.Commit(ctx, claims.Batch{DropID: "p1", Wins: 1, Insert: []claims.Entry{Win("p1", 5, "erin", 1, "")},
			Holds: []claims.Hold{NewHold("p1", 5, "erin", due)}}); !errors.Is(err, claims.ErrStockExhausted) {
			t.Fatalf("batch beyond stock: %v", err)
		}
		if _, err := b.Post(ctx, TopUp("top-alice", "alice", 5000)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.PayHold(ctx, h1.ID, "wallet", WalletPay(h1, 450), due); !errors.Is(err, claims.ErrHoldDue) {
			t.Fatalf("pay at the deadline: %v", err)
		}
		for range 2 { // the replay reports nothing more
			if _, _, err := b.PayHold(ctx, h1.ID, "wallet", WalletPay(h1, 450), due.Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		next := NewHold("p1", 3, "carol", due.Add(10*time.Minute))
		next.PassedFrom = h2.ID
		if errs := b.PassHolds(ctx, []claims.Pass{{HoldID: h2.ID, State: claims.HoldExpired, At: due, Next: &next},
			{HoldID: h1.ID, State: claims.HoldExpired, At: due}}); errs[0] != nil || !errors.Is(errs[1], claims.ErrHoldSettled) {
			t.Fatalf("passes: %v", errs)
		}
		// carol gives hers up; nobody else waits but dave.
		last := NewHold("p1", 4, "dave", due.Add(20*time.Minute))
		last.PassedFrom = next.ID
		if errs := b.PassHolds(ctx, []claims.Pass{{HoldID: next.ID, State: claims.HoldReleased, At: due.Add(time.Minute), Next: &last}}); errs[0] != nil {
			t.Fatalf("release: %v", errs)
		}
		if errs := b.PassHolds(ctx, []claims.Pass{{HoldID: last.ID, State: claims.HoldExpired, At: due.Add(20 * time.Minute)}}); errs[0] != nil {
			t.Fatalf("expiry with nobody waiting: %v", errs)
		}
		if _, err := b.RedeemHold(ctx, h1.ID, due.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RedeemHold(ctx, h1.ID, due.Add(time.Hour)); !errors.Is(err, claims.ErrTokenUsed) {
			t.Fatalf("second redeem: %v", err)
		}
		evs := tail(t, o, 0)
		want := "hold.won p1-1, hold.won p1-2, hold.paid p1-1, hold.expired p1-2, hold.won p1-3, hold.passed p1-3, hold.won p1-4, hold.expired p1-4, pickup.redeemed p1-1"
		if got := kinds(evs); got != want {
			t.Fatalf("outbox:\n got %s\nwant %s", got, want)
		}
		ids := map[string]bool{}
		for _, ev := range evs {
			if ids[ev.ID] {
				t.Fatalf("event id %s twice", ev.ID)
			}
			ids[ev.ID] = true
			if ev.DropID != "p1" || ev.Channel != "chan_p1" {
				t.Fatalf("event %s of drop %q channel %q", ev.ID, ev.DropID, ev.Channel)
			}
			for _, user := range []string{"alice", "bob", "carol", "dave", "login_"} {
				if strings.Contains(string(ev.Body), user) {
					t.Fatalf("event %s names a viewer (%s): %s", ev.ID, user, ev.Body)
				}
			}
			bd := body(t, ev)
			if bd.Data.DropID != "p1" || bd.Data.SKU != "HOODIE-p1" || bd.Data.LimitedRunID != "run-p1" || bd.Data.CreatorID != "creator1" ||
				bd.Data.Channel != "chan_p1" || bd.Data.AmountMinor != 4500 || bd.Data.Currency != "EUR" || bd.Data.HoldID == "" {
				t.Fatalf("event %s data %+v", ev.ID, bd.Data)
			}
		}
		user := map[string]string{"p1-1": "alice", "p1-2": "bob", "p1-3": "carol", "p1-4": "dave"}
		for i, ev := range evs {
			bd := body(t, ev)
			if want := Holder("creator1", user[bd.Data.HoldID]); bd.Data.HolderID != want {
				t.Fatalf("event %s holder %q, want %q", ev.ID, bd.Data.HolderID, want)
			}
			switch i {
			case 0:
				if bd.Data.Deadline == nil || !bd.Data.Deadline.Equal(due) || bd.Data.PassedFrom != "" {
					t.Fatalf("won %+v", bd.Data)
				}
			case 2:
				if bd.Data.Method != "wallet" || !bd.Timestamp.Equal(due.Add(-time.Second)) {
					t.Fatalf("paid %+v at %s", bd.Data, bd.Timestamp)
				}
			case 3:
				if bd.Data.PassedTo != "p1-3" || !bd.Timestamp.Equal(due) {
					t.Fatalf("expired %+v", bd.Data)
				}
			case 4:
				if bd.Data.PassedFrom != "p1-2" || bd.Data.Deadline == nil || !bd.Data.Deadline.Equal(due.Add(10*time.Minute)) {
					t.Fatalf("won by a pass %+v", bd.Data)
				}
			case 5:
				if bd.Data.PassedTo != "p1-4" || bd.Data.PassedFrom != "p1-2" {
					t.Fatalf("passed %+v", bd.Data)
				}
			case 7:
				if bd.Data.PassedTo != "" {
					t.Fatalf("expired with nobody waiting %+v", bd.Data)
				}
			case 8:
				if bd.Data.RedeemedAt == nil || !bd.Data.RedeemedAt.Equal(due.Add(time.Hour)) || bd.Data.Method != "wallet" {
					t.Fatalf("redeemed %+v", bd.Data)
				}
			}
		}
		if more := tail(t, o, evs[len(evs)-1].Seq); len(more) != 0 {
			t.Fatalf("events after the last: %s", kinds(more))
		}
	})
	t.Run("PayoutPaid", func(t *testing.T) {
		l, b := books(t, open)
		o := outboxOf(t, l)
		start := claims.Movement{Key: "payout:po_1", Kind: claims.MovePayout, At: t0, Postings: []claims.Posting{
			{Account: claims.CreatorAccount("creator7"), Currency: "EUR", Amount: -12000},
			{Account: claims.CreatorTransitAccount("creator7"), Currency: "EUR", Amount: 12000}}}
		if _, err := b.Post(ctx, start); err != nil {
			t.Fatal(err)
		}
		if evs := tail(t, o, 0); len(evs) != 0 {
			t.Fatalf("a payout that only started reported: %s", kinds(evs))
		}
		for i, want := range []bool{true, false} {
			applied, err := b.Post(ctx, PayoutPaid("po_1", "creator7", "stripe_connect", 12000))
			if err != nil || applied != want {
				t.Fatalf("post %d: %v %v", i, applied, err)
			}
		}
		evs := tail(t, o, 0)
		if len(evs) != 1 || evs[0].Kind != claims.EventPayoutPaid || evs[0].DropID != "" {
			t.Fatalf("outbox after a paid payout and its replay: %s", kinds(evs))
		}
		bd := body(t, evs[0])
		if bd.Data.PayoutID != "po_1" || bd.Data.CreatorID != "creator7" || bd.Data.AmountMinor != 12000 || bd.Data.Currency != "EUR" ||
			bd.Data.Provider != "stripe_connect" || !bd.Timestamp.Equal(t0) {
			t.Fatalf("payout.paid %+v", bd)
		}
		// A refused movement writes no event either.
		bad := PayoutPaid("po_2", "creator7", "file", 100)
		bad.Postings[1].Amount = 99
		if _, err := b.Post(ctx, bad); !errors.Is(err, claims.ErrUnbalanced) {
			t.Fatalf("unbalanced payout: %v", err)
		}
		if evs := tail(t, o, 0); len(evs) != 1 {
			t.Fatalf("a refused payout reported: %s", kinds(evs))
		}
	})
	t.Run("TailMissesNothing", func(t *testing.T) {
		// Writers race a reader tailing by seq: the reader must see every
		// event, each once — a seq read past before its row committed
		// would be missed for good.
		l, b := books(t, open)
		o := outboxOf(t, l)
		const writers, each = 8, 15
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if _, err := b.Post(ctx, PayoutPaid(fmt.Sprintf("w%d-%d", w, i), "c", "file", 1)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		seen := map[string]int{}
		var after int64
		deadline := time.Now().Add(30 * time.Second)
		for finished := false; ; {
			select {
			case <-done:
				finished = true
			default:
			}
			evs, err := o.OutboxAfter(ctx, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				seen[ev.ID]++
				after = ev.Seq
			}
			if finished && len(evs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("tail did not finish in 30s")
			}
		}
		if len(seen) != writers*each {
			t.Fatalf("tail saw %d of %d events", len(seen), writers*each)
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("tail saw %s %d times", id, n)
			}
		}
	})
}
