package highlight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// Vertical clip geometry: 9:16 at the size Shorts, Reels and TikTok ask for.
const (
	VerticalWidth  = 1080
	VerticalHeight = 1920
	// MaxVertical is the longest vertical clip: the platforms' short-form
	// limit.
	MaxVertical = 60 * time.Second
	// verticalQR is the burned-in QR's side in pixels: large enough to scan
	// from a phone held at arm's length.
	verticalQR = 480
)

// Vertical overlay kinds: a claim QR, or a "link in bio" line for
// platforms where a QR in a video cannot be tapped anyway.
const (
	OverlayQR  = "qr"
	OverlayBio = "bio"
)

// ErrNoFFmpeg means vertical clips were asked for but ffmpeg (or the font
// drawtext needs) is not on this machine.
var ErrNoFFmpeg = errors.New("vertical clips need ffmpeg")

// fontCandidates are where Debian, Ubuntu and Fedora put DejaVu Sans.
var fontCandidates = [...]string{
	"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/TTF/DejaVuSans.ttf",
	"/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
}

// Verticalizer renders 9:16 clips with ffmpeg. It is the only place this
// package re-encodes video: the 16:9 clips are always remuxed.
type Verticalizer struct {
	// FFmpeg is the ffmpeg binary; Font a TrueType file for drawtext.
	FFmpeg string
	Font   string
}

// FindVerticalizer looks up ffmpeg in PATH and a font (font, when not
// empty, else DejaVu Sans where distributions install it). The error says
// what is missing.
func FindVerticalizer(font string) (*Verticalizer, error) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return nil, fmt.Errorf("%w: ffmpeg not found in PATH (apt-get install -y ffmpeg)", ErrNoFFmpeg)
	}
	cands := fontCandidates[:]
	if font != "" {
		cands = []string{font}
	}
	for _, f := range cands {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			return &Verticalizer{FFmpeg: bin, Font: f}, nil
		}
	}
	return nil, fmt.Errorf("%w: no font for the burned-in text (apt-get install -y fonts-dejavu-core)", ErrNoFFmpeg)
}

// VerticalJob is one vertical clip to render.
type VerticalJob struct {
	// Src is the captured 16:9 MP4; In and Out the part to render (Out
	// zero: to the end), cut to at most MaxVertical.
	Src     string
	In, Out time.Duration
	// CropX is the centre of the 9:16 window across the source, 0 (left
	// edge) to 1 (right edge); 0.5 is the centre.
	CropX float64
	// Title and Price are burned in at the top; Overlay is OverlayQR (a QR
	// of Link) or OverlayBio ("link in bio").
	Title, Price string
	Overlay      string
	Link         string
}

// Check refuses a job that could not render.
func (j VerticalJob) Check() error {
	switch {
	case j.CropX < 0 || j.CropX > 1:
		return fmt.Errorf("%w: crop position %.2f is outside 0..1", ErrBadTrim, j.CropX)
	case j.Overlay != OverlayQR && j.Overlay != OverlayBio:
		return fmt.Errorf("%w: overlay %q is neither %q nor %q", ErrBadSelection, j.Overlay, OverlayQR, OverlayBio)
	case j.Overlay == OverlayQR && j.Link == "":
		return fmt.Errorf("%w: a QR overlay needs a link", ErrBadSelection)
	case j.In < 0 || (j.Out != 0 && j.Out <= j.In):
		return fmt.Errorf("%w: %s to %s", ErrBadTrim, j.In, j.Out)
	}
	return nil
}

// Length is how long the rendered clip is, given the source's duration.
func (j VerticalJob) Length(srcDur time.Duration) time.Duration {
	out := j.Out
	if out == 0 || out > srcDur {
		out = srcDur
	}
	return min(out-j.In, MaxVertical)
}

// Render writes the vertical clip of j to dst (an .mp4 path): H.264 and
// AAC, 1080×1920, faststart.
func (v *Verticalizer) Render(ctx context.Context, j VerticalJob, srcDur time.Duration, dst string) error {
	if err := j.Check(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "microdrop-vertical-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// drawtext reads its text from files, so a title never has to survive
	// filtergraph escaping.
	title := filepath.Join(tmp, "title.txt")
	price := filepath.Join(tmp, "price.txt")
	if err := os.WriteFile(title, []byte(clipText(j.Title, 28)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(price, []byte(clipText(j.Price, 28)), 0o600); err != nil {
		return err
	}
	length := j.Length(srcDur)
	if length <= 0 {
		return fmt.Errorf("%w: nothing to render between %s and %s of a %s clip", ErrBadTrim, j.In, j.Out, srcDur)
	}
	crop := strconv.FormatFloat(j.CropX, 'f', 4, 64)
	font := filterPath(v.Font)
	text := func(file string, size, y int) string {
		return fmt.Sprintf("drawtext=fontfile='%s':textfile='%s':fontsize=%d:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=24:x=(w-text_w)/2:y=%d",
			font, filterPath(file), size, y)
	}
	graph := "[0:v]scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920:x=(iw-ow)*" + crop + ":y=(ih-oh)/2,setsar=1," +
		text(title, 72, 160) + "," + text(price, 64, 300)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-ss", secsArg(j.In), "-t", secsArg(length), "-i", j.Src}
	if j.Overlay == OverlayQR {
		png, err := qrcode.Encode(j.Link, qrcode.Medium, verticalQR)
		if err != nil {
			return fmt.Errorf("claim QR: %w", err)
		}
		qr := filepath.Join(tmp, "qr.png")
		if err := os.WriteFile(qr, png, 0o600); err != nil {
			return err
		}
		scan := filepath.Join(tmp, "scan.txt")
		if err := os.WriteFile(scan, []byte("Scan to claim"), 0o600); err != nil {
			return err
		}
		args = append(args, "-i", qr)
		graph += "[base];[base][1:v]overlay=x=(W-w)/2:y=H-h-240:format=auto," + text(scan, 56, VerticalHeight-200) + ",format=yuv420p[v]"
	} else {
		bio := filepath.Join(tmp, "bio.txt")
		if err := os.WriteFile(bio, []byte("Link in bio"), 0o600); err != nil {
			return err
		}
		graph += "," + text(bio, 80, VerticalHeight-420) + ",format=yuv420p[v]"
	}
	args = append(args, "-filter_complex", graph, "-map", "[v]", "-map", "0:a?",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-profile:v", "high",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
		"-movflags", "+faststart", "-t", secsArg(length), "-f", "mp4", dst)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, v.FFmpeg, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ffmpeg vertical clip: %w: %s", err, strings.TrimSpace(lastLines(out.String(), 5)))
	}
	return nil
}

// Still decodes the frame at (or the first after) at in src into a JPEG.
func (v *Verticalizer) Still(ctx context.Context, src string, at time.Duration) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, v.FFmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-ss", secsArg(at), "-i", src, "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg still: %w: %s", err, strings.TrimSpace(lastLines(errb.String(), 5)))
	}
	if out.Len() < 3 || out.Bytes()[0] != 0xFF || out.Bytes()[1] != 0xD8 {
		return nil, fmt.Errorf("ffmpeg still of %s at %s: no frame", filepath.Base(src), at)
	}
	return out.Bytes(), nil
}

// Waveform draws the audio of src as a PNG (width×height), for the
// editor's timeline.
func (v *Verticalizer) Waveform(ctx context.Context, src string, width, height int) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, v.FFmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", src,
		"-filter_complex", fmt.Sprintf("[0:a:0]aformat=channel_layouts=mono,showwavespic=s=%dx%d:colors=0x38bdf8", width, height),
		"-frames:v", "1", "-f", "image2", "-c:v", "png", "pipe:1")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg waveform: %w: %s", err, strings.TrimSpace(lastLines(errb.String(), 5)))
	}
	return out.Bytes(), nil
}

// filterPath quotes a path for a single-quoted filtergraph value.
func filterPath(p string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `'\''`, `:`, `\:`).Replace(p)
}

func secsArg(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// clipText keeps a burned-in line inside the 1080 px frame.
func clipText(s string, max int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return string(r)
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
