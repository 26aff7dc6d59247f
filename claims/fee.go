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

// RefundHold pays money back on a paid hold. It reverses the creator's
// credit and the platform's fee in proportion to the amount (cumulatively,
// so partial refunds that add up to the whole reverse exactly what was
// credited); a wallet payment goes straight back to the wallet, a card
// payment is owed back (the refunds account) until the provider pays it.
// The hold stays paid: its unit was sold; the refund is its own movement.
func (s *Service) RefundHold(ctx context.Context, r Refund) (Movement, bool, error) {
	if s.books == nil {
		return Movement{}, false, errNoBooks
	}
	if r.Key == "" || len(r.Key) > 64 || !idPattern.MatchString(r.Key) || r.AmountMinor < 0 {
		return Movement{}, false, microdrop.Errorf(microdrop.EINVALID, "a refund needs a key (letters, digits, - or _, at most 64) and an amount in minor units that is not negative")
	}
	s.refunding.Lock()
	defer s.refunding.Unlock()
	h, err := s.books.Hold(ctx, r.HoldID)
	if errors.Is(err, ErrHoldNotFound) {
		return Movement{}, false, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such hold", Err: err}
	}
	if err != nil {
		return Movement{}, false, err
	}
	if h.State != HoldPaid {
		return Movement{}, false, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("this hold is %s, not paid: nothing to refund", h.State), Err: ErrNotPaid}
	}
	ms, err := s.books.Movements(ctx, h.ID)
	if err != nil {
		return Movement{}, false, err
	}
	key := "refund:" + h.ID + ":" + r.Key
	var pay *Movement
	var refunded int64
	for i, m := range ms {
		if m.Key == key {
			return m, false, nil
		}
		switch {
		case m.Kind == MovePay && pay == nil:
			pay = &ms[i]
		case m.Kind == MoveRefund && strings.HasPrefix(m.Key, "refund:"+h.ID+":"):
			refunded += refundOf(m, h.Currency)
		}
	}
	if pay == nil {
		return Movement{}, false, fmt.Errorf("hold %s is paid but its payment is not in the books", h.ID)
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
	if amount <= 0 || amount > left {
		return Movement{}, false, &microdrop.Error{Code: microdrop.ECONFLICT,
			Message: fmt.Sprintf("%s is left to refund on this hold", formatMoney(left, h.Currency)), Err: ErrRefundTooLarge}
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
	applied, err := s.books.Post(ctx, m)
	if err != nil {
		return Movement{}, false, err
	}
	return m, applied, nil
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
