package highlight_test

import (
	"context"
	"image"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/microdrop/microdrop/ingest/highlight"
)

func requireVerticalizer(t *testing.T) *highlight.Verticalizer {
	t.Helper()
	requireFFmpeg(t)
	v, err := highlight.FindVerticalizer("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI installs ffmpeg and fonts-dejavu-core)", err)
		}
		t.Skipf("%v", err)
	}
	return v
}

// makeSource writes a 16:9 H.264 + Opus MP4 like the captured clips.
func makeSource(t *testing.T, dir string, secs int) string {
	t.Helper()
	src := filepath.Join(dir, "src.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", "testsrc=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
		"-c:a", "libopus", "-t", strconv.Itoa(secs), src).CombinedOutput()
	if err != nil {
		t.Fatalf("make source: %v\n%s", err, out)
	}
	return src
}

type verticalProbe struct {
	Width, Height int
	Duration      time.Duration
	Codecs        string
}

func probeVertical(t *testing.T, path string) verticalProbe {
	t.Helper()
	run := func(args ...string) string {
		out, err := exec.Command("ffprobe", append([]string{"-v", "error"}, append(args, path)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var p verticalProbe
	wh := strings.Split(run("-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"), ",")
	if len(wh) != 2 {
		t.Fatalf("ffprobe size: %v", wh)
	}
	p.Width, _ = strconv.Atoi(wh[0])
	p.Height, _ = strconv.Atoi(wh[1])
	secs, err := strconv.ParseFloat(run("-show_entries", "format=duration", "-of", "csv=p=0"), 64)
	if err != nil {
		t.Fatal(err)
	}
	p.Duration = time.Duration(secs * float64(time.Second))
	p.Codecs = strings.Join(strings.Fields(run("-show_entries", "stream=codec_name", "-of", "csv=p=0")), ",")
	return p
}

// decodeQRFrame extracts the frame at `at` with ffmpeg and decodes the QR
// in it with gozxing.
func decodeQRFrame(t *testing.T, path string, at time.Duration) (string, error) {
	t.Helper()
	png := filepath.Join(t.TempDir(), "frame.png")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-ss", strconv.FormatFloat(at.Seconds(), 'f', 3, 64), "-i", path, "-frames:v", "1", png).CombinedOutput()
	if err != nil {
		t.Fatalf("extract frame: %v\n%s", err, out)
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// TestVerticalRender renders a 9:16 clip from a 16:9 source with ffmpeg:
// ffprobe sees 1080×1920 H.264 + AAC of the asked length, and the QR
// burned into a frame decodes to the claim link; the "link in bio" variant
// has no QR; bad jobs are refused before ffmpeg runs.
func TestVerticalRender(t *testing.T) {
	v := requireVerticalizer(t)
	dir := t.TempDir()
	src := makeSource(t, dir, 5)
	link := "https://drops.example/c/d_7Kq2?creator=creator42&run=run-2026-07&utm_campaign=vertical&utm_medium=post_stream&utm_source=microdrop"
	ctx := context.Background()

	dst := filepath.Join(dir, "v.mp4")
	j := highlight.VerticalJob{Src: src, In: time.Second, Out: 4 * time.Second, CropX: 0.2,
		Title: "Black hoodie: limited", Price: "EUR 54.00", Overlay: highlight.OverlayQR, Link: link}
	if err := v.Render(ctx, j, 5*time.Second, dst); err != nil {
		t.Fatal(err)
	}
	p := probeVertical(t, dst)
	if p.Width != 1080 || p.Height != 1920 || p.Codecs != "h264,aac" || !within(p.Duration, 3*time.Second, 150*time.Millisecond) {
		t.Errorf("vertical clip probes as %+v, want 1080x1920 h264,aac of 3s", p)
	}
	got, err := decodeQRFrame(t, dst, time.Second)
	if err != nil || got != link {
		t.Errorf("QR in the frame decodes to %q (%v), want %q", got, err, link)
	}

	bio := filepath.Join(dir, "bio.mp4")
	j.Overlay, j.Link, j.Out = highlight.OverlayBio, "", 0
	if err := v.Render(ctx, j, 5*time.Second, bio); err != nil {
		t.Fatal(err)
	}
	if p := probeVertical(t, bio); p.Width != 1080 || p.Height != 1920 || !within(p.Duration, 4*time.Second, 150*time.Millisecond) {
		t.Errorf("link-in-bio clip probes as %+v", p)
	}
	if got, err := decodeQRFrame(t, bio, time.Second); err == nil {
		t.Errorf("the link-in-bio clip carries a QR: %q", got)
	}

	for _, bad := range []highlight.VerticalJob{
		{Src: src, CropX: 1.5, Overlay: highlight.OverlayBio},
		{Src: src, CropX: 0.5, Overlay: "sticker"},
		{Src: src, CropX: 0.5, Overlay: highlight.OverlayQR},
		{Src: src, CropX: 0.5, Overlay: highlight.OverlayBio, In: 3 * time.Second, Out: 2 * time.Second},
	} {
		out := filepath.Join(dir, "bad.mp4")
		if err := v.Render(ctx, bad, 5*time.Second, out); err == nil {
			t.Errorf("job %+v rendered", bad)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("a refused job %+v wrote a file", bad)
		}
	}
	if got := (highlight.VerticalJob{In: 10 * time.Second}).Length(120 * time.Second); got != highlight.MaxVertical {
		t.Errorf("a 110 s span renders as %s, want the %s cap", got, highlight.MaxVertical)
	}
}
