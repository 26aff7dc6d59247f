package highlight_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop/ingest/highlight"
)

const chromiumPath = "/usr/bin/chromium"

// writeDocs is set (MICRODROP_DOCS=1) to refresh the screenshots in docs/.
var writeDocs = os.Getenv("MICRODROP_DOCS") == "1"

// browser starts a headless Chromium with a fresh profile (the flags
// overlay/browser_test.go uses).
func browser(t *testing.T, w, h int64) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skip("install with: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(int(w), int(h)),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("allow-file-access-from-files", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func waitJS(t *testing.T, ctx context.Context, what, expr string) {
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

func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	shot := func(c context.Context, tg *chromedp.Target) ([]byte, error) {
		r, err := cdp.Call(c, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{CaptureBeyondViewport: new(true)})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	}
	b, err := chromedp.Run(ctx, chromedp.Action[[]byte](shot))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkOfferInBrowser opens an offer page of an unpacked bundle from disk
// in Chromium: the product image, the avatar and the clip's poster load
// from the bundle, the clip plays, the buy button is on screen; on a
// desktop the media sit beside the price, on a phone above it.
func checkOfferInBrowser(t *testing.T, dir, file string) {
	t.Helper()
	for _, vp := range []struct {
		name       string
		w, h       int64
		sideBySide bool
		doc        string
	}{{"desktop", 1280, 900, true, "offer.png"}, {"phone", 390, 844, false, "offer-phone.png"}} {
		ctx := browser(t, vp.w, vp.h)
		if err := chromedp.Do(ctx, chromedp.Navigate("file://"+filepath.Join(dir, file))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the product image and avatar to load", `(() => {
			const p = document.getElementById("product-image"), a = document.getElementById("avatar");
			return p && a && p.complete && p.naturalWidth > 0 && a.complete && a.naturalWidth > 0;
		})()`)
		waitJS(t, ctx, "the clip to load its first frame", `(() => { const v = document.getElementById("clip"); return v && v.readyState >= 2 && v.videoWidth > 0; })()`)
		poster := eval[bool](t, ctx, `new Promise(res => { const i = new Image(); i.onload = () => res(i.naturalWidth > 0); i.onerror = () => res(false); i.src = document.getElementById("clip").poster; })`)
		if !poster {
			t.Errorf("%s: the clip's poster does not load", vp.name)
		}
		buyOnScreen := eval[bool](t, ctx, `(() => { const r = document.getElementById("buy").getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= innerWidth; })()`)
		if !buyOnScreen {
			t.Errorf("%s: the buy button is off screen", vp.name)
		}
		side := eval[bool](t, ctx, `(() => { const m = document.querySelector(".media").getBoundingClientRect(), i = document.querySelector(".info").getBoundingClientRect(); return i.left >= m.right - 1; })()`)
		if side != vp.sideBySide {
			t.Errorf("%s (%dpx): media beside the price = %v, want %v", vp.name, vp.w, side, vp.sideBySide)
		}
		if scroll := eval[bool](t, ctx, `document.documentElement.scrollWidth > innerWidth`); scroll {
			t.Errorf("%s: the page scrolls sideways", vp.name)
		}
		if writeDocs {
			// Pause the clip on its poster frame so the screenshot is stable.
			eval[bool](t, ctx, `(() => { const v = document.getElementById("clip"); v.pause(); v.currentTime = 0.5; return true; })()`)
			path := filepath.Join("..", "..", "docs", vp.doc)
			if err := os.WriteFile(path, screenshot(t, ctx), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", path)
		}
	}
}

// checkEditorInBrowser drives the editor in Chromium: the session timeline
// marks every moment of every clip, in order; I and O set the trim to the
// playhead of the clip last touched; dragging the Out handle moves the Out
// point; space plays and pauses; the crop slider moves the 9:16 preview.
func checkEditorInBrowser(t *testing.T, h, images http.Handler, store highlight.Store, session string, clips []highlight.Highlight) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/editor", h)
	mux.Handle("/editor/", h)
	for _, p := range []string{"POST /api/images", "PUT /api/drops/{id}/image", "GET /images/{sha}"} {
		mux.Handle(p, images)
	}
	// The editor's stylesheet, as serve mounts it from package overlay.
	mux.Handle("/overlay/assets/", http.StripPrefix("/overlay/assets/", http.FileServer(http.Dir("../../overlay/assets"))))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	ctx := browser(t, 1280, 1000)
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/editor")); err != nil {
		t.Fatal(err)
	}
	eval[bool](t, ctx, `(() => { document.querySelector("#editor-login input[name=token]").value = "`+adminToken+`"; document.getElementById("editor-login").submit(); return true; })()`)
	// The form posts and redirects: the page is replaced under the poll,
	// so poll across the navigation.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.getElementById("sessions")`))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signing in to the editor: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/editor/sessions/"+session)); err != nil {
		t.Fatal(err)
	}
	moments := 0
	for _, c := range clips {
		moments += len(c.Moments)
	}
	waitJS(t, ctx, "the timeline", `document.querySelectorAll("#timeline .mark").length > 0`)
	marks := eval[[]float64](t, ctx, `[...document.querySelectorAll("#timeline .mark")].map(m => parseFloat(m.style.left))`)
	if len(marks) != moments {
		t.Errorf("timeline marks %v, want %d moments", marks, moments)
	}
	for i, m := range marks {
		if m < 0 || m > 100 || (i > 0 && m < marks[i-1]-0.001) {
			t.Errorf("timeline mark %d at %.2f%% (all: %v): off the bar or out of order", i, m, marks)
		}
	}
	id := clips[0].ID
	q := func(sel string) string { return `document.querySelector("#clip-` + id + ` ` + sel + `")` }
	waitJS(t, ctx, "the clip to load", q("video")+`.readyState >= 1`)
	waitJS(t, ctx, "the clip's waveform", `(() => { const w = `+q(".wave")+`; return w && w.complete && w.naturalWidth === 640; })()`)
	// Touch the clip, then I and O at two playhead positions.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#clip-"+id+" h2"))); err != nil {
		t.Fatal(err)
	}
	seek := func(s string) {
		t.Helper()
		eval[bool](t, ctx, `new Promise(res => { const v = `+q("video")+`; v.addEventListener("seeked", () => res(true), {once: true}); v.currentTime = `+s+`; })`)
	}
	seek("1.0")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("i")); err != nil {
		t.Fatal(err)
	}
	seek("2.5")
	if err := chromedp.Do(ctx, chromedp.KeyEvent("o")); err != nil {
		t.Fatal(err)
	}
	in, out := eval[string](t, ctx, q(`input[name=in]`)+`.value`), eval[string](t, ctx, q(`input[name=out]`)+`.value`)
	if in != "1.0" || out != "2.5" {
		t.Errorf("after I at 1.0 s and O at 2.5 s the trim reads %s–%s", in, out)
	}
	// Drag the Out handle to three quarters of the track.
	type box struct{ X, Y, W, H float64 }
	rect := func(sel string) box {
		v := eval[[]float64](t, ctx, `(() => { const r = `+q(sel)+`.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		return box{v[0], v[1], v[2], v[3]}
	}
	eval[bool](t, ctx, `(() => { `+q(".track")+`.scrollIntoView({block: "center"}); return true; })()`)
	hb, tb := rect(".h-out"), rect(".track")
	toX := tb.X + 0.75*tb.W
	mouse := func(typ input.DispatchMouseEventType, x float64, buttons int64) chromedp.Action[chromedp.Void] {
		return func(c context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(c, tg, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: typ, X: x, Y: hb.Y + hb.H/2,
				Button: input.MouseButtonLeft, Buttons: buttons, ClickCount: 1})
			return chromedp.Void{}, err
		}
	}
	if err := chromedp.Do(ctx, mouse(input.DispatchMouseEventTypeMousePressed, hb.X+hb.W/2, 1),
		mouse(input.DispatchMouseEventTypeMouseMoved, (hb.X+toX)/2, 1), mouse(input.DispatchMouseEventTypeMouseMoved, toX, 1),
		mouse(input.DispatchMouseEventTypeMouseReleased, toX, 0)); err != nil {
		t.Fatal(err)
	}
	dur := clips[0].Duration.Seconds()
	dragged, err := strconv.ParseFloat(eval[string](t, ctx, q(`input[name=out]`)+`.value`), 64)
	if err != nil || math.Abs(dragged-0.75*dur) > 0.05*dur+0.1 {
		t.Errorf("dragging Out to 75%% of a %.1f s clip set it to %v (%v)", dur, dragged, err)
	}
	// Space plays and pauses the active clip.
	if err := chromedp.Do(ctx, chromedp.KeyEvent(" ")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "space to start playback", `!`+q("video")+`.paused`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(" ")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "space to pause", q("video")+`.paused`)
	// The crop slider moves the 9:16 window over the player.
	left := eval[float64](t, ctx, `(() => { const r = `+q(`input[name=x]`)+`; r.value = "0.8"; r.dispatchEvent(new Event("input")); return parseFloat(`+q(".cropbox")+`.style.left); })()`)
	if math.Abs(left-0.8*(100-31.64)) > 0.1 {
		t.Errorf("crop at 0.8 puts the preview at %.2f%%", left)
	}
	// A product image uploaded from the editor becomes the drop's.
	dropID := clips[0].DropID
	pic := filepath.Join(t.TempDir(), "hoodie.png")
	if err := os.WriteFile(pic, pngBytes(t, productImage(300, 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := store.DropImage(context.Background(), dropID)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#image-file-"+dropID), pic),
		chromedp.Click(chromedp.CSS("#image-form-"+dropID+" button"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the uploaded image to show", `(() => { const i = document.getElementById("image-`+dropID+`"); return !i.hidden && i.complete && i.naturalWidth === 300; })()`)
	after, err := store.DropImage(context.Background(), dropID)
	if status := eval[string](t, ctx, `document.getElementById("image-status-`+dropID+`").textContent`); err != nil || after == "" || after == before ||
		!strings.Contains(status, after[:12]) {
		t.Errorf("upload from the editor: drop image %q (was %q), status %q, %v", after, before, status, err)
	}
	if writeDocs {
		eval[bool](t, ctx, `(() => { window.scrollTo(0, 0); return true; })()`)
		path := filepath.Join("..", "..", "docs", "editor.png")
		if err := os.WriteFile(path, screenshot(t, ctx), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}
