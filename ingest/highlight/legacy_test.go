package highlight_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// oldSchema is how versions before highlights.db kept highlights inside
// ledger.db.
const oldSchema = `
CREATE TABLE highlight_sessions (id TEXT PRIMARY KEY, path TEXT NOT NULL, channel TEXT NOT NULL,
	started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE highlights (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, channel TEXT NOT NULL, path TEXT NOT NULL,
	drop_id TEXT NOT NULL, reason TEXT NOT NULL, label TEXT NOT NULL, by_login TEXT NOT NULL, state TEXT NOT NULL,
	error TEXT NOT NULL, at INTEGER NOT NULL, stream_time_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL,
	duration_ns INTEGER NOT NULL, asked_ns INTEGER NOT NULL, file TEXT NOT NULL, bytes INTEGER NOT NULL,
	sha256 TEXT NOT NULL, trim_in_ns INTEGER NOT NULL DEFAULT 0, trim_out_ns INTEGER NOT NULL DEFAULT 0,
	twitch_clip_id TEXT NOT NULL DEFAULT '', twitch_clip_url TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE TABLE cues_aired (drop_id TEXT NOT NULL, channel TEXT NOT NULL, stream TEXT NOT NULL, code INTEGER NOT NULL,
	delay_ms INTEGER NOT NULL, snr_db REAL NOT NULL, heard_at INTEGER NOT NULL, at INTEGER NOT NULL);
`

// TestImportLedgerTables: a data dir from before keeps working: the
// highlight tables in its ledger.db are copied into highlights.db once,
// trims included, and the ledger opens as before with them still in it.
func TestImportLedgerTables(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ledgerPath := filepath.Join(dir, "ledger.db")
	l, err := sqlite.Open(ctx, ledgerPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, err := sql.Open("sqlite", "file:"+ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	sid := highlight.SessionID("live", t0)
	for _, q := range []string{oldSchema,
		`INSERT INTO highlight_sessions VALUES ('` + sid + `', 'live', 'chan1', 1783188000000000000, 1783191600000000000)`,
		`INSERT INTO highlights VALUES ('h0123456789abcdef', '` + sid + `', 'chan1', 'live', 'd1', 'open', '', '', 'ready', '',
			1783188060000000000, 60000000000, 58000000000, 5000000000, 5000000000, '` + sid + `/h0123456789abcdef.mp4', 1234,
			'ab', 1000000000, 3000000000, '', '', 1783188060000000000)`,
		`INSERT INTO cues_aired VALUES ('d1', 'chan1', 'live', 305419896, 2340, 18.5, 1783188062340000000, 1783188062340000000)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if n, err := store.ImportLedgerTables(ctx, ledgerPath); err != nil || n != 1 {
		t.Fatalf("import: %d sessions, %v; want 1", n, err)
	}
	if n, err := store.ImportLedgerTables(ctx, ledgerPath); err != nil || n != 0 {
		t.Fatalf("second import: %d sessions, %v; want nothing", n, err)
	}
	ss, err := store.Sessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].ID != sid || !ss[0].StartedAt.Equal(t0) {
		t.Fatalf("sessions %+v %v", ss, err)
	}
	h, err := store.Highlight(ctx, "h0123456789abcdef")
	if err != nil || h.TrimIn != time.Second || h.TrimOut != 3*time.Second || h.State != highlight.HighlightReady ||
		len(h.Moments) != 1 || h.Moments[0].Reason != highlight.ReasonOpen {
		t.Fatalf("highlight %+v %v", h, err)
	}
	if cs, err := store.Cues(ctx, "d1"); err != nil || len(cs) != 1 || cs[0].DelayMS != 2340 {
		t.Fatalf("cues %+v %v", cs, err)
	}
	l, err = sqlite.Open(ctx, ledgerPath, nil)
	if err != nil {
		t.Fatalf("the ledger with its old highlight tables: %v", err)
	}
	l.Close()

	// A data dir that never had them: nothing to copy, no error.
	fresh, err := highlight.OpenSQLite(ctx, filepath.Join(t.TempDir(), "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if n, err := fresh.ImportLedgerTables(ctx, filepath.Join(t.TempDir(), "ledger.db")); err != nil || n != 0 {
		t.Errorf("import without a ledger: %d, %v", n, err)
	}
}
