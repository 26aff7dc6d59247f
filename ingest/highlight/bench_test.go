package highlight_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// benchDrops is one drop and its claims, in the export's own words.
type benchDrops struct {
	drop   highlight.Drop
	claims []highlight.Claim
}

func (f *benchDrops) ChannelDrops(context.Context, string, int) ([]highlight.Drop, error) {
	return []highlight.Drop{f.drop}, nil
}

func (f *benchDrops) Claims(context.Context, string) ([]highlight.Claim, error) { return f.claims, nil }

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
	store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
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
	led := &benchDrops{drop: highlight.Drop{ID: "d1", Channel: "chan1", SKU: "SKU-1", Title: "Thing", Stock: 100, Remaining: 0,
		PriceMinor: 2500, Currency: "USD", OpensAt: t0.Add(time.Minute), ClosesAt: t0.Add(3 * time.Minute), Policy: "fcfs",
		State: "sold_out", Final: true, SoldOut: true, ClosedAt: t0.Add(90 * time.Second), SeedHash: fmt.Sprintf("%064x", 1)}}
	for i := range 500 {
		won := i < 100
		outcome := "lost"
		if won {
			outcome = "won"
		}
		at := t0.Add(time.Minute + time.Duration(i)*time.Millisecond*50)
		led.claims = append(led.claims, highlight.Claim{Seq: int64(i + 1), UserID: fmt.Sprint(100000 + i), Outcome: outcome, Won: won,
			ArrivedAt: at, DecidedAt: at})
	}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: store, Drops: led, Dir: clipDir, Salt: []byte("bench-salt-0123456789")})
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
