package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.PayoutBooks = (*Ledger)(nil)

const payoutColumns = "id, creator_id, currency, amount_minor, state, provider, destination, reference, note, created_at, updated_at, lines"

func scanPayout(row pgx.Row) (claims.Payout, error) {
	var p claims.Payout
	var state string
	var lines []byte
	var created, updated int64
	err := row.Scan(&p.ID, &p.CreatorID, &p.Currency, &p.AmountMinor, &state, &p.Provider, &p.Destination, &p.Reference, &p.Note,
		&created, &updated, &lines)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, claims.ErrPayoutNotFound
	}
	if err != nil {
		return p, err
	}
	p.State = claims.PayoutState(state)
	p.CreatedAt, p.UpdatedAt = fromNS(created), fromNS(updated)
	if err := json.Unmarshal(lines, &p.Lines); err != nil {
		return p, fmt.Errorf("payout %s: lines: %w", p.ID, err)
	}
	return p, nil
}

// CreatePayout records a pending payout.
func (l *Ledger) CreatePayout(ctx context.Context, p claims.Payout) error {
	if err := l.check(); err != nil {
		return err
	}
	if p.ID == "" || p.AmountMinor <= 0 || p.State != claims.PayoutPending {
		return fmt.Errorf("payout %q: a new payout needs an id, an amount above 0 and state pending", p.ID)
	}
	lines, err := json.Marshal(p.Lines)
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, "INSERT INTO payouts ("+payoutColumns+") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
		p.ID, p.CreatorID, p.Currency, p.AmountMinor, string(p.State), p.Provider, p.Destination, p.Reference, p.Note,
		ns(p.CreatedAt), ns(p.UpdatedAt), lines)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("payout %s: %w", p.ID, claims.ErrPayoutExists)
	}
	return err
}

// payoutFor locks a payout's row for the transaction.
func payoutFor(ctx context.Context, tx pgx.Tx, id string) (claims.Payout, error) {
	return scanPayout(tx.QueryRow(ctx, "SELECT "+payoutColumns+" FROM payouts WHERE id = $1 FOR UPDATE", id))
}

// TransitPayout moves a pending payout's money in transit.
func (l *Ledger) TransitPayout(ctx context.Context, id string, m claims.Movement, at time.Time) (claims.Payout, error) {
	if err := l.check(); err != nil {
		return claims.Payout{}, err
	}
	if err := m.Validate(); err != nil {
		return claims.Payout{}, err
	}
	var p claims.Payout
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		if p, err = payoutFor(ctx, tx, id); err != nil {
			return err
		}
		if p.State != claims.PayoutPending {
			return fmt.Errorf("payout %s is %s: %w", id, p.State, claims.ErrPayoutState)
		}
		// The creator's balance row is locked, so a refund racing this
		// payout waits and cannot take the balance below it.
		var bal int64
		err = tx.QueryRow(ctx, "SELECT balance FROM balances WHERE account = $1 AND currency = $2 FOR UPDATE",
			claims.CreatorAccount(p.CreatorID), p.Currency).Scan(&bal)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if bal < p.AmountMinor {
			return fmt.Errorf("payout %s of %d, balance %d: %w", id, p.AmountMinor, bal, claims.ErrInsufficientFunds)
		}
		if _, err := post(ctx, tx, &m); err != nil {
			return err
		}
		p.State, p.UpdatedAt = claims.PayoutInTransit, fromNS(ns(at))
		_, err = tx.Exec(ctx, "UPDATE payouts SET state = $1, updated_at = $2 WHERE id = $3", string(p.State), ns(at), id)
		return err
	})
	return p, err
}

// SettlePayout ends a payout paid or returned.
func (l *Ledger) SettlePayout(ctx context.Context, id string, state claims.PayoutState, reference, note string, m claims.Movement, at time.Time) (claims.Payout, error) {
	if err := l.check(); err != nil {
		return claims.Payout{}, err
	}
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
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		if p, err = payoutFor(ctx, tx, id); err != nil {
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
		_, err = tx.Exec(ctx, "UPDATE payouts SET state = $1, reference = $2, note = $3, updated_at = $4 WHERE id = $5",
			string(state), reference, note, ns(at), id)
		return err
	})
	return p, err
}

// Payout returns one payout.
func (l *Ledger) Payout(ctx context.Context, id string) (claims.Payout, error) {
	if err := l.check(); err != nil {
		return claims.Payout{}, err
	}
	return scanPayout(l.pool.QueryRow(ctx, "SELECT "+payoutColumns+" FROM payouts WHERE id = $1", id))
}

// Payouts lists payouts oldest first.
func (l *Ledger) Payouts(ctx context.Context, f claims.PayoutFilter) ([]claims.Payout, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, "SELECT "+payoutColumns+` FROM payouts
		WHERE ($1 = '' OR creator_id = $1) AND ($2 = '' OR state = $2) ORDER BY created_at, id`, f.CreatorID, string(f.State))
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
