package stripe_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// A refund of a card-paid hold is paid back through Stripe's Refund API
// (against stripe-mock, which checks every parameter against Stripe's
// OpenAPI): the payment intent is read from the hold's Checkout Session,
// the refund's idempotency key comes from its key, and the owed money is
// booked paid back once Stripe accepted. With Stripe down the refund stays
// owed and the error says to retry; the same key then pays it back once,
// and a third try sends nothing.
func TestCardRefundThroughStripe(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rec := stripetest.Record(t, f.mock)
	d, err := f.svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 1, PriceMinor: 4500, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"card"}, LimitedRunID: "run1", CreatorID: "crea"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "ann", Login: "ann"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.post(t, sessionEvent("evt_1", "checkout.session.completed", "cs_ann", res.HoldID, 4500, "eur", "paid"), whsec, time.Now()); st != 200 {
		t.Fatalf("webhook: %d", st)
	}
	if h := f.hold(t, res.HoldID); h.State != claims.HoldPaid || h.Method != claims.PayCard {
		t.Fatalf("hold %+v", h)
	}
	clearing := f.balance(t, claims.ClearingAccount("stripe"))

	// Stripe cannot be reached: the refund is booked owed, and the error
	// is one to retry.
	down, err := stripe.New(f.svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: whsec, APIBase: closedURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.RefundCardsWith(down)
	r := claims.Refund{Key: "r1", HoldID: res.HoldID, AmountMinor: 1000, At: f.clock.Now()}
	m, applied, err := f.svc.RefundHold(ctx, r)
	if err == nil || microdrop.ErrorReason(err) != microdrop.ReasonUnavailable || !applied {
		t.Fatalf("refund with Stripe down: applied %v, %v", applied, err)
	}
	if owed := f.balance(t, claims.AccountRefunds); owed != 1000 {
		t.Fatalf("owed back %d with Stripe down, want 1000", owed)
	}

	// Stripe is back: the same key pays it back, with the same idempotency key.
	f.svc.RefundCardsWith(f.cardsAt(t, rec.URL))
	again, applied, err := f.svc.RefundHold(ctx, r)
	if err != nil || applied || again.Key != m.Key {
		t.Fatalf("retried refund: %+v applied %v, %v", again, applied, err)
	}
	if owed, cl := f.balance(t, claims.AccountRefunds), f.balance(t, claims.ClearingAccount("stripe")); owed != 0 || cl != clearing+1000 {
		t.Fatalf("after Stripe took it: owed %d, clearing %d (was %d)", owed, cl, clearing)
	}
	// A third try (a replayed API call) sends nothing and books nothing.
	if _, applied, err := f.svc.RefundHold(ctx, r); err != nil || applied {
		t.Fatalf("replayed refund: applied %v, %v", applied, err)
	}
	var refunds, sessions int
	for _, q := range rec.Requests() {
		switch q.Path {
		case "/v1/refunds":
			refunds++
			if q.Method != "POST" || q.Status != 200 || q.IdempotencyKey != claims.RefundIdempotencyKey(m) {
				t.Fatalf("refund request %+v, want idempotency key %s", q, claims.RefundIdempotencyKey(m))
			}
		case "/v1/checkout/sessions/cs_ann":
			sessions++
		}
	}
	if refunds != 1 || sessions != 1 {
		t.Fatalf("%d refund requests and %d session reads, want 1 each: %+v", refunds, sessions, rec.Requests())
	}

	// The rest of the payment, in one go, through Stripe at once; then
	// nothing is left to refund and a further refund is refused.
	if _, _, err := f.svc.RefundHold(ctx, claims.Refund{Key: "r2", HoldID: res.HoldID, At: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.RefundHold(ctx, claims.Refund{Key: "r3", HoldID: res.HoldID, AmountMinor: 1, At: f.clock.Now()}); !errors.Is(err, claims.ErrRefundTooLarge) {
		t.Fatalf("refund past the payment: %v", err)
	}
	ms, _ := f.books.Movements(ctx, res.HoldID)
	h := f.hold(t, res.HoldID)
	var paidBack int
	for _, m := range ms {
		if m.Kind == claims.MoveRefundPaid {
			paidBack++
		}
	}
	if got := claims.Refunded(ms, h); got != 4500 || paidBack != 2 || f.balance(t, claims.AccountRefunds) != 0 ||
		f.balance(t, claims.CreatorAccount("crea")) != 0 || f.balance(t, claims.AccountPlatformFee) != 0 {
		t.Fatalf("refunded %d with %d paid back; refunds %d creator %d fee %d", got, paidBack, f.balance(t, claims.AccountRefunds),
			f.balance(t, claims.CreatorAccount("crea")), f.balance(t, claims.AccountPlatformFee))
	}
	if rep, err := f.svc.AuditMoney(ctx); err != nil || !rep.Balanced {
		t.Fatalf("books: %+v %v", rep, err)
	}
}

// RefundCard sends nothing for a payment that is not a Stripe Checkout
// Session (the books name the provider and the payment).
func TestRefundCardRefusesOtherPayments(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.cards.RefundCard(ctx, claims.CardRefund{Provider: "stripe", PaymentID: "pi_notasession", HoldID: "h", IdempotencyKey: "k",
		AmountMinor: 100, Currency: "EUR"}); err == nil {
		t.Fatal("a refund of a payment that is no Checkout Session was sent")
	}
	if _, err := f.cards.RefundCard(ctx, claims.CardRefund{Provider: "other", PaymentID: "cs_x", HoldID: "h", IdempotencyKey: "k",
		AmountMinor: 100, Currency: "EUR"}); err == nil {
		t.Fatal("a refund of another provider's payment was sent")
	}
}

func (f *fixture) cardsAt(t *testing.T, base string) *stripe.Cards {
	t.Helper()
	c, err := stripe.New(f.svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: whsec, APIBase: base})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
