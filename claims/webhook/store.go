package webhook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/microdrop/microdrop"
)

// Endpoint is one receiver of events.
type Endpoint struct {
	ID      string `json:"id"`
	Channel string `json:"channel"` // "" for every channel, and payouts
	URL     string `json:"url"`
	// Secret signs deliveries ("whsec_" + base64). Shown once.
	Secret string   `json:"secret,omitempty"`
	Kinds  []string `json:"kinds"`
	// Fulfilment marks an endpoint that ships units.
	Fulfilment     bool      `json:"fulfilment"`
	Disabled       bool      `json:"disabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	CreatedAt      time.Time `json:"created_at"`
	// Cursor is the last outbox seq looked at for this endpoint.
	Cursor int64 `json:"cursor"`
}

// Delivery states.
const (
	Pending   = "pending"
	Delivered = "delivered"
	Failed    = "failed" // retried for RetryFor without a 2xx
)

// Delivery is one event queued for one endpoint.
type Delivery struct {
	EndpointID  string    `json:"endpoint_id"`
	Seq         int64     `json:"seq"` // the outbox seq
	EventID     string    `json:"event_id"`
	Kind        string    `json:"kind"`
	DropID      string    `json:"drop_id,omitempty"`
	Body        []byte    `json:"-"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	FirstAt     time.Time `json:"first_at,omitzero"`
	NextAt      time.Time `json:"next_at,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// Attempt is one try of a delivery, for the log.
type Attempt struct {
	EndpointID string        `json:"endpoint_id"`
	EventID    string        `json:"event_id"`
	N          int           `json:"n"`
	At         time.Time     `json:"at"`
	Status     int           `json:"status"` // 0: no answer
	Latency    time.Duration `json:"latency_ns"`
	Error      string        `json:"error,omitempty"`
}

// ErrNotFound is an unknown endpoint or delivery.
var ErrNotFound = &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such webhook endpoint or delivery"}

// Store keeps endpoints, their queues and the delivery log: in SQLite
// (webhooks.db in the data dir) for a single node, or in the Postgres
// database of a shared ledger, where every replica sees the same
// endpoints, queues and log, and one replica at a time — the holder of
// the delivery lease (Lead) — delivers.
type Store struct {
	db conn
	// owner names this replica in the delivery lease (Postgres only).
	owner string
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS webhook_endpoints (
	id TEXT PRIMARY KEY,
	channel TEXT NOT NULL,
	url TEXT NOT NULL,
	secret TEXT NOT NULL,
	kinds TEXT NOT NULL,
	fulfilment INTEGER NOT NULL,
	disabled INTEGER NOT NULL DEFAULT 0,
	disabled_reason TEXT NOT NULL DEFAULT '',
	disabled_at INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	cursor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	seq INTEGER NOT NULL,
	event_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	drop_id TEXT NOT NULL,
	body TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	first_at INTEGER NOT NULL DEFAULT 0,
	next_at INTEGER NOT NULL,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	delivered_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries (endpoint_id, drop_id, seq) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS webhook_attempts (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id TEXT NOT NULL,
	n INTEGER NOT NULL,
	at INTEGER NOT NULL,
	status INTEGER NOT NULL,
	latency_ns INTEGER NOT NULL,
	error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_event ON webhook_attempts (endpoint_id, event_id);
CREATE TABLE IF NOT EXISTS webhook_addresses (
	hold_id TEXT PRIMARY KEY,
	address TEXT NOT NULL,
	updated_at INTEGER NOT NULL
);
`

// OpenStore opens (creating) the SQLite store at path.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("webhook store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; reads are small
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("webhook store schema in %s: %w", path, err)
	}
	return &Store{db: conn{DB: db}}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

type scanner interface{ Scan(...any) error }

const endpointColumns = "id, channel, url, secret, kinds, fulfilment, disabled, disabled_reason, disabled_at, created_at, cursor"

func scanEndpoint(r scanner) (Endpoint, error) {
	var e Endpoint
	var kinds string
	var disabledAt, created int64
	err := r.Scan(&e.ID, &e.Channel, &e.URL, &e.Secret, &kinds, &e.Fulfilment, &e.Disabled, &e.DisabledReason, &disabledAt, &created, &e.Cursor)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(kinds), &e.Kinds); err != nil {
		return e, fmt.Errorf("endpoint %s: kinds: %w", e.ID, err)
	}
	e.DisabledAt, e.CreatedAt = fromNS(disabledAt), fromNS(created)
	return e, nil
}

// CreateEndpoint stores a new endpoint; its cursor starts where the
// outbox is now (from), so it gets events from its creation on.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint) error {
	kinds, _ := json.Marshal(e.Kinds)
	_, err := s.db.ExecContext(ctx, "INSERT INTO webhook_endpoints ("+endpointColumns+") VALUES (?,?,?,?,?,?,?,?,?,?,?)",
		e.ID, e.Channel, e.URL, e.Secret, string(kinds), e.Fulfilment, e.Disabled, e.DisabledReason, ns(e.DisabledAt), ns(e.CreatedAt), e.Cursor)
	return err
}

// Endpoints lists endpoints, oldest first.
func (s *Store) Endpoints(ctx context.Context) ([]Endpoint, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+endpointColumns+" FROM webhook_endpoints ORDER BY created_at, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Endpoint
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Endpoint returns one endpoint.
func (s *Store) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	return scanEndpoint(s.db.QueryRowContext(ctx, "SELECT "+endpointColumns+" FROM webhook_endpoints WHERE id = ?", id))
}

// UpdateEndpoint saves url, kinds, fulfilment and the disabled state. An
// endpoint enabled again puts its failed deliveries back in its queue,
// their retry schedule started afresh at now.
func (s *Store) UpdateEndpoint(ctx context.Context, e Endpoint, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var was bool
	if err := tx.QueryRowContext(ctx, "SELECT disabled FROM webhook_endpoints WHERE id = ?", e.ID).Scan(&was); errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	} else if err != nil {
		return err
	}
	kinds, _ := json.Marshal(e.Kinds)
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET url = ?, kinds = ?, fulfilment = ?, disabled = ?, disabled_reason = ?, disabled_at = ?
		WHERE id = ?`, e.URL, string(kinds), e.Fulfilment, e.Disabled, e.DisabledReason, ns(e.DisabledAt), e.ID); err != nil {
		return err
	}
	if was && !e.Disabled {
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'pending', first_at = 0, next_at = ? WHERE endpoint_id = ? AND state = 'failed'`,
			ns(now), e.ID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// DeleteEndpoint removes an endpoint with its queue and log.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM webhook_endpoints WHERE id = ?", id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Enqueue adds deliveries to an endpoint's queue and moves its cursor to
// cursor, in one transaction, only while this replica holds the delivery
// lease (ErrNotLeader otherwise).
func (s *Store) Enqueue(ctx context.Context, endpointID string, cursor int64, ds []Delivery) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.fence(ctx, tx); err != nil {
		return err
	}
	for _, d := range ds {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (endpoint_id, seq, event_id, kind, drop_id, body, state, next_at)
			VALUES (?,?,?,?,?,?,'pending',?) ON CONFLICT DO NOTHING`, endpointID, d.Seq, d.EventID, d.Kind, d.DropID, string(d.Body), ns(d.NextAt)); err != nil {
			return err
		}
	}
	res, err := tx.ExecContext(ctx, "UPDATE webhook_endpoints SET cursor = ? WHERE id = ? AND cursor < ?", cursor, endpointID, cursor)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // deleted, or another pump got there: the inserts are dropped with the rollback
	}
	return tx.Commit()
}

const deliveryColumns = "endpoint_id, seq, event_id, kind, drop_id, body, state, attempts, first_at, next_at, last_status, last_error, delivered_at"

func scanDelivery(r scanner) (Delivery, error) {
	var d Delivery
	var body string
	var first, next, delivered int64
	err := r.Scan(&d.EndpointID, &d.Seq, &d.EventID, &d.Kind, &d.DropID, &body, &d.State, &d.Attempts, &first, &next, &d.LastStatus, &d.LastError, &delivered)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	d.Body, d.FirstAt, d.NextAt, d.DeliveredAt = []byte(body), fromNS(first), fromNS(next), fromNS(delivered)
	return d, err
}

func (s *Store) deliveries(ctx context.Context, q string, args ...any) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Due lists deliveries to try now: pending, of an enabled endpoint, due by
// now, and the first pending one of their drop for their endpoint (order
// per drop).
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]Delivery, error) {
	cols := "d." + strings.ReplaceAll(deliveryColumns, ", ", ", d.")
	return s.deliveries(ctx, "SELECT "+cols+` FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.state = 'pending' AND NOT e.disabled AND d.next_at <= ?
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.drop_id = d.drop_id
			AND p.state = 'pending' AND p.seq < d.seq)
		ORDER BY d.next_at, d.seq LIMIT ?`, ns(now), limit)
}

// NextDue is when the next delivery Due would list is due (zero when
// none is).
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT min(d.next_at) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.state = 'pending' AND NOT e.disabled
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.drop_id = d.drop_id
			AND p.state = 'pending' AND p.seq < d.seq)`).Scan(&n)
	return fromNS(n.Int64), err
}

// Record saves an attempt and the delivery's new state, and disables its
// endpoint with reason when that is set, in one transaction, only while
// this replica holds the delivery lease (ErrNotLeader otherwise).
func (s *Store) Record(ctx context.Context, d Delivery, a Attempt, disable string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := s.fence(ctx, tx); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, attempts = ?, first_at = ?, next_at = ?, last_status = ?, last_error = ?, delivered_at = ?
		WHERE endpoint_id = ? AND seq = ?`, d.State, d.Attempts, ns(d.FirstAt), ns(d.NextAt), d.LastStatus, d.LastError, ns(d.DeliveredAt), d.EndpointID, d.Seq)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound // the endpoint was deleted meanwhile
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO webhook_attempts (endpoint_id, event_id, n, at, status, latency_ns, error) VALUES (?,?,?,?,?,?,?)",
		a.EndpointID, a.EventID, a.N, ns(a.At), a.Status, int64(a.Latency), a.Error); err != nil {
		return err
	}
	if disable != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE webhook_endpoints SET disabled = ?, disabled_reason = ?, disabled_at = ? WHERE id = ?", true, disable, ns(a.At), d.EndpointID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Deliveries lists an endpoint's deliveries, newest first.
func (s *Store) Deliveries(ctx context.Context, endpointID string, limit int) ([]Delivery, error) {
	return s.deliveries(ctx, "SELECT "+deliveryColumns+" FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY seq DESC LIMIT ?", endpointID, limit)
}

// Attempts lists the attempts of one delivery (all of the endpoint's when
// eventID is empty), oldest first.
func (s *Store) Attempts(ctx context.Context, endpointID, eventID string) ([]Attempt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT endpoint_id, event_id, n, at, status, latency_ns, error FROM webhook_attempts
		WHERE endpoint_id = ? AND (? = '' OR event_id = ?) ORDER BY id`, endpointID, eventID, eventID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var at, lat int64
		if err := rows.Scan(&a.EndpointID, &a.EventID, &a.N, &at, &a.Status, &lat, &a.Error); err != nil {
			return nil, err
		}
		a.At, a.Latency = fromNS(at), time.Duration(lat)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Redeliver puts a delivery back in its queue, due at now, with a fresh
// retry schedule.
func (s *Store) Redeliver(ctx context.Context, endpointID, eventID string, now time.Time) (Delivery, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'pending', first_at = 0, next_at = ? WHERE endpoint_id = ? AND event_id = ?`,
		ns(now), endpointID, eventID)
	if err != nil {
		return Delivery{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Delivery{}, ErrNotFound
	}
	return scanDelivery(s.db.QueryRowContext(ctx, "SELECT "+deliveryColumns+" FROM webhook_deliveries WHERE endpoint_id = ? AND event_id = ?", endpointID, eventID))
}
