// Package postgres is microdrop's scale-out ledger: PostgreSQL through pgx,
// shared by several replicas.
//
// The database keeps the invariants itself, so no interleaving of replicas
// can break them: stock is a conditional UPDATE under a CHECK constraint,
// a won unit is unique per (drop, user, unit) and numbered within the cap,
// tokens are unique. Each Commit is one transaction whose statements go in
// one pipelined pgx.Batch (large inserts by COPY).
//
// It also holds the drop leases that pick each live drop's single decider
// (claims.DropLeases): every Commit takes the drop's lease row FOR SHARE and
// refuses (claims.ErrLeaseLost) when another replica holds it. A replica
// holds a session advisory lock for as long as it lives, so the others can
// tell at once that it died and take its drops over without waiting for
// the lease to lapse.
//
// It must never acknowledge a write before its transaction has committed.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Advisory lock classes (the first key of the two-key form).
const (
	lockMigrate = 0x6d64_0001 // around migrations, per schema
	lockChannel = 0x6d64_0002 // one live drop per channel across replicas
	lockReplica = 0x6d64_0003 // held by each live replica, keyed by its id
)

// copyThreshold is the batch size from which entries go in by COPY.
const copyThreshold = 1024

// Options tune the ledger. Zero values take defaults.
type Options struct {
	Logger *slog.Logger
	// ReplicaID names this replica in drop leases: random when empty.
	ReplicaID string
	// LeaseTTL is how long a drop lease lasts without renewal (3s).
	LeaseTTL time.Duration
	// Holder names buyers in outbox events: the receipts' holder id.
	Holder claims.Pseudonym
}

// Ledger is the PostgreSQL claims.Ledger.
type Ledger struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	holder claims.Pseudonym
	id     string
	ttl    time.Duration
	// schema scopes liveness locks (which are database-wide) to the
	// replicas sharing these tables.
	schema string

	closed atomic.Bool
	quit   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	live *pgx.Conn // holds the replica's advisory lock
}

var (
	_ claims.Ledger     = (*Ledger)(nil)
	_ claims.DropLeases = (*Ledger)(nil)
)

// Open connects to dsn (postgres://...; search_path=... picks the schema),
// applies the embedded migrations under an advisory lock, so replicas
// starting together migrate once, and takes this replica's liveness lock.
func Open(ctx context.Context, dsn string, o Options) (*Ledger, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 3 * time.Second
	}
	if o.ReplicaID == "" {
		host, _ := os.Hostname()
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ReplicaID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: parse postgres URL: %w", redact(err))
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: connect to postgres: %w", redact(err))
	}
	l := &Ledger{pool: pool, log: o.Logger.With("component", "ledger", "ledger", "postgres"), holder: o.Holder, id: o.ReplicaID, ttl: o.LeaseTTL,
		quit: make(chan struct{}), done: make(chan struct{})}
	if err := l.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := l.lockLiveness(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	go l.keepAlive()
	return l, nil
}

// redact keeps passwords in a DSN out of error text.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string")
	}
	return err
}

// ReplicaID names this replica.
func (l *Ledger) ReplicaID() string { return l.id }

// LeaseTTL is how long a drop lease lasts without renewal.
func (l *Ledger) LeaseTTL() time.Duration { return l.ttl }

// Close releases the liveness lock and the connections; callers finish
// their commits first (the claims service closes before the ledger).
func (l *Ledger) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.quit)
	<-l.done
	l.mu.Lock()
	if l.live != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.live.Close(ctx)
		cancel()
		l.live = nil
	}
	l.mu.Unlock()
	l.pool.Close()
	return nil
}

func (l *Ledger) migrate(ctx context.Context) error {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("ledger: connect to postgres: %w", err)
	}
	defer conn.Release()
	var schema string
	if err := conn.QueryRow(ctx, "SELECT COALESCE(current_schema(), '')").Scan(&schema); err != nil {
		return fmt.Errorf("ledger: current schema: %w", err)
	}
	if schema == "" {
		return errors.New("ledger: no schema to create tables in: check search_path in the postgres URL")
	}
	l.schema = schema
	// Replicas starting together: one migrates, the others wait and then
	// find nothing left to do.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockMigrate, schema); err != nil {
		return fmt.Errorf("ledger: migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1, hashtext($2))", lockMigrate, schema)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("ledger: migrations table: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("ledger: read migrations: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("ledger: migration %s has no version number", base)
		}
		if applied[v] {
			continue
		}
		sqlText, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sqlText)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", v, base)
			return err
		})
		if err != nil {
			return fmt.Errorf("ledger: migration %s: %w", base, err)
		}
		l.log.Info("applied migration", "migration", base, "schema", schema)
	}
	return nil
}

// lockLiveness opens the connection whose session lock says this replica
// is alive. The database drops it when the process dies.
func (l *Ledger) lockLiveness(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, l.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("ledger: liveness connection: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2 || '/' || $3))", lockReplica, l.schema, l.id).Scan(&ok); err != nil || !ok {
		_ = conn.Close(ctx)
		if err == nil {
			err = fmt.Errorf("replica id %q is in use by a live replica", l.id)
		}
		return fmt.Errorf("ledger: liveness lock: %w", err)
	}
	l.mu.Lock()
	l.live = conn
	l.mu.Unlock()
	return nil
}

// keepAlive reconnects the liveness lock if its connection breaks. While it
// is broken other replicas may take this replica's drops; its commits are
// then refused and its deciders stop at the next lease renewal.
func (l *Ledger) keepAlive() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
		l.mu.Lock()
		conn := l.live
		l.mu.Unlock()
		if conn == nil || conn.Ping(ctx) != nil {
			if conn != nil {
				_ = conn.Close(ctx)
			}
			l.mu.Lock()
			l.live = nil
			l.mu.Unlock()
			if err := l.lockLiveness(ctx); err != nil {
				l.log.Warn("liveness lock lost; retrying", "err", err)
			} else {
				l.log.Warn("liveness lock re-taken after its connection broke")
			}
		}
		cancel()
	}
}

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

func (l *Ledger) check() error {
	if l.closed.Load() {
		return claims.ErrLedgerClosed
	}
	return nil
}

const insertDrop = `INSERT INTO drops (id, channel, sku, title, stock, remaining, price_minor, currency,
	opens_at, closes_at, grace_ns, cap, stages, limited_run_id, creator_id, policy, bucket_ns, claim_code, cue_code,
	seed, seed_hash, state, closed_at, close_reason, created_at, budget_ns, budget_basis,
	pay_window_ns, pay_methods, listen_step_ns)
	VALUES ($1,$2,$3,$4,$5,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29)`

func dropArgs(d *claims.Drop) ([]any, error) {
	stages, err := json.Marshal(d.Stages)
	if err != nil {
		return nil, err
	}
	return []any{d.ID, d.Channel, d.SKU, d.Title, d.Stock, d.PriceMinor, d.Currency,
		ns(d.OpensAt), ns(d.ClosesAt), int64(d.Grace), d.Cap, string(stages), d.LimitedRunID, d.CreatorID,
		string(d.Policy), int64(d.BucketWidth), d.ClaimCode, int64(d.CueCode), d.Seed, d.SeedHash, string(d.State),
		ns(d.ClosedAt), d.CloseReason, ns(d.CreatedAt), int64(d.Budget), d.BudgetBasis,
		int64(d.PayWindow), strings.Join(d.PayMethods, ","), int64(d.ListenStep)}, nil
}

// CreateDrop records a new drop.
func (l *Ledger) CreateDrop(ctx context.Context, d *claims.Drop) error {
	if err := l.check(); err != nil {
		return err
	}
	args, err := dropArgs(d)
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, insertDrop, args...)
	return createErr(d, err)
}

func createErr(d *claims.Drop, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("drop %s: %w", d.ID, claims.ErrDropExists)
	}
	return err
}

const liveStates = "('scheduled', 'open', 'grace')"

// CreateLeasedDrop records a new drop decided by this replica. A channel has
// at most one live drop across replicas: opens of one channel serialize on
// an advisory lock.
func (l *Ledger) CreateLeasedDrop(ctx context.Context, d *claims.Drop) error {
	if err := l.check(); err != nil {
		return err
	}
	args, err := dropArgs(d)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", lockChannel, d.Channel); err != nil {
			return err
		}
		var other string
		err := tx.QueryRow(ctx, "SELECT id FROM drops WHERE channel = $1 AND state IN "+liveStates+" LIMIT 1", d.Channel).Scan(&other)
		if err == nil {
			return &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("channel %s already has a live drop (%s); close it first", d.Channel, other)}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, insertDrop, args...); err != nil {
			return createErr(d, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO drop_leases (drop_id, owner, epoch, expires_at)
			VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')`, d.ID, l.id, l.ttl.Milliseconds())
		return err
	})
}

const dropColumns = `id, channel, sku, title, stock, remaining, price_minor, currency, opens_at, closes_at, grace_ns, cap,
	stages, limited_run_id, creator_id, policy, bucket_ns, claim_code, cue_code, seed, seed_hash, state, closed_at,
	close_reason, created_at, budget_ns, budget_basis, pay_window_ns, pay_methods, listen_step_ns`

func scanDrop(row pgx.Row, extra ...any) (*claims.Drop, error) {
	var d claims.Drop
	var opens, closes, grace, bucket, cue, closed, created, budget, payWindow, listen int64
	var stages, policy, state, methods string
	dst := append([]any{&d.ID, &d.Channel, &d.SKU, &d.Title, &d.Stock, &d.Remaining, &d.PriceMinor, &d.Currency,
		&opens, &closes, &grace, &d.Cap, &stages, &d.LimitedRunID, &d.CreatorID, &policy, &bucket, &d.ClaimCode,
		&cue, &d.Seed, &d.SeedHash, &state, &closed, &d.CloseReason, &created, &budget, &d.BudgetBasis, &payWindow, &methods, &listen}, extra...)
	if err := row.Scan(dst...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: claims.ErrDropNotFound}
		}
		return nil, err
	}
	d.OpensAt, d.ClosesAt, d.ClosedAt, d.CreatedAt = fromNS(opens), fromNS(closes), fromNS(closed), fromNS(created)
	d.Grace, d.BucketWidth, d.Budget = time.Duration(grace), time.Duration(bucket), time.Duration(budget)
	d.PayWindow = time.Duration(payWindow)
	if methods != "" {
		d.PayMethods = strings.Split(methods, ",")
	}
	d.CueCode, d.ListenStep = uint32(cue), time.Duration(listen)
	d.Policy, d.State = claims.Policy(policy), claims.State(state)
	if err := json.Unmarshal([]byte(stages), &d.Stages); err != nil {
		return nil, fmt.Errorf("drop %s stages: %w", d.ID, err)
	}
	return &d, nil
}

// Drop returns one drop.
func (l *Ledger) Drop(ctx context.Context, id string) (*claims.Drop, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return scanDrop(l.pool.QueryRow(ctx, "SELECT "+dropColumns+" FROM drops WHERE id = $1", id))
}

// Drops lists drops newest first.
func (l *Ledger) Drops(ctx context.Context, f claims.DropFilter) ([]*claims.Drop, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	q := "SELECT " + dropColumns + " FROM drops WHERE true"
	var args []any
	if f.Channel != "" {
		args = append(args, f.Channel)
		q += " AND channel = $" + strconv.Itoa(len(args))
	}
	if f.Live {
		q += " AND state IN " + liveStates
	}
	q += " ORDER BY created_at DESC, id"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += " LIMIT $" + strconv.Itoa(len(args))
	}
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*claims.Drop
	for rows.Next() {
		d, err := scanDrop(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

const entryColumns = "drop_id, seq, user_id, login, unit, cap, outcome, arrived_at, bucket, decided_at, token, expires_at, cue_step, redeemed_at"

var copyColumns = []string{"drop_id", "seq", "user_id", "login", "unit", "cap", "outcome", "arrived_at", "bucket", "decided_at", "token", "expires_at", "cue_step"}

const (
	lockLease       = "SELECT owner FROM drop_leases WHERE drop_id = $1 FOR SHARE"
	updateRemaining = "UPDATE drops SET remaining = remaining - $1 WHERE id = $2 AND remaining >= $1"
	insertEntries   = `INSERT INTO entries (drop_id, seq, user_id, login, unit, cap, outcome, arrived_at, bucket, decided_at, token, expires_at, cue_step)
		SELECT $1, seq, user_id, login, unit, cap, outcome, arrived_at, bucket, decided_at, NULLIF(token, ''), expires_at, cue_step
		FROM unnest($2::bigint[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[], $8::bigint[], $9::bigint[],
			$10::bigint[], $11::text[], $12::bigint[], $13::bigint[])
		AS t(seq, user_id, login, unit, cap, outcome, arrived_at, bucket, decided_at, token, expires_at, cue_step)`
	updateEntry = `UPDATE entries SET outcome = $1, unit = $2, token = NULLIF($3, ''), expires_at = $4, decided_at = $5
		WHERE drop_id = $6 AND user_id = $7 AND seq = $8`
	updateState = "UPDATE drops SET state = $1, closes_at = $2, grace_ns = $3, closed_at = $4, close_reason = $5 WHERE id = $6"
)

// Commit applies a decider's batch in one transaction: the lease check, the
// stock, the entries and the state are pipelined in one round trip.
func (l *Ledger) Commit(ctx context.Context, b claims.Batch) error {
	if err := l.check(); err != nil {
		return err
	}
	for i := range b.Insert {
		if b.Insert[i].DropID != b.DropID {
			return fmt.Errorf("entry for drop %s in batch of drop %s", b.Insert[i].DropID, b.DropID)
		}
	}
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		useCopy := len(b.Insert) >= copyThreshold
		first := &pgx.Batch{}
		first.Queue(lockLease, b.DropID).QueryRow(func(row pgx.Row) error {
			var owner string
			switch err := row.Scan(&owner); {
			case errors.Is(err, pgx.ErrNoRows):
				return nil // never leased (a single node)
			case err != nil:
				return err
			case owner != l.id:
				return fmt.Errorf("drop %s is decided by %s: %w", b.DropID, owner, claims.ErrLeaseLost)
			}
			return nil
		})
		if b.Wins > 0 {
			first.Queue(updateRemaining, b.Wins, b.DropID).Exec(func(ct pgconn.CommandTag) error {
				if ct.RowsAffected() != 1 {
					return fmt.Errorf("drop %s, %d wins: %w", b.DropID, b.Wins, claims.ErrStockExhausted)
				}
				return nil
			})
		}
		rest := first
		if useCopy {
			if err := tx.SendBatch(ctx, first).Close(); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, copyColumns, pgx.CopyFromSlice(len(b.Insert), func(i int) ([]any, error) {
				e := &b.Insert[i]
				var tok any
				if e.Token != "" {
					tok = e.Token
				}
				return []any{e.DropID, e.Seq, e.UserID, e.Login, int32(e.Unit), int32(e.Cap), e.Outcome, ns(e.ArrivedAt), e.Bucket,
					ns(e.DecidedAt), tok, ns(e.ExpiresAt), e.CueStep}, nil
			})); err != nil {
				return err
			}
			rest = &pgx.Batch{}
		} else if len(b.Insert) > 0 {
			n := len(b.Insert)
			seq, bucket, arrived, decided, expires, step := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
			user, login, outcome, token := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			unit, capv := make([]int32, n), make([]int32, n)
			for i := range b.Insert {
				e := &b.Insert[i]
				seq[i], user[i], login[i], unit[i], capv[i], outcome[i] = e.Seq, e.UserID, e.Login, int32(e.Unit), int32(e.Cap), e.Outcome
				arrived[i], bucket[i], decided[i], token[i], expires[i] = ns(e.ArrivedAt), e.Bucket, ns(e.DecidedAt), e.Token, ns(e.ExpiresAt)
				step[i] = e.CueStep
			}
			rest.Queue(insertEntries, b.DropID, seq, user, login, unit, capv, outcome, arrived, bucket, decided, token, expires, step)
		}
		for _, e := range b.Update {
			rest.Queue(updateEntry, e.Outcome, e.Unit, e.Token, ns(e.ExpiresAt), ns(e.DecidedAt), b.DropID, e.UserID, e.Seq).
				Exec(func(ct pgconn.CommandTag) error {
					if ct.RowsAffected() != 1 {
						return fmt.Errorf("update of unrecorded entry %s#%d", b.DropID, e.Seq)
					}
					return nil
				})
		}
		for i := range b.Holds {
			if b.Holds[i].DropID != b.DropID {
				return fmt.Errorf("hold for drop %s in batch of drop %s", b.Holds[i].DropID, b.DropID)
			}
			rest.Queue(insertHoldSQL, holdArgs(&b.Holds[i])...)
		}
		if s := b.State; s != nil {
			rest.Queue(updateState, string(s.State), ns(s.ClosesAt), int64(s.Grace), ns(s.ClosedAt), s.CloseReason, b.DropID).
				Exec(func(ct pgconn.CommandTag) error {
					if ct.RowsAffected() != 1 {
						return &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: claims.ErrDropNotFound}
					}
					return nil
				})
		}
		if rest.Len() > 0 {
			if err := tx.SendBatch(ctx, rest).Close(); err != nil {
				return err
			}
		}
		if len(b.Holds) == 0 {
			return nil
		}
		// Only priced drops have holds: a free drop's claims write no
		// outbox row and take no outbox lock. Events go last, so the
		// lock is held from here to the commit only.
		kinds := make([]string, len(b.Holds))
		for i := range kinds {
			kinds[i] = claims.EventHoldWon
		}
		return l.holdEvents(ctx, tx, b.DropID, b.Holds[0].CreatedAt, kinds, b.Holds)
	})
	return commitErr(err)
}

// commitErr maps constraint violations to the errors a decider acts on.
func commitErr(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Code == "23505" && pe.ConstraintName == "entries_by_token":
		return fmt.Errorf("%w: %v", claims.ErrTokenCollision, err)
	case pe.Code == "23505":
		return fmt.Errorf("%w: %v", claims.ErrDuplicateWin, err)
	case pe.Code == "23514" && pe.ConstraintName == "drops_stock":
		return fmt.Errorf("%w: %v", claims.ErrStockExhausted, err)
	case pe.Code == "23503":
		return &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: fmt.Errorf("%w: %v", claims.ErrDropNotFound, err)}
	}
	return err
}

func scanEntry(row pgx.Row) (claims.Entry, error) {
	var e claims.Entry
	var arrived, decided, expires, redeemed int64
	var tok *string
	err := row.Scan(&e.DropID, &e.Seq, &e.UserID, &e.Login, &e.Unit, &e.Cap, &e.Outcome, &arrived, &e.Bucket, &decided, &tok, &expires, &e.CueStep, &redeemed)
	e.ArrivedAt, e.DecidedAt, e.ExpiresAt, e.Redeemed = fromNS(arrived), fromNS(decided), fromNS(expires), fromNS(redeemed)
	if tok != nil {
		e.Token = *tok
	}
	return e, err
}

func (l *Ledger) entries(ctx context.Context, q string, args ...any) ([]claims.Entry, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claims.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Entries lists a drop's entries in arrival order.
func (l *Ledger) Entries(ctx context.Context, dropID string) ([]claims.Entry, error) {
	return l.entries(ctx, "SELECT "+entryColumns+" FROM entries WHERE drop_id = $1 ORDER BY seq", dropID)
}

// UserEntries lists one user's entries in a drop.
func (l *Ledger) UserEntries(ctx context.Context, dropID, userID string) ([]claims.Entry, error) {
	return l.entries(ctx, "SELECT "+entryColumns+" FROM entries WHERE drop_id = $1 AND user_id = $2 ORDER BY seq", dropID, userID)
}

// Redeem marks a win redeemed exactly once: one conditional UPDATE, so two
// desks on two replicas scanning the same code cannot both succeed.
func (l *Ledger) Redeem(ctx context.Context, token string, at time.Time) (claims.Entry, error) {
	if err := l.check(); err != nil {
		return claims.Entry{}, err
	}
	e, err := scanEntry(l.pool.QueryRow(ctx, `UPDATE entries SET redeemed_at = $2
		WHERE token = $1 AND outcome = 'won' AND redeemed_at = 0 AND expires_at > $2 RETURNING `+entryColumns, token, ns(at)))
	if err == nil {
		return e, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return claims.Entry{}, err
	}
	// Refused: say why, from the row as it is.
	e, err = scanEntry(l.pool.QueryRow(ctx, "SELECT "+entryColumns+" FROM entries WHERE token = $1", token))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return claims.Entry{}, claims.ErrTokenUnknown
	case err != nil:
		return claims.Entry{}, err
	case e.Outcome != claims.OutcomeWon:
		return claims.Entry{}, claims.ErrTokenUnknown
	case !e.Redeemed.IsZero():
		return e, claims.ErrTokenUsed
	case !at.Before(e.ExpiresAt):
		return e, claims.ErrTokenExpired
	}
	return e, claims.ErrTokenUsed
}

// DropOwner returns the drop and the replica holding its lease.
func (l *Ledger) DropOwner(ctx context.Context, dropID string) (string, *claims.Drop, error) {
	if err := l.check(); err != nil {
		return "", nil, err
	}
	var owner string
	d, err := scanDrop(l.pool.QueryRow(ctx, "SELECT "+dropColumns+`, COALESCE(l.owner, '')
		FROM drops LEFT JOIN drop_leases l ON l.drop_id = drops.id WHERE drops.id = $1`, dropID), &owner)
	if err != nil {
		return "", nil, err
	}
	return owner, d, nil
}

// AcquireLease takes a live drop's lease when it is free, lapsed, or held by
// a replica whose session (and so its liveness lock) is gone.
func (l *Ledger) AcquireLease(ctx context.Context, dropID string) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	got := false
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var state string
		switch err := tx.QueryRow(ctx, "SELECT state FROM drops WHERE id = $1", dropID).Scan(&state); {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return err
		case claims.State(state).Final():
			return nil
		}
		var owner string
		var lapsed bool
		err := tx.QueryRow(ctx, "SELECT owner, expires_at < now() FROM drop_leases WHERE drop_id = $1 FOR UPDATE", dropID).Scan(&owner, &lapsed)
		if errors.Is(err, pgx.ErrNoRows) {
			ct, err := tx.Exec(ctx, `INSERT INTO drop_leases (drop_id, owner, epoch, expires_at)
				VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond') ON CONFLICT (drop_id) DO NOTHING`, dropID, l.id, l.ttl.Milliseconds())
			got = err == nil && ct.RowsAffected() == 1
			return err
		}
		if err != nil {
			return err
		}
		if owner != l.id && !lapsed {
			// The holder's liveness lock is free only if its session ended.
			var gone bool
			if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1, hashtext($2 || '/' || $3))", lockReplica, l.schema, owner).Scan(&gone); err != nil {
				return err
			}
			if !gone {
				return nil
			}
		}
		_, err = tx.Exec(ctx, `UPDATE drop_leases SET owner = $2, epoch = epoch + CASE WHEN owner = $2 THEN 0 ELSE 1 END,
			expires_at = now() + $3 * interval '1 millisecond' WHERE drop_id = $1`, dropID, l.id, l.ttl.Milliseconds())
		got = err == nil
		return err
	})
	return got, err
}

// RenewLeases extends this replica's leases and returns those it still holds.
func (l *Ledger) RenewLeases(ctx context.Context, dropIDs []string) ([]string, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, `UPDATE drop_leases SET expires_at = now() + $3 * interval '1 millisecond'
		WHERE owner = $1 AND drop_id = ANY($2) RETURNING drop_id`, l.id, dropIDs, l.ttl.Milliseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// OrphanedDrops lists live drops with no lease, a lapsed lease, or a lease
// held by a replica whose session is gone.
func (l *Ledger) OrphanedDrops(ctx context.Context) ([]string, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, `SELECT drops.id FROM drops LEFT JOIN drop_leases l ON l.drop_id = drops.id
		WHERE drops.state IN `+liveStates+` AND (l.drop_id IS NULL OR (l.owner <> $1 AND
			(l.expires_at < now() OR pg_try_advisory_xact_lock($2, hashtext($3 || '/' || l.owner)))))`, l.id, lockReplica, l.schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ReleaseLeases lets other replicas take these drops at once.
func (l *Ledger) ReleaseLeases(ctx context.Context, dropIDs []string) error {
	if err := l.check(); err != nil {
		return err
	}
	_, err := l.pool.Exec(ctx, `UPDATE drop_leases SET expires_at = now() - interval '1 second'
		WHERE owner = $1 AND drop_id = ANY($2)`, l.id, dropIDs)
	return err
}
