package highlight_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

type fakeLedger struct {
	drop    *claims.Drop
	entries []claims.Entry
}

func (f *fakeLedger) Drops(context.Context, claims.DropFilter) ([]*claims.Drop, error) {
	return []*claims.Drop{f.drop}, nil
}

func (f *fakeLedger) Entries(context.Context, string) ([]claims.Entry, error) { return f.entries, nil }

// BenchmarkExport20Clips exports a session of 20 highlights of 60 s at
// about 6 Mbit/s (H.264 + Opus, made once with ffmpeg), with one drop of
// 500 entries, to a zip file. "copy" exports clips as captured, "trim"
// remuxes each to 30 s.
func BenchmarkExport20Clips(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("install with: apt-get install -y ffmpeg")
	}
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src.mp4")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60", "-vf", "noise=alls=30:allf=t",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-maxrate", "6M", "-bufsize", "12M", "-g", "60", "-pix_fmt", "yuv420p",
		"-c:a", "libopus", "-b:a", "96k", "-y", src).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	st, _ := os.Stat(src)
	f, _ := os.Open(src)
	info, err := highlight.ProbeMP4(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "ledger.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	t0 := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	sess := highlight.Session{ID: highlight.SessionID("live", t0), Path: "live", Channel: "chan1", StartedAt: t0, EndedAt: t0.Add(time.Hour)}
	if err := store.SaveSession(ctx, sess); err != nil {
		b.Fatal(err)
	}
	clipDir := filepath.Join(dir, "highlights")
	if err := os.MkdirAll(filepath.Join(clipDir, sess.ID), 0o700); err != nil {
		b.Fatal(err)
	}
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("h%016x", i+1)
		ids = append(ids, id)
		if err := os.Link(src, filepath.Join(clipDir, sess.ID, id+".mp4")); err != nil {
			b.Fatal(err)
		}
		h := highlight.Highlight{ID: id, SessionID: sess.ID, Channel: "chan1", Path: "live", DropID: "d1", Reason: highlight.ReasonClip,
			State: highlight.HighlightReady, At: t0.Add(time.Duration(i) * time.Minute), Duration: info.Duration, Asked: time.Minute,
			File: sess.ID + "/" + id + ".mp4", Bytes: st.Size(), CreatedAt: t0}
		if err := store.SaveHighlight(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	led := &fakeLedger{drop: &claims.Drop{ID: "d1", Channel: "chan1", SKU: "SKU-1", Title: "Thing", Stock: 100, Remaining: 0,
		PriceMinor: 2500, Currency: "USD", OpensAt: t0.Add(time.Minute), ClosesAt: t0.Add(3 * time.Minute), Policy: claims.FCFS,
		State: claims.SoldOut, ClosedAt: t0.Add(90 * time.Second), SeedHash: fmt.Sprintf("%064x", 1)}}
	for i := range 500 {
		outcome := claims.OutcomeLost
		if i < 100 {
			outcome = claims.OutcomeWon
		}
		led.entries = append(led.entries, claims.Entry{DropID: "d1", Seq: int64(i + 1), UserID: fmt.Sprint(100000 + i), Outcome: outcome,
			ArrivedAt: t0.Add(time.Minute + time.Duration(i)*time.Millisecond*50), DecidedAt: t0.Add(time.Minute + time.Duration(i)*time.Millisecond*50)})
	}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: store, Ledger: led, Dir: clipDir, Salt: []byte("bench-salt-0123456789")})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B) {
		for b.Loop() {
			f, err := os.Create(filepath.Join(dir, "bundle.zip"))
			if err != nil {
				b.Fatal(err)
			}
			m, err := x.Export(ctx, sess.ID, nil, f, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			fi, _ := os.Stat(f.Name())
			b.SetBytes(fi.Size())
			b.ReportMetric(float64(len(m.Highlights)), "clips")
		}
	}
	b.Logf("source clip: %s, %d bytes (%.1f Mbit/s)", info.Duration, st.Size(), float64(st.Size())*8/info.Duration.Seconds()/1e6)
	b.Run("copy", run)
	for _, id := range ids {
		if _, err := store.SetTrim(ctx, id, 10*time.Second, 40*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("trim", run)
}
