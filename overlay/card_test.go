package overlay_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// "Pay by card" sends the viewer to the Checkout Session the card class
// opens for their own hold; back from it, the page says the payment is
// being confirmed until the webhook marks the hold paid.
func TestClaimPagePayByCard(t *testing.T) {
	mock := stripetest.StartMock(t)
	e, _ := newPaidEnvWith(t, func(svc *claims.Service) claims.CardCheckout {
		cards, err := stripe.New(svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: "whsec_test_0123456789", APIBase: mock, PublicURL: "http://localhost:8080"})
		if err != nil {
			t.Fatal(err)
		}
		return cards
	})
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","title":"Hoodie","stock":2,"price_minor":4500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet","card"],"pay_window":"10m","creator_id":"crea"}`)
	walletOnly := e.openDrop(`{"channel":"otherchannel","sku":"cap","title":"Cap","stock":1,"price_minor":1500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"10m"}`)
	page := e.ts.URL + "/c/" + dr.Drop.ID
	ann := newBrowser(t)
	csrf := ann.csrf(page)
	_, body := ann.post(page, url.Values{"csrf": {csrf}})
	m := payURL.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `id="pay-card"`) || !strings.Contains(body, `id="pay-wallet"`) {
		t.Fatalf("a drop that takes cards and wallets should offer both:\n%s", body)
	}
	pay, holdID := e.ts.URL+m[1], m[2]

	noFollow := *ann.c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.PostForm(pay, url.Values{"csrf": {csrf}, "method": {"card"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Scheme != "https" || strings.HasPrefix(resp.Header.Get("Location"), e.ts.URL) {
		t.Fatalf("pay by card: %d, Location %q; want a redirect to the Checkout Session", resp.StatusCode, resp.Header.Get("Location"))
	}
	if h, _ := e.svc.Books().Hold(t.Context(), holdID); h.State != claims.HoldAwaiting {
		t.Fatalf("opening a checkout paid the hold: %+v", h)
	}
	// Stripe sends the viewer back with ?paid=<hold>: the hold still awaits
	// the webhook, and the page says so.
	if _, body := ann.get(page + "?paid=" + url.QueryEscape(holdID)); !strings.Contains(body, `id="hold-card-pending"`) || !strings.Contains(body, `data-state="awaiting"`) {
		t.Fatalf("back from checkout:\n%s", body)
	}

	// A drop that takes only the wallet offers no card and refuses one.
	wpage := e.ts.URL + "/c/" + walletOnly.Drop.ID
	_, body = ann.post(wpage, url.Values{"csrf": {ann.csrf(wpage)}})
	wm := payURL.FindStringSubmatch(body)
	if wm == nil || strings.Contains(body, `id="pay-card"`) {
		t.Fatalf("wallet-only drop:\n%s", body)
	}
	if code, body := ann.post(e.ts.URL+wm[1], url.Values{"csrf": {csrf}, "method": {"card"}}); code != http.StatusBadRequest || !strings.Contains(body, "does not take cards") {
		t.Fatalf("card on a wallet-only drop: %d\n%s", code, body)
	}
}
