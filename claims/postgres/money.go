package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.Books = (*Ledger)(nil)

// post applies m inside tx; false when its key is already in the books.
func post(ctx context.Context, tx pgx.Tx, m *claims.Movement) (bool, error) {
	if err := m.Validate(); err != nil {
		return false, err
	}
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO movements (key, kind, hold_id, at) VALUES ($1,$2,$3,$4)
		ON CONFLICT (key) DO NOTHING RETURNING seq`, m.Key, m.Kind, m.HoldID, ns(m.At)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b := &pgx.Batch{}
	for _, p := range m.Postings {
		b.Queue("INSERT INTO postings (movement, account, currency, amount) VALUES ($1,$2,$3,$4)", id, p.Account, p.Currency, p.Amount)
		if claims.NonNegative(p.Account) && p.Amount < 0 {
			// An upsert checks the proposed row (a negative balance)
			// before it finds the existing one: debit by UPDATE, which
			// waits for the row and checks the real new balance.
			b.Queue("UPDATE balances SET balance = balance + $1 WHERE account = $2 AND currency = $3", p.Amount, p.Account, p.Currency).
				Exec(func(ct pgconn.CommandTag) error {
					if ct.RowsAffected() != 1 {
						return fmt.Errorf("%s: %w", p.Account, claims.ErrInsufficientFunds)
					}
					return nil
				})
			continue
		}
		b.Queue(`INSERT INTO balances (account, currency, balance, nonneg) VALUES ($1,$2,$3,$4)
			ON CONFLICT (account, currency) DO UPDATE SET balance = balances.balance + excluded.balance`,
			p.Account, p.Currency, p.Amount, claims.NonNegative(p.Account))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		var pe *pgconn.PgError
		if errors.Is(err, claims.ErrInsufficientFunds) {
			return false, err
		}
		if errors.As(err, &pe) && pe.ConstraintName == "balances_nonneg" {
			return false, fmt.Errorf("%w: %v", claims.ErrInsufficientFunds, err)
		}
		return false, err
	}
	if ev, ok := claims.PayoutOutboxEvent(*m); ok {
		if err := writeEvents(ctx, tx, ev); err != nil {
			return false, err
		}
	}
	return true, nil
}

// Post applies a balanced movement once.
func (l *Ledger) Post(ctx context.Context, m claims.Movement) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	if err := m.Validate(); err != nil {
		return false, err
	}
	var applied bool
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		applied, err = post(ctx, tx, &m)
		return err
	})
	return applied, err
}

// Balance is an account's balance.
func (l *Ledger) Balance(ctx context.Context, account, currency string) (int64, error) {
	if err := l.check(); err != nil {
		return 0, err
	}
	var b int64
	err := l.pool.QueryRow(ctx, "SELECT balance FROM balances WHERE account = $1 AND currency = $2", account, currency).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return b, err
}

// Movements lists movements in the order applied.
func (l *Ledger) Movements(ctx context.Context, holdID string) ([]claims.Movement, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return movements(ctx, l.pool, holdID)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func movements(ctx context.Context, db querier, holdID string) ([]claims.Movement, error) {
	q := `SELECT m.seq, m.key, m.kind, m.hold_id, m.at, p.account, p.currency, p.amount
		FROM movements m JOIN postings p ON p.movement = m.seq`
	var args []any
	if holdID != "" {
		q += " WHERE m.hold_id = $1"
		args = append(args, holdID)
	}
	rows, err := db.Query(ctx, q+" ORDER BY m.seq, p.id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claims.Movement
	last := int64(-1)
	for rows.Next() {
		var seq, at int64
		var m claims.Movement
		var p claims.Posting
		if err := rows.Scan(&seq, &m.Key, &m.Kind, &m.HoldID, &at, &p.Account, &p.Currency, &p.Amount); err != nil {
			return nil, err
		}
		if seq != last {
			m.At = fromNS(at)
			out = append(out, m)
			last = seq
		}
		out[len(out)-1].Postings = append(out[len(out)-1].Postings, p)
	}
	return out, rows.Err()
}

const holdColumns = `id, drop_id, seq, user_id, unit, amount_minor, currency, state, created_at, deadline, settled_at,
	passed_from, passed_to, method, redeemed_at`

func scanHold(row pgx.Row) (claims.Hold, error) {
	var h claims.Hold
	var state string
	var created, deadline, settled, redeemed int64
	err := row.Scan(&h.ID, &h.DropID, &h.Seq, &h.UserID, &h.Unit, &h.AmountMinor, &h.Currency, &state, &created, &deadline,
		&settled, &h.PassedFrom, &h.PassedTo, &h.Method, &redeemed)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, claims.ErrHoldNotFound
	}
	h.State = claims.HoldState(state)
	h.CreatedAt, h.Deadline, h.SettledAt, h.Redeemed = fromNS(created), fromNS(deadline), fromNS(settled), fromNS(redeemed)
	return h, err
}

// Hold returns one hold.
func (l *Ledger) Hold(ctx context.Context, id string) (claims.Hold, error) {
	if err := l.check(); err != nil {
		return claims.Hold{}, err
	}
	return scanHold(l.pool.QueryRow(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = $1", id))
}

// Holds lists holds by drop and arrival order.
func (l *Ledger) Holds(ctx context.Context, f claims.HoldFilter) ([]claims.Hold, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, "SELECT "+holdColumns+` FROM holds
		WHERE ($1 = '' OR drop_id = $1) AND ($2 = '' OR user_id = $2) AND ($3 = '' OR state = $3) ORDER BY drop_id, seq`,
		f.DropID, f.UserID, string(f.State))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claims.Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

const insertHoldSQL = "INSERT INTO holds (" + holdColumns + ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"

func holdArgs(h *claims.Hold) []any {
	return []any{h.ID, h.DropID, h.Seq, h.UserID, h.Unit, h.AmountMinor, h.Currency, string(h.State), ns(h.CreatedAt), ns(h.Deadline),
		ns(h.SettledAt), h.PassedFrom, h.PassedTo, h.Method, ns(h.Redeemed)}
}

// PayHold records a hold paid, with its movement, in one transaction. The
// hold row is locked first, so a payment and an expiry of one hold
// serialize and exactly one wins.
func (l *Ledger) PayHold(ctx context.Context, id, method string, m claims.Movement, at time.Time) (claims.Hold, bool, error) {
	if err := l.check(); err != nil {
		return claims.Hold{}, false, err
	}
	if err := m.Validate(); err != nil {
		return claims.Hold{}, false, err
	}
	var h claims.Hold
	var applied bool
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		h, err = scanHold(tx.QueryRow(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = $1 FOR UPDATE", id))
		if err != nil {
			return err
		}
		var seen bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM movements WHERE key = $1)", m.Key).Scan(&seen); err != nil {
			return err
		}
		if seen {
			return nil
		}
		switch {
		case h.State != claims.HoldAwaiting:
			return fmt.Errorf("hold %s is %s: %w", id, h.State, claims.ErrHoldSettled)
		case !at.Before(h.Deadline):
			return fmt.Errorf("hold %s was due at %s: %w", id, h.Deadline, claims.ErrHoldDue)
		}
		if applied, err = post(ctx, tx, &m); err != nil {
			return err
		}
		if !applied {
			return nil // a concurrent replay got there first
		}
		if _, err := tx.Exec(ctx, "UPDATE holds SET state = 'paid', settled_at = $2, method = $3 WHERE id = $1", id, ns(at), method); err != nil {
			return err
		}
		h.State, h.SettledAt, h.Method = claims.HoldPaid, fromNS(ns(at)), method
		return l.holdEvents(ctx, tx, h.DropID, at, []string{claims.EventHoldPaid}, []claims.Hold{h})
	})
	return h, applied, err
}

// PostRefund posts a refund of a paid hold on the condition that the
// hold's refunds total prior and stay within its amount. The hold row is
// locked first, so refunds of one hold on several replicas serialize and
// each sees the ones committed before it.
func (l *Ledger) PostRefund(ctx context.Context, m claims.Movement, prior int64) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	if err := m.Validate(); err != nil {
		return false, err
	}
	var applied bool
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		h, err := scanHold(tx.QueryRow(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = $1 FOR UPDATE", m.HoldID))
		if err != nil {
			return err
		}
		ms, err := movements(ctx, tx, h.ID)
		if err != nil {
			return err
		}
		for _, x := range ms {
			if x.Key == m.Key {
				return nil // a replay
			}
		}
		if err := claims.CheckRefund(h, ms, m, prior); err != nil {
			return err
		}
		applied, err = post(ctx, tx, &m)
		return err
	})
	return applied, err
}

// PassHolds ends holds and hands their units on, each pass in its own
// transaction.
func (l *Ledger) PassHolds(ctx context.Context, passes []claims.Pass) []error {
	errs := make([]error, len(passes))
	if err := l.check(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i := range passes {
		if i > 0 && errs[i-1] != nil {
			errs[i] = fmt.Errorf("hold %s: %w", passes[i].HoldID, claims.ErrPassNotTried)
			continue
		}
		errs[i] = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error { return l.pass(ctx, tx, &passes[i]) })
	}
	return errs
}

func (l *Ledger) pass(ctx context.Context, tx pgx.Tx, p *claims.Pass) error {
	h, err := scanHold(tx.QueryRow(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = $1 FOR UPDATE", p.HoldID))
	if err != nil {
		return err
	}
	switch {
	case h.State != claims.HoldAwaiting:
		return fmt.Errorf("hold %s is %s: %w", h.ID, h.State, claims.ErrHoldSettled)
	case p.State == claims.HoldExpired && p.At.Before(h.Deadline):
		return fmt.Errorf("hold %s is not due until %s: %w", h.ID, h.Deadline, claims.ErrHoldSettled)
	case p.State != claims.HoldExpired && p.State != claims.HoldReleased:
		return fmt.Errorf("pass to state %q", p.State)
	}
	to := ""
	if p.Next != nil {
		to = p.Next.ID
	}
	if _, err := tx.Exec(ctx, "UPDATE holds SET state = $2, settled_at = $3, passed_to = $4 WHERE id = $1", h.ID, string(p.State), ns(p.At), to); err != nil {
		return err
	}
	ct, err := tx.Exec(ctx, "UPDATE entries SET outcome = $1 WHERE drop_id = $2 AND seq = $3 AND outcome = $4",
		claims.OutcomePassed, h.DropID, h.Seq, claims.OutcomeWon)
	if err != nil {
		return err
	}
	if ct.RowsAffected() != 1 {
		return fmt.Errorf("entry %s#%d is not a win: %w", h.DropID, h.Seq, claims.ErrHoldSettled)
	}
	kind := claims.EventHoldExpired
	if p.State == claims.HoldReleased {
		kind = claims.EventHoldPassed
	}
	h.State, h.SettledAt, h.PassedTo = p.State, p.At, to
	if p.Next == nil {
		return l.holdEvents(ctx, tx, h.DropID, p.At, []string{kind}, []claims.Hold{h})
	}
	n := p.Next
	if n.DropID != h.DropID || n.PassedFrom != h.ID || n.State != claims.HoldAwaiting {
		return fmt.Errorf("next hold %s does not follow %s", n.ID, h.ID)
	}
	ct, err = tx.Exec(ctx, `UPDATE entries SET outcome = $1, unit = $2
		WHERE drop_id = $3 AND seq = $4 AND user_id = $5 AND outcome = $6`,
		claims.OutcomeWon, n.Unit, n.DropID, n.Seq, n.UserID, claims.OutcomeLost)
	if err != nil {
		return commitErr(err)
	}
	if ct.RowsAffected() != 1 {
		return fmt.Errorf("entry %s#%d is no longer waiting: %w", n.DropID, n.Seq, claims.ErrHoldSettled)
	}
	if _, err = tx.Exec(ctx, insertHoldSQL, holdArgs(n)...); err != nil {
		return commitErr(err)
	}
	return l.holdEvents(ctx, tx, h.DropID, p.At, []string{kind, claims.EventHoldWon}, []claims.Hold{h, *n})
}

// RedeemHold marks a paid hold picked up, once.
func (l *Ledger) RedeemHold(ctx context.Context, id string, at time.Time) (claims.Hold, error) {
	if err := l.check(); err != nil {
		return claims.Hold{}, err
	}
	var h claims.Hold
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		h, err = scanHold(tx.QueryRow(ctx, "UPDATE holds SET redeemed_at = $2 WHERE id = $1 AND state = 'paid' AND redeemed_at = 0 RETURNING "+holdColumns, id, ns(at)))
		if err != nil {
			return err
		}
		return l.holdEvents(ctx, tx, h.DropID, at, []string{claims.EventPickupRedeemed}, []claims.Hold{h})
	})
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, claims.ErrHoldNotFound) {
		return claims.Hold{}, err
	}
	h, err = l.Hold(ctx, id)
	switch {
	case err != nil:
		return claims.Hold{}, err
	case h.State != claims.HoldPaid:
		return h, fmt.Errorf("hold %s is %s: %w", id, h.State, claims.ErrHoldSettled)
	}
	return h, claims.ErrTokenUsed
}
