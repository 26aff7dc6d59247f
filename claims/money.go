package claims

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Accounts of the books. An account is a string: its kind, and for the
// per-party kinds a colon and the party's id.
const (
	// AccountWallet is a viewer's prepaid wallet ("wallet:<user id>"); it
	// never goes below zero.
	AccountWallet = "wallet"
	// AccountCreator is what a creator has earned ("creator:<creator id>").
	AccountCreator = "creator"
	// AccountPlatformFee is microdrop's fee.
	AccountPlatformFee = "platform_fee"
	// AccountClearing is money on its way through a payment provider
	// ("provider_clearing:<provider>"): it goes negative as the provider
	// owes us what a viewer paid it.
	AccountClearing = "provider_clearing"
	// AccountRefunds is money owed back to viewers until the provider has
	// paid it out.
	AccountRefunds = "refunds"
	// AccountCreatorTransit is a creator's money in a payout that has
	// started and is not yet paid out ("creator_transit:<creator id>").
	AccountCreatorTransit = "creator_transit"
	// AccountPaidOut is money that has left microdrop for a creator
	// ("paid_out:<provider>": stripe_connect, or file for a payout file).
	AccountPaidOut = "paid_out"
)

// WalletAccount is a viewer's wallet.
func WalletAccount(userID string) string { return AccountWallet + ":" + userID }

// CreatorAccount is a creator's balance.
func CreatorAccount(creatorID string) string {
	if creatorID == "" {
		creatorID = "default"
	}
	return AccountCreator + ":" + creatorID
}

// CreatorTransitAccount is a creator's money in payouts under way.
func CreatorTransitAccount(creatorID string) string {
	if creatorID == "" {
		creatorID = "default"
	}
	return AccountCreatorTransit + ":" + creatorID
}

// PaidOutAccount is where money paid out through a provider goes.
func PaidOutAccount(provider string) string { return AccountPaidOut + ":" + provider }

// ClearingAccount is a payment provider's clearing account.
func ClearingAccount(provider string) string { return AccountClearing + ":" + provider }

// NonNegative reports whether an account may never go below zero.
func NonNegative(account string) bool { return strings.HasPrefix(account, AccountWallet+":") }

// Posting moves Amount (integer minor units of Currency) into Account;
// a negative amount moves it out.
type Posting struct {
	Account  string `json:"account"`
	Currency string `json:"currency"`
	Amount   int64  `json:"amount"`
}

// Movement kinds.
const (
	MoveTopUp  = "top_up"
	MovePay    = "pay"
	MoveRefund = "refund"
	// MoveRefundPaid books a card refund the provider accepted: refunds
	// to provider_clearing:<provider>. Its key is the refund's key and
	// ":paid".
	MoveRefundPaid = "refund_paid"
	// MovePayout starts a payout: creator:<id> to creator_transit:<id>.
	// Its key is "payout:<payout id>".
	MovePayout = "payout"
	// MovePayoutPaid finishes one: creator_transit:<id> to
	// paid_out:<provider>. Its key is "payout:<payout id>:paid"; the
	// ledger reports it as payout.paid in the same transaction.
	MovePayoutPaid = "payout_paid"
	// MovePayoutReturned undoes a payout the provider refused:
	// creator_transit:<id> back to creator:<id> ("payout:<id>:returned").
	MovePayoutReturned = "payout_returned"
)

// Movement is one balanced set of postings: for every currency the amounts
// sum to zero. Key identifies the outside event that caused it (a webhook
// event id, an API idempotency key, a hold's wallet payment): a movement
// whose key is already in the books is not applied again.
type Movement struct {
	Key      string    `json:"key"`
	Kind     string    `json:"kind"`
	HoldID   string    `json:"hold_id,omitempty"`
	At       time.Time `json:"at"`
	Postings []Posting `json:"postings"`
}

// Money errors.
var (
	ErrUnbalanced        = errors.New("money: postings do not balance")
	ErrInsufficientFunds = errors.New("money: not enough in the wallet")
	ErrHoldNotFound      = errors.New("money: no such hold")
	ErrHoldSettled       = errors.New("money: hold is no longer awaiting payment")
	ErrHoldDue           = errors.New("money: hold is past its deadline")
	ErrHoldAmount        = errors.New("money: amount or currency does not match the hold")
	ErrPassNotTried      = errors.New("money: pass not tried after an earlier one was refused")
)

// Validate checks that m is well formed and balanced.
func (m *Movement) Validate() error {
	if m.Key == "" || len(m.Key) > 200 {
		return fmt.Errorf("movement needs an idempotency key of 1-200 bytes: %w", ErrUnbalanced)
	}
	if len(m.Postings) < 2 {
		return fmt.Errorf("movement %s has %d postings: %w", m.Key, len(m.Postings), ErrUnbalanced)
	}
	sum := map[string]int64{}
	for _, p := range m.Postings {
		if p.Amount == 0 || p.Account == "" || !currencyPattern.MatchString(p.Currency) {
			return fmt.Errorf("movement %s: bad posting %+v: %w", m.Key, p, ErrUnbalanced)
		}
		// Amounts are bounded so sums cannot overflow.
		if p.Amount > 1e15 || p.Amount < -1e15 {
			return fmt.Errorf("movement %s: amount out of range: %w", m.Key, ErrUnbalanced)
		}
		sum[p.Currency] += p.Amount
	}
	for c, s := range sum {
		if s != 0 {
			return fmt.Errorf("movement %s: %s postings sum to %d: %w", m.Key, c, s, ErrUnbalanced)
		}
	}
	return nil
}

// HoldState is where a hold is in its life.
type HoldState string

const (
	HoldAwaiting HoldState = "awaiting" // won, not yet paid
	HoldPaid     HoldState = "paid"     // final
	HoldExpired  HoldState = "expired"  // final: deadline passed; the unit passed on
	HoldReleased HoldState = "released" // final: the viewer gave it up; the unit passed on
)

// Hold is one won unit of a priced drop awaiting payment until Deadline.
// Its id is the drop and the entry's arrival number, so the decider and a
// restart name the same hold.
type Hold struct {
	ID          string    `json:"id"`
	DropID      string    `json:"drop_id"`
	Seq         int64     `json:"seq"`
	UserID      string    `json:"user_id"`
	Unit        int       `json:"unit"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	State       HoldState `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	Deadline    time.Time `json:"deadline"`
	SettledAt   time.Time `json:"settled_at,omitzero"`
	// PassedFrom is the hold whose unit this one took over; PassedTo the
	// hold that took this one's unit ("" when nobody was waiting).
	PassedFrom string    `json:"passed_from,omitempty"`
	PassedTo   string    `json:"passed_to,omitempty"`
	Method     string    `json:"method,omitempty"` // wallet, card
	Redeemed   time.Time `json:"redeemed_at,omitzero"`
}

// HoldID names the hold of a drop's entry.
func HoldID(dropID string, seq int64) string { return dropID + "-" + strconv.FormatInt(seq, 10) }

// HoldFilter selects holds.
type HoldFilter struct {
	DropID string
	UserID string
	State  HoldState // any when empty
}

// Pass ends one awaiting hold (expired or released) and, when someone is
// waiting, gives its unit to Next: that entry goes from lost to won with
// Next's unit, and Next is recorded awaiting.
type Pass struct {
	HoldID string
	State  HoldState // HoldExpired or HoldReleased
	At     time.Time
	Next   *Hold
}

// Books is the double-entry side of the ledger. Every ledger that records
// priced drops implements it; the ledger contract suite covers it.
type Books interface {
	// Post applies a balanced movement in one transaction. It reports
	// false, changing nothing, when a movement with the same key is
	// already in the books. ErrInsufficientFunds when a wallet would go
	// below zero; ErrUnbalanced for a movement that does not balance.
	Post(ctx context.Context, m Movement) (bool, error)
	// Balance is an account's balance in one currency.
	Balance(ctx context.Context, account, currency string) (int64, error)
	// Movements lists every movement in the order applied (holdID "" for all).
	Movements(ctx context.Context, holdID string) ([]Movement, error)
	// Hold returns one hold; ErrHoldNotFound when unknown.
	Hold(ctx context.Context, id string) (Hold, error)
	// Holds lists holds by drop and arrival order.
	Holds(ctx context.Context, f HoldFilter) ([]Hold, error)
	// PayHold records a hold paid by m (which must take hold.AmountMinor
	// into the creator and fee accounts) in one transaction: the hold must
	// be awaiting and its deadline after at (ErrHoldSettled, ErrHoldDue).
	// A replayed m.Key returns the hold as it is and false.
	PayHold(ctx context.Context, id, method string, m Movement, at time.Time) (Hold, bool, error)
	// PassHolds applies passes in order, each atomically: an error for a
	// pass whose hold is no longer awaiting (or, expiring, not yet due) or
	// whose next entry is no longer waiting, changing nothing for it; the
	// passes after a refused one are not tried (ErrPassNotTried), since
	// they were computed from a line that did not happen.
	PassHolds(ctx context.Context, passes []Pass) []error
	// PostRefund applies refund m (kind MoveRefund, key
	// "refund:<hold>:<key>") of the paid hold m.HoldID in one transaction,
	// on conditions checked inside it: the refunds of the hold already in
	// the books pay back prior in total (ErrRefundRaced otherwise: m was
	// computed from books that changed since), and prior plus what m pays
	// back is at most the hold's amount (ErrRefundTooLarge); ErrNotPaid
	// for a hold that is not paid. A replayed m.Key reports false.
	PostRefund(ctx context.Context, m Movement, prior int64) (bool, error)
	// RedeemHold marks a paid hold picked up, exactly once
	// (ErrTokenUsed for a second time).
	RedeemHold(ctx context.Context, id string, at time.Time) (Hold, error)
}

// MoneyReport proves the books: every currency sums to zero over all
// accounts, no wallet is negative, and every hold's state matches its
// postings (a paid hold has exactly one pay movement of its amount, an
// unpaid one none).
type MoneyReport struct {
	Movements int                         `json:"movements"`
	Holds     int                         `json:"holds"`
	Payouts   int                         `json:"payouts,omitempty"`
	Totals    map[string]int64            `json:"totals"`   // per currency: 0 when balanced
	Balances  map[string]map[string]int64 `json:"balances"` // account -> currency -> balance
	Revenue   map[string]int64            `json:"revenue"`  // per currency: paid holds
	Balanced  bool                        `json:"balanced"`
	Problems  []string                    `json:"problems,omitempty"`
}

// AuditMoney recomputes the books from movements and holds alone: every
// currency sums to zero, no wallet is below zero, every hold's state
// matches its payment, and no hold's refunds pay back more than its
// payment (nor a refund of a hold that is not paid); a card refund booked
// paid back belongs to a refund and pays back no more than it owed.
func AuditMoney(moves []Movement, holds []Hold) MoneyReport {
	return auditMoney(moves, holds, nil, false)
}

// AuditMoneyAndPayouts is AuditMoney that also proves the payouts against
// their movements: a pending payout has none; in transit, exactly its
// MovePayout; paid, its MovePayout and MovePayoutPaid; returned, none or
// its MovePayout and MovePayoutReturned; each of its amount; and no
// payout movement names an unknown payout.
func AuditMoneyAndPayouts(moves []Movement, holds []Hold, payouts []Payout) MoneyReport {
	return auditMoney(moves, holds, payouts, true)
}

func auditMoney(moves []Movement, holds []Hold, payouts []Payout, withPayouts bool) MoneyReport {
	rep := MoneyReport{Movements: len(moves), Holds: len(holds), Payouts: len(payouts), Totals: map[string]int64{},
		Balances: map[string]map[string]int64{}, Revenue: map[string]int64{}}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	paid := map[string][]Movement{}
	refunds := map[string][]Movement{}
	owed := map[string]Movement{}
	var paidBack, payoutMoves []Movement
	keys := map[string]bool{}
	for _, m := range moves {
		if keys[m.Key] {
			problem("movement key %s applied twice", m.Key)
		}
		keys[m.Key] = true
		if err := m.Validate(); err != nil {
			problem("movement %s does not balance", m.Key)
		}
		for _, p := range m.Postings {
			rep.Totals[p.Currency] += p.Amount
			if rep.Balances[p.Account] == nil {
				rep.Balances[p.Account] = map[string]int64{}
			}
			rep.Balances[p.Account][p.Currency] += p.Amount
		}
		switch {
		case m.Kind == MovePay && m.HoldID != "":
			paid[m.HoldID] = append(paid[m.HoldID], m)
		case m.Kind == MoveRefund && m.HoldID != "" && strings.HasPrefix(m.Key, "refund:"+m.HoldID+":"):
			refunds[m.HoldID] = append(refunds[m.HoldID], m)
			owed[m.Key] = m
		case m.Kind == MoveRefundPaid:
			paidBack = append(paidBack, m)
		case m.Kind == MovePayout || m.Kind == MovePayoutPaid || m.Kind == MovePayoutReturned:
			payoutMoves = append(payoutMoves, m)
		}
	}
	for _, m := range paidBack {
		r, ok := owed[strings.TrimSuffix(m.Key, ":paid")]
		var back, due int64
		for _, p := range m.Postings {
			if p.Account == AccountRefunds && p.Amount < 0 {
				back -= p.Amount
			}
		}
		for _, p := range r.Postings {
			if p.Account == AccountRefunds && p.Amount > 0 {
				due += p.Amount
			}
		}
		switch {
		case !ok || !strings.HasSuffix(m.Key, ":paid") || r.HoldID != m.HoldID:
			problem("refund paid back %s belongs to no refund", m.Key)
		case back != due:
			problem("refund %s owed %d back but %d was paid back", r.Key, due, back)
		}
	}
	for c, t := range rep.Totals {
		if t != 0 {
			problem("%s postings sum to %d, not 0", c, t)
		}
	}
	accts := make([]string, 0, len(rep.Balances))
	for a := range rep.Balances {
		accts = append(accts, a)
	}
	sort.Strings(accts)
	for _, a := range accts {
		for c, b := range rep.Balances[a] {
			if NonNegative(a) && b < 0 {
				problem("%s is %d %s, below zero", a, b, c)
			}
		}
	}
	for _, h := range holds {
		ms := paid[h.ID]
		delete(paid, h.ID)
		rs := refunds[h.ID]
		delete(refunds, h.ID)
		if h.State != HoldPaid {
			if len(ms) > 0 {
				problem("hold %s is %s but has %d payments", h.ID, h.State, len(ms))
			}
			if len(rs) > 0 {
				problem("hold %s is %s but has %d refunds", h.ID, h.State, len(rs))
			}
			continue
		}
		if back := Refunded(rs, h); back > h.AmountMinor {
			problem("hold %s is paid %d %s but its refunds pay back %d", h.ID, h.AmountMinor, h.Currency, back)
		}
		if len(ms) != 1 {
			problem("hold %s is paid but has %d payments", h.ID, len(ms))
			continue
		}
		in := int64(0)
		for _, p := range ms[0].Postings {
			if p.Amount > 0 && p.Currency == h.Currency && (strings.HasPrefix(p.Account, AccountCreator+":") || p.Account == AccountPlatformFee) {
				in += p.Amount
			}
		}
		if in != h.AmountMinor {
			problem("hold %s is paid %d %s but its payment credits %d", h.ID, h.AmountMinor, h.Currency, in)
		}
		rep.Revenue[h.Currency] += h.AmountMinor
	}
	for id := range paid {
		problem("payment for unknown hold %s", id)
	}
	for id := range refunds {
		problem("refund for unknown hold %s", id)
	}
	if withPayouts {
		auditPayouts(payouts, payoutMoves, problem)
	}
	if len(rep.Problems) > 20 {
		rep.Problems = append(rep.Problems[:20], fmt.Sprintf("... and %d more", len(rep.Problems)-20))
	}
	rep.Balanced = len(rep.Problems) == 0
	return rep
}

// auditPayouts checks each payout's state against its movements.
func auditPayouts(payouts []Payout, moves []Movement, problem func(string, ...any)) {
	byPayout := map[string]map[string]Movement{} // payout id -> kind -> movement
	for _, m := range moves {
		id := strings.TrimPrefix(m.Key, "payout:")
		switch m.Kind {
		case MovePayoutPaid:
			id = strings.TrimSuffix(id, ":paid")
		case MovePayoutReturned:
			id = strings.TrimSuffix(id, ":returned")
		}
		if byPayout[id] == nil {
			byPayout[id] = map[string]Movement{}
		}
		byPayout[id][m.Kind] = m
	}
	payouts = append([]Payout(nil), payouts...)
	sort.Slice(payouts, func(i, j int) bool { return payouts[i].ID < payouts[j].ID })
	for _, po := range payouts {
		ms := byPayout[po.ID]
		delete(byPayout, po.ID)
		_, transit := ms[MovePayout]
		_, paid := ms[MovePayoutPaid]
		_, returned := ms[MovePayoutReturned]
		var ok bool
		switch po.State {
		case PayoutPending:
			ok = !transit && !paid && !returned
		case PayoutInTransit:
			ok = transit && !paid && !returned
		case PayoutPaid:
			ok = transit && paid && !returned
		case PayoutReturned:
			ok = !paid && transit == returned
		}
		if !ok {
			problem("payout %s is %s but has movements: in transit %v, paid %v, returned %v", po.ID, po.State, transit, paid, returned)
		}
		for kind, m := range ms {
			var moved int64
			for _, p := range m.Postings {
				if p.Amount > 0 && p.Currency == po.Currency {
					moved += p.Amount
				}
			}
			if moved != po.AmountMinor {
				problem("payout %s is of %d %s but its %s movement moves %d", po.ID, po.AmountMinor, po.Currency, kind, moved)
			}
		}
	}
	ids := make([]string, 0, len(byPayout))
	for id := range byPayout {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		problem("payout movement for unknown payout %s", id)
	}
}
