package overlay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop/ingest/cue"
)

const chromiumPath = "/usr/bin/chromium"

// writeDocs is set (MICRODROP_DOCS=1) to refresh the screenshots in docs/.
var writeDocs = os.Getenv("MICRODROP_DOCS") == "1"

// browser starts a headless Chromium with a fresh profile for one test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skip("install with: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1920, 1080),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	// The first Run starts the browser and must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitFor polls a JavaScript condition until it holds (bounded so a broken
// page fails the test instead of hanging it; not a speed assertion).
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// transparentScreenshot captures the viewport with no default background,
// so the overlay's transparency shows in the PNG's alpha.
func transparentScreenshot(t *testing.T, ctx context.Context) image.Image {
	t.Helper()
	shot := func(c context.Context, tg *chromedp.Target) ([]byte, error) {
		// Alpha 0 is omitted on the wire (and then means opaque): ask for
		// a value that rounds to 0 of 255.
		if _, err := cdp.Call(c, tg, emulation.SetDefaultBackgroundColorOverride,
			emulation.SetDefaultBackgroundColorOverrideParams{Color: &cdp.RGBA{A: 0.001}}); err != nil {
			return nil, err
		}
		r, err := cdp.Call(c, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	}
	b, err := chromedp.Run(ctx, chromedp.Action[[]byte](shot))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// sampleFrame is a stand-in for a stream frame: sky, sun, hills and a HUD.
func sampleFrame(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		f := float64(y) / float64(h)
		sky := color.RGBA{uint8(40 + 150*f), uint8(70 + 90*f), uint8(140 + 60*(1-f)), 255}
		for x := 0; x < w; x++ {
			c := sky
			hill := 0.62*float64(h) + 60*math.Sin(float64(x)/170) + 30*math.Sin(float64(x)/53)
			if float64(y) > hill {
				c = color.RGBA{uint8(30 + 20*math.Sin(float64(x)/40)), uint8(90 + 40*f), 50, 255}
			}
			if dx, dy := float64(x-1400), float64(y-260); dx*dx+dy*dy < 90*90 {
				c = color.RGBA{255, 214, 120, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	draw.Draw(img, image.Rect(40, 40, 420, 110), &image.Uniform{color.RGBA{0, 0, 0, 140}}, image.Point{}, draw.Over)
	draw.Draw(img, image.Rect(60, 60, 320, 90), &image.Uniform{color.RGBA{220, 60, 60, 255}}, image.Point{}, draw.Over)
	return img
}

func savePNG(t *testing.T, name string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// The overlay in a real browser: it appears when a drop opens through the
// API, its QR code (read from the screenshot) is the claim link, claims move
// the stock bar, the countdown runs on the server's clock even when the PC
// clock is an hour off, and the page is transparent around the card.
func TestBrowserOverlayShowsDrop(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t)
	// The PC clock is an hour fast; the countdown must not care.
	skew := func(c context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(c, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `(function(){ const real = Date.now; Date.now = () => real() + 3600000; })();`})
		return chromedp.Void{}, err
	}
	if err := chromedp.Do(ctx, skew, chromedp.Navigate(e.srv.OverlayURL(testChannel)+"&demo=0")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first snapshot", `window.microdropOverlay && microdropOverlay.snapshots >= 1`)
	if hidden := eval[bool](t, ctx, `document.getElementById("card").classList.contains("hidden")`); !hidden {
		t.Fatal("with no drop the card must be hidden")
	}

	dr := e.openDrop(`{"channel":"streamer","sku":"HOODIE-LTD","title":"Limited Hoodie","stock":10,"price_minor":4500,"currency":"USD","duration":"90s"}`)
	waitFor(t, ctx, "the card", fmt.Sprintf(`document.getElementById("card").dataset.drop === %q && document.getElementById("card").dataset.settled === "1"`, dr.Drop.ID))
	for _, u := range []string{"alice", "bob", "carol"} {
		e.claim(dr.Drop.ID, u, "")
	}
	waitFor(t, ctx, "the stock bar at 7 of 10", `document.getElementById("card").dataset.remaining === "7" && document.getElementById("stock-fill").style.width === "70%"`)
	waitFor(t, ctx, "three winners", `document.querySelectorAll("#winners li").length === 3`)

	offset := eval[float64](t, ctx, `microdropOverlay.offset`)
	if math.Abs(offset+3600000) > 5000 {
		t.Fatalf("clock offset %.0f ms, want about -3600000 (the page's clock is an hour fast)", offset)
	}
	left := eval[string](t, ctx, `document.getElementById("card").dataset.left`)
	var secs int
	if _, err := fmt.Sscan(left, &secs); err != nil || secs < 1 || secs > 90 {
		t.Fatalf("countdown shows %q seconds left, want 1..90 by the server clock", left)
	}
	waitFor(t, ctx, "the countdown to move", fmt.Sprintf(`document.getElementById("card").dataset.left !== %q`, left))
	// A screenshot mid-transition (the stock bar, the card) can blur the
	// code under a loaded machine: take it when nothing is moving.
	waitFor(t, ctx, "no running transition", `document.getAnimations().length === 0`)

	img := transparentScreenshot(t, ctx)
	if _, _, _, a := img.At(10, 10).RGBA(); a != 0 {
		t.Fatalf("the page is not transparent around the card (alpha %d at 10,10)", a)
	}
	composite := sampleFrame(img.Bounds().Dx(), img.Bounds().Dy())
	draw.Draw(composite, composite.Bounds(), img, image.Point{}, draw.Over)
	if got := decodeQR(t, composite); got != dr.ClaimURL {
		t.Fatalf("QR on screen reads %q, want the claim URL %q", got, dr.ClaimURL)
	}
	if writeDocs {
		savePNG(t, "overlay.png", composite)
	}
}

// The cue the page plays is the cue the Go detector hears: the page's own
// player renders into an OfflineAudioContext, the samples come back to Go,
// and cue.DetectAll finds the drop's code starting where it was scheduled.
func TestBrowserCueIsHeardByDetector(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.OverlayURL(testChannel))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first snapshot", `window.microdropOverlay && microdropOverlay.snapshots >= 1`)
	dr := e.openDrop(`{"channel":"streamer","sku":"CUE","stock":3,"duration":"60s"}`)
	waitFor(t, ctx, "the cue to be played on open", fmt.Sprintf(`microdropOverlay.cuesPlayed === 1 && microdropOverlay.lastCue === %d`, dr.Drop.CueCode))

	for _, profile := range []cue.Profile{cue.Audible, cue.Ultrasonic} {
		const startS = 0.5
		type rendered struct {
			Code uint32 `json:"code"`
			B64  string `json:"b64"`
		}
		r := eval[rendered](t, ctx, fmt.Sprintf(`(async () => {
			const code = microdropOverlay.drop.cue_code;
			const ctx = new OfflineAudioContext(1, 48000 * 2, 48000);
			MicrodropCue.play(ctx, code, %q, 0.1, %v);
			const buf = await ctx.startRendering();
			const u8 = new Uint8Array(buf.getChannelData(0).buffer);
			let s = "";
			for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
			return {code: code, b64: btoa(s)};
		})()`, string(profile), startS))
		raw, err := base64.StdEncoding.DecodeString(r.B64)
		if err != nil {
			t.Fatal(err)
		}
		samples := make([]float32, len(raw)/4)
		for i := range samples {
			samples[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		ds := cue.DetectAll(samples, 48000)
		if r.Code != dr.Drop.CueCode || len(ds) != 1 {
			t.Fatalf("%s: page code %d (drop's %d), detections %+v; want exactly one", profile, r.Code, dr.Drop.CueCode, ds)
		}
		d := ds[0]
		off := d.Start - time.Duration(startS*float64(time.Second))
		if d.Code != dr.Drop.CueCode || d.Profile != profile || off < -2*time.Millisecond || off > 2*time.Millisecond {
			t.Fatalf("%s: detected %+v, want code %d starting at %.1fs (±2ms)", profile, d, dr.Drop.CueCode, startS)
		}
		t.Logf("%s: code %08x heard at %v (SNR %.1f dB)", profile, d.Code, d.Start, d.SNRDB)
	}
}

// The dashboard in a browser: sign in with the token, open a drop from the
// form, and see it in the drops table and the live feed.
func TestBrowserDashboardOpensDrop(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.ts.URL+"/dashboard"),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), testAdminTok),
		chromedp.Submit(chromedp.ID("login-form")),
		chromedp.WaitVisible(chromedp.ID("open-form")),
		chromedp.SetValue(chromedp.ID("f-sku"), "CAP-RED"),
		chromedp.SetValue(chromedp.ID("f-title"), "Red Cap"),
		chromedp.SetValue(chromedp.ID("f-stock"), "25"),
		chromedp.SetValue(chromedp.ID("f-duration"), "2m"),
		chromedp.Click(chromedp.ID("open-submit")),
		chromedp.WaitVisible(chromedp.ID("form-notice")),
	); err != nil {
		t.Fatal(err)
	}
	ds, err := e.svc.Recent(t.Context(), testChannel, 5)
	if err != nil || len(ds) != 1 || ds[0].SKU != "CAP-RED" || ds[0].Stock != 25 || ds[0].State != "open" {
		t.Fatalf("the form should have opened one drop: %+v %v", ds, err)
	}
	waitFor(t, ctx, "the drop in the table", fmt.Sprintf(`!!document.querySelector('tr[data-drop=%q].live')`, ds[0].ID))
	waitFor(t, ctx, "the open in the live feed", `[...document.querySelectorAll("#feed li")].some(li => li.textContent.includes("drop.opened"))`)
	e.claim(ds[0].ID, "dora", "")
	waitFor(t, ctx, "the claim in the live feed", `[...document.querySelectorAll("#feed li")].some(li => li.textContent.includes("dora won"))`)
	waitFor(t, ctx, "the stock in the table", fmt.Sprintf(`document.querySelector('tr[data-drop=%q] .remaining').textContent === "24"`, ds[0].ID))

	if writeDocs {
		// Some traffic so the chart and the counters have something to show.
		for i := 0; i < 40; i++ {
			_, _ = e.svc.Claim(t.Context(), claimReq(ds[0].ID, fmt.Sprintf("viewer%02d", i)))
			_, _ = e.svc.Claim(t.Context(), claimReq(ds[0].ID, fmt.Sprintf("viewer%02d", i)))
			time.Sleep(80 * time.Millisecond)
		}
		waitFor(t, ctx, "the chart", `document.getElementById("chart-cps").getAttribute("points").split(" ").length > 2`)
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		savePNG(t, "dashboard.png", img)
	}
}
