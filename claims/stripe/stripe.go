// Package stripe is the card confirmation class: one Stripe Checkout
// Session per hold, and the webhook that alone marks a hold paid.
//
// A session carries client_reference_id = the hold, metadata with the
// drop, SKU, limited run and creator, and expires_at = the hold's deadline
// (Stripe's own minimum of 30 minutes when the deadline is sooner). The
// webhook verifies Stripe's signature (webhook.ConstructEvent) before it
// reads anything, credits a hold once per session whatever the events'
// order or repetition, and answers 2xx only after the ledger committed,
// so Stripe retries anything not recorded. A payment that arrives after
// its hold ended, or that does not match the hold's amount and currency,
// is not credited: it is booked as owed back and refunded through the
// API (the unit has gone on down the line; a viewer who paid late gets
// their money back rather than someone else's unit). Refunds of paid
// holds (claims.Service.RefundHold) go back through the Refund API too
// (RefundCard), keyed by the refund. It never stores card data: Checkout
// collects it on Stripe's pages.
package stripe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"encoding/json"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Config switches card payments on.
type Config struct {
	SecretKey     string
	WebhookSecret string
	// APIBase overrides the API URL (stripe-mock in tests).
	APIBase string
	// PublicURL is where viewers come back to after Checkout.
	PublicURL string
	Logger    *slog.Logger
	// Tolerance is how old a signed webhook may be (5 min when zero).
	Tolerance time.Duration
}

// Cards creates checkouts and takes Stripe's webhooks.
type Cards struct {
	svc       *claims.Service
	client    *stripego.Client
	secret    string
	publicURL string
	tolerance time.Duration
	log       *slog.Logger
}

// New returns the card class for svc.
func New(svc *claims.Service, c Config) (*Cards, error) {
	if c.SecretKey == "" || c.WebhookSecret == "" {
		return nil, errors.New("stripe: secret_key and webhook_secret are both needed")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tolerance <= 0 {
		c.Tolerance = webhook.DefaultTolerance
	}
	client := newClient(c)
	return &Cards{svc: svc, client: client, secret: c.WebhookSecret, publicURL: strings.TrimRight(c.PublicURL, "/"),
		tolerance: c.Tolerance, log: c.Logger.With("component", "stripe")}, nil
}

// stripeMinExpiry is the soonest Stripe lets a Checkout Session expire.
const stripeMinExpiry = 30 * time.Minute

var _ claims.CardCheckout = (*Cards)(nil)

// Checkout opens a Checkout Session for an awaiting hold of userID.
func (c *Cards) Checkout(ctx context.Context, holdID, userID string) (claims.Checkout, error) {
	h, d, err := c.svc.CheckoutTerms(ctx, holdID, userID)
	if err != nil {
		return claims.Checkout{}, err
	}
	now := c.svc.Now()
	expires := h.Deadline
	if expires.Sub(now) < stripeMinExpiry {
		expires = now.Add(stripeMinExpiry + time.Minute)
	}
	p := &stripego.CheckoutSessionCreateParams{
		Mode:              stripego.String(string(stripego.CheckoutSessionModePayment)),
		ClientReferenceID: stripego.String(h.ID),
		ExpiresAt:         stripego.Int64(expires.Unix()),
		SuccessURL:        stripego.String(c.publicURL + "/c/" + d.ID + "?paid=" + h.ID),
		CancelURL:         stripego.String(c.publicURL + "/c/" + d.ID),
		LineItems: []*stripego.CheckoutSessionCreateLineItemParams{{
			Quantity: stripego.Int64(1),
			PriceData: &stripego.CheckoutSessionCreateLineItemPriceDataParams{
				Currency:    stripego.String(strings.ToLower(h.Currency)),
				UnitAmount:  stripego.Int64(h.AmountMinor),
				ProductData: &stripego.CheckoutSessionCreateLineItemPriceDataProductDataParams{Name: stripego.String(d.Title)},
			},
		}},
		Metadata: map[string]string{"hold": h.ID, "drop": d.ID, "sku": d.SKU, "limited_run": d.LimitedRunID, "creator": d.CreatorID},
	}
	// One session per hold: a retried create returns the same session.
	p.SetIdempotencyKey("checkout-" + h.ID)
	s, err := c.client.V1CheckoutSessions.Create(ctx, p)
	if err != nil {
		c.log.Warn("create checkout session", "hold", h.ID, "err", err)
		return claims.Checkout{}, &microdrop.Error{Code: microdrop.EINTERNAL, Reason: microdrop.ReasonUnavailable, Message: "card payments are unavailable right now; try again or pay from your wallet", Err: err}
	}
	return claims.Checkout{SessionID: s.ID, URL: s.URL, ExpiresAt: expires.UTC()}, nil
}

// maxWebhookBytes bounds a webhook body.
const maxWebhookBytes = 1 << 16

// ServeHTTP takes Stripe's webhook. Nothing is read before the signature
// verifies; a forged or stale one is answered 400 and changes nothing.
func (c *Cards) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	payload, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBytes+1))
	if err != nil || len(payload) > maxWebhookBytes {
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "webhook body unreadable or too large"))
		return
	}
	ev, err := webhook.ConstructEventWithOptions(payload, r.Header.Get("Stripe-Signature"), c.secret,
		webhook.ConstructEventOptions{Tolerance: c.tolerance})
	if err != nil {
		c.log.Warn("webhook refused", "err", err)
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "webhook signature does not verify"))
		return
	}
	if err := c.handle(r.Context(), ev); err != nil {
		if microdrop.ErrorCode(err) == microdrop.EINVALID || microdrop.ErrorCode(err) == microdrop.ENOTFOUND {
			// Retrying cannot help: say so, change nothing.
			c.log.Warn("webhook event not applied", "event", ev.ID, "type", ev.Type, "err", err)
			microdrop.WriteJSON(w, http.StatusOK, map[string]any{"received": true, "applied": false})
			return
		}
		c.log.Error("webhook event failed; Stripe will retry", "event", ev.ID, "type", ev.Type, "err", err)
		microdrop.WriteError(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"received": true})
}

func (c *Cards) handle(ctx context.Context, ev stripego.Event) error {
	switch ev.Type {
	case stripego.EventTypeCheckoutSessionCompleted, stripego.EventTypeCheckoutSessionAsyncPaymentSucceeded:
	case stripego.EventTypeCheckoutSessionAsyncPaymentFailed:
		c.log.Info("card payment failed; the hold waits until its deadline", "event", ev.ID)
		return nil
	case stripego.EventTypeCheckoutSessionExpired:
		// The hold's own deadline decides; an expired session pays nothing.
		return nil
	default:
		return nil
	}
	var s stripego.CheckoutSession
	if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &s) != nil || s.ClientReferenceID == "" {
		return microdrop.Errorf(microdrop.EINVALID, "event %s carries no checkout session for a hold", ev.ID)
	}
	if s.PaymentStatus != stripego.CheckoutSessionPaymentStatusPaid {
		return nil // an async method: wait for async_payment_succeeded
	}
	p := claims.CardPayment{Provider: "stripe", PaymentID: s.ID, HoldID: s.ClientReferenceID, Amount: s.AmountTotal,
		Currency: string(s.Currency), At: c.svc.Now()}
	_, err := c.svc.PayByCard(ctx, p)
	switch {
	case errors.Is(err, claims.ErrPaidLate), errors.Is(err, claims.ErrPaymentMismatch):
		return c.refund(ctx, s, p)
	case errors.Is(err, claims.ErrHoldNotFound):
		return microdrop.Errorf(microdrop.ENOTFOUND, "no hold %s", p.HoldID)
	}
	return err
}

// refund pays owed money back through the API, once per session.
func (c *Cards) refund(ctx context.Context, s stripego.CheckoutSession, p claims.CardPayment) error {
	if s.PaymentIntent == nil || s.PaymentIntent.ID == "" {
		return fmt.Errorf("session %s owes a refund but names no payment intent", s.ID)
	}
	rp := &stripego.RefundCreateParams{PaymentIntent: stripego.String(s.PaymentIntent.ID)}
	rp.SetIdempotencyKey("refund-" + s.ID)
	rf, err := c.client.V1Refunds.Create(ctx, rp)
	if err != nil {
		return fmt.Errorf("refund session %s: %w", s.ID, err)
	}
	c.log.Warn("card payment refunded", "hold", p.HoldID, "session", s.ID, "refund", rf.ID)
	return c.svc.Refunded(ctx, p, s.ID)
}

var _ claims.CardRefunder = (*Cards)(nil)

// RefundCard pays a card refund back: it reads the Checkout Session the
// hold was paid with for its payment intent, then creates a Refund of the
// amount against it with the refund's idempotency key, so a retried
// refund is answered with the refund Stripe already made. Stripe accepts
// a refund it reports succeeded or pending; failed or canceled is an
// error (the refund stays owed).
func (c *Cards) RefundCard(ctx context.Context, r claims.CardRefund) (string, error) {
	if r.Provider != "stripe" || !strings.HasPrefix(r.PaymentID, "cs_") {
		return "", fmt.Errorf("refund of hold %s: payment %s:%s is no Stripe Checkout Session", r.HoldID, r.Provider, r.PaymentID)
	}
	s, err := c.client.V1CheckoutSessions.Retrieve(ctx, r.PaymentID, nil)
	if err != nil {
		return "", fmt.Errorf("refund of hold %s: read session %s: %w", r.HoldID, r.PaymentID, err)
	}
	if s.PaymentIntent == nil || s.PaymentIntent.ID == "" {
		return "", fmt.Errorf("refund of hold %s: session %s names no payment intent", r.HoldID, r.PaymentID)
	}
	rp := &stripego.RefundCreateParams{
		PaymentIntent: stripego.String(s.PaymentIntent.ID),
		Amount:        stripego.Int64(r.AmountMinor),
		Reason:        stripego.String(string(stripego.RefundReasonRequestedByCustomer)),
		Metadata:      map[string]string{"hold": r.HoldID, "refund": r.IdempotencyKey},
	}
	rp.SetIdempotencyKey(r.IdempotencyKey)
	rf, err := c.client.V1Refunds.Create(ctx, rp)
	if err != nil {
		return "", fmt.Errorf("refund of hold %s: %w", r.HoldID, err)
	}
	switch rf.Status {
	case stripego.RefundStatusSucceeded, stripego.RefundStatusPending:
	default:
		return "", fmt.Errorf("refund of hold %s: Stripe's refund %s is %s", r.HoldID, rf.ID, rf.Status)
	}
	if rf.Amount != r.AmountMinor {
		return "", fmt.Errorf("refund of hold %s: Stripe's refund %s is of %d, not %d", r.HoldID, rf.ID, rf.Amount, r.AmountMinor)
	}
	c.log.Info("card refund made", "hold", r.HoldID, "refund", rf.ID, "payment_intent", s.PaymentIntent.ID, "amount", r.AmountMinor)
	return rf.ID, nil
}
