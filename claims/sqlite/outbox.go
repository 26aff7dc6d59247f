package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/microdrop/microdrop/claims"
)

var _ claims.Outbox = (*Ledger)(nil)

// The outbox: events written in the transaction of the change they report.
// The single writer commits in seq order, so a reader tailing by seq
// misses nothing. Event ids are unique per fact, so a change that is
// applied once reports once.
const outboxSchema = `
CREATE TABLE IF NOT EXISTS outbox (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	drop_id TEXT NOT NULL,
	channel TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	body TEXT NOT NULL
);
`

// writeEvents adds events to the outbox inside tx.
func writeEvents(ctx context.Context, tx *sql.Tx, evs ...claims.OutboxEvent) error {
	for _, ev := range evs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (event_id, kind, drop_id, channel, created_at, body)
			VALUES (?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING`,
			ev.ID, ev.Kind, ev.DropID, ev.Channel, ns(ev.CreatedAt), string(ev.Body)); err != nil {
			return fmt.Errorf("outbox %s: %w", ev.ID, err)
		}
	}
	return nil
}

// eventDrop reads what events say about a drop, inside tx.
func eventDrop(ctx context.Context, tx *sql.Tx, dropID string) (claims.EventDrop, error) {
	d := claims.EventDrop{ID: dropID}
	err := tx.QueryRowContext(ctx, "SELECT channel, sku, limited_run_id, creator_id FROM drops WHERE id = ?", dropID).
		Scan(&d.Channel, &d.SKU, &d.LimitedRunID, &d.CreatorID)
	if err != nil {
		return d, fmt.Errorf("drop %s of an event: %w", dropID, err)
	}
	return d, nil
}

// holdEvent writes the event of kind about h inside tx.
func (l *Ledger) holdEvent(ctx context.Context, tx *sql.Tx, kind string, h claims.Hold, at time.Time) error {
	d, err := eventDrop(ctx, tx, h.DropID)
	if err != nil {
		return err
	}
	return writeEvents(ctx, tx, claims.HoldOutboxEvent(kind, d, h, l.holder, at))
}

// OutboxAfter lists committed events after seq.
func (l *Ledger) OutboxAfter(ctx context.Context, after int64, limit int) ([]claims.OutboxEvent, error) {
	evs, err := l.outboxAfter(ctx, after, limit)
	return durable(ctx, l, evs, err)
}

func (l *Ledger) outboxAfter(ctx context.Context, after int64, limit int) ([]claims.OutboxEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := l.read.QueryContext(ctx, `SELECT seq, event_id, kind, drop_id, channel, created_at, body FROM outbox
		WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claims.OutboxEvent
	for rows.Next() {
		var ev claims.OutboxEvent
		var at int64
		var body string
		if err := rows.Scan(&ev.Seq, &ev.ID, &ev.Kind, &ev.DropID, &ev.Channel, &at, &body); err != nil {
			return nil, err
		}
		ev.CreatedAt, ev.Body = fromNS(at), []byte(body)
		out = append(out, ev)
	}
	return out, rows.Err()
}
