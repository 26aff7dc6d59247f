package stripe_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// A creator with a connected account is paid by a Stripe Transfer made
// against stripe-mock (which checks every parameter against Stripe's
// OpenAPI), with the payout's idempotency key; the books move creator ->
// in transit -> paid_out:stripe_connect and balance.
func TestConnectTransfer(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rec := stripetest.Record(t, f.mock)
	plans := map[string]claims.PayoutPlan{"crea": {Schedule: claims.ScheduleDaily, Currency: "EUR", ConnectAccount: "acct_1Creator0000"}}
	hold := f.paidByWallet(t, "crea", 4500)
	// First Stripe cannot be reached: the payout stays in transit.
	down, err := stripe.NewConnect(stripe.Config{SecretKey: "sk_test_123", APIBase: closedURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Connect: down, Now: f.clock.Now, Plans: plans})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Run(ctx)
	if err != nil || len(rep.Waiting) != 1 || rep.Waiting[0].State != claims.PayoutInTransit || len(rep.Paid) != 0 {
		t.Fatalf("run with Stripe down: %+v %v", rep, err)
	}
	// The next run (a fresh runner, as after a restart) pays it, once.
	connect, err := stripe.NewConnect(stripe.Config{SecretKey: "sk_test_123", APIBase: rec.URL})
	if err != nil {
		t.Fatal(err)
	}
	p, err = claims.NewPayouts(claims.PayoutsDeps{Service: f.svc, Connect: connect, Now: f.clock.Now, Plans: plans})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = p.Run(ctx)
	if err != nil || len(rep.Paid) != 1 || len(rep.Errors) > 0 || rep.Resumed != 1 || rep.Created != 0 {
		t.Fatalf("resumed run: %+v %v", rep, err)
	}
	po := rep.Paid[0]
	if po.Provider != claims.ProviderStripeConnect || !strings.HasPrefix(po.Reference, "tr_") || po.AmountMinor != 4500-225 ||
		po.Destination != "acct_1Creator0000" || len(po.Lines) != 1 || po.Lines[0].DropID != hold.DropID {
		t.Fatalf("payout %+v", po)
	}
	var transfers []stripetest.Request
	for _, r := range rec.Requests() {
		if r.Path == "/v1/transfers" {
			transfers = append(transfers, r)
		}
	}
	if len(transfers) != 1 || transfers[0].Method != "POST" || transfers[0].Status != 200 ||
		transfers[0].IdempotencyKey != stripe.TransferIdempotencyKey(po.ID) {
		t.Fatalf("transfers sent: %+v", transfers)
	}
	if out := f.balance(t, claims.PaidOutAccount(claims.ProviderStripeConnect)); out != 4275 {
		t.Fatalf("paid out %d", out)
	}
	if c := f.balance(t, claims.CreatorAccount("crea")); c != 0 {
		t.Fatalf("creator left with %d", c)
	}
	if rep, _ := f.svc.AuditMoney(ctx); !rep.Balanced {
		t.Fatalf("books: %v", rep.Problems)
	}
	// A destination that is no account is refused before any call.
	before := len(rec.Requests())
	if _, err := connect.Pay(ctx, claims.Payout{ID: "po-x", AmountMinor: 100, Currency: "EUR", Destination: "nobody"}); !errors.Is(err, claims.ErrPayoutRefused) {
		t.Fatalf("pay to no account: %v", err)
	}
	if len(rec.Requests()) != before {
		t.Fatal("a payout to no account reached Stripe")
	}
}

// closedURL is an address nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// paidByWallet is a one-unit wallet drop of creator, won and paid by ann.
func (f *fixture) paidByWallet(t *testing.T, creator string, price int64) claims.Hold {
	t.Helper()
	ctx := context.Background()
	d, err := f.svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 1, PriceMinor: price, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"wallet"}, LimitedRunID: "run1", CreatorID: creator})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "ann", Login: "ann"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.TopUp(ctx, "t-"+res.HoldID, "ann", "admin", price, "EUR", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h, err := f.svc.PayFromWallet(ctx, res.HoldID, "ann")
	if err != nil {
		t.Fatal(err)
	}
	return h
}
