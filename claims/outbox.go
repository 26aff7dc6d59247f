package claims

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// Outbox event kinds: what the ledger reports, in the same transaction as
// the change, for fulfilment webhooks (claims/webhook).
const (
	// EventHoldWon: a unit of a priced drop became a viewer's awaiting
	// hold — a win, or a unit passed on from an ended hold (passed_from).
	EventHoldWon = "hold.won"
	// EventHoldPaid: a hold was paid (wallet or card).
	EventHoldPaid = "hold.paid"
	// EventHoldExpired: an awaiting hold reached its deadline unpaid;
	// its unit went to passed_to, or back to nobody when that is empty.
	EventHoldExpired = "hold.expired"
	// EventHoldPassed: the viewer gave an awaiting hold up before its
	// deadline (a release); its unit went on as after an expiry.
	EventHoldPassed = "hold.passed"
	// EventPickupRedeemed: a paid unit was handed over at the desk.
	EventPickupRedeemed = "pickup.redeemed"
	// EventPayoutPaid: a creator's payout left microdrop (a movement of
	// kind MovePayoutPaid).
	EventPayoutPaid = "payout.paid"
)

// EventKinds lists every outbox event kind.
var EventKinds = []string{EventHoldWon, EventHoldPaid, EventHoldExpired, EventHoldPassed, EventPickupRedeemed, EventPayoutPaid}

// KnownEventKind reports whether kind is an outbox event kind.
func KnownEventKind(kind string) bool {
	for _, k := range EventKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// OutboxEvent is one row of the ledger's outbox. Seq orders the outbox:
// a row is visible to readers only once its transaction has committed,
// and rows commit in Seq order (the ledgers guarantee it), so a reader
// tailing by Seq misses none. ID is stable and unique per fact (the kind
// and the hold or payout it is about): it is the webhook-id.
type OutboxEvent struct {
	Seq       int64     `json:"seq"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	DropID    string    `json:"drop_id,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Body is the event as receivers get it (EventBody, JSON).
	Body []byte `json:"body"`
}

// Outbox is the ledger's outbox, read after commit by the delivery worker.
type Outbox interface {
	// OutboxAfter lists up to limit events with Seq > after, in order.
	OutboxAfter(ctx context.Context, after int64, limit int) ([]OutboxEvent, error)
}

// EventBody is what a webhook receiver gets, in the Standard Webhooks
// payload shape: type, timestamp, data.
type EventBody struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      EventData `json:"data"`
}

// EventData is an event's subject. It names the viewer only by the
// pseudonymous holder id of the creator's receipts: never a name, an
// email or a platform user id.
type EventData struct {
	DropID       string     `json:"drop_id,omitempty"`
	Channel      string     `json:"channel,omitempty"`
	SKU          string     `json:"sku,omitempty"`
	LimitedRunID string     `json:"limited_run_id,omitempty"`
	CreatorID    string     `json:"creator_id"`
	HoldID       string     `json:"hold_id,omitempty"`
	Unit         int        `json:"unit,omitempty"`
	HolderID     string     `json:"holder_id,omitempty"`
	AmountMinor  int64      `json:"amount_minor,omitempty"`
	Currency     string     `json:"currency,omitempty"`
	Method       string     `json:"method,omitempty"`
	Deadline     *time.Time `json:"deadline,omitempty"`
	PassedFrom   string     `json:"passed_from,omitempty"`
	PassedTo     string     `json:"passed_to,omitempty"`
	RedeemedAt   *time.Time `json:"redeemed_at,omitempty"`
	PayoutID     string     `json:"payout_id,omitempty"`
	Provider     string     `json:"provider,omitempty"`
	// ShippingAddress is set only in deliveries to an endpoint marked for
	// fulfilment, and only when the holder gave one; the outbox row never
	// holds it.
	ShippingAddress *ShippingAddress `json:"shipping_address,omitempty"`
}

// ShippingAddress is where a holder wants their unit sent. The holder
// alone gives it and sees it; it goes to fulfilment endpoints only.
type ShippingAddress struct {
	Recipient  string `json:"recipient,omitempty"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Region     string `json:"region,omitempty"`
	// Country is the ISO 3166-1 alpha-2 code, e.g. "DE".
	Country string `json:"country"`
}

// Check refuses an address missing a required line or holding anything
// but plain text, with a message that names the field.
func (a *ShippingAddress) Check() error {
	a.Country = strings.ToUpper(strings.TrimSpace(a.Country))
	for _, f := range []struct {
		name     string
		v        *string
		required bool
	}{{"recipient", &a.Recipient, false}, {"line1", &a.Line1, true}, {"line2", &a.Line2, false}, {"city", &a.City, true},
		{"postal_code", &a.PostalCode, true}, {"region", &a.Region, false}} {
		*f.v = strings.TrimSpace(*f.v)
		if f.required && *f.v == "" {
			return microdrop.Errorf(microdrop.EINVALID, "shipping address: %s is required", f.name)
		}
		if err := microdrop.CheckText("shipping address "+f.name, *f.v, 100); err != nil {
			return err
		}
	}
	if len(a.Country) != 2 || a.Country[0] < 'A' || a.Country[0] > 'Z' || a.Country[1] < 'A' || a.Country[1] > 'Z' {
		return microdrop.Errorf(microdrop.EINVALID, "shipping address: country must be a two-letter ISO code, like DE or US")
	}
	return nil
}

// Pseudonym names a creator's buyer without naming them: the holder id of
// the creator's receipts (ReceiptSigner.HolderID). A ledger given none
// leaves holder_id out of its events.
type Pseudonym func(creatorID, userID string) string

// EventDrop is what an event says about the drop.
type EventDrop struct {
	ID, Channel, SKU, LimitedRunID, CreatorID string
}

func eventID(kind, subject string) string {
	return "msg_" + strings.ReplaceAll(kind, ".", "_") + "_" + subject
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// HoldOutboxEvent is the outbox row reporting kind about h: the ledger
// calls it inside the transaction that changed h.
func HoldOutboxEvent(kind string, d EventDrop, h Hold, holder Pseudonym, at time.Time) OutboxEvent {
	data := EventData{DropID: d.ID, Channel: d.Channel, SKU: d.SKU, LimitedRunID: d.LimitedRunID, CreatorID: creatorOrDefault(d.CreatorID),
		HoldID: h.ID, Unit: h.Unit, AmountMinor: h.AmountMinor, Currency: h.Currency, PassedFrom: h.PassedFrom, PassedTo: h.PassedTo}
	if holder != nil {
		data.HolderID = holder(d.CreatorID, h.UserID)
	}
	switch kind {
	case EventHoldWon:
		data.Deadline = timePtr(h.Deadline)
	case EventHoldPaid:
		data.Method = h.Method
	case EventPickupRedeemed:
		data.Method, data.RedeemedAt = h.Method, timePtr(at)
	}
	return newOutboxEvent(eventID(kind, h.ID), kind, d.ID, d.Channel, at, data)
}

// PayoutOutboxEvent is the payout.paid row for a movement of kind
// MovePayoutPaid (key "payout:<payout id>:paid", postings
// creator_transit:<creator> to paid_out:<provider>); false for any other
// movement.
func PayoutOutboxEvent(m Movement) (OutboxEvent, bool) {
	if m.Kind != MovePayoutPaid {
		return OutboxEvent{}, false
	}
	payout := strings.TrimSuffix(strings.TrimPrefix(m.Key, "payout:"), ":paid")
	data := EventData{PayoutID: payout}
	for _, p := range m.Postings {
		switch {
		case strings.HasPrefix(p.Account, AccountCreatorTransit+":") && p.Amount < 0:
			data.CreatorID = strings.TrimPrefix(p.Account, AccountCreatorTransit+":")
			data.AmountMinor += -p.Amount
			data.Currency = p.Currency
		case strings.HasPrefix(p.Account, AccountPaidOut+":"):
			data.Provider = strings.TrimPrefix(p.Account, AccountPaidOut+":")
		}
	}
	return newOutboxEvent(eventID(EventPayoutPaid, payout), EventPayoutPaid, "", "", m.At, data), true
}

func creatorOrDefault(id string) string {
	if id == "" {
		return "default"
	}
	return id
}

func newOutboxEvent(id, kind, dropID, channel string, at time.Time, data EventData) OutboxEvent {
	at = at.UTC()
	body, err := json.Marshal(EventBody{Type: kind, Timestamp: at, Data: data})
	if err != nil {
		panic(err) // plain strings, numbers and times always marshal
	}
	return OutboxEvent{ID: id, Kind: kind, DropID: dropID, Channel: channel, CreatedAt: at, Body: body}
}
