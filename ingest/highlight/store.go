package highlight

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is everything the editor and export read and change. The SQLite
// one keeps its own file (highlights.db in the data dir), never the
// ledger's.
type Store interface {
	CaptureStore
	// Sessions lists sessions, newest first.
	Sessions(ctx context.Context) ([]Session, error)
	// Session returns one session (ErrNoSession when unknown).
	Session(ctx context.Context, id string) (Session, error)
	// Highlights lists a session's highlights in time order.
	Highlights(ctx context.Context, sessionID string) ([]Highlight, error)
	// Highlight returns one highlight (ErrNoHighlight when unknown).
	Highlight(ctx context.Context, id string) (Highlight, error)
	// SetTrim stores trim points for a ready highlight: 0 <= in < out <=
	// duration, or both zero to clear. Anything else is ErrBadTrim
	// and changes nothing.
	SetTrim(ctx context.Context, id string, in, out time.Duration) (Highlight, error)
	// SetCrop stores where the vertical 9:16 window sits across a ready
	// highlight: 0 (left edge) to 1 (right edge), 0.5 the centre. Anything
	// else is ErrBadTrim and changes nothing.
	SetCrop(ctx context.Context, id string, x float64) (Highlight, error)
	// SaveImage records a stored image and its signature (idempotent: the
	// same bytes are the same row).
	SaveImage(ctx context.Context, im ImageRecord) error
	// Image returns a stored image's record (ErrNoImage when unknown).
	Image(ctx context.Context, sha string) (ImageRecord, error)
	// SetDropImage makes a stored image the product image of a drop.
	SetDropImage(ctx context.Context, dropID, sha string) error
	// DropImage is the product image of a drop, "" when it has none.
	DropImage(ctx context.Context, dropID string) (string, error)
	// Stills lists a drop's evidence stills (one per stream that carried
	// it).
	Stills(ctx context.Context, dropID string) ([]Still, error)
	// Cues lists the aired cues of a drop, oldest first.
	Cues(ctx context.Context, dropID string) ([]CueRecord, error)
	Close() error
}

const schema = `
CREATE TABLE IF NOT EXISTS highlight_sessions (
	id TEXT PRIMARY KEY,
	path TEXT NOT NULL,
	channel TEXT NOT NULL,
	started_at INTEGER NOT NULL,
	ended_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS highlights (
	id TEXT PRIMARY KEY,
	session_id TEXT NOT NULL,
	channel TEXT NOT NULL,
	path TEXT NOT NULL,
	drop_id TEXT NOT NULL,
	reason TEXT NOT NULL,
	label TEXT NOT NULL,
	by_login TEXT NOT NULL,
	state TEXT NOT NULL,
	error TEXT NOT NULL,
	at INTEGER NOT NULL,
	stream_time_ns INTEGER NOT NULL,
	start_ns INTEGER NOT NULL,
	duration_ns INTEGER NOT NULL,
	asked_ns INTEGER NOT NULL,
	file TEXT NOT NULL,
	bytes INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	trim_in_ns INTEGER NOT NULL DEFAULT 0,
	trim_out_ns INTEGER NOT NULL DEFAULT 0,
	twitch_clip_id TEXT NOT NULL DEFAULT '',
	twitch_clip_url TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	moments TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS highlights_by_session ON highlights (session_id, at);
CREATE TABLE IF NOT EXISTS cues_aired (
	drop_id TEXT NOT NULL,
	channel TEXT NOT NULL,
	stream TEXT NOT NULL,
	code INTEGER NOT NULL,
	delay_ms INTEGER NOT NULL,
	snr_db REAL NOT NULL,
	heard_at INTEGER NOT NULL,
	at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cues_by_drop ON cues_aired (drop_id, at);
CREATE TABLE IF NOT EXISTS highlight_crops (
	highlight_id TEXT PRIMARY KEY,
	crop_x REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
	sha256 TEXT PRIMARY KEY,
	type TEXT NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	bytes INTEGER NOT NULL,
	key_id TEXT NOT NULL,
	sig BLOB NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS drop_images (
	drop_id TEXT PRIMARY KEY,
	sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drop_stills (
	drop_id TEXT NOT NULL,
	session_id TEXT NOT NULL,
	path TEXT NOT NULL,
	type TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	bytes INTEGER NOT NULL,
	opened_at INTEGER NOT NULL,
	stream_time_ns INTEGER NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (drop_id, session_id)
);
CREATE TABLE IF NOT EXISTS highlight_meta (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`

// SQLite is the Store in its own SQLite file (<data>/highlights.db). It
// never shares the ledger's file: a highlight write at a drop's open must
// not wait behind a claims group commit for the file's one writer lock.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating tables if needed) the store at path, in WAL
// mode, so `microdrop export` can read it while the server writes.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open highlights store %s: %w", path, err)
	}
	db.SetMaxOpenConns(2)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("highlights schema in %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// Close releases the connections.
func (s *SQLite) Close() error { return s.db.Close() }

func unixNS(t time.Time) int64 {
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

// SaveSession inserts s or updates its end.
func (s *SQLite) SaveSession(ctx context.Context, x Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO highlight_sessions (id, path, channel, started_at, ended_at) VALUES (?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET ended_at = excluded.ended_at`,
		x.ID, x.Path, x.Channel, unixNS(x.StartedAt), unixNS(x.EndedAt))
	return err
}

// SaveHighlight inserts h or replaces its capture fields.
func (s *SQLite) SaveHighlight(ctx context.Context, h Highlight) error {
	moments, err := json.Marshal(h.Moments)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO highlights (id, session_id, channel, path, drop_id, reason, label, by_login, state, error,
		at, stream_time_ns, start_ns, duration_ns, asked_ns, file, bytes, sha256, created_at, moments)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, error = excluded.error, start_ns = excluded.start_ns,
		duration_ns = excluded.duration_ns, asked_ns = excluded.asked_ns, file = excluded.file, bytes = excluded.bytes,
		sha256 = excluded.sha256, moments = excluded.moments`,
		h.ID, h.SessionID, h.Channel, h.Path, h.DropID, h.Reason, h.Label, h.By, h.State, h.Error,
		unixNS(h.At), int64(h.StreamTime), int64(h.Start), int64(h.Duration), int64(h.Asked), h.File, h.Bytes, h.SHA256, unixNS(h.CreatedAt),
		string(moments))
	return err
}

// SetTwitchClip records a platform clip.
func (s *SQLite) SetTwitchClip(ctx context.Context, id, clipID, url string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE highlights SET twitch_clip_id = ?, twitch_clip_url = ? WHERE id = ?`, clipID, url, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q", ErrNoHighlight, id)
	}
	return nil
}

// SaveCue records an aired cue.
func (s *SQLite) SaveCue(ctx context.Context, c CueRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO cues_aired (drop_id, channel, stream, code, delay_ms, snr_db, heard_at, at) VALUES (?,?,?,?,?,?,?,?)`,
		c.DropID, c.Channel, c.Stream, int64(c.Code), c.DelayMS, c.SNRDB, unixNS(c.HeardAt), unixNS(c.At))
	return err
}

// Sessions lists sessions, newest first.
func (s *SQLite) Sessions(ctx context.Context) ([]Session, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, path, channel, started_at, ended_at FROM highlight_sessions ORDER BY started_at DESC LIMIT 500`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var x Session
		var st, en int64
		if err := rows.Scan(&x.ID, &x.Path, &x.Channel, &st, &en); err != nil {
			return nil, err
		}
		x.StartedAt, x.EndedAt = fromNS(st), fromNS(en)
		out = append(out, x)
	}
	return out, rows.Err()
}

// Session returns one session.
func (s *SQLite) Session(ctx context.Context, id string) (Session, error) {
	if err := CheckSessionID(id); err != nil {
		return Session{}, fmt.Errorf("%w: session %q", err, id)
	}
	var x Session
	var st, en int64
	err := s.db.QueryRowContext(ctx, `SELECT id, path, channel, started_at, ended_at FROM highlight_sessions WHERE id = ?`, id).
		Scan(&x.ID, &x.Path, &x.Channel, &st, &en)
	if errors.Is(err, sql.ErrNoRows) {
		return x, fmt.Errorf("%w: %q", ErrNoSession, id)
	}
	x.StartedAt, x.EndedAt = fromNS(st), fromNS(en)
	return x, err
}

const highlightCols = `id, session_id, channel, path, drop_id, reason, label, by_login, state, error, at, stream_time_ns, start_ns,
	duration_ns, asked_ns, file, bytes, sha256, trim_in_ns, trim_out_ns, twitch_clip_id, twitch_clip_url, created_at, moments,
	COALESCE((SELECT crop_x FROM highlight_crops c WHERE c.highlight_id = highlights.id), 0.5)`

type scanner interface{ Scan(...any) error }

func scanHighlight(r scanner) (Highlight, error) {
	var h Highlight
	var at, st, start, dur, asked, tin, tout, created int64
	var moments string
	err := r.Scan(&h.ID, &h.SessionID, &h.Channel, &h.Path, &h.DropID, &h.Reason, &h.Label, &h.By, &h.State, &h.Error,
		&at, &st, &start, &dur, &asked, &h.File, &h.Bytes, &h.SHA256, &tin, &tout, &h.TwitchClipID, &h.TwitchClipURL, &created, &moments, &h.CropX)
	if err != nil {
		return h, err
	}
	h.At, h.CreatedAt = fromNS(at), fromNS(created)
	h.StreamTime, h.Start, h.Duration, h.Asked = time.Duration(st), time.Duration(start), time.Duration(dur), time.Duration(asked)
	h.TrimIn, h.TrimOut = time.Duration(tin), time.Duration(tout)
	if moments != "" {
		if err := json.Unmarshal([]byte(moments), &h.Moments); err != nil {
			return h, fmt.Errorf("highlight %s moments: %w", h.ID, err)
		}
	}
	if len(h.Moments) == 0 {
		h.Moments = []Moment{{Reason: h.Reason, DropID: h.DropID, Label: h.Label, By: h.By, At: h.At}}
	}
	return h, nil
}

// Highlights lists a session's highlights in time order.
func (s *SQLite) Highlights(ctx context.Context, sessionID string) ([]Highlight, error) {
	if err := CheckSessionID(sessionID); err != nil {
		return nil, fmt.Errorf("%w: session %q", err, sessionID)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+highlightCols+` FROM highlights WHERE session_id = ? ORDER BY at, id`, sessionID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Highlight
	for rows.Next() {
		h, err := scanHighlight(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// Highlight returns one highlight.
func (s *SQLite) Highlight(ctx context.Context, id string) (Highlight, error) {
	if err := CheckHighlightID(id); err != nil {
		return Highlight{}, fmt.Errorf("%w: highlight %q", err, id)
	}
	h, err := scanHighlight(s.db.QueryRowContext(ctx, `SELECT `+highlightCols+` FROM highlights WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("%w: %q", ErrNoHighlight, id)
	}
	return h, err
}

// SetTrim checks and stores trim points in one transaction.
func (s *SQLite) SetTrim(ctx context.Context, id string, in, out time.Duration) (Highlight, error) {
	if err := CheckHighlightID(id); err != nil {
		return Highlight{}, fmt.Errorf("%w: highlight %q", err, id)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Highlight{}, err
	}
	defer tx.Rollback()
	h, err := scanHighlight(tx.QueryRowContext(ctx, `SELECT `+highlightCols+` FROM highlights WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("%w: %q", ErrNoHighlight, id)
	}
	if err != nil {
		return h, err
	}
	if err := CheckTrim(h, in, out); err != nil {
		return h, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE highlights SET trim_in_ns = ?, trim_out_ns = ? WHERE id = ?`, int64(in), int64(out), id); err != nil {
		return h, err
	}
	if err := tx.Commit(); err != nil {
		return h, err
	}
	h.TrimIn, h.TrimOut = in, out
	return h, nil
}

// SetCrop checks and stores the vertical crop position.
func (s *SQLite) SetCrop(ctx context.Context, id string, x float64) (Highlight, error) {
	h, err := s.Highlight(ctx, id)
	if err != nil {
		return h, err
	}
	switch {
	case h.State != HighlightReady:
		return h, fmt.Errorf("%w: the clip is %s, not ready", ErrBadTrim, h.State)
	case !(x >= 0 && x <= 1):
		return h, fmt.Errorf("%w: crop position %v is outside 0..1", ErrBadTrim, x)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO highlight_crops (highlight_id, crop_x) VALUES (?, ?)
		ON CONFLICT(highlight_id) DO UPDATE SET crop_x = excluded.crop_x`, id, x); err != nil {
		return h, err
	}
	h.CropX = x
	return h, nil
}

// SaveImage records an image.
func (s *SQLite) SaveImage(ctx context.Context, im ImageRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO images (sha256, type, width, height, bytes, key_id, sig, created_at) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(sha256) DO NOTHING`, im.SHA256, im.Type, im.Width, im.Height, im.Bytes, im.KeyID, im.Signature, unixNS(im.CreatedAt))
	return err
}

// Image returns an image record.
func (s *SQLite) Image(ctx context.Context, sha string) (ImageRecord, error) {
	if err := CheckImageHash(sha); err != nil {
		return ImageRecord{}, err
	}
	var im ImageRecord
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT sha256, type, width, height, bytes, key_id, sig, created_at FROM images WHERE sha256 = ?`, sha).
		Scan(&im.SHA256, &im.Type, &im.Width, &im.Height, &im.Bytes, &im.KeyID, &im.Signature, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return im, fmt.Errorf("%w: %s", ErrNoImage, sha)
	}
	im.CreatedAt = fromNS(created)
	return im, err
}

// SetDropImage links a drop to a stored image.
func (s *SQLite) SetDropImage(ctx context.Context, dropID, sha string) error {
	if dropID == "" || len(dropID) > 128 {
		return fmt.Errorf("%w: drop id %q", ErrBadID, dropID)
	}
	if _, err := s.Image(ctx, sha); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO drop_images (drop_id, sha256) VALUES (?, ?)
		ON CONFLICT(drop_id) DO UPDATE SET sha256 = excluded.sha256`, dropID, sha)
	return err
}

// DropImage is a drop's product image hash.
func (s *SQLite) DropImage(ctx context.Context, dropID string) (string, error) {
	var sha string
	err := s.db.QueryRowContext(ctx, `SELECT sha256 FROM drop_images WHERE drop_id = ?`, dropID).Scan(&sha)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return sha, err
}

// CheckTrim validates trim points against a highlight.
func CheckTrim(h Highlight, in, out time.Duration) error {
	if in == 0 && out == 0 {
		return nil
	}
	if h.State != HighlightReady {
		return fmt.Errorf("%w: the clip is %s, not ready", ErrBadTrim, h.State)
	}
	switch {
	case in < 0:
		return fmt.Errorf("%w: in point %s is before the clip's start", ErrBadTrim, in)
	case out > h.Duration:
		return fmt.Errorf("%w: out point %s is past the clip's end (%s)", ErrBadTrim, out, h.Duration)
	case out <= in:
		return fmt.Errorf("%w: out point %s must come after in point %s", ErrBadTrim, out, in)
	}
	return nil
}

// SaveStill records a still; the first recorded for a drop and session
// stands (a replay of the open cannot replace the evidence).
func (s *SQLite) SaveStill(ctx context.Context, x Still) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO drop_stills (drop_id, session_id, path, type, sha256, bytes, opened_at, stream_time_ns, received_at)
		VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(drop_id, session_id) DO NOTHING`,
		x.DropID, x.SessionID, x.Path, x.Type, x.SHA256, x.Bytes, unixNS(x.OpenedAt), int64(x.StreamTime), unixNS(x.ReceivedAt))
	return err
}

// Stills lists a drop's stills.
func (s *SQLite) Stills(ctx context.Context, dropID string) ([]Still, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT drop_id, session_id, path, type, sha256, bytes, opened_at, stream_time_ns, received_at
		FROM drop_stills WHERE drop_id = ? ORDER BY received_at`, dropID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Still
	for rows.Next() {
		var x Still
		var opened, st, recv int64
		if err := rows.Scan(&x.DropID, &x.SessionID, &x.Path, &x.Type, &x.SHA256, &x.Bytes, &opened, &st, &recv); err != nil {
			return nil, err
		}
		x.OpenedAt, x.StreamTime, x.ReceivedAt = fromNS(opened), time.Duration(st), fromNS(recv)
		out = append(out, x)
	}
	return out, rows.Err()
}

// Cues lists a drop's aired cues.
func (s *SQLite) Cues(ctx context.Context, dropID string) ([]CueRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT drop_id, channel, stream, code, delay_ms, snr_db, heard_at, at FROM cues_aired WHERE drop_id = ? ORDER BY at`, dropID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CueRecord
	for rows.Next() {
		var c CueRecord
		var code, heard, at int64
		if err := rows.Scan(&c.DropID, &c.Channel, &c.Stream, &code, &c.DelayMS, &c.SNRDB, &heard, &at); err != nil {
			return nil, err
		}
		c.Code, c.HeardAt, c.At = uint32(code), fromNS(heard), fromNS(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// isNotFound reports the store's not-found errors.
func isNotFound(err error) bool {
	return errors.Is(err, ErrNoSession) || errors.Is(err, ErrNoHighlight) || errors.Is(err, ErrNoImage)
}
