package stripe_test

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/claims/stripe"
)

// A paid drop end to end: claims become holds; one is paid from the
// wallet, one by card through stripe-mock and a signed webhook, one
// expires and passes to the next viewer in line, who pays; every receipt
// verifies offline with the published keys and is redeemed once at the
// desk; the drop's audit replays the pass and the books balance.
func TestPaidDropEndToEnd(t *testing.T) {
	ctx := context.Background()
	mock := startStripeMock(t)
	ck := &clock{t: time.Now().UTC().Truncate(time.Second)}
	signer, _ := claims.NewTokenSigner([]byte("current-key-0123456789"))
	receipts, err := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: sqlite.MustOpen(t), Bus: microdrop.NewMemoryBus(), Signer: signer, Receipts: receipts,
		Now: ck.Now, Options: claims.Options{ClaimRate: 1000, ClaimBurst: 1000, FeeBasisPoints: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	cards, err := stripe.New(svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: whsec, APIBase: mock})
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(cards)
	defer hook.Close()
	f := &fixture{hook: hook}

	d, err := svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 3, PriceMinor: 4500, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"wallet", "card"}, LimitedRunID: "tour", CreatorID: "crea"})
	if err != nil {
		t.Fatal(err)
	}
	hold := map[string]string{}
	for _, u := range []string{"ann", "ben", "cat", "dan"} {
		res, err := svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: u, Login: u}})
		if u == "dan" {
			if microdrop.ErrorReason(err) != claims.ReasonWaitlisted {
				t.Fatalf("dan: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		hold[u] = res.HoldID
	}
	for _, u := range []string{"ann", "dan"} {
		if _, err := svc.TopUp(ctx, "top-"+u, u, "admin", 4500, "EUR", ck.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.PayFromWallet(ctx, hold["ann"], "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := cards.Checkout(ctx, hold["ben"], "ben"); err != nil {
		t.Fatal(err)
	}
	if st := f.post(t, sessionEvent("evt_b", "checkout.session.completed", "cs_ben", hold["ben"], 4500, "eur", "paid"), whsec, time.Now()); st != 200 {
		t.Fatalf("ben's webhook: %d", st)
	}
	// cat does not pay: dan, next in line, gets the unit and pays.
	ck.Advance(claims.DefaultPayWindow)
	if err := svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	dans := claims.HoldID(d.ID, 4)
	if _, err := svc.PayFromWallet(ctx, dans, "dan"); err != nil {
		t.Fatal(err)
	}
	keys := svc.ReceiptKeys() // as published at /.well-known/microdrop-receipt-keys
	for _, u := range []string{"ann", "ben", "dan"} {
		id := hold[u]
		if u == "dan" {
			id = dans
		}
		h, err := svc.HoldFor(ctx, id, u)
		if err != nil {
			t.Fatal(err)
		}
		st, err := svc.HoldStatus(ctx, h)
		if err != nil || st.Receipt == "" {
			t.Fatalf("%s: no receipt: %+v %v", u, st, err)
		}
		r, err := claims.VerifyReceipt(st.Receipt, keys)
		if err != nil || r.HoldID != id || r.LimitedRunID != "tour" || r.Amount != 4500 {
			t.Fatalf("%s's receipt offline: %+v %v", u, r, err)
		}
		if _, err := svc.RedeemReceipt(ctx, st.Receipt); err != nil {
			t.Fatalf("%s at the desk: %v", u, err)
		}
		if _, err := svc.RedeemReceipt(ctx, st.Receipt); !errors.Is(err, claims.ErrTokenUsed) {
			t.Fatalf("%s at the desk again: %v", u, err)
		}
	}
	if _, err := svc.HoldFor(ctx, hold["cat"], "cat"); err != nil {
		t.Fatal(err)
	}
	ck.Advance(time.Minute)
	a, err := svc.Audit(ctx, d.ID)
	if err != nil || !a.Match || a.Passes != 1 || a.Awarded != 3 {
		t.Fatalf("drop audit %+v %v", a, err)
	}
	money, err := svc.AuditMoney(ctx)
	if err != nil || !money.Balanced || money.Revenue["EUR"] != 3*4500 {
		t.Fatalf("money audit %+v %v", money, err)
	}
	sum, err := svc.HoldSummary(ctx, d.ID)
	if err != nil || sum.Paid != 3 || sum.Passed != 1 || len(sum.Awaiting) != 0 || sum.Revenue != 3*4500 {
		t.Fatalf("summary %+v %v", sum, err)
	}
}
