package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/microdrop/microdrop/chat/twitch"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// startHighlights starts capture (a rolling buffer per stream, a clip
// around every drop moment), and mounts the editor on /editor.
func (m *Main) startHighlights(ctx context.Context) error {
	store, err := openHighlights(ctx, m.Config.Data, sqliteLedgerFile(m.Config), m.Logger)
	if err != nil {
		return err
	}
	m.onClose("highlights store", store.Close)
	m.highlights.Store(store)
	dir := filepath.Join(m.Config.Data, "highlights")
	h := m.Config.Highlights
	vert, verr := highlight.FindVerticalizer("")
	if verr != nil {
		// The 16:9 remux needs nothing; say once why the 9:16 choice is missing.
		m.Logger.Warn("vertical 9:16 clip export is off, and drop stills stay one-frame MP4s; 16:9 clips export as before",
			"component", "highlights", "reason", verr.Error())
	}
	if m.Ingest != nil {
		deps := highlight.CaptureDeps{
			Logger: m.Logger, Bus: m.Bus, Streams: m.Ingest, Store: store, Now: m.Now, Clips: m.clips,
			Config: highlight.CaptureConfig{
				Dir:         dir,
				Buffer:      highlight.RingConfig{MaxDuration: time.Duration(h.BufferSeconds) * time.Second, MaxBytes: int64(h.BufferMB) << 20},
				BufferTotal: int64(h.BufferMBTotal) << 20,
				Channels:    boundChannels(m.Config),
				Pre:         time.Duration(h.Pre),
				Post:        time.Duration(h.Post),
				SurgePerSec: h.SurgePerSec,
			},
		}
		if vert != nil {
			deps.Stills = vert
		}
		capt, err := highlight.NewCapturer(deps)
		if err != nil {
			return err
		}
		if err := capt.Start(ctx); err != nil {
			return err
		}
		capt.LimitGCHeadroom(ctx) // unless GOMEMLIMIT is set
		m.onClose("highlights", capt.Close)
	}
	salt, _, err := readOrCreateSecret(filepath.Join(m.Config.Data, "export-salt"))
	if err != nil {
		return err
	}
	signer, keys, err := imageSigner(m.Config.Data)
	if err != nil {
		return err
	}
	imgs := &highlight.Images{Dir: filepath.Join(m.Config.Data, "images"), Store: store, Signer: signer, Now: m.Now}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: store, Drops: ledgerDrops{m.Ledger}, Dir: dir, Salt: []byte(salt),
		PublicURL: m.publicURL(), Now: m.Now, Vertical: vert, Images: imgs, Signer: signer, Keys: keys, Creators: creatorsOf(m.Config)})
	if err != nil {
		return err
	}
	ih := highlight.NewImageHandler(highlight.ImageHandlerDeps{Images: imgs, Admin: m.Admin, DropExists: dropExists(m.Ledger), Logger: m.Logger})
	m.Mux.Handle("POST /api/images", ih)
	m.Mux.Handle("GET /api/images/{sha}", ih)
	m.Mux.Handle("PUT /api/drops/{id}/image", ih)
	m.Mux.Handle("GET /images/{sha}", ih)
	ed := highlight.NewHandler(highlight.HandlerDeps{Store: store, Exporter: x, Admin: m.Admin, Dir: dir, Logger: m.Logger, Now: m.Now})
	m.Mux.Handle("/editor", ed)
	m.Mux.Handle("/editor/", ed)
	return nil
}

// boundChannels are the channels this server opens drops for, whose
// streams get a highlight buffer: the configured channels, the channels
// streams are bound to (channels.<name>.streams, and /live to the default
// channel) and the local and Twitch chat channels. A stream published to a
// path that binds to none of them (its channel only named like the path)
// is relayed without a buffer.
func boundChannels(c Config) []string {
	seen := map[string]bool{}
	var out []string
	add := func(ch string) {
		if ch = claims.NormalizeChannel(ch); ch != "" && !seen[ch] {
			seen[ch] = true
			out = append(out, ch)
		}
	}
	for ch := range c.Channels {
		add(ch)
	}
	for _, ch := range streamPaths(c) {
		add(ch)
	}
	add(c.Chat.LocalChannel)
	add(c.Twitch.Channel)
	slices.Sort(out)
	return out
}

// highlightsDB is the SQLite file highlight metadata lives in, whatever
// the ledger: its own, so highlight writes never queue behind claims
// commits.
func highlightsDB(data string) string { return filepath.Join(data, "highlights.db") }

// sqliteLedgerFile is the ledger's SQLite file, "" for other ledgers.
func sqliteLedgerFile(c Config) string {
	switch {
	case c.Ledger == "":
		return filepath.Join(c.Data, "ledger.db")
	case strings.HasPrefix(c.Ledger, "sqlite:"):
		return strings.TrimPrefix(c.Ledger, "sqlite:")
	}
	return ""
}

// openHighlights opens highlights.db and, the first time, copies in the
// highlight tables older versions kept in the SQLite ledger's file.
func openHighlights(ctx context.Context, data, ledgerFile string, log *slog.Logger) (*highlight.SQLite, error) {
	store, err := highlight.OpenSQLite(ctx, highlightsDB(data))
	if err != nil {
		return nil, err
	}
	if ledgerFile == "" {
		return store, nil
	}
	n, err := store.ImportLedgerTables(ctx, ledgerFile)
	if err != nil {
		store.Close()
		return nil, err
	}
	if n > 0 && log != nil {
		log.Info("highlight sessions copied from the ledger file into highlights.db", "component", "highlights", "sessions", n, "ledger", ledgerFile)
	}
	return store, nil
}

// twitchClipState marks an editor entry that is only a Twitch clip: no
// stream was published into microdrop, so there is no local file.
const twitchClipState = "twitch clip only"

// recordTwitchClip is the Twitch client's OnClip hook: a clip made for
// !clip that no local highlight links is listed in the editor, in one
// session per channel and day, so it is not lost when nothing was
// published into microdrop.
func (m *Main) recordTwitchClip(ctx context.Context, c twitch.PlatformClip) {
	store := m.highlights.Load()
	if store == nil || c.Shared {
		return // a local highlight of the moment already links the clip
	}
	day := c.At.UTC().Truncate(24 * time.Hour)
	if c.At.IsZero() {
		day = m.Now().UTC().Truncate(24 * time.Hour)
	}
	path := "twitch/" + c.Channel
	s := highlight.Session{ID: highlight.SessionID(path, day), Path: path, Channel: c.Channel, StartedAt: day}
	var b [8]byte
	_, _ = rand.Read(b[:])
	h := highlight.Highlight{ID: "h" + hex.EncodeToString(b[:]), SessionID: s.ID, Channel: c.Channel, Path: path,
		DropID: c.DropID, Reason: highlight.ReasonClip, Label: c.Label, By: c.By, State: twitchClipState,
		At: c.At, CreatedAt: m.Now()}
	log := m.Logger.With("component", "highlights")
	err := store.SaveSession(ctx, s)
	if err == nil {
		err = store.SaveHighlight(ctx, h)
	}
	if err == nil {
		err = store.SetTwitchClip(ctx, h.ID, c.ID, c.URL)
	}
	if err != nil {
		log.Warn("record Twitch clip in the editor", "clip", c.ID, "err", err)
	}
}
