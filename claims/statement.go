package claims

import (
	"context"
	"sort"
	"strings"
	"time"
)

// DropMoney is what one drop earned a creator over a period.
type DropMoney struct {
	DropID       string `json:"drop_id"`
	SKU          string `json:"sku"`
	Title        string `json:"title"`
	LimitedRunID string `json:"limited_run_id,omitempty"`
	Currency     string `json:"currency"`
	// PaidHolds and GrossMinor are the holds paid in the period and what
	// viewers paid for them; FeesMinor the platform's fee on them.
	PaidHolds  int   `json:"paid_holds"`
	GrossMinor int64 `json:"gross_minor"`
	FeesMinor  int64 `json:"fees_minor"`
	// RefundsMinor is what was paid back in the period, FeesBackMinor the
	// part of it that came out of the fee.
	RefundsMinor  int64 `json:"refunds_minor"`
	FeesBackMinor int64 `json:"fees_back_minor"`
	// Net is the creator's credit: gross less fees less refunds plus the
	// fees given back.
	Net int64 `json:"net_minor"`
	// PayoutsMinor is what payouts started in the period carried of this
	// drop (returned payouts excluded).
	PayoutsMinor int64 `json:"payouts_minor"`
}

// Statement is a creator's earnings over a period, per drop.
type Statement struct {
	CreatorID string      `json:"creator_id"`
	Currency  string      `json:"currency"`
	From      time.Time   `json:"from"`
	To        time.Time   `json:"to"`
	Drops     []DropMoney `json:"drops"`
	Totals    DropMoney   `json:"totals"`
	Payouts   []Payout    `json:"payouts"`
}

// dropNets reads the books for one creator's drops in one currency, over
// [from, to) (zero bounds: open), per drop in the order first paid.
func (s *Service) dropNets(ctx context.Context, creator, currency string, from, to time.Time) ([]DropMoney, error) {
	ms, err := s.books.Movements(ctx, "")
	if err != nil {
		return nil, err
	}
	holds := map[string]Hold{}
	drops := map[string]*Drop{}
	byDrop := map[string]*DropMoney{}
	var order []string
	acct := CreatorAccount(creator)
	for _, m := range ms {
		if m.HoldID == "" || (m.Kind != MovePay && m.Kind != MoveRefund) {
			continue
		}
		if (!from.IsZero() && m.At.Before(from)) || (!to.IsZero() && !m.At.Before(to)) {
			continue
		}
		h, ok := holds[m.HoldID]
		if !ok {
			if h, err = s.books.Hold(ctx, m.HoldID); err != nil {
				return nil, err
			}
			holds[m.HoldID] = h
		}
		if h.Currency != currency {
			continue
		}
		d, ok := drops[h.DropID]
		if !ok {
			if d, err = s.ledger.Drop(ctx, h.DropID); err != nil {
				return nil, err
			}
			drops[h.DropID] = d
		}
		if d.Creator() != creator {
			continue
		}
		dm := byDrop[d.ID]
		if dm == nil {
			dm = &DropMoney{DropID: d.ID, SKU: d.SKU, Title: d.Title, LimitedRunID: d.LimitedRunID, Currency: currency}
			byDrop[d.ID] = dm
			order = append(order, d.ID)
		}
		var toCreator, toFee int64
		for _, p := range m.Postings {
			if p.Currency != currency {
				continue
			}
			switch p.Account {
			case acct:
				toCreator += p.Amount
			case AccountPlatformFee:
				toFee += p.Amount
			}
		}
		switch {
		case m.Kind == MovePay:
			dm.PaidHolds++
			dm.GrossMinor += toCreator + toFee
			dm.FeesMinor += toFee
		case strings.HasPrefix(m.Key, "refund:"):
			// A refund of a paid hold (the owed-back money of a late
			// payment never reached the creator and is not theirs).
			dm.RefundsMinor += -(toCreator + toFee)
			dm.FeesBackMinor += -toFee
		}
		dm.Net += toCreator
	}
	out := make([]DropMoney, 0, len(order))
	for _, id := range order {
		out = append(out, *byDrop[id])
	}
	return out, nil
}

// Statement itemises a creator's drops over [from, to): paid holds, fees,
// refunds, net and payouts.
func (s *Service) Statement(ctx context.Context, payouts PayoutBooks, creator, currency string, from, to time.Time) (Statement, error) {
	if s.books == nil {
		return Statement{}, errNoBooks
	}
	ds, err := s.dropNets(ctx, creator, currency, from, to)
	if err != nil {
		return Statement{}, err
	}
	st := Statement{CreatorID: creator, Currency: currency, From: from.UTC(), To: to.UTC(), Payouts: []Payout{}}
	idx := map[string]int{}
	for i, d := range ds {
		idx[d.DropID] = i
	}
	if payouts != nil {
		ps, err := payouts.Payouts(ctx, PayoutFilter{CreatorID: creator})
		if err != nil {
			return Statement{}, err
		}
		for _, po := range ps {
			if po.Currency != currency || po.CreatedAt.Before(from) || !po.CreatedAt.Before(to) {
				continue
			}
			st.Payouts = append(st.Payouts, po)
			if po.State == PayoutReturned {
				continue
			}
			for _, l := range po.Lines {
				i, ok := idx[l.DropID]
				if !ok {
					ds = append(ds, DropMoney{DropID: l.DropID, SKU: l.SKU, LimitedRunID: l.LimitedRunID, Currency: currency})
					i = len(ds) - 1
					idx[l.DropID] = i
				}
				ds[i].PayoutsMinor += l.AmountMinor
			}
		}
	}
	t := DropMoney{DropID: "total", Currency: currency}
	for _, d := range ds {
		t.PaidHolds += d.PaidHolds
		t.GrossMinor += d.GrossMinor
		t.FeesMinor += d.FeesMinor
		t.RefundsMinor += d.RefundsMinor
		t.FeesBackMinor += d.FeesBackMinor
		t.Net += d.Net
		t.PayoutsMinor += d.PayoutsMinor
	}
	st.Drops, st.Totals = ds, t
	if st.Drops == nil {
		st.Drops = []DropMoney{}
	}
	return st, nil
}

// CreatorBalance is a creator's money at a glance.
type CreatorBalance struct {
	CreatorID string `json:"creator_id"`
	Currency  string `json:"currency"`
	// Available is credited and not yet in a payout.
	Available int64 `json:"available_minor"`
	// Pending is what awaiting holds would credit if paid (their amount
	// less the creator's fee today).
	Pending   int64 `json:"pending_minor"`
	InTransit int64 `json:"in_transit_minor"`
	PaidOut   int64 `json:"paid_out_minor"`
}

// CreatorBalances is every creator's balance per currency: the creators
// named (creator id to currency), and any the books or holds know of.
func (s *Service) CreatorBalances(ctx context.Context, payouts PayoutBooks, named map[string]string) ([]CreatorBalance, error) {
	if s.books == nil {
		return nil, errNoBooks
	}
	ms, err := s.books.Movements(ctx, "")
	if err != nil {
		return nil, err
	}
	type key struct{ creator, currency string }
	bal := map[key]*CreatorBalance{}
	get := func(c, cur string) *CreatorBalance {
		k := key{c, cur}
		if bal[k] == nil {
			bal[k] = &CreatorBalance{CreatorID: c, Currency: cur}
		}
		return bal[k]
	}
	for _, m := range ms {
		for _, p := range m.Postings {
			if c, ok := strings.CutPrefix(p.Account, AccountCreator+":"); ok {
				get(c, p.Currency).Available += p.Amount
			} else if c, ok := strings.CutPrefix(p.Account, AccountCreatorTransit+":"); ok {
				get(c, p.Currency).InTransit += p.Amount
			}
		}
	}
	hs, err := s.books.Holds(ctx, HoldFilter{State: HoldAwaiting})
	if err != nil {
		return nil, err
	}
	drops := map[string]*Drop{}
	for _, h := range hs {
		d, ok := drops[h.DropID]
		if !ok {
			if d, err = s.ledger.Drop(ctx, h.DropID); err != nil {
				return nil, err
			}
			drops[h.DropID] = d
		}
		get(d.Creator(), h.Currency).Pending += h.AmountMinor - s.FeeFor(d.Creator()).Of(h.AmountMinor)
	}
	if payouts != nil {
		ps, err := payouts.Payouts(ctx, PayoutFilter{State: PayoutPaid})
		if err != nil {
			return nil, err
		}
		for _, po := range ps {
			get(po.CreatorID, po.Currency).PaidOut += po.AmountMinor
		}
	}
	for c, cur := range named {
		get(c, cur)
	}
	out := make([]CreatorBalance, 0, len(bal))
	for _, b := range bal {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatorID != out[j].CreatorID {
			return out[i].CreatorID < out[j].CreatorID
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}
