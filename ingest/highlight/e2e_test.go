package highlight_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/ingest"
	"github.com/microdrop/microdrop/ingest/highlight"
)

const (
	testPre  = 2 * time.Second
	testPost = 3 * time.Second
	keyint   = time.Second // ffmpeg -g 25 at 25 fps
)

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI: apt-get install -y ffmpeg", tool)
			}
			t.Skip("install with: apt-get install -y ffmpeg")
		}
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// rig is everything a highlight test runs against: a real ingest server,
// capture, claims service on a SQLite ledger, and the highlight store in
// its own SQLite file.
type rig struct {
	t       *testing.T
	dir     string
	bus     *microdrop.MemoryBus
	srv     *ingest.Server
	cap     *highlight.Capturer
	store   *highlight.SQLite
	ledger  *sqlite.Ledger
	claims  *claims.Service
	clipDir string
}

// ledgerDrops reads the claims ledger in the export's words, as
// cmd/microdrop wires it.
type ledgerDrops struct{ l *sqlite.Ledger }

func (x ledgerDrops) ChannelDrops(ctx context.Context, channel string, limit int) ([]highlight.Drop, error) {
	ds, err := x.l.Drops(ctx, claims.DropFilter{Channel: channel, Limit: limit})
	var out []highlight.Drop
	for _, d := range ds {
		hd := highlight.Drop{ID: d.ID, Channel: d.Channel, SKU: d.SKU, Title: d.Title, LimitedRunID: d.LimitedRunID,
			CreatorID: d.CreatorID, Currency: d.Currency, PriceMinor: d.PriceMinor, Policy: string(d.Policy), State: string(d.State),
			CloseReason: d.CloseReason, OpensAt: d.OpensAt, ClosesAt: d.ClosesAt, Grace: d.Grace, ClosedAt: d.ClosedAt,
			Stock: d.Stock, Remaining: d.Remaining, SeedHash: d.SeedHash, Final: d.State.Final(), SoldOut: d.State == claims.SoldOut}
		if hd.Final {
			hd.Seed = d.Seed
		}
		out = append(out, hd)
	}
	return out, err
}

func (x ledgerDrops) Claims(ctx context.Context, dropID string) ([]highlight.Claim, error) {
	es, err := x.l.Entries(ctx, dropID)
	var out []highlight.Claim
	for _, e := range es {
		out = append(out, highlight.Claim{Seq: e.Seq, UserID: e.UserID, Outcome: e.Outcome, Won: e.Outcome == claims.OutcomeWon,
			Unit: e.Unit, ArrivedAt: e.ArrivedAt, DecidedAt: e.DecidedAt, Redeemed: e.Redeemed})
	}
	return out, err
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &rig{t: t, dir: t.TempDir(), bus: microdrop.NewMemoryBus()}
	r.clipDir = filepath.Join(r.dir, "highlights")
	log := testLogger(t)
	dbPath := filepath.Join(r.dir, "ledger.db")
	var err error
	r.ledger, err = sqlite.Open(ctx, dbPath, log)
	if err != nil {
		t.Fatal(err)
	}
	r.store, err = highlight.OpenSQLite(ctx, filepath.Join(r.dir, "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	r.claims, err = claims.New(claims.Deps{Ledger: r.ledger, Bus: r.bus, Signer: signer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.claims.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.srv, err = ingest.New(ingest.Deps{Logger: log, Bus: r.bus, Config: ingest.Config{
		RTSPAddress: "127.0.0.1:0", Paths: map[string]string{"live": "chan1"}, WebRTCLoopbackOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deps := highlight.CaptureDeps{Logger: log, Bus: r.bus, Streams: r.srv, Store: r.store,
		Config: highlight.CaptureConfig{Dir: r.clipDir, Pre: testPre, Post: testPost,
			Buffer: highlight.RingConfig{MaxDuration: 30 * time.Second, MaxBytes: 64 << 20}, SurgePerSec: 2}}
	if v, err := highlight.FindVerticalizer(""); err == nil {
		deps.Stills = v // the still of each open is a JPEG
	}
	r.cap, err = highlight.NewCapturer(deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cap.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.srv.Close()
		_ = r.cap.Close()
		_ = r.claims.Close()
		_ = r.store.Close()
		_ = r.ledger.Close()
	})
	return r
}

// publish runs ffmpeg: testsrc H.264 (keyframe every second) and Opus over
// RTSP/TCP for seconds. The returned channel closes when ffmpeg exits.
func (r *rig) publish(seconds int) <-chan struct{} {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := fmt.Sprintf("rtsp://%s/live", r.srv.RTSPAddr())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-keyint_min", "25", "-pix_fmt", "yuv420p",
		"-c:a", "libopus", "-b:a", "64k", "-ar", "48000", "-ac", "2",
		"-t", strconv.Itoa(seconds), "-f", "rtsp", "-rtsp_transport", "tcp", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.t.Cleanup(func() {
		cancel()
		<-done
		if r.t.Failed() && out.Len() > 0 {
			r.t.Logf("ffmpeg publisher output:\n%s", out.String())
		}
	})
	return done
}

// waitFor polls cond until it holds; limit only bounds a hung test.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) waitBuffered(span time.Duration) {
	r.t.Helper()
	waitFor(r.t, 30*time.Second, "the ring to buffer "+span.String(), func() bool {
		st, ok := r.cap.RingStats("live")
		return ok && st.Span >= span
	})
}

func (r *rig) sessionID() string {
	r.t.Helper()
	ss := r.cap.Sessions()
	if len(ss) != 1 {
		r.t.Fatalf("want one session, have %v", ss)
	}
	return ss[0].ID
}

// waitReady waits until the session has n highlights and none is capturing.
func (r *rig) waitReady(session string, n int) []highlight.Highlight {
	r.t.Helper()
	var hs []highlight.Highlight
	waitFor(r.t, 30*time.Second, fmt.Sprintf("%d highlights to be written", n), func() bool {
		var err error
		hs, err = r.store.Highlights(context.Background(), session)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(hs) < n {
			return false
		}
		for _, h := range hs {
			if h.State == highlight.HighlightCapturing {
				return false
			}
		}
		return true
	})
	return hs
}

type probe struct {
	Duration   time.Duration
	FirstFlags string
	FirstPict  string
	Streams    []string
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	run := func(args ...string) string {
		out, err := exec.Command("ffprobe", append([]string{"-v", "error"}, append(args, path)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var p probe
	secs, err := strconv.ParseFloat(run("-show_entries", "format=duration", "-of", "csv=p=0"), 64)
	if err != nil {
		t.Fatalf("ffprobe duration of %s: %v", path, err)
	}
	p.Duration = time.Duration(secs * float64(time.Second))
	p.FirstFlags = strings.SplitN(run("-select_streams", "v:0", "-show_entries", "packet=flags", "-read_intervals", "%+#1", "-of", "csv=p=0"), "\n", 2)[0]
	p.FirstPict = strings.SplitN(run("-select_streams", "v:0", "-show_entries", "frame=pict_type", "-read_intervals", "%+#1", "-of", "csv=p=0"), "\n", 2)[0]
	p.Streams = strings.Fields(run("-show_entries", "stream=codec_name", "-of", "csv=p=0"))
	// Every frame must decode: a clip that starts off a keyframe or has a
	// broken sample table shows errors here.
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("decoding %s: %v\n%s", path, err, out)
	}
	return p
}

func within(got, want, tol time.Duration) bool {
	return math.Abs(float64(got-want)) <= float64(tol)
}

// TestCaptureExportEndToEnd publishes a real stream with ffmpeg, opens a
// drop on a real claims service, sells it out, marks a !clip, trims one
// clip, exports the session and checks the bundle: every clip probes with
// ffprobe at the asked duration (within one keyframe interval) starting on
// a keyframe, every hash in the manifest matches, the manifest satisfies
// its schema, claims.csv holds no user id or login, and the offer pages
// carry the drop's SKU, run id, both prices and the link to its claim
// page. The open, the claim rush and the sell-out, moments apart, are one
// clip that names all three, not three copies of the same seconds.
func TestCaptureExportEndToEnd(t *testing.T) {
	requireFFmpeg(t)
	r := newRig(t)
	ctx := context.Background()
	r.publish(40)
	r.waitBuffered(testPre + keyint)
	session := r.sessionID()

	sub := r.bus.Subscribe(256)
	defer sub.Close()
	d, err := r.claims.OpenDrop(ctx, claims.OpenRequest{Channel: "chan1", SKU: "HOODIE-BLK-L", Title: "Black hoodie",
		Stock: 3, PriceMinor: 4500, Currency: "EUR", Duration: claims.Duration(time.Minute), Policy: claims.FCFS,
		LimitedRunID: "run-2026-07", CreatorID: "creator42"})
	if err != nil {
		t.Fatal(err)
	}
	users := []string{"1001", "1002", "1003"}
	for _, u := range users {
		res, err := r.claims.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: u, Login: "viewer_" + u}})
		if err != nil {
			t.Fatalf("claim %s: %v", u, err)
		}
		if res.Outcome != claims.OutcomeWon {
			t.Fatalf("claim %s: %s", u, res.Outcome)
		}
	}
	waitForKind(t, sub, microdrop.SoldOut)
	// ingest mixes the drop's audio cue into the programme and its
	// detector hears it there: the measured open-to-air delay.
	waitFor(t, 20*time.Second, "the cue to be heard on air", func() bool {
		cs, err := r.store.Cues(ctx, d.ID)
		return err == nil && len(cs) > 0
	})
	waitFor(t, 20*time.Second, "the still of the open", func() bool {
		ss, err := r.store.Stills(ctx, d.ID)
		return err == nil && len(ss) == 1
	})
	// open, a surge (3 claims in a second > 2/s) and sold_out: one clip.
	first := r.waitReady(session, 1)
	// A !clip once that clip is written is a clip of its own.
	if _, err := r.bus.Publish(ctx, microdrop.Event{Kind: microdrop.HighlightMarked, Channel: "chan1", DropID: d.ID, At: time.Now(),
		Highlight: &microdrop.HighlightView{Reason: "clip", Label: "what a rush", By: "mod_1"}}); err != nil {
		t.Fatal(err)
	}
	// A moment on a channel with no stream captures nothing.
	if _, err := r.cap.Mark(ctx, "otherchan", "", highlight.ReasonClip, "", "", time.Now()); !errors.Is(err, highlight.ErrNotBuffered) {
		t.Fatalf("mark without a stream: %v, want ErrNotBuffered", err)
	}

	hs := r.waitReady(session, 2)
	if len(hs) != 2 || hs[0].ID != first[0].ID {
		t.Fatalf("highlights %+v, want the drop's clip and the !clip", hs)
	}
	for _, h := range hs {
		if h.State != highlight.HighlightReady {
			t.Fatalf("highlight %s (%s) is %s: %s", h.ID, h.Reason, h.State, h.Error)
		}
		span := h.Moments[len(h.Moments)-1].At.Sub(h.Moments[0].At)
		if !within(h.Asked, span+testPre+testPost, time.Millisecond) || h.Start > h.StreamTime-testPre || h.StreamTime-testPre-h.Start > keyint+100*time.Millisecond {
			t.Errorf("highlight %s: asked %s, start %s for a moment at %s, want %s from the keyframe at or before %s",
				h.ID, h.Asked, h.Start, h.StreamTime, span+testPre+testPost, h.StreamTime-testPre)
		}
	}
	var names []string
	for _, m := range hs[0].Moments {
		names = append(names, m.Reason)
	}
	sort.Strings(names)
	if hs[0].Reason != highlight.ReasonOpen || strings.Join(names, ",") != "open,sold_out,surge" {
		t.Errorf("the drop's clip is a %s clip naming %v, want an open clip naming open, sold_out and surge", hs[0].Reason, names)
	}
	if hs[1].Reason != highlight.ReasonClip || len(hs[1].Moments) != 1 || hs[1].Moments[0].Label != "what a rush" {
		t.Errorf("the !clip highlight: %+v", hs[1])
	}

	// Bad trims change nothing; a good one is stored.
	var clip highlight.Highlight
	for _, h := range hs {
		if h.Reason == highlight.ReasonClip {
			clip = h
		}
	}
	for _, bad := range [][2]time.Duration{{0, clip.Duration + time.Second}, {2 * time.Second, time.Second}, {-time.Second, time.Second}} {
		if _, err := r.store.SetTrim(ctx, clip.ID, bad[0], bad[1]); !errors.Is(err, highlight.ErrBadTrim) {
			t.Errorf("trim %v: %v, want ErrBadTrim", bad, err)
		}
	}
	if h, _ := r.store.Highlight(ctx, clip.ID); h.Trimmed() {
		t.Fatalf("a refused trim changed the highlight: %+v", h)
	}
	trimIn, trimOut := 1500*time.Millisecond, 4*time.Second
	if _, err := r.store.SetTrim(ctx, clip.ID, trimIn, trimOut); err != nil {
		t.Fatal(err)
	}

	// The product image, uploaded with EXIF, and the creator's avatar file.
	signer := testSigner(t)
	imgs := &highlight.Images{Dir: filepath.Join(r.dir, "images"), Store: r.store, Signer: signer}
	product, err := imgs.Put(ctx, jpegWithEXIF(t, 800, 800))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.SetDropImage(ctx, d.ID, product.SHA256); err != nil {
		t.Fatal(err)
	}
	avatar := filepath.Join(r.dir, "avatar.png")
	if err := os.WriteFile(avatar, pngBytes(t, productImage(96, 96)), 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := highlight.NewExporter(highlight.ExportDeps{Store: r.store, Drops: ledgerDrops{r.ledger}, Dir: r.clipDir,
		Salt: []byte("test-salt-0123456789"), PublicURL: "https://drops.example/", Vertical: requireVerticalizer(t),
		Images: imgs, Signer: signer, Keys: highlight.PublicKeys{highlight.KeyID(signer.Public()): signer.Public()},
		Creators: map[string]highlight.Creator{"creator42": {Name: "Creator 42", Color: "#ff3d7f", Avatar: avatar}}})
	if err != nil {
		t.Fatal(err)
	}
	// The drop's clip is reframed off centre in the editor.
	if _, err := r.store.SetCrop(ctx, hs[0].ID, 1.5); !errors.Is(err, highlight.ErrBadTrim) {
		t.Errorf("crop 1.5: %v, want ErrBadTrim", err)
	}
	if _, err := r.store.SetCrop(ctx, hs[0].ID, 0.3); err != nil {
		t.Fatal(err)
	}
	// Unknown session, foreign id and path traversal are refused.
	for _, bad := range []struct {
		session string
		sel     []string
		want    error
	}{
		{"nope-20200101T000000Z", nil, highlight.ErrNoSession},
		{"../../etc", nil, highlight.ErrBadID},
		{session, []string{"../" + clip.ID}, highlight.ErrBadSelection},
		{session, []string{"h0000000000000000"}, highlight.ErrBadSelection},
	} {
		var buf bytes.Buffer
		if _, err := x.Export(ctx, bad.session, bad.sel, &buf, nil); !errors.Is(err, bad.want) || buf.Len() > 0 {
			t.Errorf("export %q %v: %v (wrote %d bytes), want %v and nothing written", bad.session, bad.sel, err, buf.Len(), bad.want)
		}
	}

	bundle := filepath.Join(r.dir, "bundle.zip")
	f, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int
	plan, err := x.Plan(ctx, session, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.PlanVertical(&plan, []string{"h0000000000000000"}, ""); !errors.Is(err, highlight.ErrBadSelection) || plan.Vertical != nil {
		t.Errorf("vertical of a clip not in the export: %v, plan %v", err, plan.Vertical)
	}
	if err := x.PlanVertical(&plan, []string{highlight.AllClips}, highlight.OverlayQR); err != nil {
		t.Fatal(err)
	}
	m, err := x.Write(ctx, plan, f, func(done, total int) { steps = append(steps, done) })
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 || steps[len(steps)-1] != 2+2+1+2 {
		t.Errorf("progress steps %v, want to end at %d", steps, 2+2+1+2)
	}
	checkBundle(t, bundle, m, d, users, clip.ID, trimOut-trimIn)
	checkOfferInBrowser(t, filepath.Join(filepath.Dir(bundle), "unzipped"), m.Offers[0].File)
	admin := microdrop.NewAdmin(adminToken, false, nil)
	checkEditorInBrowser(t, highlight.NewHandler(highlight.HandlerDeps{Store: r.store, Exporter: x, Admin: admin, Dir: r.clipDir}),
		highlight.NewImageHandler(highlight.ImageHandlerDeps{Images: imgs, Admin: admin}), r.store, session, hs)
	checkEditorHTTP(t, r, x, session, clip.ID)
}

func waitForKind(t *testing.T, sub *microdrop.Subscription, kind microdrop.Kind) {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		select {
		case e := <-sub.C():
			if e.Kind == kind {
				return
			}
		case <-timer.C:
			t.Fatalf("no %s event", kind)
		}
	}
}

func checkBundle(t *testing.T, bundle string, m highlight.Manifest, d *claims.Drop, users []string, trimmedID string, trimmedLen time.Duration) {
	t.Helper()
	zr, err := zip.OpenReader(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := filepath.Join(filepath.Dir(bundle), "unzipped")
	files := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[zf.Name] = b
		p := filepath.Join(out, filepath.FromSlash(zf.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	raw, ok := files["manifest.json"]
	if !ok {
		t.Fatal("bundle has no manifest.json")
	}
	checkManifest(t, raw)
	var got highlight.Manifest
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != highlight.ManifestVersion || got.Session.ID != m.Session.ID {
		t.Errorf("manifest header %+v", got.Session)
	}
	// Every file but the manifest itself is listed with its hash.
	listed := map[string]bool{}
	for _, mf := range got.Files {
		b, ok := files[mf.Path]
		if !ok {
			t.Errorf("manifest lists %s, not in the bundle", mf.Path)
			continue
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != mf.SHA256 || int64(len(b)) != mf.Bytes {
			t.Errorf("%s: hash or size does not match the manifest", mf.Path)
		}
		listed[mf.Path] = true
	}
	for name := range files {
		if name != "manifest.json" && name != highlight.ManifestSigFile && !listed[name] {
			t.Errorf("%s is in the bundle but not in the manifest", name)
		}
	}

	if len(got.Drops) != 1 {
		t.Fatalf("manifest drops: %+v", got.Drops)
	}
	md := got.Drops[0]
	if md.ID != d.ID || md.Stock != 3 || md.Wins != 3 || md.Remaining != 0 || md.State != "sold_out" ||
		md.SellThroughMS == nil || md.ClaimsPerMinute <= 0 || md.LivePriceMinor != 4500 || md.PostStreamPriceMinor <= md.LivePriceMinor {
		t.Errorf("drop results: %+v", md)
	}

	// Clips: every one probes, starts on a keyframe, lasts what was asked
	// within one keyframe interval.
	if len(got.Highlights) != 2 {
		t.Fatalf("manifest highlights: %d", len(got.Highlights))
	}
	sums := map[string]string{}
	for _, mf := range got.Files {
		if prev, ok := sums[mf.SHA256]; ok {
			t.Errorf("%s and %s are the same bytes", prev, mf.Path)
		}
		sums[mf.SHA256] = mf.Path
	}
	if n := len(got.Highlights[0].Moments); n != 3 {
		t.Errorf("the drop's clip names %d moments in the manifest, want 3", n)
	}
	for _, c := range got.Highlights {
		p := ffprobe(t, filepath.Join(out, c.File))
		want := c.Moments[len(c.Moments)-1].At.Sub(c.Moments[0].At) + testPre + testPost
		if c.ID == trimmedID {
			want = trimmedLen
			if c.TrimInMS == 0 || c.TrimOutMS == 0 {
				t.Errorf("trimmed clip %s has no trim points in the manifest", c.ID)
			}
		}
		if p.Duration < want-100*time.Millisecond || p.Duration > want+keyint+150*time.Millisecond {
			t.Errorf("clip %s (%s): ffprobe duration %s, asked %s (keyframe interval %s)", c.ID, c.Reason, p.Duration, want, keyint)
		}
		if !within(time.Duration(c.DurationMS)*time.Millisecond, p.Duration, 150*time.Millisecond) {
			t.Errorf("clip %s: manifest says %d ms, ffprobe %s", c.ID, c.DurationMS, p.Duration)
		}
		if !strings.HasPrefix(p.FirstFlags, "K") || p.FirstPict != "I" {
			t.Errorf("clip %s does not start on a keyframe: flags %q pict %q", c.ID, p.FirstFlags, p.FirstPict)
		}
		if strings.Join(p.Streams, ",") != "h264,opus" {
			t.Errorf("clip %s streams %v, want h264,opus", c.ID, p.Streams)
		}
		// Its 9:16 version: 1080x1920 H.264 + AAC as long as the clip
		// (the trimmed span, re-encoded frame-exact), the drop's QR
		// burned in.
		v := c.Vertical
		if v == nil {
			t.Errorf("clip %s has no vertical version", c.ID)
			continue
		}
		vp := probeVertical(t, filepath.Join(out, v.File))
		if vp.Width != 1080 || vp.Height != 1920 || vp.Codecs != "h264,aac" ||
			!within(vp.Duration, time.Duration(v.DurationMS)*time.Millisecond, 150*time.Millisecond) ||
			!within(vp.Duration, min(p.Duration, highlight.MaxVertical), keyint+150*time.Millisecond) {
			t.Errorf("vertical %s probes as %+v, manifest %+v, 16:9 clip %s", v.File, vp, v, p.Duration)
		}
		if c.ID != trimmedID { // the drop's own clip, reframed in the editor
			if v.CropX != 0.3 || v.Overlay != highlight.OverlayQR || !strings.HasPrefix(v.Link, "https://drops.example/c/"+d.ID+"?") {
				t.Errorf("vertical of the drop's clip: %+v", v)
			}
			if got, err := decodeQRFrame(t, filepath.Join(out, v.File), time.Second); err != nil || got != v.Link {
				t.Errorf("the QR burned into %s decodes to %q (%v), want %q", v.File, got, err, v.Link)
			}
		}
	}

	// claims.csv: hashed ids only.
	rows, err := csv.NewReader(bytes.NewReader(files["claims.csv"])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(users) || rows[0][2] != "user_hash" {
		t.Fatalf("claims.csv: %v", rows)
	}
	for _, u := range users {
		if bytes.Contains(files["claims.csv"], []byte(u)) || bytes.Contains(files["claims.csv"], []byte("viewer_")) {
			t.Errorf("claims.csv carries a user id or login")
		}
	}
	for _, row := range rows[1:] {
		if len(row[2]) != 32 {
			t.Errorf("user hash %q", row[2])
		}
	}

	// Images: the product image (EXIF gone, signed) and the avatar.
	if len(got.Images) != 2 || md.Image == "" {
		t.Fatalf("manifest images %+v, drop image %q", got.Images, md.Image)
	}
	for _, im := range got.Images {
		b := files[im.File]
		if bytes.Contains(b, []byte(exifMarker)) {
			t.Errorf("%s carries the upload's EXIF", im.File)
		}
		if !highlight.VerifyImage(highlight.PublicKeys(got.Keys), b, im.KeyID, im.Signature) {
			t.Errorf("%s: signature does not verify with the manifest's keys", im.File)
		}
		if im.Role == highlight.ImageProduct && im.SHA256 != md.Image {
			t.Errorf("product image %s is not the drop's %s", im.SHA256, md.Image)
		}
	}
	for _, c := range got.Highlights {
		if b := files[c.Poster]; c.Poster == "" || len(b) < 3 || b[0] != 0xFF || b[1] != 0xD8 {
			t.Errorf("clip %s: poster %q is not a JPEG", c.ID, c.Poster)
		}
	}

	// Evidence of the moment: the still of the first keyframe after the
	// open, with the hash recorded then, and the cue heard on air.
	if len(got.Stills) != 1 {
		t.Fatalf("manifest stills: %+v", got.Stills)
	}
	st := got.Stills[0]
	openST := d.OpensAt.Sub(got.Session.StartedAt)
	if sum := sha256.Sum256(files[st.File]); st.DropID != d.ID || st.Type != "image/jpeg" || hex.EncodeToString(sum[:]) != st.SHA256 ||
		time.Duration(st.StreamTimeMS)*time.Millisecond < openST-time.Millisecond || time.Duration(st.StreamTimeMS)*time.Millisecond > openST+keyint+200*time.Millisecond ||
		!st.OpenedAt.Equal(d.OpensAt.UTC()) {
		t.Errorf("still %+v for an open at stream time %s", st, openST)
	}
	if img, err := jpeg.Decode(bytes.NewReader(files[st.File])); err != nil || img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
		t.Errorf("the still is not a 320x240 JPEG of the programme: %v", err)
	}
	if len(st.Cues) == 0 || st.Cues[0].Stream != "live" || st.Cues[0].DelayMS < 0 || st.Cues[0].HeardAt.Before(d.OpensAt) ||
		md.CueToAirMS == nil || md.CuesAired != len(st.Cues) {
		t.Errorf("the still's cues %+v, the drop's cue-to-air %v (%d aired)", st.Cues, md.CueToAirMS, md.CuesAired)
	}

	// The bundle verifies offline, as a zip and unpacked, with the pinned
	// key; a swapped file, a foreign key and an edited manifest are caught.
	signer := testSigner(t)
	pinned := highlight.PublicKeys{highlight.KeyID(signer.Public()): signer.Public()}
	if rep, err := highlight.VerifyBundle(zr, pinned); err != nil || rep.ManifestKey == "" || rep.Images != 2 || rep.Files != len(got.Files) {
		t.Errorf("the bundle zip does not verify: %v %+v", err, rep)
	}
	if _, err := highlight.VerifyBundle(os.DirFS(out), pinned); err != nil {
		t.Errorf("the unpacked bundle does not verify: %v", err)
	}
	var product, avatarFile string
	for _, im := range got.Images {
		if im.Role == highlight.ImageProduct {
			product = im.File
		} else {
			avatarFile = im.File
		}
	}
	swap := func(a, b string) {
		pa, pb := filepath.Join(out, a), filepath.Join(out, b)
		ba, _ := os.ReadFile(pa)
		bb, _ := os.ReadFile(pb)
		if err := os.WriteFile(pa, bb, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pb, ba, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	swap(product, avatarFile)
	rep, err := highlight.VerifyBundle(os.DirFS(out), pinned)
	if !errors.Is(err, highlight.ErrBundleInvalid) || !strings.Contains(strings.Join(rep.Problems, "\n"), product) {
		t.Errorf("a swapped product image verifies: %v %v", err, rep.Problems)
	}
	swap(product, avatarFile)
	other, _ := highlight.NewKeySigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)))
	if _, err := highlight.VerifyBundle(os.DirFS(out), highlight.PublicKeys{highlight.KeyID(other.Public()): other.Public()}); !errors.Is(err, highlight.ErrBundleInvalid) {
		t.Errorf("a bundle verifies with a key that did not sign it: %v", err)
	}
	edited := bytes.Replace(raw, []byte(`"stock": 3`), []byte(`"stock": 300`), 1)
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := highlight.VerifyBundle(os.DirFS(out), pinned); !errors.Is(err, highlight.ErrBundleInvalid) {
		t.Errorf("an edited manifest verifies: %v %+v", err, rep)
	}
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}

	// Offer pages: three kinds, each with SKU, run id, both prices and the
	// creator in the link's path.
	if len(got.Offers) != 3 {
		t.Fatalf("offers: %+v", got.Offers)
	}
	for _, o := range got.Offers {
		page := string(files[o.File])
		for _, want := range []string{"HOODIE-BLK-L", "run-2026-07", "EUR 45.00", "EUR 54.00",
			`href="https://drops.example/c/` + d.ID + `?creator=creator42&amp;`,
			`src="../images/` + md.Image + `.jpg"`, `<meta property="og:image" content="https://drops.example/images/` + md.Image + `">`,
			`poster="../` + got.Highlights[0].Poster + `"`, `src="../` + got.Highlights[0].File + `"`, "Creator 42", "--accent:#ff3d7f"} {
			if !strings.Contains(page, want) {
				t.Errorf("offer %s lacks %q", o.File, want)
			}
		}
		if !strings.HasPrefix(o.URL, "https://drops.example/c/"+d.ID+"?") {
			t.Errorf("offer %s links to %s, not the drop's claim page", o.File, o.URL)
		}
		if o.Kind == "highlight-reel-teaser" && !strings.Contains(page, "The drop opens + ") {
			t.Errorf("the teaser does not name every moment of the drop's clip:\n%s", page)
		}
	}
}
