package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.Outbox = (*Ledger)(nil)

// lockOutbox is held, per transaction, by every writer of outbox rows.
// A sequence hands out numbers at insert, not at commit: without the lock
// a transaction holding seq 7 could commit after another's 8 had been
// read, and a reader tailing by seq would never see 7. Only events take
// it — the claims of a free drop write none.
const lockOutbox = 0x6d64_0004

// writeEvents adds events to the outbox inside tx, after taking the
// outbox lock (until commit).
func writeEvents(ctx context.Context, tx pgx.Tx, evs ...claims.OutboxEvent) error {
	if len(evs) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", lockOutbox); err != nil {
		return fmt.Errorf("outbox lock: %w", err)
	}
	b := &pgx.Batch{}
	for _, ev := range evs {
		b.Queue(`INSERT INTO outbox (event_id, kind, drop_id, channel, created_at, body) VALUES ($1,$2,$3,$4,$5,$6)
			ON CONFLICT (event_id) DO NOTHING`, ev.ID, ev.Kind, ev.DropID, ev.Channel, ns(ev.CreatedAt), string(ev.Body))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// eventDrop reads what events say about a drop, inside tx.
func eventDrop(ctx context.Context, tx pgx.Tx, dropID string) (claims.EventDrop, error) {
	d := claims.EventDrop{ID: dropID}
	err := tx.QueryRow(ctx, "SELECT channel, sku, limited_run_id, creator_id FROM drops WHERE id = $1", dropID).
		Scan(&d.Channel, &d.SKU, &d.LimitedRunID, &d.CreatorID)
	if err != nil {
		return d, fmt.Errorf("drop %s of an event: %w", dropID, err)
	}
	return d, nil
}

// holdEvents writes events about holds of one drop inside tx.
func (l *Ledger) holdEvents(ctx context.Context, tx pgx.Tx, dropID string, at time.Time, kinds []string, hs []claims.Hold) error {
	d, err := eventDrop(ctx, tx, dropID)
	if err != nil {
		return err
	}
	evs := make([]claims.OutboxEvent, len(hs))
	for i := range hs {
		evs[i] = claims.HoldOutboxEvent(kinds[i], d, hs[i], l.holder, at)
	}
	return writeEvents(ctx, tx, evs...)
}

// OutboxAfter lists committed events after seq.
func (l *Ledger) OutboxAfter(ctx context.Context, after int64, limit int) ([]claims.OutboxEvent, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	return outboxAfter(ctx, l.pool, after, limit)
}

// outboxAfter reads up to limit events after seq, in seq order, on q (the
// pool, or the relay's transaction).
func outboxAfter(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, after int64, limit int) ([]claims.OutboxEvent, error) {
	rows, err := q.Query(ctx, `SELECT seq, event_id, kind, drop_id, channel, created_at, body FROM outbox
		WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (claims.OutboxEvent, error) {
		var ev claims.OutboxEvent
		var created int64
		var body string
		err := r.Scan(&ev.Seq, &ev.ID, &ev.Kind, &ev.DropID, &ev.Channel, &created, &body)
		ev.CreatedAt, ev.Body = fromNS(created), []byte(body)
		return ev, err
	})
}

var _ claims.OutboxRelay = (*Ledger)(nil)

// RelayOutbox publishes, in order, the outbox events past the relayed
// position and moves the position past those publish accepted, in one
// transaction holding the position row: while another replica relays it
// returns at once with nothing done. A crash mid-round rolls the position
// back, so the next round publishes those events again (with their ids,
// for the bus to drop the copies).
func (l *Ledger) RelayOutbox(ctx context.Context, limit int, publish func(claims.OutboxEvent) error) (int, error) {
	if err := l.check(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		limit = 100
	}
	n := 0
	var pubErr error
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var at int64
		err := tx.QueryRow(ctx, "SELECT seq FROM outbox_relay WHERE name = 'bus' FOR UPDATE SKIP LOCKED").Scan(&at)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another replica relays
		}
		if err != nil {
			return fmt.Errorf("outbox relay position: %w", err)
		}
		evs, err := outboxAfter(ctx, tx, at, limit)
		if err != nil {
			return err
		}
		last := at
		for _, ev := range evs {
			if pubErr = publish(ev); pubErr != nil {
				break
			}
			last, n = ev.Seq, n+1
		}
		if last == at {
			return nil
		}
		_, err = tx.Exec(ctx, "UPDATE outbox_relay SET seq = $1 WHERE name = 'bus'", last)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, pubErr
}

var _ claims.WinRelay = (*Ledger)(nil)

// winRelayRecent is how long after its close a drop's wins are still
// relayed.
const winRelayRecent = time.Hour

// RelayWins publishes, per live or recently closed drop, the wins past its
// relayed seq, in seq order, stopping at the drop's first entry not
// decided yet (a raffle's, until the draw), in one transaction holding the
// relay's lock row: while another replica relays it returns at once. A win
// handed on from an ended hold is skipped (the bus reports it as
// hold.passed, from the outbox). It returns how many entries it moved past.
func (l *Ledger) RelayWins(ctx context.Context, limit int, publish func(claims.WinEvent) error) (int, error) {
	if err := l.check(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		limit = 100
	}
	n := 0
	var pubErr error
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var lock int64
		err := tx.QueryRow(ctx, "SELECT seq FROM outbox_relay WHERE name = 'wins' FOR UPDATE SKIP LOCKED").Scan(&lock)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another replica relays
		}
		if err != nil {
			return fmt.Errorf("win relay lock: %w", err)
		}
		type drop struct {
			id, channel string
			remaining   int
			at          int64
		}
		rows, err := tx.Query(ctx, `SELECT d.id, d.channel, d.remaining, COALESCE(r.seq, 0) FROM drops d LEFT JOIN win_relay r ON r.drop_id = d.id
			WHERE d.state IN `+liveStates+` OR d.closes_at > $1`, ns(time.Now().Add(-winRelayRecent)))
		if err != nil {
			return err
		}
		drops, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (drop, error) {
			var d drop
			return d, r.Scan(&d.id, &d.channel, &d.remaining, &d.at)
		})
		if err != nil {
			return err
		}
		for _, d := range drops {
			rows, err := tx.Query(ctx, `SELECT e.seq, e.user_id, e.login, e.unit, e.outcome, e.decided_at, COALESCE(h.passed_from, '')
				FROM entries e LEFT JOIN holds h ON h.drop_id = e.drop_id AND h.seq = e.seq
				WHERE e.drop_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3`, d.id, d.at, limit)
			if err != nil {
				return err
			}
			type entry struct {
				w             claims.WinEvent
				outcome, from string
			}
			es, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
				var e entry
				var decided int64
				err := r.Scan(&e.w.Seq, &e.w.UserID, &e.w.Login, &e.w.Unit, &e.outcome, &decided, &e.from)
				e.w.DropID, e.w.Channel, e.w.Remaining, e.w.DecidedAt = d.id, d.channel, d.remaining, fromNS(decided)
				return e, err
			})
			if err != nil {
				return err
			}
			last := d.at
			for _, e := range es {
				if e.outcome == claims.OutcomeEntered {
					break // undecided: its draw comes later
				}
				if (e.outcome == claims.OutcomeWon || e.outcome == claims.OutcomePassed) && e.from == "" {
					if pubErr = publish(e.w); pubErr != nil {
						break
					}
				}
				last, n = e.w.Seq, n+1
			}
			if last != d.at {
				if _, err := tx.Exec(ctx, `INSERT INTO win_relay (drop_id, seq) VALUES ($1, $2)
					ON CONFLICT (drop_id) DO UPDATE SET seq = EXCLUDED.seq`, d.id, last); err != nil {
					return err
				}
			}
			if pubErr != nil {
				return nil // keep what was published; the rest next round
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, pubErr
}
