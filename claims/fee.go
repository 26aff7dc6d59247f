package claims

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// Fee is the platform's share of a paid hold: a percentage (in basis
// points, 1/100 %) rounded half up to the minor unit, plus a fixed amount
// in minor units; never more than the hold's amount.
type Fee struct {
	BasisPoints int   `json:"basis_points"`
	FixedMinor  int64 `json:"fixed_minor"`
}

// Validate checks a fee a person configured.
func (f Fee) Validate() error {
	if f.BasisPoints < 0 || f.BasisPoints > 5000 {
		return errors.New("basis points must be between 0 and 5000 (50%)")
	}
	if f.FixedMinor < 0 || f.FixedMinor > 1e9 {
		return errors.New("a fixed fee must be between 0 and 1e9 minor units")
	}
	return nil
}

// Of is the fee on amount.
func (f Fee) Of(amount int64) int64 {
	if amount <= 0 {
		return 0
	}
	fee := (amount*int64(f.BasisPoints)+5_000)/10_000 + f.FixedMinor
	return min(max(fee, 0), amount)
}

// Creator is who a drop's money goes to: its creator, else its channel
// (the same fallback the creators: config uses for branding).
func (d *Drop) Creator() string {
	if d.CreatorID != "" {
		return d.CreatorID
	}
	return d.Channel
}

// FeeFor is a creator's fee: its own, else the default.
func (s *Service) FeeFor(creatorID string) Fee {
	if f, ok := s.opts.Fees[creatorID]; ok {
		return f
	}
	return Fee{BasisPoints: s.opts.FeeBasisPoints}
}

// Refund errors.
var (
	ErrRefundTooLarge = errors.New("money: refund is more than what is left of the payment")
	ErrNotPaid        = errors.New("money: hold is not paid")
	// ErrRefundRaced: another refund of the hold reached the books after
	// this one was computed; the caller computes it again.
	ErrRefundRaced = errors.New("money: another refund of this hold came first")
)

// Refund is money paid back on a paid hold.
type Refund struct {
	// Key identifies the refund (an API idempotency key, a provider's
	// refund id): a refund with a key already in the books is not applied
	// again.
	Key         string
	HoldID      string
	AmountMinor int64 // 0: all that is left
	At          time.Time
}

// CardRefund asks a card provider to pay money back on a card payment.
type CardRefund struct {
	Provider  string // as in the payment's movement key: "stripe"
	PaymentID string // the provider's id of the payment (a Checkout Session)
	HoldID    string
	// IdempotencyKey is the same for every attempt of one refund, so a
	// provider asked twice refunds once.
	IdempotencyKey string
	AmountMinor    int64
	Currency       string
}

// CardRefunder pays card refunds back through the provider (claims/stripe
// has one). RefundCard returns the provider's refund id once the provider
// has accepted the refund; any error leaves it owed, to be tried again
// with the same idempotency key.
type CardRefunder interface {
	RefundCard(ctx context.Context, r CardRefund) (refundID string, err error)
}

// RefundCardsWith makes RefundHold pay card refunds back through r; until
// then (and with none) a card refund is booked as owed back only.
func (s *Service) RefundCardsWith(r CardRefunder) {
	s.cardRefundsMu.Lock()
	s.cardRefunds = r
	s.cardRefundsMu.Unlock()
}

func (s *Service) cardRefunder() CardRefunder {
	s.cardRefundsMu.Lock()
	defer s.cardRefundsMu.Unlock()
	return s.cardRefunds
}

// refundTries bounds how often RefundHold computes a refund again after
// losing a race with another refund of the same hold.
const refundTries = 8

// RefundHold pays money back on a paid hold. It reverses the creator's
// credit and the platform's fee in proportion to the amount (cumulatively,
// so partial refunds that add up to the whole reverse exactly what was
// credited); a wallet payment goes straight back to the wallet, a card
// payment is owed back (the refunds account) and, with a CardRefunder,
// paid back through the provider at once (MoveRefundPaid). The hold stays
// paid: its unit was sold; the refund is its own movement.
//
// The ledger checks, in the refund's own transaction, that no other
// refund of the hold came in since this one was computed and that the
// refunds never add up to more than the payment, so refunds racing on
// several replicas never pay back too much. A provider that fails leaves
// the refund owed and returns a retryable error; the same key tries the
// provider again (with the same idempotency key) and never refunds twice.
func (s *Service) RefundHold(ctx context.Context, r Refund) (Movement, bool, error) {
	if s.books == nil {
		return Movement{}, false, errNoBooks
	}
	if r.Key == "" || len(r.Key) > 64 || !idPattern.MatchString(r.Key) || r.AmountMinor < 0 {
		return Movement{}, false, microdrop.Errorf(microdrop.EINVALID, "a refund needs a key (letters, digits, - or _, at most 64) and an amount in minor units that is not negative")
	}
	var (
		m       Movement
		applied bool
		ms      []Movement
		h       Hold
		err     error
	)
	for try := 0; ; try++ {
		h, ms, m, applied, err = s.postRefund(ctx, r)
		if !errors.Is(err, ErrRefundRaced) {
			break
		}
		if try == refundTries-1 {
			return Movement{}, false, &microdrop.Error{Code: microdrop.ECONFLICT, Reason: microdrop.ReasonUnavailable,
				Message: "other refunds of this hold keep coming in; try again", Err: err}
		}
	}
	if err != nil {
		return Movement{}, false, err
	}
	if h.Method != PayCard {
		return m, applied, nil
	}
	if err := s.payCardRefund(ctx, h, ms, m); err != nil {
		return m, applied, err
	}
	return m, applied, nil
}

// postRefund computes a refund from the books as they are and posts it on
// the condition that they have not changed (ErrRefundRaced). A key already
// in the books returns its movement, not applied.
func (s *Service) postRefund(ctx context.Context, r Refund) (Hold, []Movement, Movement, bool, error) {
	h, err := s.books.Hold(ctx, r.HoldID)
	if errors.Is(err, ErrHoldNotFound) {
		return h, nil, Movement{}, false, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such hold", Err: err}
	}
	if err != nil {
		return h, nil, Movement{}, false, err
	}
	if h.State != HoldPaid {
		return h, nil, Movement{}, false, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("this hold is %s, not paid: nothing to refund", h.State), Err: ErrNotPaid}
	}
	ms, err := s.books.Movements(ctx, h.ID)
	if err != nil {
		return h, nil, Movement{}, false, err
	}
	key := refundKey(h.ID, r.Key)
	var pay *Movement
	var refunded int64
	for i, m := range ms {
		if m.Key == key {
			return h, ms, m, false, nil
		}
		if m.Kind == MovePay && pay == nil {
			pay = &ms[i]
		}
	}
	refunded = Refunded(ms, h)
	if pay == nil {
		return h, ms, Movement{}, false, fmt.Errorf("hold %s is paid but its payment is not in the books", h.ID)
	}
	var creatorAcct string
	var fee int64
	for _, p := range pay.Postings {
		switch {
		case p.Account == AccountPlatformFee:
			fee += p.Amount
		case strings.HasPrefix(p.Account, AccountCreator+":"):
			creatorAcct = p.Account
		}
	}
	left := h.AmountMinor - refunded
	amount := r.AmountMinor
	if amount == 0 {
		amount = left
	}
	tooLarge := func(err error) error {
		return &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("%s is left to refund on this hold", formatMoney(left, h.Currency)), Err: err}
	}
	if amount <= 0 || amount > left {
		return h, ms, Movement{}, false, tooLarge(ErrRefundTooLarge)
	}
	// The fee reversed so far is the fee's share of what was refunded so
	// far, rounded half up; this refund reverses the difference.
	feeBack := share(fee, refunded+amount, h.AmountMinor) - share(fee, refunded, h.AmountMinor)
	creatorBack := amount - feeBack
	to := AccountRefunds
	if h.Method == PayWallet {
		to = WalletAccount(h.UserID)
	}
	if creatorAcct == "" {
		creatorAcct = AccountPlatformFee // a payment that was all fee
	}
	m := Movement{Key: key, Kind: MoveRefund, HoldID: h.ID, At: r.At.UTC(), Postings: []Posting{{Account: to, Currency: h.Currency, Amount: amount}}}
	if creatorBack != 0 {
		m.Postings = append(m.Postings, Posting{Account: creatorAcct, Currency: h.Currency, Amount: -creatorBack})
	}
	if feeBack != 0 {
		m.Postings = append(m.Postings, Posting{Account: AccountPlatformFee, Currency: h.Currency, Amount: -feeBack})
	}
	applied, err := s.books.PostRefund(ctx, m, refunded)
	switch {
	case errors.Is(err, ErrRefundTooLarge):
		return h, ms, Movement{}, false, tooLarge(err)
	case errors.Is(err, ErrNotPaid):
		return h, ms, Movement{}, false, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "this hold is not paid: nothing to refund", Err: err}
	case err != nil:
		return h, ms, Movement{}, false, err
	}
	if !applied {
		// The same key came in concurrently: the books have its movement.
		if ms, err = s.books.Movements(ctx, h.ID); err != nil {
			return h, nil, Movement{}, false, err
		}
		for _, stored := range ms {
			if stored.Key == key {
				return h, ms, stored, false, nil
			}
		}
	}
	ms = append(ms, m)
	return h, ms, m, applied, nil
}

func refundKey(holdID, key string) string { return "refund:" + holdID + ":" + key }

// RefundIdempotencyKey is the idempotency key a provider is given for a
// refund's every attempt.
func RefundIdempotencyKey(m Movement) string { return strings.ReplaceAll(m.Key, ":", "-") }

// payCardRefund asks the provider to pay owed-back refund m of card hold h
// and books it paid (refunds to the provider's clearing account) once the
// provider accepted; a refund already booked paid is not sent again.
func (s *Service) payCardRefund(ctx context.Context, h Hold, ms []Movement, m Movement) error {
	rf := s.cardRefunder()
	if rf == nil {
		return nil
	}
	paidKey := m.Key + ":paid"
	var provider, payment string
	for _, x := range ms {
		if x.Key == paidKey {
			return nil
		}
		if x.Kind == MovePay && provider == "" {
			provider, payment, _ = strings.Cut(x.Key, ":")
		}
	}
	var owed int64
	for _, p := range m.Postings {
		if p.Account == AccountRefunds && p.Currency == h.Currency {
			owed += p.Amount
		}
	}
	if owed <= 0 || provider == "" || payment == "" {
		return fmt.Errorf("card refund %s: no owed amount or no card payment to refund", m.Key)
	}
	id, err := rf.RefundCard(ctx, CardRefund{Provider: provider, PaymentID: payment, HoldID: h.ID, IdempotencyKey: RefundIdempotencyKey(m),
		AmountMinor: owed, Currency: h.Currency})
	if err != nil {
		s.log.Warn("card refund not paid back; it stays owed", "hold", h.ID, "refund", m.Key, "err", err)
		return &microdrop.Error{Code: microdrop.EINTERNAL, Reason: microdrop.ReasonUnavailable,
			Message: fmt.Sprintf("the refund of %s is booked as owed, but the card provider did not take it; send the same key again to retry", formatMoney(owed, h.Currency)), Err: err}
	}
	_, err = s.books.Post(ctx, Movement{Key: paidKey, Kind: MoveRefundPaid, HoldID: h.ID, At: s.now().UTC(), Postings: []Posting{
		{Account: AccountRefunds, Currency: h.Currency, Amount: -owed},
		{Account: ClearingAccount(provider), Currency: h.Currency, Amount: owed}}})
	if err != nil {
		return fmt.Errorf("card refund %s was paid back as %s but not booked: %w", m.Key, id, err)
	}
	s.log.Info("card refund paid back", "hold", h.ID, "refund", m.Key, "provider_refund", id, "amount", owed)
	return nil
}

// share is part/whole of total, rounded half up.
func share(total, part, whole int64) int64 {
	if whole == 0 {
		return 0
	}
	return (total*part*2 + whole) / (whole * 2)
}

// refundOf is what a refund movement paid back (its credit to the
// viewer's side).
func refundOf(m Movement, currency string) int64 {
	var n int64
	for _, p := range m.Postings {
		if p.Currency == currency && p.Amount > 0 && (p.Account == AccountRefunds || strings.HasPrefix(p.Account, AccountWallet+":")) {
			n += p.Amount
		}
	}
	return n
}

// Refunded is what the refunds among a hold's movements paid back.
func Refunded(ms []Movement, h Hold) int64 {
	var n int64
	for _, m := range ms {
		if m.Kind == MoveRefund && m.HoldID == h.ID && strings.HasPrefix(m.Key, "refund:"+h.ID+":") {
			n += refundOf(m, h.Currency)
		}
	}
	return n
}

// CheckRefund is the condition a ledger checks inside the transaction
// that posts refund m of hold h, given the hold's movements ms as that
// transaction sees them (Books.PostRefund).
func CheckRefund(h Hold, ms []Movement, m Movement, prior int64) error {
	if m.Kind != MoveRefund || m.HoldID != h.ID || !strings.HasPrefix(m.Key, "refund:"+h.ID+":") {
		return fmt.Errorf("movement %s is not a refund of hold %s: %w", m.Key, h.ID, ErrUnbalanced)
	}
	if h.State != HoldPaid {
		return fmt.Errorf("hold %s is %s: %w", h.ID, h.State, ErrNotPaid)
	}
	now := Refunded(ms, h)
	if now != prior {
		return fmt.Errorf("hold %s: refunds total %d, not %d: %w", h.ID, now, prior, ErrRefundRaced)
	}
	if this := refundOf(m, h.Currency); this <= 0 || now+this > h.AmountMinor {
		return fmt.Errorf("hold %s: %d refunded, %d more is above %d: %w", h.ID, now, this, h.AmountMinor, ErrRefundTooLarge)
	}
	return nil
}
