package webhook

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/microdrop/microdrop"
)

// The Postgres store: the same tables as webhooks.db, in the shared
// ledger's database and schema (search_path), and the delivery lease.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS webhook_endpoints (
	id TEXT PRIMARY KEY,
	channel TEXT NOT NULL,
	url TEXT NOT NULL,
	secret TEXT NOT NULL,
	kinds TEXT NOT NULL,
	fulfilment BOOLEAN NOT NULL,
	disabled BOOLEAN NOT NULL DEFAULT false,
	disabled_reason TEXT NOT NULL DEFAULT '',
	disabled_at BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	cursor BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	seq BIGINT NOT NULL,
	event_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	drop_id TEXT NOT NULL,
	body TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	first_at BIGINT NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	delivered_at BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries (endpoint_id, drop_id, seq) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS webhook_attempts (
	id BIGSERIAL PRIMARY KEY,
	endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id TEXT NOT NULL,
	n INTEGER NOT NULL,
	at BIGINT NOT NULL,
	status INTEGER NOT NULL,
	latency_ns BIGINT NOT NULL,
	error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_event ON webhook_attempts (endpoint_id, event_id);
CREATE TABLE IF NOT EXISTS webhook_addresses (
	hold_id TEXT PRIMARY KEY,
	address TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_lease (
	name TEXT PRIMARY KEY,
	owner TEXT NOT NULL,
	epoch BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);
`

// lockSchema serialises replicas creating the tables together (CREATE
// TABLE IF NOT EXISTS is not safe against a concurrent twin).
const lockSchema = 0x6d64_0005

// leaseName is the delivery lease's row.
const leaseName = "deliver"

// ErrNotLeader is a worker write refused because this replica does not
// hold the delivery lease (another replica delivers).
var ErrNotLeader = &microdrop.Error{Code: microdrop.ECONFLICT, Message: "another replica holds the webhook delivery lease"}

// OpenPostgresStore opens the store in the Postgres database at dsn (the
// shared ledger's URL; search_path picks the schema), creating its tables.
// owner names this replica in the delivery lease (random when empty).
func OpenPostgresStore(ctx context.Context, dsn, owner string) (*Store, error) {
	// Parsed as the ledger parses it: pool_* options are the pool's.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("webhook store: the postgres URL does not parse")
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	db.SetMaxOpenConns(8)
	if err := createPostgres(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("webhook store: %w", err)
	}
	if owner == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		owner = "webhooks-" + hex.EncodeToString(b)
	}
	return &Store{db: conn{DB: db, pg: true}, owner: owner}, nil
}

func createPostgres(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", lockSchema); err != nil {
		return fmt.Errorf("schema lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, postgresSchema); err != nil {
		return fmt.Errorf("tables: %w", err)
	}
	return tx.Commit()
}

// Shared reports whether replicas share the store (Postgres): only the
// holder of the delivery lease delivers.
func (s *Store) Shared() bool { return s.db.pg }

// Owner names this replica in the delivery lease.
func (s *Store) Owner() string { return s.owner }

// Lead takes or renews the delivery lease for ttl: true while this
// replica holds it. A lease is taken over only once it has lapsed, so a
// replica that died delivers nothing after ttl and another takes over.
// Without a shared store it is always true.
func (s *Store) Lead(ctx context.Context, ttl time.Duration) (bool, error) {
	if !s.db.pg {
		return true, nil
	}
	var epoch int64
	err := s.db.DB.QueryRowContext(ctx, `INSERT INTO webhook_lease (name, owner, epoch, expires_at)
		VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,
			epoch = webhook_lease.epoch + CASE WHEN webhook_lease.owner = EXCLUDED.owner THEN 0 ELSE 1 END,
			expires_at = EXCLUDED.expires_at
		WHERE webhook_lease.owner = EXCLUDED.owner OR webhook_lease.expires_at < now()
		RETURNING epoch`, leaseName, s.owner, ttl.Milliseconds()).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Resign gives the delivery lease up at once, for another replica to
// take (at shutdown).
func (s *Store) Resign(ctx context.Context) error {
	if !s.db.pg {
		return nil
	}
	_, err := s.db.DB.ExecContext(ctx, `UPDATE webhook_lease SET expires_at = now() - interval '1 second' WHERE name = $1 AND owner = $2`, leaseName, s.owner)
	return err
}

// LeaseHolder is the replica holding the delivery lease now ("" when
// none does, or the store is not shared).
func (s *Store) LeaseHolder(ctx context.Context) (string, error) {
	if !s.db.pg {
		return "", nil
	}
	var owner string
	err := s.db.DB.QueryRowContext(ctx, `SELECT owner FROM webhook_lease WHERE name = $1 AND expires_at > now()`, leaseName).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return owner, err
}

// fence refuses a worker's write inside tx unless this replica holds the
// delivery lease; the lease row is held (FOR SHARE) until tx ends, so no
// other replica takes the lease over in between. A no-op for SQLite.
func (s *Store) fence(ctx context.Context, tx txn) error {
	if !s.db.pg {
		return nil
	}
	var one int
	err := tx.Tx.QueryRowContext(ctx, `SELECT 1 FROM webhook_lease WHERE name = $1 AND owner = $2 AND expires_at > now() FOR SHARE`, leaseName, s.owner).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotLeader
	}
	return err
}

// conn and txn run the store's queries, written with ? placeholders, on
// SQLite as they are and on Postgres with $1, $2 … (no query has a ? in a
// literal).
type conn struct {
	*sql.DB
	pg bool
}

type txn struct {
	*sql.Tx
	pg bool
}

func bind(pg bool, q string) string {
	if !pg || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (c conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.DB.ExecContext(ctx, bind(c.pg, q), args...)
}

func (c conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.DB.QueryContext(ctx, bind(c.pg, q), args...)
}

func (c conn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return c.DB.QueryRowContext(ctx, bind(c.pg, q), args...)
}

func (c conn) BeginTx(ctx context.Context, o *sql.TxOptions) (txn, error) {
	tx, err := c.DB.BeginTx(ctx, o)
	return txn{Tx: tx, pg: c.pg}, err
}

func (t txn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, bind(t.pg, q), args...)
}

func (t txn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, bind(t.pg, q), args...)
}
