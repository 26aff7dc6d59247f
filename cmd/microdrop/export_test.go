package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// TestExportCommandRefusesBadInput: an unknown session or a path-like id
// is refused with a clear message and no bundle file appears; --list works
// on a fresh data dir; without a terminal the command prints no progress.
func TestExportCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	l, err := sqlite.Open(context.Background(), filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"export", "--data", dir, "--list"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "no sessions yet") {
		t.Errorf("--list on an empty data dir: %q", stdout.String())
	}
	out := filepath.Join(dir, "bundle.zip")
	for _, s := range []string{"nope-20200101T000000Z", "../../etc"} {
		stdout.Reset()
		stderr.Reset()
		err := run(context.Background(), []string{"export", "--data", dir, "--session", s, "--out", out}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "session") && !strings.Contains(err.Error(), "invalid id") {
			t.Errorf("export --session %s: %v", s, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("export --session %s left a bundle file", s)
		}
		if stderr.Len() > 0 {
			t.Errorf("progress output without a terminal: %q", stderr.String())
		}
	}
	if err := run(context.Background(), []string{"export", "--data", dir}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("export without --session: %v", err)
	}
}

// TestExportListShowsTrim: --list shows a saved trim (it printed only the
// captured length) and every moment a clip covers.
func TestExportListShowsTrim(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := sqlite.Open(ctx, filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	store, err := highlight.OpenSQLite(ctx, highlightsDB(dir))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	s := highlight.Session{ID: highlight.SessionID("live", t0), Path: "live", Channel: "chan1", StartedAt: t0}
	h := highlight.Highlight{ID: "h0123456789abcdef", SessionID: s.ID, Channel: "chan1", Path: "live", DropID: "d1",
		Reason: highlight.ReasonOpen, State: highlight.HighlightReady, At: t0.Add(time.Minute), Duration: 7700 * time.Millisecond,
		Moments: []highlight.Moment{{Reason: highlight.ReasonOpen, At: t0.Add(time.Minute)}, {Reason: highlight.ReasonSoldOut, At: t0.Add(time.Minute + 2700*time.Millisecond)}}}
	if err := store.SaveSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveHighlight(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetTrim(ctx, h.ID, 1500*time.Millisecond, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	store.Close()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"export", "--data", dir, "--list"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{h.ID + "  open+sold_out", "7.7s  trimmed 1.5-4.0s (2.5s)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--list lacks %q:\n%s", want, stdout.String())
		}
	}
	// A vertical clip of a highlight outside the export, or with an
	// overlay that does not exist, is refused before a file is made.
	out := filepath.Join(dir, "bundle.zip")
	for _, c := range []struct{ args, want string }{
		{"--vertical h1111111111111111", "not a clip of this export"},
		{"--vertical all --overlay sticker", "overlay"},
	} {
		args := append([]string{"export", "--data", dir, "--session", s.ID, "--out", out}, strings.Fields(c.args)...)
		err := run(ctx, args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("export %s: %v, want an error naming %q", c.args, err, c.want)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("export %s left a bundle file", c.args)
		}
	}
}
