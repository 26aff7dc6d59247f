package highlight

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
)

// legacyTables are the highlight tables older versions kept inside the
// ledger's SQLite file, with the columns they had.
func legacyTables() []struct{ name, cols string } {
	return []struct{ name, cols string }{
		{"highlight_sessions", "id, path, channel, started_at, ended_at"},
		{"highlights", `id, session_id, channel, path, drop_id, reason, label, by_login, state, error, at, stream_time_ns, start_ns,
	duration_ns, asked_ns, file, bytes, sha256, trim_in_ns, trim_out_ns, twitch_clip_id, twitch_clip_url, created_at`},
		{"cues_aired", "drop_id, channel, stream, code, delay_ms, snr_db, heard_at, at"},
	}
}

// ImportLedgerTables copies the highlight tables an older version kept in
// the ledger's SQLite file at ledgerPath into this store, once: later
// calls, and a ledger without those tables, copy nothing. The ledger file
// is only read (its old tables stay, unused). It returns how many
// sessions were copied.
func (s *SQLite) ImportLedgerTables(ctx context.Context, ledgerPath string) (int, error) {
	const key = "ledger_import"
	var done int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM highlight_meta WHERE key = ?`, key).Scan(&done)
	if err != nil || done > 0 {
		return 0, err
	}
	if _, err := os.Stat(ledgerPath); errors.Is(err, os.ErrNotExist) {
		_, err = s.db.ExecContext(ctx, `INSERT OR IGNORE INTO highlight_meta (key, value) VALUES (?, 'no ledger file')`, key)
		return 0, err
	}
	old, err := sql.Open("sqlite", "file:"+ledgerPath+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, fmt.Errorf("open ledger %s to import highlights: %w", ledgerPath, err)
	}
	defer old.Close()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	sessions := 0
	for _, t := range legacyTables() {
		var n int
		if err := old.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, t.name).Scan(&n); err != nil {
			return 0, fmt.Errorf("read ledger %s: %w", ledgerPath, err)
		}
		if n == 0 {
			continue
		}
		copied, err := copyRows(ctx, old, tx, t.name, t.cols)
		if err != nil {
			return 0, fmt.Errorf("import %s from %s: %w", t.name, ledgerPath, err)
		}
		if t.name == "highlight_sessions" {
			sessions = copied
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO highlight_meta (key, value) VALUES (?, ?)`, key, ledgerPath); err != nil {
		return 0, err
	}
	return sessions, tx.Commit()
}

func copyRows(ctx context.Context, from *sql.DB, to *sql.Tx, table, cols string) (int, error) {
	rows, err := from.QueryContext(ctx, `SELECT `+cols+` FROM `+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := strings.Count(cols, ",") + 1
	ins := `INSERT OR IGNORE INTO ` + table + ` (` + cols + `) VALUES (?` + strings.Repeat(",?", n-1) + `)`
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	copied := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return copied, err
		}
		if _, err := to.ExecContext(ctx, ins, vals...); err != nil {
			return copied, err
		}
		copied++
	}
	return copied, rows.Err()
}
