package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.PayoutBooks = (*Ledger)(nil)

const payoutSchema = `
CREATE TABLE IF NOT EXISTS payouts (
	id TEXT PRIMARY KEY,
	creator_id TEXT NOT NULL,
	currency TEXT NOT NULL,
	amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
	state TEXT NOT NULL CHECK (state IN ('pending', 'in_transit', 'paid', 'returned')),
	provider TEXT NOT NULL,
	destination TEXT NOT NULL DEFAULT '',
	reference TEXT NOT NULL DEFAULT '',
	note TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	lines TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payouts_by_creator ON payouts (creator_id, created_at);
CREATE INDEX IF NOT EXISTS payouts_unfinished ON payouts (created_at) WHERE state IN ('pending', 'in_transit');
`

const payoutColumns = "id, creator_id, currency, amount_minor, state, provider, destination, reference, note, created_at, updated_at, lines"

func scanPayout(s scanner) (claims.Payout, error) {
	var p claims.Payout
	var state, lines string
	var created, updated int64
	err := s.Scan(&p.ID, &p.CreatorID, &p.Currency, &p.AmountMinor, &state, &p.Provider, &p.Destination, &p.Reference, &p.Note,
		&created, &updated, &lines)
	if errors.Is(err, sql.ErrNoRows) {
		return p, claims.ErrPayoutNotFound
	}
	if err != nil {
		return p, err
	}
	p.State = claims.PayoutState(state)
	p.CreatedAt, p.UpdatedAt = fromNS(created), fromNS(updated)
	if err := json.Unmarshal([]byte(lines), &p.Lines); err != nil {
		return p, fmt.Errorf("payout %s: lines: %w", p.ID, err)
	}
	return p, nil
}

// CreatePayout records a pending payout.
func (l *Ledger) CreatePayout(ctx context.Context, p claims.Payout) error {
	if p.ID == "" || p.AmountMinor <= 0 || p.State != claims.PayoutPending {
		return fmt.Errorf("payout %q: a new payout needs an id, an amount above 0 and state pending", p.ID)
	}
	lines, err := json.Marshal(p.Lines)
	if err != nil {
		return err
	}
	return l.submit(ctx, 1, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO payouts ("+payoutColumns+") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
			p.ID, p.CreatorID, p.Currency, p.AmountMinor, string(p.State), p.Provider, p.Destination, p.Reference, p.Note,
			ns(p.CreatedAt), ns(p.UpdatedAt), string(lines))
		if isUnique(err) {
			return fmt.Errorf("payout %s: %w", p.ID, claims.ErrPayoutExists)
		}
		return err
	})
}

func payoutIn(ctx context.Context, tx *sql.Tx, id string) (claims.Payout, error) {
	return scanPayout(tx.QueryRowContext(ctx, "SELECT "+payoutColumns+" FROM payouts WHERE id = ?", id))
}

// TransitPayout moves a pending payout's money in transit.
func (l *Ledger) TransitPayout(ctx context.Context, id string, m claims.Movement, at time.Time) (claims.Payout, error) {
	if err := m.Validate(); err != nil {
		return claims.Payout{}, err
	}
	var p claims.Payout
	err := l.submit(ctx, len(m.Postings), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if p, err = payoutIn(ctx, tx, id); err != nil {
			return err
		}
		if p.State != claims.PayoutPending {
			return fmt.Errorf("payout %s is %s: %w", id, p.State, claims.ErrPayoutState)
		}
		var bal int64
		err = tx.QueryRowContext(ctx, "SELECT balance FROM balances WHERE account = ? AND currency = ?",
			claims.CreatorAccount(p.CreatorID), p.Currency).Scan(&bal)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if bal < p.AmountMinor {
			return fmt.Errorf("payout %s of %d, balance %d: %w", id, p.AmountMinor, bal, claims.ErrInsufficientFunds)
		}
		if _, err := post(ctx, tx, &m); err != nil {
			return err
		}
		p.State, p.UpdatedAt = claims.PayoutInTransit, fromNS(ns(at))
		_, err = tx.ExecContext(ctx, "UPDATE payouts SET state = ?, updated_at = ? WHERE id = ?", string(p.State), ns(at), id)
		return err
	})
	return p, err
}

// SettlePayout ends a payout paid or returned.
func (l *Ledger) SettlePayout(ctx context.Context, id string, state claims.PayoutState, reference, note string, m claims.Movement, at time.Time) (claims.Payout, error) {
	if state != claims.PayoutPaid && state != claims.PayoutReturned {
		return claims.Payout{}, fmt.Errorf("payout %s: settle to %s: %w", id, state, claims.ErrPayoutState)
	}
	withMove := m.Key != ""
	if withMove {
		if err := m.Validate(); err != nil {
			return claims.Payout{}, err
		}
	}
	var p claims.Payout
	err := l.submit(ctx, len(m.Postings)+1, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if p, err = payoutIn(ctx, tx, id); err != nil {
			return err
		}
		switch {
		case p.State == claims.PayoutInTransit && withMove:
		case p.State == claims.PayoutPending && !withMove && state == claims.PayoutReturned:
		default:
			return fmt.Errorf("payout %s is %s: %w", id, p.State, claims.ErrPayoutState)
		}
		if withMove {
			if _, err := post(ctx, tx, &m); err != nil {
				return err
			}
		}
		p.State, p.Reference, p.Note, p.UpdatedAt = state, reference, note, fromNS(ns(at))
		_, err = tx.ExecContext(ctx, "UPDATE payouts SET state = ?, reference = ?, note = ?, updated_at = ? WHERE id = ?",
			string(state), reference, note, ns(at), id)
		return err
	})
	return p, err
}

// Payout returns one payout.
func (l *Ledger) Payout(ctx context.Context, id string) (claims.Payout, error) {
	po, err := scanPayout(l.read.QueryRowContext(ctx, "SELECT "+payoutColumns+" FROM payouts WHERE id = ?", id))
	return durable(ctx, l, po, err)
}

// Payouts lists payouts oldest first.
func (l *Ledger) Payouts(ctx context.Context, f claims.PayoutFilter) ([]claims.Payout, error) {
	ps, err := l.payouts(ctx, f)
	return durable(ctx, l, ps, err)
}

func (l *Ledger) payouts(ctx context.Context, f claims.PayoutFilter) ([]claims.Payout, error) {
	q := "SELECT " + payoutColumns + " FROM payouts WHERE 1=1"
	var args []any
	if f.CreatorID != "" {
		q += " AND creator_id = ?"
		args = append(args, f.CreatorID)
	}
	if f.State != "" {
		q += " AND state = ?"
		args = append(args, string(f.State))
	}
	rows, err := l.read.QueryContext(ctx, q+" ORDER BY created_at, id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claims.Payout
	for rows.Next() {
		p, err := scanPayout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
