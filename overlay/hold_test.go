package overlay_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/overlay"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newPaidEnv(t *testing.T) (*env, *testClock) {
	t.Helper()
	return newPaidEnvWith(t, nil)
}

// newPaidEnvWith is newPaidEnv with card checkouts from cards (none when nil).
func newPaidEnvWith(t *testing.T, cards func(*claims.Service) claims.CardCheckout) (*env, *testClock) {
	t.Helper()
	clock := &testClock{t: time.Now()}
	rs, err := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), []byte("receipt-seed-0123456789abcdef012"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, envHooks{
		claims: func(cd *claims.Deps) { cd.Now, cd.Receipts = clock.Now, rs },
		overlay: func(svc *claims.Service, od *overlay.Deps) {
			od.Now = clock.Now
			if cards != nil {
				od.Cards = cards(svc)
			}
		},
	})
	return e, clock
}

// viewerBrowser is one viewer's browser: its own cookies, so its own identity
// in local mode.
type viewerBrowser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *viewerBrowser {
	jar, _ := cookiejar.New(nil)
	return &viewerBrowser{t: t, c: &http.Client{Jar: jar}}
}

func (b *viewerBrowser) get(u string) (int, string) { b.t.Helper(); return get(b.t, b.c, u) }

func (b *viewerBrowser) post(u string, form url.Values) (int, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// csrf loads the claim page and returns the token its forms carry.
func (b *viewerBrowser) csrf(page string) string {
	b.t.Helper()
	_, body := b.get(page)
	m := hiddenCSRF.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", page, body)
	}
	return m[1]
}

var payURL = regexp.MustCompile(`action="(/c/[^/"]+/holds/([^/"]+)/pay)"`)

func TestClaimPagePaysOwnHold(t *testing.T) {
	e, _ := newPaidEnv(t)
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","title":"Hoodie","stock":1,"price_minor":4500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"10m","creator_id":"crea"}`)
	page := e.ts.URL + "/c/" + dr.Drop.ID
	ann, ben := newBrowser(t), newBrowser(t)

	annCSRF := ann.csrf(page)
	code, body := ann.post(page, url.Values{"csrf": {annCSRF}})
	m := payURL.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil || !strings.Contains(body, `data-state="awaiting"`) || !strings.Contains(body, `data-left-ms="600000"`) ||
		!strings.Contains(body, "45.00 EUR") || !strings.Contains(body, `id="pay-wallet"`) || !strings.Contains(body, `id="wallet-balance">0.00 EUR<`) ||
		!strings.Contains(body, `id="release-form"`) || strings.Contains(body, `id="pay-card"`) || strings.Contains(body, `id="claim-form"`) {
		t.Fatalf("ann's claim on a priced drop should show her hold and the wallet choice: %d\n%s", code, body)
	}
	pay, holdID := e.ts.URL+m[1], m[2]
	release := strings.TrimSuffix(pay, "/pay") + "/release"

	// Ben comes too late: he is in line, and never sees Ann's hold.
	benCSRF := ben.csrf(page)
	code, body = ben.post(page, url.Values{"csrf": {benCSRF}})
	if code != http.StatusOK || !strings.Contains(body, `data-waiting="1"`) || strings.Contains(body, holdID) || strings.Contains(body, "claim-hold") {
		t.Fatalf("ben's page: %d\n%s", code, body)
	}

	wallet := url.Values{"csrf": {annCSRF}, "method": {"wallet"}}
	if code, _ := newBrowser(t).post(pay, url.Values{"method": {"wallet"}}); code != http.StatusUnauthorized {
		t.Errorf("pay without a viewer session: %d, want 401", code)
	}
	if code, _ := ann.post(pay, url.Values{"csrf": {"0123abcd"}, "method": {"wallet"}}); code != http.StatusForbidden {
		t.Errorf("pay without the form's CSRF token: %d, want 403", code)
	}
	if code, _ := ann.post(release, url.Values{"csrf": {"0123abcd"}}); code != http.StatusForbidden {
		t.Errorf("release without the form's CSRF token: %d, want 403", code)
	}
	// The hold is looked up for the session's viewer: a user_id in the
	// form is ignored, and another viewer's hold does not exist.
	if code, _ := ben.post(pay, url.Values{"csrf": {benCSRF}, "method": {"wallet"}, "user_id": {"local-ann"}}); code != http.StatusNotFound {
		t.Errorf("ben pays ann's hold: %d, want 404", code)
	}
	if code, _ := ben.post(release, url.Values{"csrf": {benCSRF}}); code != http.StatusNotFound {
		t.Errorf("ben releases ann's hold: %d, want 404", code)
	}
	if code, _ := ben.get(strings.TrimSuffix(pay, "/pay") + "/receipt.svg"); code != http.StatusNotFound {
		t.Errorf("ben fetches ann's receipt QR: %d, want 404", code)
	}
	ctx := context.Background()
	h, err := e.svc.Books().Hold(ctx, holdID)
	if err != nil || h.State != claims.HoldAwaiting {
		t.Fatalf("after the refused actions the hold should still await payment: %+v %v", h, err)
	}

	// An empty wallet: a clear error, and nothing changes.
	code, body = ann.post(pay, wallet)
	if code != http.StatusConflict || !strings.Contains(body, `id="claim-error"`) || !strings.Contains(body, "your wallet has less than 45.00 EUR") ||
		!strings.Contains(body, `data-state="awaiting"`) {
		t.Fatalf("pay from an empty wallet: %d\n%s", code, body)
	}
	if h, _ := e.svc.Books().Hold(ctx, holdID); h.State != claims.HoldAwaiting {
		t.Fatalf("a refused payment changed the hold: %+v", h)
	}
	if ms, _ := e.svc.Books().Movements(ctx, holdID); len(ms) != 0 {
		t.Fatalf("a refused payment moved money: %+v", ms)
	}

	if _, err := e.svc.TopUp(ctx, "t1", h.UserID, "admin", 5000, "EUR", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, body = ann.post(pay, wallet)
	rec := regexp.MustCompile(`id="receipt" class="receipt">([^<]+)<`).FindStringSubmatch(body)
	if code != http.StatusOK || rec == nil || !strings.Contains(body, `data-state="paid"`) || strings.Contains(body, `id="pay-wallet"`) ||
		!strings.Contains(body, `id="receipt-verify"`) || !strings.Contains(body, "/holds/"+holdID+"/receipt.svg") {
		t.Fatalf("a paid hold should show its receipt: %d\n%s", code, body)
	}
	if bal, _ := e.svc.Wallet(ctx, h.UserID, "EUR"); bal != 500 {
		t.Errorf("wallet after paying 45.00 of 50.00: %d, want 500", bal)
	}
	r, err := claims.VerifyReceipt(rec[1], e.svc.ReceiptKeys())
	if err != nil || r.HoldID != holdID || r.Amount != 4500 || r.Currency != "EUR" {
		t.Fatalf("the page's receipt does not verify: %+v %v", r, err)
	}
	if code, body := newBrowser(t).get(e.ts.URL + "/receipt?r=" + url.QueryEscape(rec[1])); code != http.StatusOK || !strings.Contains(body, `id="receipt-ok"`) || !strings.Contains(body, "45.00 EUR") {
		t.Errorf("verify page: %d\n%s", code, body)
	}
	if code, body := newBrowser(t).get(e.ts.URL + "/receipt?r=" + url.QueryEscape(rec[1]+"x")); code == http.StatusOK || !strings.Contains(body, `id="receipt-error"`) {
		t.Errorf("verify page took an altered receipt: %d\n%s", code, body)
	}
	resp, err := ann.c.Get(strings.TrimSuffix(pay, "/pay") + "/receipt.svg")
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(string(svg), "<svg") {
		t.Errorf("receipt QR: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// After a reload Ann still sees her receipt; Ben and a stranger do not.
	if _, body := ann.get(page); !strings.Contains(body, rec[1]) {
		t.Fatalf("reload lost the receipt:\n%s", body)
	}
	for _, b := range []*viewerBrowser{ben, newBrowser(t)} {
		if _, body := b.get(page); strings.Contains(body, rec[1]) || strings.Contains(body, holdID) {
			t.Fatalf("another browser sees ann's receipt:\n%s", body)
		}
	}
	// Posting the form again (a double click, a resubmit) charges nothing:
	// the payment's key is the hold, and the page shows the same receipt.
	if code, body := ann.post(pay, wallet); code != http.StatusOK || !strings.Contains(body, rec[1]) {
		t.Errorf("paying a paid hold again: %d\n%s", code, body)
	}
	if bal, _ := e.svc.Wallet(ctx, h.UserID, "EUR"); bal != 500 {
		t.Errorf("wallet after a second pay attempt: %d, want 500", bal)
	}
}

func TestClaimPageShowsPassedOnHolds(t *testing.T) {
	e, clock := newPaidEnv(t)
	dr := e.openDrop(`{"channel":"streamer","sku":"cap","title":"Cap","stock":1,"price_minor":1500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"5m"}`)
	page := e.ts.URL + "/c/" + dr.Drop.ID
	cat, dan, eve := newBrowser(t), newBrowser(t), newBrowser(t)
	for _, b := range []*viewerBrowser{cat, dan} {
		if code, body := b.post(page, url.Values{"csrf": {b.csrf(page)}}); code != http.StatusOK {
			t.Fatalf("claim: %d\n%s", code, body)
		}
	}
	// The dashboard shows the awaiting hold and its deadline.
	if code, body := e.dashboardPage(); code != http.StatusOK || !strings.Contains(body, `id="holds-`+dr.Drop.ID+`"`) ||
		!strings.Contains(body, `class="holds-awaiting">1<`) || !strings.Contains(body, "pays by") {
		t.Fatalf("dashboard: %d\n%s", code, body)
	}

	ws := e.dial(nil)
	clock.Add(6 * time.Minute)
	if err := e.svc.ExpireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The overlay says so on the drop's card.
	f := next(t, ws, func(f overlay.Frame) bool { return f.Type == overlay.FrameEvent && f.Kind == "hold.expired" })
	if f.Note != "A unit is back in play: the next viewer in line gets it" || f.Drop == nil || f.Drop.ID != dr.Drop.ID {
		t.Fatalf("overlay frame for an expired hold: %+v", f)
	}
	if _, body := cat.get(page); !strings.Contains(body, `data-state="expired"`) || !strings.Contains(body, "passed on to the next viewer in line") || strings.Contains(body, `id="pay-wallet"`) {
		t.Fatalf("cat's expired hold:\n%s", body)
	}
	_, body := dan.get(page)
	m := payURL.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `data-state="awaiting"`) || !strings.Contains(body, "came back into play and it is yours") || !strings.Contains(body, `data-left-ms="300000"`) {
		t.Fatalf("dan, next in line, should see his new hold:\n%s", body)
	}
	if _, body := eve.get(page); strings.Contains(body, m[2]) {
		t.Fatalf("a stranger sees dan's hold:\n%s", body)
	}
	code, body := dan.post(e.ts.URL+strings.TrimSuffix(m[1], "/pay")+"/release", url.Values{"csrf": {dan.csrf(page)}})
	if code != http.StatusOK || !strings.Contains(body, `data-state="released"`) || !strings.Contains(body, "nobody was waiting") {
		t.Fatalf("dan releases: %d\n%s", code, body)
	}
	if code, body := e.dashboardPage(); code != http.StatusOK || !strings.Contains(body, `class="holds-passed">2<`) || !strings.Contains(body, `class="holds-paid">0<`) ||
		!strings.Contains(body, `class="holds-revenue">0.00 EUR<`) || !strings.Contains(body, "(1 unsold)") {
		t.Fatalf("dashboard after both passed on: %d\n%s", code, body)
	}
}

// dashboardPage signs in as the admin and loads the dashboard.
func (e *env) dashboardPage() (int, string) {
	e.t.Helper()
	b := newBrowser(e.t)
	if code, body := b.post(e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}, "next": {"/dashboard"}}); code != http.StatusOK {
		e.t.Fatalf("dashboard login: %d\n%s", code, body)
	}
	return b.get(e.ts.URL + "/dashboard")
}

// In Chromium: claim a priced drop, see the hold's countdown follow the
// server's clock (three hours off the browser's), pay from the wallet with
// a click, and see the receipt and its QR code.
func TestBrowserClaimPagePaysHold(t *testing.T) {
	ctx := browser(t)
	e, clock := newPaidEnv(t)
	clock.Add(-3 * time.Hour)
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","title":"Hoodie","stock":1,"price_minor":4500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"10m"}`)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.ts.URL+"/c/"+dr.Drop.ID),
		chromedp.WaitVisible(chromedp.ID("claim-submit")),
		chromedp.Click(chromedp.ID("claim-submit")),
		chromedp.WaitVisible(chromedp.ID("claim-hold")),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the pay-by countdown", `/^(10:00|9:[0-5][0-9])$/.test(document.getElementById("hold-countdown").textContent)`)
	hs, err := e.svc.Books().Holds(t.Context(), claims.HoldFilter{DropID: dr.Drop.ID})
	if err != nil || len(hs) != 1 {
		t.Fatalf("holds: %v %v", hs, err)
	}
	if _, err := e.svc.TopUp(t.Context(), "b1", hs[0].UserID, "admin", 4500, "EUR", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The balance on the page is from before the top-up: reload first.
	if err := chromedp.Do(ctx,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("pay-wallet")),
		chromedp.Click(chromedp.ID("pay-wallet")),
		chromedp.WaitVisible(chromedp.ID("receipt")),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the receipt's QR code", `(function(){var i=document.querySelector('img[alt="receipt QR code"]');return !!i&&i.complete&&i.naturalWidth>0;})()`)
	if got := eval[string](t, ctx, `document.getElementById("claim-hold").dataset.state`); got != "paid" {
		t.Fatalf("hold state on the page: %q", got)
	}
}
