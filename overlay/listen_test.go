package overlay_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/overlay"
)

// The overlay plays a listen drop's cue at every step: the hub pushes each
// step's code to the channel's overlays as a cue.step frame.
func TestOverlayGetsEachListenStep(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nil)
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","stock":5,"duration":"1m","listen":true,"listen_step":"2s"}`)
	d, err := e.svc.Drop(context.Background(), dr.Drop.ID)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Drop.CueCode != 0 {
		t.Fatalf("the API shows step 1's code %08x: it must be heard, not read", dr.Drop.CueCode)
	}
	f := next(t, c, func(f overlay.Frame) bool { return f.Kind == microdrop.DropOpened })
	if f.Drop == nil || f.Drop.CueCode != d.CueCodeAt(1) {
		t.Fatalf("drop.opened to the overlay carries cue %+v, step 1 is %08x", f.Drop, d.CueCodeAt(1))
	}
	f = next(t, c, func(f overlay.Frame) bool { return f.Kind == microdrop.CueStep })
	if f.Step == nil || f.Step.Step != 2 || f.Step.Code != d.CueCodeAt(2) || f.Step.StepMS != 2000 {
		t.Fatalf("cue.step frame %+v", f.Step)
	}
	f = next(t, c, func(f overlay.Frame) bool { return f.Kind == microdrop.CueStep })
	if f.Step.Step != 3 || f.Step.Code != d.CueCodeAt(3) {
		t.Fatalf("second cue.step frame %+v", f.Step)
	}
}

// The overlay page in Chromium plays step 1's cue on open and each later
// step's cue as its cue.step frame arrives.
func TestBrowserOverlayPlaysEachListenStep(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.OverlayURL(testChannel))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first snapshot", `window.microdropOverlay && microdropOverlay.snapshots >= 1`)
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","stock":5,"duration":"1m","listen":true,"listen_step":"2s"}`)
	d, err := e.svc.Drop(context.Background(), dr.Drop.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "step 1's cue", fmt.Sprintf(`microdropOverlay.cuesPlayed === 1 && microdropOverlay.lastCue === %d`, d.CueCodeAt(1)))
	waitFor(t, ctx, "step 2's cue", fmt.Sprintf(`microdropOverlay.cuesPlayed === 2 && microdropOverlay.lastCue === %d`, d.CueCodeAt(2)))
	waitFor(t, ctx, "step 3's cue", fmt.Sprintf(`microdropOverlay.cuesPlayed === 3 && microdropOverlay.lastCue === %d`, d.CueCodeAt(3)))
}
