package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop/claims"
)

const chromiumPath = "/usr/bin/chromium"

// phone starts a headless Chromium at 390x844 (a phone that scanned the
// stream's QR code) with a fresh profile: its own cookies.
func phone(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skip("install with: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func within(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second) // a broken page fails instead of hanging
}

// TestBrowserViewerSignsInAndSeesOnlyTheirCode walks the viewer's whole
// path against the test Twitch provider: the QR's URL, sign in, claim, own
// code and QR, reload; then a second phone signed in as someone else.
func TestBrowserViewerSignsInAndSeesOnlyTheirCode(t *testing.T) {
	r := newIdentityRig(t)
	var open claims.DropResponse
	if st, err := api(t, "POST", r.base+"/api/drops", json.RawMessage(`{"channel":"streamer","sku":"cap","title":"Tour cap","stock":5,"duration":"10m","policy":"fcfs","claim_code":"MOON"}`), &open); st != 201 || err != nil {
		t.Fatalf("open: %d %v", st, err)
	}
	qr := open.ClaimURL // what the overlay's QR code carries
	if !strings.HasPrefix(qr, r.base+"/c/"+open.Drop.ID) {
		t.Fatalf("claim URL %q", qr)
	}

	alice := phone(t)
	ctx, cancel := within(alice)
	defer cancel()
	text := func(ctx context.Context, id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return strings.TrimSpace(v)
	}
	html := func(ctx context.Context) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(qr),
		chromedp.WaitVisible(chromedp.ID("signin-twitch")),
		chromedp.Click(chromedp.ID("signin-twitch")),
		chromedp.WaitVisible(chromedp.ID("signin-viewer1")), // the provider's page
		chromedp.Click(chromedp.ID("signin-viewer1")),
		chromedp.WaitVisible(chromedp.ID("claim-form")),
	); err != nil {
		t.Fatal(err)
	}
	if who := text(ctx, "claim-who"); who != "viewer1" {
		t.Fatalf("signed in as %q", who)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("claim-submit")),
		chromedp.WaitVisible(chromedp.ID("pickup-token")),
	); err != nil {
		t.Fatal(err)
	}
	token := text(ctx, "pickup-token")
	qrLoaded, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const i = document.querySelector("img.pickup-qr"); return !!i && i.complete && i.naturalWidth > 0; })()`))
	if err != nil || !qrLoaded || len(token) != 16 {
		t.Fatalf("code %q, QR loaded %v (%v)", token, qrLoaded, err)
	}
	if ps, err := r.m.Claims.Status(t.Context(), open.Drop.ID, "555"); err != nil || len(ps) != 1 || ps[0].Token != token {
		t.Fatalf("the claim is not under viewer1's Twitch id: %v %v", ps, err)
	}
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("pickup-token"))); err != nil {
		t.Fatal(err)
	}
	if again := text(ctx, "pickup-token"); again != token {
		t.Fatalf("after a reload the code is %q, want %q", again, token)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(loc); u.Query().Get("code") != "MOON" {
		t.Fatalf("sign-in lost the claim code from the QR URL: %s", loc)
	}

	bob := phone(t)
	ctx2, cancel2 := within(bob)
	defer cancel2()
	if err := chromedp.Do(ctx2, chromedp.Navigate(qr), chromedp.WaitVisible(chromedp.ID("signin-twitch"))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html(ctx2), token) {
		t.Fatal("a stranger's phone shows the winner's code")
	}
	if err := chromedp.Do(ctx2,
		chromedp.Click(chromedp.ID("signin-twitch")),
		chromedp.WaitVisible(chromedp.ID("signin-viewer2")),
		chromedp.Click(chromedp.ID("signin-viewer2")),
		chromedp.WaitVisible(chromedp.ID("claim-form")),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("claim-form")),
	); err != nil {
		t.Fatal(err)
	}
	if h := html(ctx2); strings.Contains(h, token) || strings.Contains(h, `id="pickup-token"`) || text(ctx2, "claim-who") != "viewer2" {
		t.Fatalf("viewer2's page shows someone's code or the wrong name:\n%s", h)
	}
}
