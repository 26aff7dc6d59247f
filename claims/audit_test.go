package claims_test

import (
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// auditBooks is a small sound ledger: a hold paid 4500 from a wallet (450
// fee), a partial card-style refund owed and paid back, and payouts in
// every state with the movements their state calls for.
func auditBooks() ([]claims.Movement, []claims.Hold, []claims.Payout) {
	at := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	eur := func(acct string, n int64) claims.Posting {
		return claims.Posting{Account: acct, Currency: "EUR", Amount: n}
	}
	h := claims.Hold{ID: "d1-1", DropID: "d1", Seq: 1, UserID: "ann", AmountMinor: 4500, Currency: "EUR", State: claims.HoldPaid, Method: claims.PayCard}
	cr, tr := claims.CreatorAccount("crea"), claims.CreatorTransitAccount("crea")
	ms := []claims.Movement{
		{Key: "stripe:cs_1", Kind: claims.MovePay, HoldID: h.ID, At: at, Postings: []claims.Posting{
			eur(claims.ClearingAccount("stripe"), -4500), eur(cr, 4050), eur(claims.AccountPlatformFee, 450)}},
		{Key: "refund:d1-1:r1", Kind: claims.MoveRefund, HoldID: h.ID, At: at, Postings: []claims.Posting{
			eur(claims.AccountRefunds, 1000), eur(cr, -900), eur(claims.AccountPlatformFee, -100)}},
		{Key: "refund:d1-1:r1:paid", Kind: claims.MoveRefundPaid, HoldID: h.ID, At: at, Postings: []claims.Posting{
			eur(claims.AccountRefunds, -1000), eur(claims.ClearingAccount("stripe"), 1000)}},
	}
	move := func(key, kind, from, to string, n int64) claims.Movement {
		return claims.Movement{Key: key, Kind: kind, At: at, Postings: []claims.Posting{eur(from, -n), eur(to, n)}}
	}
	ps := []claims.Payout{
		{ID: "po-paid", CreatorID: "crea", Currency: "EUR", AmountMinor: 1000, State: claims.PayoutPaid},
		{ID: "po-transit", CreatorID: "crea", Currency: "EUR", AmountMinor: 1000, State: claims.PayoutInTransit},
		{ID: "po-pending", CreatorID: "crea", Currency: "EUR", AmountMinor: 500, State: claims.PayoutPending},
		{ID: "po-back", CreatorID: "crea", Currency: "EUR", AmountMinor: 700, State: claims.PayoutReturned},
		{ID: "po-never", CreatorID: "crea", Currency: "EUR", AmountMinor: 700, State: claims.PayoutReturned},
	}
	ms = append(ms,
		move("payout:po-paid", claims.MovePayout, cr, tr, 1000),
		move("payout:po-paid:paid", claims.MovePayoutPaid, tr, claims.PaidOutAccount(claims.ProviderFile), 1000),
		move("payout:po-transit", claims.MovePayout, cr, tr, 1000),
		move("payout:po-back", claims.MovePayout, cr, tr, 700),
		move("payout:po-back:returned", claims.MovePayoutReturned, tr, cr, 700))
	return ms, []claims.Hold{h}, ps
}

func TestAuditMoneyProvesRefundsAndPayouts(t *testing.T) {
	ms, hs, ps := auditBooks()
	if rep := claims.AuditMoneyAndPayouts(ms, hs, ps); !rep.Balanced || rep.Payouts != 5 {
		t.Fatalf("a sound ledger: %+v", rep)
	}
	for _, c := range []struct {
		name   string
		breaks func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout)
		want   string
	}{
		{"refunds above the payment", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			big := ms[1]
			big.Key = "refund:d1-1:r2"
			big.Postings = []claims.Posting{{Account: claims.AccountRefunds, Currency: "EUR", Amount: 3600},
				{Account: claims.CreatorAccount("crea"), Currency: "EUR", Amount: -3600}}
			return append(ms, big), hs, ps
		}, "its refunds pay back 4600"},
		{"a refund of an unpaid hold", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			hs[0].State = claims.HoldExpired
			return ms, hs, ps
		}, "hold d1-1 is expired but has 1 refunds"},
		{"paid back more than owed", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ms[2].Postings[0].Amount, ms[2].Postings[1].Amount = -1200, 1200
			return ms, hs, ps
		}, "owed 1000 back but 1200 was paid back"},
		{"paid back with no refund", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ms[2].Key = "refund:d1-1:r9:paid"
			return ms, hs, ps
		}, "belongs to no refund"},
		{"paid without a paid movement", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ps[1].State = claims.PayoutPaid
			return ms, hs, ps
		}, "payout po-transit is paid but has movements: in transit true, paid false"},
		{"in transit with a paid movement", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ps[0].State = claims.PayoutInTransit
			return ms, hs, ps
		}, "payout po-paid is in_transit but has movements: in transit true, paid true"},
		{"pending with money moved", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ps[1].State = claims.PayoutPending
			return ms, hs, ps
		}, "payout po-transit is pending"},
		{"returned without its return", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ps[1].State = claims.PayoutReturned
			return ms, hs, ps
		}, "payout po-transit is returned"},
		{"an amount that is not the payout's", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			ps[0].AmountMinor = 999
			return ms, hs, ps
		}, "payout po-paid is of 999 EUR but its payout movement moves 1000"},
		{"a movement of no payout", func(ms []claims.Movement, hs []claims.Hold, ps []claims.Payout) ([]claims.Movement, []claims.Hold, []claims.Payout) {
			return ms, hs, ps[1:]
		}, "payout movement for unknown payout po-paid"},
	} {
		ms, hs, ps := auditBooks()
		rep := claims.AuditMoneyAndPayouts(c.breaks(ms, hs, ps))
		if rep.Balanced || !strings.Contains(strings.Join(rep.Problems, "\n"), c.want) {
			t.Errorf("%s: balanced %v, problems %q; want one saying %q", c.name, rep.Balanced, rep.Problems, c.want)
		}
	}
	// Without payouts, AuditMoney proves what the movements and holds can.
	ms, hs, _ = auditBooks()
	if rep := claims.AuditMoney(ms, hs); !rep.Balanced {
		t.Fatalf("AuditMoney of a sound ledger: %v", rep.Problems)
	}
}
