package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// runExport writes a session's highlight bundle from the data dir (the
// server may be running: SQLite in WAL mode lets both read).
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	session := fs.String("session", "", "stream session id (see --list)")
	out := fs.String("out", "", "bundle file to write, e.g. bundle.zip")
	dataDefault := "./microdrop-data"
	if v, ok := os.LookupEnv("MICRODROP_DATA"); ok && v != "" {
		dataDefault = v
	}
	data := fs.String("data", dataDefault, "data dir holding ledger.db, highlights.db and highlights/; also MICRODROP_DATA")
	sel := fs.String("select", "", "comma-separated highlight ids (default: every ready clip)")
	public := fs.String("public-url", "", "the server's URL offer links point to (its claim pages, /c/{drop}); "+
		"default: public_url or the http address from --config / MICRODROP_CONFIG and MICRODROP_* (as serve), else http://localhost:8080")
	fs.StringVar(public, "shop-url", "", "old name of --public-url")
	configPath := fs.String("config", "", "YAML config file serve runs with, for its public URL; also MICRODROP_CONFIG")
	markup := fs.Int("markup", 20, "post-stream price above the live price, in percent")
	list := fs.Bool("list", false, "list sessions and their highlights, then exit")
	vertical := fs.String("vertical", "", "also render 9:16 clips (1080x1920, at most 60 s) with ffmpeg: \"all\" or comma-separated highlight ids")
	overlay := fs.String("overlay", highlight.OverlayQR, "what vertical clips carry under the title and price: qr (the claim link) or bio (\"Link in bio\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dbPath := filepath.Join(*data, "ledger.db")
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no ledger at %s (use --data)", dbPath)
	}
	store, err := openHighlights(ctx, *data, dbPath, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	if *list {
		return listSessions(ctx, store, stdout)
	}
	if *session == "" || *out == "" {
		return errors.New("usage: microdrop export --session S --out bundle.zip [--data DIR] [--select ID,ID] (sessions: --list)")
	}
	if *markup < 0 || *markup > 1000 {
		return errors.New("--markup: between 0 and 1000 percent")
	}
	ledger, err := sqlite.Open(ctx, dbPath, nil)
	if err != nil {
		return err
	}
	defer ledger.Close()
	salt, _, err := readOrCreateSecret(filepath.Join(*data, "export-salt"))
	if err != nil {
		return err
	}
	// The config serve runs with: its public URL (the same one serve puts
	// in claim links) and its creators' branding.
	cfg := DefaultConfig()
	path := *configPath
	if path == "" {
		path = os.Getenv("MICRODROP_CONFIG")
	}
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return err
		}
	}
	if err := cfg.LoadEnv(os.LookupEnv); err != nil {
		return err
	}
	publicURL := *public
	if publicURL == "" {
		publicURL = publicURLFor(cfg.PublicURL, cfg.HTTP)
	}
	if !strings.HasPrefix(publicURL, "http://") && !strings.HasPrefix(publicURL, "https://") {
		return fmt.Errorf("--public-url: %q must start with http:// or https://", publicURL)
	}
	if *overlay != highlight.OverlayQR && *overlay != highlight.OverlayBio {
		return fmt.Errorf("--overlay: %q is neither qr nor bio", *overlay)
	}
	// Without ffmpeg the plan below says so, after checking the ids.
	vert, _ := highlight.FindVerticalizer("")
	signer, keys, err := imageSigner(*data)
	if err != nil {
		return err
	}
	imgs := &highlight.Images{Dir: filepath.Join(*data, "images"), Store: store, Signer: signer}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: store, Drops: ledgerDrops{ledger}, Dir: filepath.Join(*data, "highlights"),
		Salt: []byte(salt), PublicURL: publicURL, MarkupPercent: *markup, Vertical: vert,
		Images: imgs, Signer: signer, Keys: keys, Creators: creatorsOf(cfg)})
	if err != nil {
		return err
	}
	ids := splitIDs(*sel)
	// Check everything before creating a file.
	plan, err := x.Plan(ctx, *session, ids)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := x.PlanVertical(&plan, splitIDs(*vertical), *overlay); err != nil {
		return fmt.Errorf("export --vertical: %w", err)
	}
	dir := filepath.Dir(*out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(*out)+".*.partial")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())

	var progress highlight.Progress
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions(plan.Steps(), progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("exporting "+plan.Session.ID), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish())
		progress = func(done, _ int) { _ = bar.Set(done) }
		defer func() { _ = bar.Finish() }()
	}
	start := time.Now()
	m, err := x.Write(ctx, plan, tmp, progress)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	verticals := 0
	for _, c := range m.Highlights {
		if c.Vertical != nil {
			verticals++
		}
	}
	// Files lists all but manifest.json and manifest.sig.
	fmt.Fprintf(stdout, "wrote %s: %d clips, %d vertical clips, %d drops, %d offer pages, %d files in %s\n",
		*out, len(m.Highlights), verticals, len(m.Drops), len(m.Offers), len(m.Files)+2, time.Since(start).Round(time.Millisecond))
	return nil
}

func splitIDs(list string) []string {
	var ids []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, s)
		}
	}
	return ids
}

func listSessions(ctx context.Context, store highlight.Store, stdout io.Writer) error {
	ss, err := store.Sessions(ctx)
	if err != nil {
		return err
	}
	if len(ss) == 0 {
		fmt.Fprintln(stdout, "no sessions yet")
		return nil
	}
	for _, s := range ss {
		end := "live"
		if !s.EndedAt.IsZero() {
			end = s.EndedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%s  channel %s  %s .. %s\n", s.ID, s.Channel, s.StartedAt.UTC().Format(time.RFC3339), end)
		hs, err := store.Highlights(ctx, s.ID)
		if err != nil {
			return err
		}
		for _, h := range hs {
			reasons := h.Reason
			for _, mo := range h.Moments[min(1, len(h.Moments)):] {
				reasons += "+" + mo.Reason
			}
			line := fmt.Sprintf("    %s  %-8s %-9s %5.1fs", h.ID, reasons, h.State, h.Duration.Seconds())
			if h.Trimmed() {
				// What the export will carry, not what was captured.
				in, out := h.Span()
				line += fmt.Sprintf("  trimmed %.1f-%.1fs (%.1fs)", in.Seconds(), out.Seconds(), (out - in).Seconds())
			}
			fmt.Fprintf(stdout, "%s  drop %s %s\n", line, h.DropID, h.Label)
		}
	}
	return nil
}
