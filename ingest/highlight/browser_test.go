package highlight_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
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
