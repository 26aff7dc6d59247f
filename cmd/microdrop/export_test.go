package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims/sqlite"
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
