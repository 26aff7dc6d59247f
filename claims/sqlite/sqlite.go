// Package sqlite is microdrop's default ledger: an embedded SQLite database
// (modernc.org/sqlite, pure Go) in WAL mode, where a claim acknowledged is on
// disk.
//
// Every write goes through one writer goroutine that commits whatever has
// queued in one transaction (group commit), each caller's part inside its own
// savepoint so one refused batch never takes another down with it. It must
// never acknowledge a write before its transaction is durable.
//
// The commit is pipelined: SQLite runs with synchronous=NORMAL, so COMMIT
// writes the transaction's frames to the WAL without waiting for the disk,
// and a second goroutine, the syncer, fdatasyncs the WAL file and only then
// acknowledges every group written before that sync. That is the one sync
// synchronous=FULL would have made inside COMMIT (in WAL mode the two
// settings differ in nothing else), moved out of the writer's way: while
// the disk syncs one group the writer already writes the next, and one
// sync covers every group written before it. A failed sync fails its groups
// and every write after it: the ledger is broken until it is reopened.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

const schema = `
CREATE TABLE IF NOT EXISTS drops (
	id TEXT PRIMARY KEY,
	channel TEXT NOT NULL,
	sku TEXT NOT NULL,
	title TEXT NOT NULL,
	stock INTEGER NOT NULL,
	remaining INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= stock),
	price_minor INTEGER NOT NULL,
	currency TEXT NOT NULL,
	opens_at INTEGER NOT NULL,
	closes_at INTEGER NOT NULL,
	grace_ns INTEGER NOT NULL,
	cap INTEGER NOT NULL,
	stages TEXT NOT NULL,
	limited_run_id TEXT NOT NULL,
	creator_id TEXT NOT NULL,
	policy TEXT NOT NULL,
	bucket_ns INTEGER NOT NULL,
	claim_code TEXT NOT NULL,
	cue_code INTEGER NOT NULL,
	seed BLOB NOT NULL,
	seed_hash TEXT NOT NULL,
	state TEXT NOT NULL,
	closed_at INTEGER NOT NULL,
	close_reason TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	budget_ns INTEGER NOT NULL DEFAULT 0,
	budget_basis TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS drops_by_channel ON drops (channel, created_at DESC);
CREATE INDEX IF NOT EXISTS drops_by_created ON drops (created_at DESC);
CREATE TABLE IF NOT EXISTS entries (
	drop_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	user_id TEXT NOT NULL,
	login TEXT NOT NULL,
	unit INTEGER NOT NULL, -- the user's nth won unit; -seq for entries that hold none
	cap INTEGER NOT NULL,
	outcome TEXT NOT NULL,
	arrived_at INTEGER NOT NULL,
	bucket INTEGER NOT NULL,
	decided_at INTEGER NOT NULL,
	token TEXT,
	expires_at INTEGER NOT NULL,
	redeemed_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (drop_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_token ON entries (token) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_user ON entries (drop_id, user_id, unit);
`

// columnsAdded are columns later than the first schema, added to ledgers
// created before them, with the value that means "none".
var columnsAdded = []struct{ table, column, def string }{
	{"drops", "budget_ns", "INTEGER NOT NULL DEFAULT 0"},
	{"drops", "budget_basis", "TEXT NOT NULL DEFAULT ''"},
	{"drops", "listen_step_ns", "INTEGER NOT NULL DEFAULT 0"},
	{"entries", "cue_step", "INTEGER NOT NULL DEFAULT 0"},
}

func addColumns(ctx context.Context, db *sql.DB) error {
	for _, c := range columnsAdded {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", c.table, c.column).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+c.def); err != nil {
				return err
			}
		}
	}
	return nil
}

// The layout keeps a big drop's writes append-only where it can: entries are
// keyed by arrival order and tokens are time-ordered, so only the small
// (drop, user, unit) index takes inserts in random places. That index also
// enforces the per-user cap: a user cannot hold the same unit twice; entries
// that hold no unit use -seq, which never collides.

// Ledger is the SQLite claims.Ledger.
type Ledger struct {
	write *sql.DB
	read  *sql.DB
	log   *slog.Logger
	// holder names buyers in outbox events (nil: no holder_id).
	holder claims.Pseudonym

	stmts map[string]*sql.Stmt // prepared on the writer connection, used only by the writer
	// userEntries is prepared on the read pool: every claim page load asks
	// it, and parsing the query cost more than running it.
	userEntries *sql.Stmt

	ops    chan *op
	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
	done   chan struct{}

	walPath string
	wal     *os.File // the WAL, opened to fdatasync it; only the syncer uses it
	// toSync hands groups written to the WAL to the syncer. Unbuffered: the
	// writer writes at most one group ahead of the sync in progress, and
	// what queues meanwhile goes into that next group, so groups grow with
	// the load instead of splitting into many small commits.
	toSync   chan written
	syncDone chan struct{}
	broken   error // set by the syncer when a sync fails; read by the writer under brokenMu
	brokenMu sync.Mutex

	// Readers see a commit as soon as it is in the WAL, before the syncer
	// has made it durable; reads that can show a decision (a pickup token)
	// wait for the sync (waitSynced). committing numbers each COMMIT as it
	// starts, synced is the highest number a completed sync covers.
	durMu      sync.Mutex
	durCond    *sync.Cond
	committing uint64
	synced     uint64
	stopped    bool
}

// written is one group the writer has committed to the WAL, waiting for the
// sync that makes it durable before its callers hear their outcomes.
type written struct {
	seq   uint64 // its COMMIT's number (committing)
	group []*op
	errs  []error
}

var _ claims.Ledger = (*Ledger)(nil)

type op struct {
	apply func(ctx context.Context, tx *sql.Tx) error
	size  int
	done  chan error
}

// MaxGroup bounds how many entries one transaction carries.
const MaxGroup = 16384

// Options tune the ledger. Zero values take defaults.
type Options struct {
	Logger *slog.Logger
	// Holder names buyers in outbox events: the receipts' holder id.
	Holder claims.Pseudonym
}

// Open opens (creating if needed) the ledger at path.
func Open(ctx context.Context, path string, log *slog.Logger) (*Ledger, error) {
	return OpenWith(ctx, path, Options{Logger: log})
}

// OpenWith opens (creating if needed) the ledger at path with options.
func OpenWith(ctx context.Context, path string, o Options) (*Ledger, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// synchronous=NORMAL: COMMIT does not sync the WAL; the syncer does,
	// before anyone is told (see the package doc).
	// temp_store=MEMORY keeps the savepoints' sub-journal in memory
	// rather than in a temporary file written on every group.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=temp_store(MEMORY)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if _, err := w.ExecContext(ctx, schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("ledger schema in %s: %w", path, err)
	}
	if err := addColumns(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("ledger schema in %s: %w", path, err)
	}
	if err := migrateMoney(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("ledger books in %s: %w", path, err)
	}
	if _, err := w.ExecContext(ctx, payoutSchema); err != nil {
		w.Close()
		return nil, fmt.Errorf("ledger payouts in %s: %w", path, err)
	}
	if _, err := w.ExecContext(ctx, outboxSchema); err != nil {
		w.Close()
		return nil, fmt.Errorf("ledger outbox in %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("ledger %s: WAL journal mode not available (got %q): %v", path, mode, err)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	l := &Ledger{write: w, read: r, log: log.With("component", "ledger", "ledger", "sqlite"), holder: o.Holder, ops: make(chan *op, 1024), done: make(chan struct{}),
		stmts: map[string]*sql.Stmt{}, walPath: path + "-wal", toSync: make(chan written), syncDone: make(chan struct{})}
	l.durCond = sync.NewCond(&l.durMu)
	// Everything the schema set-up wrote is made durable before the first
	// write is taken.
	if err := l.syncWAL(); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	// Parsing a 64-row INSERT costs more than running it: prepare the hot
	// statements once.
	hot := []string{updateRemaining, updateEntry, updateState, insertHoldSQL[1], insertHoldSQL[insertChunk]}
	for _, n := range insertSizes {
		hot = append(hot, insertSQL[n])
	}
	for _, q := range hot {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		l.stmts[q] = st
	}
	if l.userEntries, err = r.PrepareContext(ctx, userEntriesSQL); err != nil {
		for _, st := range l.stmts {
			st.Close()
		}
		w.Close()
		r.Close()
		return nil, fmt.Errorf("prepare %q: %w", userEntriesSQL, err)
	}
	go l.writer()
	go l.syncer()
	return l, nil
}

// Close commits what is queued, then closes the database.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.ops)
	l.mu.Unlock()
	<-l.done
	<-l.syncDone
	for _, st := range l.stmts {
		st.Close()
	}
	l.userEntries.Close()
	var werr error
	if l.wal != nil {
		werr = l.wal.Close()
	}
	return errors.Join(l.read.Close(), l.write.Close(), werr)
}

// submit queues a write and waits until it is durable (or refused).
func (l *Ledger) submit(ctx context.Context, size int, apply func(context.Context, *sql.Tx) error) error {
	return l.enqueue(ctx, size, apply)()
}

// enqueue queues a write behind every write queued before it and returns
// the wait for its outcome.
func (l *Ledger) enqueue(ctx context.Context, size int, apply func(context.Context, *sql.Tx) error) func() error {
	o := &op{apply: apply, size: size, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return func() error { return claims.ErrLedgerClosed }
	}
	select {
	case l.ops <- o:
	case <-ctx.Done():
		l.mu.RUnlock()
		err := ctx.Err()
		return func() error { return err }
	}
	l.mu.RUnlock()
	// Once queued, the outcome is waited for: the caller must learn whether
	// it was written.
	return func() error { return <-o.done }
}

func (l *Ledger) writer() {
	defer close(l.done)
	defer close(l.toSync)
	for o := range l.ops {
		group := make([]*op, 0, 64)
		group = append(group, o)
		size := o.size
	more:
		for size < MaxGroup {
			select {
			case n, ok := <-l.ops:
				if !ok {
					break more
				}
				group = append(group, n)
				size += n.size
			default:
				break more
			}
		}
		l.commitGroup(group)
	}
}

// commitGroup commits one group to the WAL and hands it to the syncer.
// A group that fails as a whole was never committed: its callers hear at
// once.
func (l *Ledger) commitGroup(group []*op) {
	ctx := context.Background()
	errs := make([]error, len(group))
	fail := func(err error) {
		for _, o := range group {
			o.done <- err
		}
	}
	if err := l.brokenErr(); err != nil {
		fail(err)
		return
	}
	tx, err := l.write.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("ledger begin: %w", err))
		return
	}
	if len(group) == 1 {
		// One write needs no savepoint (whose sub-journal copies every page
		// it touches): refused, the whole transaction rolls back. Its answer
		// still waits for the sync, as it may rest on writes not yet synced.
		if err := group[0].apply(ctx, tx); err != nil {
			if rerr := tx.Rollback(); rerr != nil {
				fail(fmt.Errorf("ledger rollback: %w", rerr))
				return
			}
			errs[0] = err
			l.toSync <- written{seq: l.currentCommit(), group: group, errs: errs}
			return
		}
		seq := l.nextCommit()
		if err := tx.Commit(); err != nil {
			fail(fmt.Errorf("ledger commit: %w", err))
			l.toSync <- written{seq: seq}
			return
		}
		l.toSync <- written{seq: seq, group: group, errs: errs}
		return
	}
	for i, o := range group {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT op"); err != nil {
			errs[i] = err
			continue
		}
		if err := o.apply(ctx, tx); err != nil {
			errs[i] = err
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO op"); rerr != nil {
				_ = tx.Rollback()
				fail(fmt.Errorf("ledger rollback to savepoint: %w", rerr))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE op"); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("ledger release savepoint: %w", err))
			return
		}
	}
	seq := l.nextCommit()
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("ledger commit: %w", err))
		l.toSync <- written{seq: seq}
		return
	}
	l.toSync <- written{seq: seq, group: group, errs: errs}
}

// nextCommit numbers a COMMIT about to start: from here on a reader may see
// it.
func (l *Ledger) nextCommit() uint64 {
	l.durMu.Lock()
	defer l.durMu.Unlock()
	l.committing++
	return l.committing
}

func (l *Ledger) currentCommit() uint64 {
	l.durMu.Lock()
	defer l.durMu.Unlock()
	return l.committing
}

// durable returns v once every commit the read that made it could have
// seen is durable (waitSynced): what a reader is shown — a hold, a
// balance, an outbox event a webhook is about to carry — is never a write
// a crash could still take back.
func durable[T any](ctx context.Context, l *Ledger, v T, err error) (T, error) {
	if err != nil {
		return v, err
	}
	if err := l.waitSynced(ctx); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// waitSynced returns once every commit a read just made could have seen is
// durable (call it after the read), or the error that keeps it from being.
func (l *Ledger) waitSynced(ctx context.Context) error {
	l.durMu.Lock()
	defer l.durMu.Unlock()
	target := l.committing
	if l.synced >= target {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		l.durMu.Lock()
		l.durCond.Broadcast()
		l.durMu.Unlock()
	})
	defer stop()
	for l.synced < target {
		if err := l.brokenErr(); err != nil {
			return err
		}
		if l.stopped {
			return claims.ErrLedgerClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		l.durCond.Wait()
	}
	return nil
}

func (l *Ledger) brokenErr() error {
	l.brokenMu.Lock()
	defer l.brokenMu.Unlock()
	return l.broken
}

// syncer makes written groups durable: one fdatasync of the WAL for
// whatever the writer has committed since the last, then the answers.
func (l *Ledger) syncer() {
	defer close(l.syncDone)
	defer func() {
		l.durMu.Lock()
		l.stopped = true
		l.durCond.Broadcast()
		l.durMu.Unlock()
	}()
	var batch []written
	for w := range l.toSync {
		batch = append(batch[:0], w)
	more:
		for {
			select {
			case n, ok := <-l.toSync:
				if !ok {
					break more
				}
				batch = append(batch, n)
			default:
				break more
			}
		}
		err := l.brokenErr()
		if err == nil {
			if err = l.syncWAL(); err != nil {
				err = fmt.Errorf("ledger sync: %w", err)
				l.log.Error("ledger sync failed; the ledger takes no more writes until it is reopened", "err", err)
				l.brokenMu.Lock()
				l.broken = err
				l.brokenMu.Unlock()
			}
		}
		if err == nil {
			l.durMu.Lock()
			for _, w := range batch {
				l.synced = max(l.synced, w.seq)
			}
			l.durCond.Broadcast()
			l.durMu.Unlock()
		} else {
			l.durMu.Lock()
			l.durCond.Broadcast()
			l.durMu.Unlock()
		}
		for _, w := range batch {
			for i, o := range w.group {
				if err != nil {
					o.done <- err
				} else {
					o.done <- w.errs[i]
				}
			}
		}
	}
}

// syncWAL fdatasyncs the WAL file, reopening it if SQLite has replaced it
// (it removes the WAL only after checkpointing it into the database, which
// SQLite syncs itself, so a replaced file has nothing of ours unsynced).
func (l *Ledger) syncWAL() error {
	if l.wal != nil {
		a, aerr := l.wal.Stat()
		b, berr := os.Stat(l.walPath)
		if aerr != nil || berr != nil || !os.SameFile(a, b) {
			_ = l.wal.Close()
			l.wal = nil
		}
	}
	if l.wal == nil {
		f, err := os.OpenFile(l.walPath, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil // no WAL: everything is in the database file, synced by its checkpoint
		}
		if err != nil {
			return err
		}
		l.wal = f
	}
	return fdatasync(l.wal)
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

// CreateDrop records a new drop.
func (l *Ledger) CreateDrop(ctx context.Context, d *claims.Drop) error {
	stages, err := json.Marshal(d.Stages)
	if err != nil {
		return err
	}
	return l.submit(ctx, 1, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO drops (id, channel, sku, title, stock, remaining, price_minor, currency,
			opens_at, closes_at, grace_ns, cap, stages, limited_run_id, creator_id, policy, bucket_ns, claim_code, cue_code,
			seed, seed_hash, state, closed_at, close_reason, created_at, budget_ns, budget_basis,
			pay_window_ns, pay_methods, listen_step_ns)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			d.ID, d.Channel, d.SKU, d.Title, d.Stock, d.Stock, d.PriceMinor, d.Currency,
			ns(d.OpensAt), ns(d.ClosesAt), int64(d.Grace), d.Cap, string(stages), d.LimitedRunID, d.CreatorID,
			string(d.Policy), int64(d.BucketWidth), d.ClaimCode, int64(d.CueCode), d.Seed, d.SeedHash, string(d.State),
			ns(d.ClosedAt), d.CloseReason, ns(d.CreatedAt), int64(d.Budget), d.BudgetBasis,
			int64(d.PayWindow), strings.Join(d.PayMethods, ","), int64(d.ListenStep))
		if isUnique(err) {
			return fmt.Errorf("drop %s: %w", d.ID, claims.ErrDropExists)
		}
		return err
	})
}

const dropColumns = `id, channel, sku, title, stock, remaining, price_minor, currency, opens_at, closes_at, grace_ns, cap,
	stages, limited_run_id, creator_id, policy, bucket_ns, claim_code, cue_code, seed, seed_hash, state, closed_at,
	close_reason, created_at, budget_ns, budget_basis, pay_window_ns, pay_methods, listen_step_ns`

type scanner interface{ Scan(...any) error }

func scanDrop(s scanner) (*claims.Drop, error) {
	var d claims.Drop
	var opens, closes, grace, bucket, cue, closed, created, budget, payWindow, listen int64
	var stages, policy, state, methods string
	if err := s.Scan(&d.ID, &d.Channel, &d.SKU, &d.Title, &d.Stock, &d.Remaining, &d.PriceMinor, &d.Currency,
		&opens, &closes, &grace, &d.Cap, &stages, &d.LimitedRunID, &d.CreatorID, &policy, &bucket, &d.ClaimCode,
		&cue, &d.Seed, &d.SeedHash, &state, &closed, &d.CloseReason, &created, &budget, &d.BudgetBasis, &payWindow, &methods, &listen); err != nil {
		return nil, err
	}
	d.Budget = time.Duration(budget)
	if methods != "" {
		d.PayMethods = strings.Split(methods, ",")
	}
	d.PayWindow = time.Duration(payWindow)
	d.OpensAt, d.ClosesAt, d.ClosedAt, d.CreatedAt = fromNS(opens), fromNS(closes), fromNS(closed), fromNS(created)
	d.Grace, d.BucketWidth = time.Duration(grace), time.Duration(bucket)
	d.CueCode, d.ListenStep = uint32(cue), time.Duration(listen)
	d.Policy, d.State = claims.Policy(policy), claims.State(state)
	if err := json.Unmarshal([]byte(stages), &d.Stages); err != nil {
		return nil, fmt.Errorf("drop %s stages: %w", d.ID, err)
	}
	return &d, nil
}

// Drop returns one drop.
func (l *Ledger) Drop(ctx context.Context, id string) (*claims.Drop, error) {
	d, err := scanDrop(l.read.QueryRowContext(ctx, "SELECT "+dropColumns+" FROM drops WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: claims.ErrDropNotFound}
	}
	return d, err
}

// Drops lists drops newest first.
func (l *Ledger) Drops(ctx context.Context, f claims.DropFilter) ([]*claims.Drop, error) {
	q := "SELECT " + dropColumns + " FROM drops WHERE 1=1"
	var args []any
	if f.Channel != "" {
		q += " AND channel = ?"
		args = append(args, f.Channel)
	}
	if f.Live {
		q += " AND state IN ('scheduled','open','grace')"
	}
	q += " ORDER BY created_at DESC, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := l.read.QueryContext(ctx, q, args...)
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

// insertChunk rows go into one INSERT statement.
const insertChunk = 64

// insertSizes are the prepared entry INSERTs: a batch of n entries takes
// the largest that fits, then the next, so a batch of 14 is 3 statements
// (8+4+2), not 14.
var insertSizes = []int{insertChunk, 32, 16, 8, 4, 2, 1}

// insertSize is the largest prepared INSERT for n entries left.
func insertSize(n int) int {
	for _, s := range insertSizes {
		if n >= s {
			return s
		}
	}
	return 1
}

var insertSQL = func() map[int]string {
	m := map[int]string{}
	row := "(?,?,?,?,?,?,?,?,?,?,?,?,?,0)"
	for _, n := range insertSizes {
		m[n] = "INSERT INTO entries (" + entryColumns + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
	}
	return m
}()

func entryArgs(args []any, e *claims.Entry) []any {
	var tok any
	if e.Token != "" {
		tok = e.Token
	}
	return append(args, e.DropID, e.Seq, e.UserID, e.Login, storedUnit(e), e.Cap, e.Outcome, ns(e.ArrivedAt), e.Bucket,
		ns(e.DecidedAt), tok, ns(e.ExpiresAt), e.CueStep)
}

// storedUnit is the unit column: the won unit, or -seq for an entry that
// holds none (so the unique (drop, user, unit) index only bites on wins).
func storedUnit(e *claims.Entry) int64 {
	if e.Outcome == claims.OutcomeWon {
		return int64(e.Unit)
	}
	return -e.Seq
}

// Commit applies a decider's batch atomically.
func (l *Ledger) Commit(ctx context.Context, b claims.Batch) error {
	return l.CommitAsync(ctx, b)()
}

// CommitAsync queues b behind every write queued before it and returns the
// wait for its outcome (claims.AsyncLedger), so the decider's next batch is
// written while this one syncs.
func (l *Ledger) CommitAsync(ctx context.Context, b claims.Batch) func() error {
	return l.enqueue(ctx, len(b.Insert)+len(b.Update)+len(b.Holds)+1, func(ctx context.Context, tx *sql.Tx) error {
		return l.apply(ctx, tx, b)
	})
}

const (
	updateRemaining = "UPDATE drops SET remaining = remaining - ? WHERE id = ? AND remaining >= ?"
	updateEntry     = `UPDATE entries SET outcome = ?, unit = ?, token = ?, expires_at = ?, decided_at = ?
			WHERE drop_id = ? AND seq = ?`
	updateState = "UPDATE drops SET state = ?, closes_at = ?, grace_ns = ?, closed_at = ?, close_reason = ? WHERE id = ?"
)

// exec runs a prepared statement inside the writer's transaction.
func (l *Ledger) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	return tx.StmtContext(ctx, l.stmts[q]).ExecContext(ctx, args...)
}

func (l *Ledger) apply(ctx context.Context, tx *sql.Tx, b claims.Batch) error {
	if b.Wins > 0 {
		res, err := l.exec(ctx, tx, updateRemaining, b.Wins, b.DropID, b.Wins)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("drop %s, %d wins: %w", b.DropID, b.Wins, claims.ErrStockExhausted)
		}
	}
	args := make([]any, 0, 13*insertChunk)
	for i := 0; i < len(b.Insert); {
		n := insertSize(len(b.Insert) - i)
		args = args[:0]
		for j := i; j < i+n; j++ {
			if b.Insert[j].DropID != b.DropID {
				return fmt.Errorf("entry for drop %s in batch of drop %s", b.Insert[j].DropID, b.DropID)
			}
			args = entryArgs(args, &b.Insert[j])
		}
		if _, err := l.exec(ctx, tx, insertSQL[n], args...); err != nil {
			return uniqueErr(err)
		}
		i += n
	}
	for _, e := range b.Update {
		var tok any
		if e.Token != "" {
			tok = e.Token
		}
		res, err := l.exec(ctx, tx, updateEntry, e.Outcome, storedUnit(&e), tok, ns(e.ExpiresAt), ns(e.DecidedAt), b.DropID, e.Seq)
		if err != nil {
			return uniqueErr(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("update of unrecorded entry %s#%d", b.DropID, e.Seq)
		}
	}
	for i := 0; i < len(b.Holds); {
		n := 1
		if len(b.Holds)-i >= insertChunk {
			n = insertChunk
		}
		args = args[:0]
		for j := i; j < i+n; j++ {
			if b.Holds[j].DropID != b.DropID {
				return fmt.Errorf("hold for drop %s in batch of drop %s", b.Holds[j].DropID, b.DropID)
			}
			args = holdArgs(args, &b.Holds[j])
		}
		if _, err := l.exec(ctx, tx, insertHoldSQL[n], args...); err != nil {
			if isUnique(err) {
				return fmt.Errorf("hold of batch %s: %w", b.DropID, claims.ErrDuplicateWin)
			}
			return err
		}
		i += n
	}
	if len(b.Holds) > 0 {
		// Only priced drops have holds: a free drop's claims write no
		// outbox row.
		d, err := eventDrop(ctx, tx, b.DropID)
		if err != nil {
			return err
		}
		for i := range b.Holds {
			h := &b.Holds[i]
			if err := writeEvents(ctx, tx, claims.HoldOutboxEvent(claims.EventHoldWon, d, *h, l.holder, h.CreatedAt)); err != nil {
				return err
			}
		}
	}
	if s := b.State; s != nil {
		res, err := l.exec(ctx, tx, updateState, string(s.State), ns(s.ClosesAt), int64(s.Grace), ns(s.ClosedAt), s.CloseReason, b.DropID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: claims.ErrDropNotFound}
		}
	}
	return nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func uniqueErr(err error) error {
	switch {
	case !isUnique(err):
		return err
	case strings.Contains(err.Error(), "entries.token"):
		return fmt.Errorf("%w: %v", claims.ErrTokenCollision, err)
	case strings.Contains(err.Error(), "entries.unit"):
		return fmt.Errorf("%w: %v", claims.ErrDuplicateWin, err)
	}
	return fmt.Errorf("%w: %v", claims.ErrDuplicateWin, err)
}

func scanEntry(s scanner) (claims.Entry, error) {
	var e claims.Entry
	var arrived, decided, expires, redeemed int64
	var tok sql.NullString
	err := s.Scan(&e.DropID, &e.Seq, &e.UserID, &e.Login, &e.Unit, &e.Cap, &e.Outcome, &arrived, &e.Bucket, &decided, &tok, &expires, &e.CueStep, &redeemed)
	e.ArrivedAt, e.DecidedAt, e.ExpiresAt, e.Redeemed = fromNS(arrived), fromNS(decided), fromNS(expires), fromNS(redeemed)
	e.Token = tok.String
	if e.Unit < 0 {
		e.Unit = 0
	}
	return e, err
}

func (l *Ledger) entries(ctx context.Context, q string, args ...any) ([]claims.Entry, error) {
	rows, err := l.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return l.durableEntries(ctx, rows)
}

// durableEntries scans entries, returning them once whatever the read saw
// is durable: a token is never shown before its win is on disk.
func (l *Ledger) durableEntries(ctx context.Context, rows *sql.Rows) ([]claims.Entry, error) {
	es, err := scanEntries(rows)
	if err != nil {
		return nil, err
	}
	if err := l.waitSynced(ctx); err != nil {
		return nil, err
	}
	return es, nil
}

func scanEntries(rows *sql.Rows) ([]claims.Entry, error) {
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
	return l.entries(ctx, "SELECT "+entryColumns+" FROM entries WHERE drop_id = ? ORDER BY seq", dropID)
}

// UserEntries lists one user's entries in a drop.
func (l *Ledger) UserEntries(ctx context.Context, dropID, userID string) ([]claims.Entry, error) {
	rows, err := l.userEntries.QueryContext(ctx, dropID, userID)
	if err != nil {
		return nil, err
	}
	return l.durableEntries(ctx, rows)
}

// userEntriesSQL names its index: left to itself the planner walked the
// drop's whole primary key to have seq in order, so every claim page load
// cost the drop's size (a 20,000-viewer stampede went quadratic).
const userEntriesSQL = "SELECT " + entryColumns + " FROM entries INDEXED BY entries_by_user WHERE drop_id = ? AND user_id = ? ORDER BY seq"

// Redeem marks a win redeemed exactly once. The check and the mark are one
// conditional UPDATE inside the single writer, so two desks scanning the
// same code at once cannot both succeed.
func (l *Ledger) Redeem(ctx context.Context, token string, at time.Time) (claims.Entry, error) {
	var e claims.Entry
	err := l.submit(ctx, 1, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		e, err = scanEntry(tx.QueryRowContext(ctx, "SELECT "+entryColumns+" FROM entries WHERE token = ?", token))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return claims.ErrTokenUnknown
		case err != nil:
			return err
		case e.Outcome != claims.OutcomeWon:
			return claims.ErrTokenUnknown
		case !e.Redeemed.IsZero():
			return claims.ErrTokenUsed
		case !at.Before(e.ExpiresAt):
			return claims.ErrTokenExpired
		}
		res, err := tx.ExecContext(ctx, "UPDATE entries SET redeemed_at = ? WHERE token = ? AND redeemed_at = 0", ns(at), token)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return claims.ErrTokenUsed
		}
		e.Redeemed = fromNS(ns(at))
		return nil
	})
	return e, err
}
