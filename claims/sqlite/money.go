package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.Books = (*Ledger)(nil)

const moneySchema = `
CREATE TABLE IF NOT EXISTS movements (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	key TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	hold_id TEXT NOT NULL,
	at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS movements_by_hold ON movements (hold_id) WHERE hold_id <> '';
CREATE TABLE IF NOT EXISTS postings (
	movement INTEGER NOT NULL REFERENCES movements (seq),
	account TEXT NOT NULL,
	currency TEXT NOT NULL,
	amount INTEGER NOT NULL CHECK (amount <> 0)
);
CREATE INDEX IF NOT EXISTS postings_by_movement ON postings (movement);
CREATE TABLE IF NOT EXISTS balances (
	account TEXT NOT NULL,
	currency TEXT NOT NULL,
	balance INTEGER NOT NULL,
	nonneg INTEGER NOT NULL,
	PRIMARY KEY (account, currency),
	CONSTRAINT balances_nonneg CHECK (nonneg = 0 OR balance >= 0)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
	id TEXT PRIMARY KEY,
	drop_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	user_id TEXT NOT NULL,
	unit INTEGER NOT NULL,
	amount_minor INTEGER NOT NULL,
	currency TEXT NOT NULL,
	state TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	deadline INTEGER NOT NULL,
	settled_at INTEGER NOT NULL DEFAULT 0,
	passed_from TEXT NOT NULL DEFAULT '',
	passed_to TEXT NOT NULL DEFAULT '',
	method TEXT NOT NULL DEFAULT '',
	redeemed_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_by_drop ON holds (drop_id, seq);
CREATE INDEX IF NOT EXISTS holds_awaiting ON holds (deadline) WHERE state = 'awaiting';
`

// migrateMoney adds the books and the drop's pay window to a ledger made
// before payments existed.
func migrateMoney(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, moneySchema); err != nil {
		return err
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info('drops') WHERE name = 'pay_window_ns'").Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := db.ExecContext(ctx, `ALTER TABLE drops ADD COLUMN pay_window_ns INTEGER NOT NULL DEFAULT 0;
			ALTER TABLE drops ADD COLUMN pay_methods TEXT NOT NULL DEFAULT ''`); err != nil {
			return err
		}
	}
	return nil
}

func nonneg(account string) int {
	if claims.NonNegative(account) {
		return 1
	}
	return 0
}

// post applies m inside tx; false when its key is already in the books.
func post(ctx context.Context, tx *sql.Tx, m *claims.Movement) (bool, error) {
	if err := m.Validate(); err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, "INSERT INTO movements (key, kind, hold_id, at) VALUES (?,?,?,?) ON CONFLICT (key) DO NOTHING",
		m.Key, m.Kind, m.HoldID, ns(m.At))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	id, err := res.LastInsertId()
	if err != nil {
		return false, err
	}
	for _, p := range m.Postings {
		if _, err := tx.ExecContext(ctx, "INSERT INTO postings (movement, account, currency, amount) VALUES (?,?,?,?)",
			id, p.Account, p.Currency, p.Amount); err != nil {
			return false, err
		}
		if claims.NonNegative(p.Account) && p.Amount < 0 {
			// An upsert would check the proposed row (a negative balance)
			// before finding the existing one: debit by UPDATE, so the
			// CHECK sees the real new balance.
			res, err := tx.ExecContext(ctx, "UPDATE balances SET balance = balance + ? WHERE account = ? AND currency = ?", p.Amount, p.Account, p.Currency)
			if err != nil {
				if strings.Contains(err.Error(), "CHECK constraint failed") {
					return false, fmt.Errorf("%s: %w", p.Account, claims.ErrInsufficientFunds)
				}
				return false, err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return false, fmt.Errorf("%s: %w", p.Account, claims.ErrInsufficientFunds)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO balances (account, currency, balance, nonneg) VALUES (?,?,?,?)
			ON CONFLICT (account, currency) DO UPDATE SET balance = balance + excluded.balance`,
			p.Account, p.Currency, p.Amount, nonneg(p.Account)); err != nil {
			return false, err
		}
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
	if err := m.Validate(); err != nil {
		return false, err
	}
	var applied bool
	err := l.submit(ctx, len(m.Postings), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		applied, err = post(ctx, tx, &m)
		return err
	})
	return applied, err
}

// Balance is an account's balance.
func (l *Ledger) Balance(ctx context.Context, account, currency string) (int64, error) {
	var b int64
	err := l.read.QueryRowContext(ctx, "SELECT balance FROM balances WHERE account = ? AND currency = ?", account, currency).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		b, err = 0, nil
	}
	return durable(ctx, l, b, err)
}

// Movements lists movements in the order applied.
func (l *Ledger) Movements(ctx context.Context, holdID string) ([]claims.Movement, error) {
	ms, err := movements(ctx, l.read, holdID)
	return durable(ctx, l, ms, err)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func movements(ctx context.Context, db querier, holdID string) ([]claims.Movement, error) {
	q := `SELECT m.seq, m.key, m.kind, m.hold_id, m.at, p.account, p.currency, p.amount
		FROM movements m JOIN postings p ON p.movement = m.seq`
	var args []any
	if holdID != "" {
		q += " WHERE m.hold_id = ?"
		args = append(args, holdID)
	}
	rows, err := db.QueryContext(ctx, q+" ORDER BY m.seq, p.rowid", args...)
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

func scanHold(s scanner) (claims.Hold, error) {
	var h claims.Hold
	var state string
	var created, deadline, settled, redeemed int64
	err := s.Scan(&h.ID, &h.DropID, &h.Seq, &h.UserID, &h.Unit, &h.AmountMinor, &h.Currency, &state, &created, &deadline,
		&settled, &h.PassedFrom, &h.PassedTo, &h.Method, &redeemed)
	if errors.Is(err, sql.ErrNoRows) {
		return h, claims.ErrHoldNotFound
	}
	h.State = claims.HoldState(state)
	h.CreatedAt, h.Deadline, h.SettledAt, h.Redeemed = fromNS(created), fromNS(deadline), fromNS(settled), fromNS(redeemed)
	return h, err
}

// Hold returns one hold.
func (l *Ledger) Hold(ctx context.Context, id string) (claims.Hold, error) {
	h, err := scanHold(l.read.QueryRowContext(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = ?", id))
	return durable(ctx, l, h, err)
}

// Holds lists holds by drop and arrival order.
func (l *Ledger) Holds(ctx context.Context, f claims.HoldFilter) ([]claims.Hold, error) {
	hs, err := l.holds(ctx, f)
	return durable(ctx, l, hs, err)
}

func (l *Ledger) holds(ctx context.Context, f claims.HoldFilter) ([]claims.Hold, error) {
	q := "SELECT " + holdColumns + " FROM holds WHERE 1=1"
	var args []any
	if f.DropID != "" {
		q += " AND drop_id = ?"
		args = append(args, f.DropID)
	}
	if f.UserID != "" {
		q += " AND user_id = ?"
		args = append(args, f.UserID)
	}
	if f.State != "" {
		q += " AND state = ?"
		args = append(args, string(f.State))
	}
	rows, err := l.read.QueryContext(ctx, q+" ORDER BY drop_id, seq", args...)
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

var insertHoldSQL = func() map[int]string {
	m := map[int]string{}
	row := "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
	for _, n := range []int{1, insertChunk} {
		m[n] = "INSERT INTO holds (" + holdColumns + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
	}
	return m
}()

func holdArgs(args []any, h *claims.Hold) []any {
	return append(args, h.ID, h.DropID, h.Seq, h.UserID, h.Unit, h.AmountMinor, h.Currency, string(h.State), ns(h.CreatedAt), ns(h.Deadline),
		ns(h.SettledAt), h.PassedFrom, h.PassedTo, h.Method, ns(h.Redeemed))
}

// PayHold records a hold paid, with its movement, in one transaction.
func (l *Ledger) PayHold(ctx context.Context, id, method string, m claims.Movement, at time.Time) (claims.Hold, bool, error) {
	if err := m.Validate(); err != nil {
		return claims.Hold{}, false, err
	}
	var h claims.Hold
	var applied bool
	err := l.submit(ctx, len(m.Postings), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		h, err = scanHold(tx.QueryRowContext(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = ?", id))
		if err != nil {
			return err
		}
		var seen int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM movements WHERE key = ?", m.Key).Scan(&seen); err != nil {
			return err
		}
		if seen > 0 {
			return nil // a replay: the books already have it
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
		if _, err := tx.ExecContext(ctx, "UPDATE holds SET state = 'paid', settled_at = ?, method = ? WHERE id = ?", ns(at), method, id); err != nil {
			return err
		}
		h.State, h.SettledAt, h.Method = claims.HoldPaid, fromNS(ns(at)), method
		return l.holdEvent(ctx, tx, claims.EventHoldPaid, h, at)
	})
	return h, applied, err
}

// PostRefund posts a refund of a paid hold on the condition that the
// hold's refunds total prior and stay within its amount. The ledger's one
// writer serializes it with every other write.
func (l *Ledger) PostRefund(ctx context.Context, m claims.Movement, prior int64) (bool, error) {
	if err := m.Validate(); err != nil {
		return false, err
	}
	var applied bool
	err := l.submit(ctx, len(m.Postings), func(ctx context.Context, tx *sql.Tx) error {
		h, err := scanHold(tx.QueryRowContext(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = ?", m.HoldID))
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

// PassHolds ends holds and hands their units on, in one transaction. Each
// pass is checked by reads before it writes, so a refused pass writes
// nothing; a write that fails after its checks refuses the whole call.
func (l *Ledger) PassHolds(ctx context.Context, passes []claims.Pass) []error {
	errs := make([]error, len(passes))
	err := l.submit(ctx, len(passes), func(ctx context.Context, tx *sql.Tx) error {
		ps, err := l.preparePass(ctx, tx)
		if err != nil {
			return err
		}
		defer ps.close()
		for i := range passes {
			if i > 0 && errs[i-1] != nil {
				errs[i] = fmt.Errorf("hold %s: %w", passes[i].HoldID, claims.ErrPassNotTried)
				continue
			}
			refused, err := ps.pass(ctx, &passes[i])
			if err != nil {
				return err
			}
			errs[i] = refused
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// passStmts are the statements of a pass, prepared once per call: parsing
// them cost more than running them when 10,000 holds fall due at once.
type passStmts struct {
	hold, end, passed, won, unwon, insert, drop, event *sql.Stmt
	holder                                             claims.Pseudonym
	drops                                              map[string]claims.EventDrop
}

func (l *Ledger) preparePass(ctx context.Context, tx *sql.Tx) (*passStmts, error) {
	ps := &passStmts{holder: l.holder, drops: map[string]claims.EventDrop{}}
	for _, q := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&ps.hold, "SELECT " + holdColumns + " FROM holds WHERE id = ?"},
		{&ps.end, `UPDATE holds SET state = ?, settled_at = ?, passed_to = ?
			WHERE id = ? AND state = 'awaiting' AND (? OR deadline <= ?) RETURNING drop_id, seq, user_id, unit, amount_minor, currency, passed_from`},
		{&ps.passed, "UPDATE entries SET outcome = ?, unit = ? WHERE drop_id = ? AND seq = ? AND outcome = ?"},
		{&ps.won, "UPDATE entries SET outcome = ?, unit = ? WHERE drop_id = ? AND seq = ? AND user_id = ? AND outcome = ?"},
		{&ps.unwon, "UPDATE entries SET outcome = ?, unit = ? WHERE drop_id = ? AND seq = ?"},
		{&ps.insert, "INSERT INTO holds (" + holdColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"},
		{&ps.drop, "SELECT channel, sku, limited_run_id, creator_id FROM drops WHERE id = ?"},
		{&ps.event, `INSERT INTO outbox (event_id, kind, drop_id, channel, created_at, body)
			VALUES (?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING`},
	} {
		st, err := tx.PrepareContext(ctx, q.sql)
		if err != nil {
			ps.close()
			return nil, err
		}
		*q.dst = st
	}
	return ps, nil
}

func (ps *passStmts) close() {
	for _, st := range []*sql.Stmt{ps.hold, ps.end, ps.passed, ps.won, ps.unwon, ps.insert, ps.drop, ps.event} {
		if st != nil {
			st.Close()
		}
	}
}

// pass returns the reason a pass is refused (nothing written), or an
// error that fails the whole call. The happy path is four conditional
// statements; a refusal undoes what it wrote and then reads why.
func (ps *passStmts) pass(ctx context.Context, p *claims.Pass) (refused, err error) {
	if p.State != claims.HoldExpired && p.State != claims.HoldReleased {
		return fmt.Errorf("pass to state %q", p.State), nil
	}
	n := p.Next
	to := ""
	if n != nil {
		if n.PassedFrom != p.HoldID || n.State != claims.HoldAwaiting {
			return fmt.Errorf("next hold %s does not follow %s", n.ID, p.HoldID), nil
		}
		res, err := ps.won.ExecContext(ctx, claims.OutcomeWon, n.Unit, n.DropID, n.Seq, n.UserID, claims.OutcomeLost)
		if err != nil {
			return nil, uniqueErr(err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return fmt.Errorf("entry %s#%d is no longer waiting: %w", n.DropID, n.Seq, claims.ErrHoldSettled), nil
		}
		to = n.ID
	}
	var dropID string
	var seq int64
	ended := claims.Hold{ID: p.HoldID, State: p.State, PassedTo: to}
	err = ps.end.QueryRowContext(ctx, string(p.State), ns(p.At), to, p.HoldID, p.State == claims.HoldReleased, ns(p.At)).
		Scan(&dropID, &seq, &ended.UserID, &ended.Unit, &ended.AmountMinor, &ended.Currency, &ended.PassedFrom)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && n != nil && dropID != n.DropID) {
		if n != nil {
			if _, err := ps.unwon.ExecContext(ctx, claims.OutcomeLost, -n.Seq, n.DropID, n.Seq); err != nil {
				return nil, err
			}
		}
		if err == nil {
			return nil, fmt.Errorf("next hold %s is of another drop than %s", n.ID, p.HoldID)
		}
		h, err := scanHold(ps.hold.QueryRowContext(ctx, p.HoldID))
		switch {
		case err != nil:
			return err, nil
		case h.State != claims.HoldAwaiting:
			return fmt.Errorf("hold %s is %s: %w", h.ID, h.State, claims.ErrHoldSettled), nil
		}
		return fmt.Errorf("hold %s is not due until %s: %w", h.ID, h.Deadline, claims.ErrHoldSettled), nil
	}
	if err != nil {
		return nil, err
	}
	if res, err := ps.passed.ExecContext(ctx, claims.OutcomePassed, -seq, dropID, seq, claims.OutcomeWon); err != nil {
		return nil, err
	} else if k, _ := res.RowsAffected(); k != 1 {
		return nil, fmt.Errorf("entry %s#%d of hold %s is not a win", dropID, seq, p.HoldID)
	}
	ended.DropID, ended.Seq = dropID, seq
	kind := claims.EventHoldExpired
	if p.State == claims.HoldReleased {
		kind = claims.EventHoldPassed
	}
	if err := ps.report(ctx, kind, ended, p.At); err != nil {
		return nil, err
	}
	if n == nil {
		return nil, nil
	}
	if _, err = ps.insert.ExecContext(ctx, n.ID, n.DropID, n.Seq, n.UserID, n.Unit, n.AmountMinor, n.Currency, string(n.State), ns(n.CreatedAt), ns(n.Deadline),
		ns(n.SettledAt), n.PassedFrom, n.PassedTo, n.Method, ns(n.Redeemed)); err != nil {
		return nil, err
	}
	return nil, ps.report(ctx, claims.EventHoldWon, *n, p.At)
}

// report writes a pass's event to the outbox.
func (ps *passStmts) report(ctx context.Context, kind string, h claims.Hold, at time.Time) error {
	d, ok := ps.drops[h.DropID]
	if !ok {
		d.ID = h.DropID
		if err := ps.drop.QueryRowContext(ctx, h.DropID).Scan(&d.Channel, &d.SKU, &d.LimitedRunID, &d.CreatorID); err != nil {
			return fmt.Errorf("drop %s of an event: %w", h.DropID, err)
		}
		ps.drops[h.DropID] = d
	}
	ev := claims.HoldOutboxEvent(kind, d, h, ps.holder, at)
	_, err := ps.event.ExecContext(ctx, ev.ID, ev.Kind, ev.DropID, ev.Channel, ns(ev.CreatedAt), string(ev.Body))
	return err
}

// RedeemHold marks a paid hold picked up, once.
func (l *Ledger) RedeemHold(ctx context.Context, id string, at time.Time) (claims.Hold, error) {
	var h claims.Hold
	err := l.submit(ctx, 1, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		h, err = scanHold(tx.QueryRowContext(ctx, "SELECT "+holdColumns+" FROM holds WHERE id = ?", id))
		switch {
		case err != nil:
			return err
		case h.State != claims.HoldPaid:
			return fmt.Errorf("hold %s is %s: %w", id, h.State, claims.ErrHoldSettled)
		case !h.Redeemed.IsZero():
			return claims.ErrTokenUsed
		}
		if _, err := tx.ExecContext(ctx, "UPDATE holds SET redeemed_at = ? WHERE id = ? AND redeemed_at = 0", ns(at), id); err != nil {
			return err
		}
		h.Redeemed = fromNS(ns(at))
		return l.holdEvent(ctx, tx, claims.EventPickupRedeemed, h, at)
	})
	return h, err
}
