package overlay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
	"github.com/microdrop/microdrop/overlay"
)

// receiver is a webhook endpoint that checks every signature with the
// Standard Webhooks library and answers 500 while failing is set. The
// deliveries are timed by the simulated clock, so it checks the timestamp
// against that clock instead of the library's wall-clock tolerance.
type receiver struct {
	t      *testing.T
	clock  *testClock
	secret string
	mu     sync.Mutex
	fail   bool
	ids    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	wh, err := standardwebhooks.NewWebhook(rc.secret)
	if err == nil {
		err = wh.VerifyIgnoringTimestamp(body, r.Header)
	}
	if ts := r.Header.Get("webhook-timestamp"); err == nil && ts != strconv.FormatInt(rc.clock.Now().Unix(), 10) {
		err = fmt.Errorf("webhook-timestamp %s, the clock says %d", ts, rc.clock.Now().Unix())
	}
	if err != nil {
		rc.t.Errorf("delivery with a bad signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.ids = append(rc.ids, r.Header.Get("webhook-id"))
	if rc.fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) set(fail bool) { rc.mu.Lock(); rc.fail = fail; rc.mu.Unlock() }
func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

// The dashboard shows each endpoint's delivery log from real deliveries,
// redelivers and re-enables only for the signed-in admin's own forms, and
// gives notice of a disabled endpoint.
func TestDashboardWebhooks(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Now().UTC().Truncate(time.Second)}
	var h *webhook.Handler
	var worker *webhook.Worker
	e := newEnvWith(t, envHooks{overlay: func(_ *claims.Service, od *overlay.Deps) {
		ob := od.Ledger.(claims.Outbox)
		st, err := webhook.OpenStore(ctx, filepath.Join(t.TempDir(), "webhooks.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		worker = webhook.NewWorker(webhook.Deps{Outbox: ob, Store: st, Now: clock.Now, Jitter: func() float64 { return 1 },
			Options: webhook.Options{RetryFor: time.Hour, FirstRetry: time.Minute, MaxRetryDelay: time.Minute}})
		h = webhook.NewHandler(st, worker, ob, microdrop.NewAdmin(testAdminTok, false, nil))
		od.Webhooks = h
	}})
	jar, _ := cookiejar.New(nil)
	admin := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, page := get(t, admin, e.ts.URL+"/dashboard"); code != http.StatusOK || strings.Contains(page, `id="webhooks"`) {
		t.Fatalf("the signed-out dashboard shows webhooks: %d", code)
	}
	resp, err := admin.PostForm(e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, page := get(t, admin, e.ts.URL+"/dashboard")
	csrf := hiddenCSRF.FindStringSubmatch(page)
	if code != http.StatusOK || csrf == nil || !strings.Contains(page, `id="webhooks-none"`) {
		t.Fatalf("dashboard without endpoints: %d\n%s", code, page)
	}

	rc := &receiver{t: t, clock: clock, fail: true}
	ts := httptest.NewServer(rc)
	t.Cleanup(ts.Close)
	u := ts.URL + "/hooks"
	ep, err := h.Create(ctx, webhook.EndpointBody{URL: &u, Kinds: []string{claims.EventHoldWon}})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = ep.Secret
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","title":"Hoodie","stock":2,"price_minor":4500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"10m"}`)
	if res := e.claim(dr.Drop.ID, "ann", ""); res.HoldID == "" {
		t.Fatalf("ann should win: %+v", res)
	}
	if err := worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := h.Log(ctx, ep.ID, 10)
	if err != nil || len(log) != 1 || log[0].Attempts != 1 || log[0].LastStatus != 500 {
		t.Fatalf("the first delivery should have failed once with 500: %+v %v", log, err)
	}
	first := log[0]
	if got := rc.got(); len(got) != 1 || got[0] != first.EventID {
		t.Fatalf("receiver got %v, want %s", got, first.EventID)
	}

	row := func(page, event string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr class="delivery" data-event="` + regexp.QuoteMeta(event) + `".*?</tr>`).FindString(page)
		if m == "" {
			t.Fatalf("no log row for %s:\n%s", event, page)
		}
		return m
	}
	cell := func(row, class string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<td class="` + class + `">(.*?)</td>`).FindStringSubmatch(row)
		if m == nil {
			t.Fatalf("no %s in %s", class, row)
		}
		return strings.TrimSpace(m[1])
	}
	_, page = get(t, admin, e.ts.URL+"/dashboard")
	r := row(page, first.EventID)
	if !strings.Contains(page, `data-endpoint="`+ep.ID+`" data-disabled="false"`) || !strings.Contains(page, ts.URL+"/hooks") ||
		!strings.Contains(r, `data-state="pending"`) || !strings.Contains(r, "hold.won") || !strings.Contains(r, dr.Drop.ID) ||
		!strings.Contains(r, `<code class="webhook-id">`+first.EventID+`</code>`) ||
		cell(r, "delivery-attempts") != "1" || cell(r, "delivery-status") != "500" || cell(r, "delivery-error") != "answered 500" ||
		!regexp.MustCompile(`^\d+ ms$`).MatchString(cell(r, "delivery-latency")) || !strings.Contains(r, "next "+clock.Now().Add(time.Minute).Local().Format(time.DateTime)) {
		t.Fatalf("the log row should show the failed attempt:\n%s", r)
	}
	if strings.Contains(page, "endpoint-enable") || strings.Contains(page, "is disabled") {
		t.Fatal("an enabled endpoint offers Enable or a disabled notice")
	}

	redeliver := e.ts.URL + "/dashboard/webhooks/" + ep.ID + "/deliveries/" + first.EventID + "/redeliver"
	post := func(c *http.Client, u string, v url.Values, origin string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stranger := &http.Client{CheckRedirect: admin.CheckRedirect}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		v      url.Values
		origin string
		want   int
	}{
		{"without a session", stranger, url.Values{"csrf": {csrf[1]}}, "", http.StatusUnauthorized},
		{"without the CSRF token", admin, url.Values{}, "", http.StatusForbidden},
		{"with a wrong CSRF token", admin, url.Values{"csrf": {"00ff"}}, "", http.StatusForbidden},
		{"from another site", admin, url.Values{"csrf": {csrf[1]}}, "https://evil.example", http.StatusForbidden},
	} {
		if code := post(tc.c, redeliver, tc.v, tc.origin); code != tc.want {
			t.Errorf("redeliver %s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if log, _ := h.Log(ctx, ep.ID, 10); !log[0].NextAt.Equal(first.NextAt) || log[0].Attempts != 1 {
		t.Fatalf("a refused redeliver changed the delivery: %+v", log[0])
	}
	if code := post(admin, e.ts.URL+"/dashboard/webhooks/"+ep.ID+"/deliveries/msg_nope/redeliver", url.Values{"csrf": {csrf[1]}}, ""); code != http.StatusNotFound {
		t.Errorf("redeliver of an unknown event: %d, want 404", code)
	}

	// The receiver recovers; the admin redelivers at once instead of
	// waiting a minute for the retry.
	rc.set(false)
	if code := post(admin, redeliver, url.Values{"csrf": {csrf[1]}}, e.ts.URL); code != http.StatusSeeOther {
		t.Fatalf("redeliver from the dashboard: %d, want 303", code)
	}
	if err := worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); len(got) != 2 || got[1] != first.EventID {
		t.Fatalf("the redelivery should carry the same webhook-id: %v", got)
	}
	code, page = get(t, admin, e.ts.URL+"/dashboard?what=redelivering&done="+url.QueryEscape(first.EventID))
	r = row(page, first.EventID)
	if code != http.StatusOK || !strings.Contains(page, "redelivering "+first.EventID) || !strings.Contains(r, `data-state="delivered"`) ||
		cell(r, "delivery-attempts") != "2" || cell(r, "delivery-status") != "204" || cell(r, "delivery-error") != "" {
		t.Fatalf("after the redelivery the row should say delivered, 204:\n%s", r)
	}

	// The receiver fails past the retry time: the endpoint is disabled,
	// the dashboard says so and offers Enable.
	rc.set(true)
	if res := e.claim(dr.Drop.ID, "ben", ""); res.HoldID == "" {
		t.Fatalf("ben should win: %+v", res)
	}
	if err := worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clock.Add(30 * time.Minute)
		if err := worker.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eps, _ := h.Endpoints(ctx)
	if len(eps) != 1 || !eps[0].Disabled {
		t.Fatalf("the endpoint should be disabled after an hour of failures: %+v", eps)
	}
	_, page = get(t, admin, e.ts.URL+"/dashboard")
	if !strings.Contains(page, `role="alert"><strong>Webhook endpoint `+ep.ID+" ("+ts.URL+"/hooks) is disabled: event ") ||
		!strings.Contains(page, `data-endpoint="`+ep.ID+`" data-disabled="true"`) || !strings.Contains(page, `class="state warn endpoint-state">disabled<`) ||
		!strings.Contains(page, `action="/dashboard/webhooks/`+ep.ID+`/enable"`) {
		t.Fatalf("the dashboard should give notice of the disabled endpoint and offer Enable:\n%s", page)
	}
	enable := e.ts.URL + "/dashboard/webhooks/" + ep.ID + "/enable"
	if code := post(stranger, enable, url.Values{"csrf": {csrf[1]}}, ""); code != http.StatusUnauthorized {
		t.Errorf("enable without a session: %d, want 401", code)
	}
	if code := post(admin, enable, url.Values{}, ""); code != http.StatusForbidden {
		t.Errorf("enable without the CSRF token: %d, want 403", code)
	}
	if eps, _ := h.Endpoints(ctx); !eps[0].Disabled {
		t.Fatal("a refused enable enabled the endpoint")
	}
	rc.set(false)
	if code := post(admin, enable, url.Values{"csrf": {csrf[1]}}, ""); code != http.StatusSeeOther {
		t.Fatalf("enable from the dashboard: %d, want 303", code)
	}
	if err := worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	_, page = get(t, admin, e.ts.URL+"/dashboard")
	if strings.Contains(page, "is disabled") || !strings.Contains(page, `data-disabled="false"`) {
		t.Fatalf("the enabled endpoint still shows as disabled:\n%s", page)
	}
	log, _ = h.Log(ctx, ep.ID, 10)
	if len(log) != 2 || log[0].State != webhook.Delivered || log[1].State != webhook.Delivered {
		t.Fatalf("after enabling, every delivery should be delivered: %+v", log)
	}
}

// bodyReceiver keeps every delivery's body.
type bodyReceiver struct {
	mu     sync.Mutex
	bodies []string
}

func (b *bodyReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, string(body))
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *bodyReceiver) all() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.bodies, "\n")
}

// A holder may give a shipping address for their own hold on the claim
// page; only they see it, and only an endpoint marked for fulfilment gets
// it, in the deliveries about that hold.
func TestShippingAddress(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: time.Now()}
	rs, err := claims.NewReceiptSigner([]byte("holder-secret-0123456789"), []byte("receipt-seed-0123456789abcdef012"))
	if err != nil {
		t.Fatal(err)
	}
	var h *webhook.Handler
	var worker *webhook.Worker
	e := newEnvWith(t, envHooks{
		claims: func(cd *claims.Deps) { cd.Now, cd.Receipts = clock.Now, rs },
		overlay: func(_ *claims.Service, od *overlay.Deps) {
			od.Now = clock.Now
			ob := od.Ledger.(claims.Outbox)
			st, err := webhook.OpenStore(ctx, filepath.Join(t.TempDir(), "webhooks.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			worker = webhook.NewWorker(webhook.Deps{Outbox: ob, Store: st, Now: clock.Now})
			h = webhook.NewHandler(st, worker, ob, microdrop.NewAdmin(testAdminTok, false, nil))
			od.Webhooks = h
		}})
	shop, other := &bodyReceiver{}, &bodyReceiver{}
	for _, r := range []struct {
		rc         *bodyReceiver
		fulfilment bool
	}{{shop, true}, {other, false}} {
		ts := httptest.NewServer(r.rc)
		t.Cleanup(ts.Close)
		u, f := ts.URL, r.fulfilment
		if _, err := h.Create(ctx, webhook.EndpointBody{URL: &u, Kinds: claims.EventKinds, Fulfilment: &f}); err != nil {
			t.Fatal(err)
		}
	}
	dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","title":"Hoodie","stock":1,"price_minor":4500,"currency":"EUR","duration":"60s","policy":"fcfs","pay":["wallet"],"pay_window":"10m"}`)
	page := e.ts.URL + "/c/" + dr.Drop.ID
	ann, ben := newBrowser(t), newBrowser(t)
	annCSRF := ann.csrf(page)
	code, body := ann.post(page, url.Values{"csrf": {annCSRF}})
	m := regexp.MustCompile(`action="(/c/[^/"]+/holds/([^/"]+)/address)"`).FindStringSubmatch(body)
	if code != http.StatusOK || m == nil || !strings.Contains(body, "Have it shipped (optional)") {
		t.Fatalf("ann's hold should offer a shipping address: %d\n%s", code, body)
	}
	addrURL, holdID := e.ts.URL+m[1], m[2]
	if err := worker.Step(ctx); err != nil { // hold.won goes out before any address
		t.Fatal(err)
	}

	good := url.Values{"csrf": {annCSRF}, "recipient": {"Ann Example"}, "line1": {"Hauptstr. 5"}, "city": {"Berlin"}, "postal_code": {"10115"}, "country": {"de"}}
	with := func(k, v string) url.Values {
		out := url.Values{}
		for key, vs := range good {
			out[key] = vs
		}
		out.Set(k, v)
		return out
	}
	benCSRF := ben.csrf(page)
	for _, tc := range []struct {
		name string
		b    *viewerBrowser
		form url.Values
		want int
		says string
	}{
		{"without a viewer session", newBrowser(t), good, http.StatusUnauthorized, "sign in first"},
		{"without the CSRF token", ann, with("csrf", "00ff"), http.StatusForbidden, "stale"},
		{"by another viewer", ben, with("csrf", benCSRF), http.StatusNotFound, "no such hold"},
		{"without a street", ann, with("line1", " "), http.StatusBadRequest, "line1 is required"},
		{"with a country name", ann, with("country", "Germany"), http.StatusBadRequest, "two-letter ISO code"},
		{"with a control character", ann, with("city", "Ber\u202elin"), http.StatusBadRequest, "control, bidi or invisible"},
		{"too long", ann, with("line2", strings.Repeat("x", 101)), http.StatusBadRequest, "longer than 100"},
	} {
		if code, body := tc.b.post(addrURL, tc.form); code != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("address %s: %d, want %d saying %q", tc.name, code, tc.want, tc.says)
		}
	}
	if a, err := h.ShippingAddress(ctx, holdID); err != nil || a != nil {
		t.Fatalf("a refused address was saved: %+v %v", a, err)
	}
	code, body = ann.post(addrURL, good)
	if code != http.StatusOK || !strings.Contains(body, `<span id="ship-to">Hauptstr. 5, 10115 Berlin, DE</span>`) {
		t.Fatalf("ann's page should show her address: %d\n%s", code, body)
	}
	// Nobody else sees it: not ben's claim page, not the dashboard.
	if _, body := ben.get(page); strings.Contains(body, "Hauptstr") || strings.Contains(body, "Ann Example") {
		t.Fatal("ben's claim page shows ann's address")
	}
	jar, _ := cookiejar.New(nil)
	admin := &http.Client{Jar: jar}
	resp, err := admin.PostForm(e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}})
	if err != nil {
		t.Fatal(err)
	}
	dash, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(dash), `id="webhooks"`) || strings.Contains(string(dash), "Hauptstr") {
		t.Fatal("the dashboard shows a holder's address")
	}

	if _, err := e.svc.TopUp(ctx, "t1", holdOwner(t, e, holdID), "admin", 5000, "EUR", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body := ann.post(strings.TrimSuffix(addrURL, "/address")+"/pay", url.Values{"csrf": {annCSRF}, "method": {"wallet"}}); code != http.StatusOK || !strings.Contains(body, `data-state="paid"`) {
		t.Fatalf("pay: %d\n%s", code, body)
	}
	if err := worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	var paid claims.EventBody
	for _, b := range strings.Split(shop.all(), "\n") {
		if strings.Contains(b, `"hold.paid"`) {
			if err := json.Unmarshal([]byte(b), &paid); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a := paid.Data.ShippingAddress; a == nil || *a != (claims.ShippingAddress{Recipient: "Ann Example", Line1: "Hauptstr. 5", City: "Berlin", PostalCode: "10115", Country: "DE"}) || paid.Data.HoldID != holdID {
		t.Fatalf("the fulfilment endpoint's hold.paid should carry the address: %+v\n%s", paid.Data, shop.all())
	}
	if o := other.all(); !strings.Contains(o, `"hold.paid"`) || strings.Contains(o, "Hauptstr") || strings.Contains(o, "shipping_address") {
		t.Fatalf("an endpoint not marked for fulfilment got the address (or no hold.paid):\n%s", o)
	}
	if strings.Contains(strings.Split(shop.all(), "\n")[0], "Hauptstr") {
		t.Fatal("the hold.won sent before the address was given carries it")
	}
}

// holdOwner is the user id holding holdID.
func holdOwner(t *testing.T, e *env, holdID string) string {
	t.Helper()
	h, err := e.svc.Books().Hold(context.Background(), holdID)
	if err != nil {
		t.Fatal(err)
	}
	return h.UserID
}
