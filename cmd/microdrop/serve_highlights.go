package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// startHighlights starts capture (a rolling buffer per stream, a clip
// around every drop moment), and mounts the editor on /editor.
func (m *Main) startHighlights(ctx context.Context) error {
	store, err := highlight.OpenSQLite(ctx, highlightsDB(m.Config.Data))
	if err != nil {
		return err
	}
	m.onClose("highlights store", store.Close)
	dir := filepath.Join(m.Config.Data, "highlights")
	h := m.Config.Highlights
	if m.Ingest != nil {
		capt, err := highlight.NewCapturer(highlight.CaptureDeps{
			Logger: m.Logger, Bus: m.Bus, Streams: m.Ingest, Store: store, Now: m.Now, Clips: m.clips,
			Config: highlight.CaptureConfig{
				Dir:         dir,
				Buffer:      highlight.RingConfig{MaxDuration: time.Duration(h.BufferSeconds) * time.Second, MaxBytes: int64(h.BufferMB) << 20},
				Pre:         time.Duration(h.Pre),
				Post:        time.Duration(h.Post),
				SurgePerSec: h.SurgePerSec,
			},
		})
		if err != nil {
			return err
		}
		if err := capt.Start(ctx); err != nil {
			return err
		}
		m.onClose("highlights", capt.Close)
	}
	salt, _, err := readOrCreateSecret(filepath.Join(m.Config.Data, "export-salt"))
	if err != nil {
		return err
	}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: store, Drops: ledgerDrops{m.Ledger}, Dir: dir, Salt: []byte(salt),
		PublicURL: m.publicURL(), Now: m.Now})
	if err != nil {
		return err
	}
	ed := highlight.NewHandler(highlight.HandlerDeps{Store: store, Exporter: x, Admin: m.Admin, Dir: dir, Logger: m.Logger, Now: m.Now})
	m.Mux.Handle("/editor", ed)
	m.Mux.Handle("/editor/", ed)
	return nil
}

// highlightsDB is the SQLite file highlight metadata lives in, whatever
// the ledger: its own, so highlight writes never queue behind claims
// commits. Data dirs from before kept highlight tables in ledger.db; they
// stay there unread, and highlights.db starts empty.
func highlightsDB(data string) string { return filepath.Join(data, "highlights.db") }
